"""A 512 MiB dataset upload on the local stack, end to end, vs SHA-256 of the same file (and a copy).

The real local stack (``python -m shared.cli run``: api, upload function, Broker, kew, pbc,
monitor) runs in a temp DM_DATA_DIR on six free ports. One upload is ``POST
/data-manager-api/dataset`` (multipart: ``dataset_type``, ``unit_id``, then the ``dataset_file``
part, streamed from the file with a precomputed Content-Length), then ``GET /task/{id}`` every
20 ms until ``done``: the time runs from the start of the request to the poll that sees the task
done (exit code 0). The api stages
the file, the outbox sends an event to the Broker, the Broker delivers it to the upload function,
which moves the staged file into the dataset store (the api hashed and checked the content
beside the receive).

Two types, each with its own source file in the data folder (so source, copy and upload share
one filesystem): ``application/octet-stream`` (.bin, random bytes) and ``text/plain`` (.txt,
ASCII lines; the api checks it is UTF-8 without NUL). For each type, rounds of: sync, time
``shutil.copyfile``; time ``hashlib.sha256`` over the source file (read into one reused 8 MiB
buffer): the work an upload cannot avoid; sync, time the floor of any upload that survives a crash
(``upload.bare_transfer``: the file over bare loopback TCP into the store's writer, fsynced; no
HTTP, no parsing, no hash); sync, time the upload; check the stored version's size and
SHA-256 (``GET /digest/dataset/<sha256>`` must find this version, and the stored file is hashed
again); delete the version and wait for its removal task. Round 0 is an untimed warm-up (see
upload.py: the VM's first writes of 512 MiB are slow for whichever goes first).

Meanwhile psutil samples the RSS of every process of the stack (``_common.Stack.processes``: the
``dm run`` and ``dm functions`` supervisors, the api process, each event function's process, the
Broker) every 10 ms. Growth is each process's peak minus its
RSS after warm-up uploads of 8 MiB of each type; the figure is the largest over all rounds,
warm-up included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import _common as c
from upload import MultipartBody, bare_transfer, make_source, sha256_of

SIZE = 512 * 1024**2
ROUNDS = 7  # per type, after the warm-up round; the VM's disk is noisy
POLL_S = 0.020
TARGET_SHA_RATIO, TARGET_RSS_MIB = 1.5, 100  # upload time <= 1.5x the time of SHA-256 alone
MiB = 1024**2
TYPES = (  # (label, dataset_type, file name)
    ("binary", "application/octet-stream", "big.bin"),
    ("text", "text/plain", "big.txt"),
)


def make_text_source(path: Path, size: int) -> str:
    """``size`` bytes of ASCII lines (base64 of random bytes, 76 characters a line); their SHA-256."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "wb") as f:
        while remaining:
            block = base64.encodebytes(os.urandom(6 * MiB))
            if len(block) >= remaining:
                block = block[:remaining - 1] + b"\n"
            f.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def sha256_seconds(path: Path) -> float:
    """Seconds ``hashlib.sha256`` takes over the file, read into one reused 8 MiB buffer."""
    buf = bytearray(8 * MiB)
    view = memoryview(buf)
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    digest.hexdigest()
    return time.perf_counter() - t0


class StackRss:
    """Samples the RSS of each process of the stack every 10 ms in a thread; ``peak`` by role."""

    def __init__(self, processes: dict, interval: float = 0.010):
        self.processes, self.interval = processes, interval
        self.peak = {name: 0 for name in processes}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> dict[str, int]:
        out = {}
        for name, p in self.processes.items():
            try:
                out[name] = p.memory_info().rss
            except Exception:  # noqa: BLE001 - a process that just ended
                out[name] = 0
        return out

    def _sample(self) -> None:
        for name, value in self.rss().items():
            if value > self.peak[name]:
                self.peak[name] = value
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def upload(api: c.ApiClient, unit_id: str, mime: str, source: Path, name: str) -> dict:
    """One dataset upload to SUCCESS: ids and the times of its stages (perf_counter / epoch)."""
    body = MultipartBody({"dataset_type": mime, "unit_id": unit_id}, "dataset_file", source, name)
    wall0, t0 = time.time(), time.perf_counter()
    status, data = api.call("POST", "/dataset", body=body, headers={
        "Content-Type": body.content_type, "Content-Length": str(body.length)})
    t_201 = time.perf_counter()
    if status != 201:
        raise RuntimeError(f"POST /dataset answered {status}: {data[:300]!r}")
    created = json.loads(data)
    t_done, task, polls = api.wait_task(created["task_id"], POLL_S)
    if task.get("exit_code") != 0:
        raise RuntimeError(f"the upload task failed: {task}")
    states = c.task_times(task)
    return {**created, "total": t_done - t0, "to_201": t_201 - t0, "polls": polls,
            "to_started": states.get("STARTED", wall0) - wall0, "to_success": states.get("SUCCESS", wall0) - wall0}


def verify(api: c.ApiClient, data: Path, done: dict, name: str, size: int, sha: str) -> None:
    """The digest endpoint finds this version; size (api and disk) and the stored file's SHA-256 match."""
    found = api.json("GET", f"/digest/dataset/{sha}")
    if (found.get("dataset_id"), found.get("dataset_version")) != (done["dataset_id"], done["dataset_version"]):
        raise RuntimeError(f"GET /digest/dataset/{sha} found {found}, not {done}")
    versions = api.json("GET", f"/dataset/{done['dataset_id']}/versions")["versions"]
    [version] = [v for v in versions if v["version"] == done["dataset_version"]]
    stored = data / "store" / "datasets" / done["dataset_id"] / str(done["dataset_version"]) / name
    if version["size"] != size or stored.stat().st_size != size:
        raise RuntimeError(f"stored size {version['size']} (api) / {stored.stat().st_size} (disk), not {size}")
    if sha256_of(stored) != sha:
        raise RuntimeError("the stored file's SHA-256 differs from the source's")


def delete(api: c.ApiClient, done: dict) -> None:
    removal = api.json("DELETE", f"/dataset/{done['dataset_id']}/{done['dataset_version']}")
    _, task, _ = api.wait_task(removal["task_id"], POLL_S)
    if task.get("exit_code") != 0:
        raise RuntimeError(f"the removal task failed: {task}")


def main() -> c.Report:
    report = c.Report("dataset_upload")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        print(f"creating {SIZE // MiB} MiB source files (random bytes, ASCII lines) ...", flush=True)
        sources = {"binary": (data / "source.bin", make_source(data / "source.bin", SIZE)),
                   "text": (data / "source.txt", make_text_source(data / "source.txt", SIZE))}
        small = {"binary": data / "small.bin", "text": data / "small.txt"}
        make_source(small["binary"], 8 * MiB)
        make_text_source(small["text"], 8 * MiB)

        with c.Stack(data) as stack:
            ready = stack.wait_ready()
            print(f"local stack on ports {stack.port}-{stack.port + 5}, ready in {ready:.1f} s", flush=True)
            api = c.ApiClient(stack.port, stack.token("alice"))
            unit_id = stack.facts["users"]["alice"]["unit_id"]
            for label, mime, name in TYPES:  # imports, buffers and connections in place
                delete(api, upload(api, unit_id, mime, small[label], "warm-up" + Path(name).suffix))
            time.sleep(0.2)
            processes = stack.processes()
            baseline = StackRss(processes).rss()
            print("RSS after warm-up: " + ", ".join(f"{k} {v / MiB:.0f} MiB" for k, v in baseline.items()))
            growth = {k: 0 for k in processes}

            for label, mime, name in TYPES:
                source, sha = sources[label]
                copies, hashes, floors, totals, rounds = [], [], [], [], []
                print(f"{label} ({mime}, {name}):", flush=True)
                for i in range(ROUNDS + 1):
                    copy_to = data / ("copy" + Path(name).suffix)
                    os.sync()
                    t0 = time.perf_counter()
                    shutil.copyfile(source, copy_to)
                    copied = time.perf_counter() - t0
                    copy_to.unlink()
                    hashed = sha256_seconds(source)
                    os.sync()
                    floor = bare_transfer(source, data / "bare.bin")

                    os.sync()
                    with StackRss(processes) as sampler:
                        done = upload(api, unit_id, mime, source, name)
                    grew = {k: sampler.peak[k] - baseline[k] for k in processes}
                    for k, v in grew.items():
                        growth[k] = max(growth[k], v)
                    verify(api, data, done, name, SIZE, sha)
                    delete(api, done)
                    if i:
                        copies.append(copied)
                        hashes.append(hashed)
                        floors.append(floor)
                        totals.append(done["total"])
                        rounds.append({k: round(done[k], 3) for k in ("total", "to_201", "to_started", "to_success")}
                                      | {"copy": round(copied, 3), "sha256": round(hashed, 3), "bare_tcp_store": round(floor, 3),
                                         "vs_sha256": round(done["total"] / hashed, 2)})
                    worst = max(grew, key=grew.get)
                    print(f"  round {i}: copy {copied:.2f} s, sha256 {hashed:.2f} s, bare TCP + write + fsync "
                          f"{floor:.2f} s, upload {done['total']:.2f} s "
                          f"= {done['total'] / hashed:.2f}x sha256 (201 after "
                          f"{done['to_201']:.2f} s, STARTED {done['to_started']:.2f} s, SUCCESS "
                          f"{done['to_success']:.2f} s), largest RSS growth {grew[worst] / MiB:.1f} MiB "
                          f"({worst}, {sampler.samples} samples), size and SHA-256 match"
                          f"{'' if i else ' (warm-up)'}", flush=True)
                results[label] = {"copies": copies, "hashes": hashes, "floors": floors, "totals": totals, "rounds": rounds}
            api.close()
            code = stack.stop()
            if code != 0:
                print(f"the stack exited with {code} after SIGINT:\n{stack.log()}")

    print("medians:")
    for label, mime, _ in TYPES:
        r = results[label]
        copy_s, total_s, sha_s = c.median(r["copies"]), c.median(r["totals"]), c.median(r["hashes"])
        copy_rate, upload_rate = SIZE / MiB / copy_s, SIZE / MiB / total_s
        stage = {k: c.median([x[k] for x in r["rounds"]]) for k in ("to_201", "to_started", "to_success")}
        report.figure(f"{label}_copy_mib_s", copy_rate, f"{label}: shutil.copyfile {copy_s:.2f} s = {copy_rate:.0f} MiB/s")
        report.figure(f"{label}_upload_mib_s", upload_rate,
                      f"{label}: upload to SUCCESS {total_s:.2f} s = {upload_rate:.0f} MiB/s "
                      f"(201 at {stage['to_201']:.2f} s, STARTED at {stage['to_started']:.2f} s, "
                      f"SUCCESS at {stage['to_success']:.2f} s)")
        report.figure(f"{label}_speed_ratio", upload_rate / copy_rate,
                      f"{label}: upload / copy speed {upload_rate / copy_rate:.2f}")
        report.figure(f"{label}_sha256_s", sha_s, f"{label}: hashlib.sha256 over the file {sha_s:.2f} s "
                      f"= {SIZE / MiB / sha_s:.0f} MiB/s")
        floor_s = c.median(r["floors"])
        report.figure(f"{label}_bare_tcp_store_s", floor_s,
                      f"{label}: floor, the file over bare loopback TCP into the store's writer and fsynced (no HTTP, "
                      f"no hash) {floor_s:.2f} s = {floor_s / sha_s:.2f}x sha256")
        per_round = c.median([x["vs_sha256"] for x in r["rounds"]])
        report.figure(f"{label}_vs_sha256", total_s / sha_s,
                      f"{label}: upload time / sha256 time {total_s / sha_s:.2f} (medians; the median of the "
                      f"rounds' own ratios {per_round:.2f})")
        report.figures[f"{label}_stages_s"] = stage
        report.figures[f"{label}_rounds_s"] = r["rounds"]
    report.figure("baseline_rss_mib", {k: round(v / MiB, 1) for k, v in baseline.items()},
                  "RSS after warm-up: " + ", ".join(f"{k} {v / MiB:.0f} MiB" for k, v in baseline.items()))
    report.figure("peak_rss_growth_mib", {k: round(v / MiB, 1) for k, v in growth.items()},
                  "peak RSS growth per process (max over all rounds): "
                  + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in growth.items()))
    report.figure("stack_exit_code", code, f"stack exit code after SIGINT: {code}")
    report.target("binary upload time vs sha256 alone", report.figures["binary_vs_sha256"], "<=", TARGET_SHA_RATIO, "x")
    worst = max(growth, key=growth.get)
    report.target(f"peak RSS growth of any process ({worst})", growth[worst] / MiB, "<", TARGET_RSS_MIB, " MiB")
    report.save()
    if code != 0:
        raise SystemExit(f"the stack exited with {code} after SIGINT")
    return report


if __name__ == "__main__":
    main()
