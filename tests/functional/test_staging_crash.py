"""A process killed (SIGKILL) while it writes into the store leaves no file under the name it was
writing, only its partial write in the storage's staging area (or an unfinished S3 multipart
upload), which the monitor's stale-upload job removes once it is old. Each worker here is a real
process running the real function, stopped mid-stream and killed."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from shared.services import housekeeping, monitor
from tests.conftest import ROOT
from tests.functional.test_datasets import SDF, deliver, finish, pending_events, post_dataset, upload_fn  # noqa: F401

MiB = 1 << 20

# Runs a function's app in a child process with the store's reads (upload function) or the request
# body (api) stalled part way, after more than a buffer's worth (4 MiB on disk, 8 MiB on S3) is written.
CHILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])

def stall():
    for _ in range(args["filler_mib"]):
        yield b"\0" * (1 << 20)
    print("stalled", flush=True)
    time.sleep(600)

import functions_framework
if args["target"] == "upload":
    from shared.storage import local, s3

    def stalling(original):
        def open(self, key):
            first = original(self, key)
            def chunks():
                yield from first
                yield from stall()
            return chunks()
        return open

    local.LocalStorage.open = stalling(local.LocalStorage.open)
    s3.S3Storage.open = stalling(s3.S3Storage.open)
    app = functions_framework.create_app(target="upload", source="main.py", signature_type="http")
    with open(args["body"], "rb") as f:
        app.test_client().post("/", data=f.read(), headers=args["headers"])
else:
    import io

    class Stalled(io.RawIOBase):
        def __init__(self):
            self.rest = stall()
            self.pending = args["head"].encode()
        def readable(self):
            return True
        def readinto(self, target):
            self.pending = self.pending or next(self.rest)
            n = min(len(target), len(self.pending))
            target[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n

    app = functions_framework.create_app(target="api", source="main.py", signature_type="http")
    environ = {"wsgi.input": Stalled(), "CONTENT_LENGTH": str(args["length"]),
               "CONTENT_TYPE": "multipart/form-data; boundary=B", "HTTP_AUTHORIZATION": "Bearer " + args["token"]}
    app.test_client().put(args["path"], environ_overrides=environ)
print("finished", flush=True)
"""


@pytest.fixture(params=["local", "s3"])
def settings(request, settings):
    """On the local folder and on S3 (moto over HTTP), with room for uploads larger than a buffer."""
    import dataclasses

    from tests.conftest import local_or_s3

    return dataclasses.replace(local_or_s3(request, settings, "crash"), max_upload_bytes=64 * MiB)


def start_child(api, args: dict) -> subprocess.Popen:
    settings = api.settings
    env = {**os.environ, "DM_DATABASE_URL": settings.database_url, "DM_PROJECT_VOLUME": settings.project_volume,
           "DM_DATASET_STORE": settings.dataset_store,
           "DM_DATA_DIR": str(settings.data_dir), "DM_PUBLIC_URL": settings.public_url,
           "DM_MAX_UPLOAD_BYTES": str(settings.max_upload_bytes), "PYTHONPATH": str(ROOT)}
    if settings.s3_endpoint_url:
        env["DM_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    with open(settings.data_dir / "worker.log", "w") as log:  # a file: a full pipe would stall the worker
        return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)


def kill_when_stalled(api, child: subprocess.Popen, timeout_s: float = 180) -> None:
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    line = child.stdout.readline() if ready else "(nothing in time)"
    if line != "stalled\n":
        child.kill()
        log = (api.settings.data_dir / "worker.log").read_text()[-3000:]
        pytest.fail(f"the worker did not reach the middle of its write: {line!r}\n{log}")
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def partial_writes(storage) -> list:
    """The staging files (on the project volume, and in a local dataset store) or unfinished multipart
    uploads (a dataset store on S3)."""
    from shared.storage.local import STAGING

    found = []
    for backend in (storage.projects, storage.datasets):
        if backend.local_path("x") is not None:
            folder = os.path.join(backend.root, STAGING)
            found += [(os.path.join(folder, name), os.path.getsize(os.path.join(folder, name)))
                      for name in os.listdir(folder)]
        else:
            found += [(u["Key"], None)
                      for u in backend._s3.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])]
    return found


def sweep_once_old(api) -> int:
    """Run the monitor's job as it runs on its tick: it keeps a fresh partial write (its writer may
    be alive); once that has aged past the threshold, it removes it."""
    storage = api.services.storage
    services = SimpleNamespace(engine=api.services.engine, storage=storage, settings=api.settings)
    job = monitor.JOBS["remove-stale-uploads"]
    if all(size is None for _, size in partial_writes(storage)):  # moto dates every multipart upload in 2010
        return job.run(services)
    assert job.run(services) == 0
    assert partial_writes(storage)
    old = time.time() - housekeeping.STALE_AFTER_S - 60
    for path, size in partial_writes(storage):
        if size is not None:  # a staging file on disk
            os.utime(path, (old, old))
    return job.run(services)


def test_an_upload_worker_killed_mid_copy_leaves_no_file_and_the_job_finishes_on_redelivery(
        alice, api, upload_fn):  # noqa: F811
    storage = api.services.storage
    dataset_id = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile").get_json()["dataset_id"]
    finish(api, upload_fn)
    pid = alice.create_project("Crash")
    resp = alice.post("/file", data={"dataset_id": dataset_id, "dataset_version": "1", "project_id": pid,
                                     "as_type": "chemical/x-mdl-sdfile", "compress": "False"})
    assert resp.status_code == 201, resp.get_json()
    file_id, task_id = resp.get_json()["file_id"], resp.get_json()["task_id"]
    (event,) = pending_events(api)
    from shared.events import outbox, wire

    headers, body = wire.to_http(outbox.wire_event(event))
    (api.settings.data_dir / "event.bin").write_bytes(body)
    child = start_child(api, {"target": "upload", "filler_mib": 9, "headers": headers,
                              "body": str(api.settings.data_dir / "event.bin")})
    kill_when_stalled(api, child)

    final = f"projects/{pid}/ethanol.sdf"
    assert not storage.exists(final) and storage.stat(final) is None
    (partial,) = partial_writes(storage)
    assert partial[1] is None or partial[1] >= 4 * MiB  # it was killed well into its write
    assert alice.get(f"/task/{task_id}").get_json()["done"] is False
    assert sweep_once_old(api) == 1
    assert partial_writes(storage) == []

    assert deliver(upload_fn, event).status_code == 202  # the broker's retry finishes the job
    assert alice.get(f"/task/{task_id}").get_json()["exit_code"] == 0
    assert alice.get(f"/file/{file_id}").get_data() == SDF
    assert partial_writes(storage) == []


def test_an_api_worker_killed_mid_upload_stages_nothing_and_creates_nothing(alice, api, token_for):
    storage = api.services.storage
    pid = alice.create_project("Crash")
    head = ('--B\r\nContent-Disposition: form-data; name="path"\r\n\r\n/\r\n'
            '--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n')
    child = start_child(api, {"target": "api", "filler_mib": 9, "head": head, "length": 32 * MiB,
                              "token": token_for("alice"), "path": f"/data-manager-api/project/{pid}/file"})
    kill_when_stalled(api, child)

    assert storage.list_dir(housekeeping.STAGING).files == [] if storage.is_dir(housekeeping.STAGING) else True
    assert alice.get("/file", query_string={"project_id": pid, "path": "/"}).get_json()["count"] == 0
    (partial,) = partial_writes(storage)
    assert partial[1] is None or partial[1] >= 4 * MiB
    assert sweep_once_old(api) == 1
    assert partial_writes(storage) == []
