"""The event functions' first real events for cold_start.py: a prepared database and, per round, one
fresh event of each function's own kind, with the data it must process.

- upload: a ``DatasetUpload`` the api queued for a real ``POST /dataset`` (a staged text file of
  SD records; the api process runs without K_SINK, so the event waits in its outbox and is taken
  from there, id and all, as the outbox would send it);
- kew: an ApiServerSource pod event (``update``, Running) for a recorded instance whose local pod log
  holds an EVENT line and a COST line (kew reads it, records the task event and the charge, and
  queues a PodMessage);
- pbc: a binary-mode ``PodMessage`` (Running) for a recorded instance (its task goes STARTED);
- monitor: the ``processing-charges`` schedule tick, with an ended instance's 20 stored charges to
  send (to a sink in this process that answers 202, standing in for the Broker).
"""

from __future__ import annotations

import http.client
import threading
import uuid
from pathlib import Path

import _common as c

MANIFEST = c.ROOT / "tests" / "data" / "jobs" / "manifest.yaml"
EVENT_FUNCTIONS = ("upload", "kew", "pbc", "monitor")
CHARGES_PER_INSTANCE = 20
SDF_RECORD = "mol\n  bench\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n"


class Sink:
    """A threaded werkzeug server in this process that takes any CloudEvent with 202 (the Broker's stand-in)."""

    def __init__(self):
        import logging

        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.received = 0
        lock = threading.Lock()

        @Request.application
        def app(request):
            request.get_data()
            with lock:
                self.received += 1
            return Response("", 202)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


class EventWorld:
    """The data the event functions' first events need, on ``data_dir``'s database, ``rounds`` of each."""

    def __init__(self, data_dir: Path, facts: dict, api_url: str, token: str, rounds: int):
        from shared.auth.verify import Principal
        from shared.config import Settings
        from shared.db.session import get_engine, transaction
        from shared.jobs import definitions
        from shared.services import jobs
        from shared.storage import create_routed_storage

        self.data_dir = Path(data_dir)
        self.settings = Settings(data_dir=self.data_dir)
        self.engine = get_engine(self.settings.sqlalchemy_url)
        self.storage = create_routed_storage(str(self.settings.project_volume_path), self.settings.dataset_store_url)
        self.alice = Principal("alice", frozenset(), False, "")
        admin = Principal("admin", frozenset(), True, "")
        self.user = facts["users"]["alice"]
        self.project_id = c.create_projects(api_url.rsplit("/data-manager-api", 1)[0], token,
                                            self.user["project_tier_product_id"], 1, prefix="Cold runs")[0]
        location = definitions.check_location(str(MANIFEST))
        with transaction(self.engine) as s:
            manifest_id = jobs.put_manifest(s, admin, location, "", "").id
        report = definitions.read_manifest(location, {}, {})
        with transaction(self.engine) as s:
            if jobs.record_load(s, manifest_id, report) < 1:
                raise RuntimeError(f"the test manifest loaded no jobs: {report.status_text()}")
        self.events: dict[str, list[tuple[dict, bytes, str]]] = {
            "pbc": [self._pod_message(*pair) for pair in self._instances(rounds, "pbc")],
            "kew": [self._pod_event(*pair) for pair in self._instances(rounds, "kew")],
            "monitor": [self._tick(n) for n in range(rounds)],
            "upload": self._uploads(api_url, token, rounds),
        }

    def next(self, role: str) -> tuple[dict, bytes, str]:
        """(headers, body, what it is about) of the next unused event for ``role``."""
        return self.events[role].pop(0)

    def _instances(self, count: int, prefix: str) -> list[tuple[str, str]]:
        import dataclasses
        import json

        from shared.db.base import new_id
        from shared.db.session import transaction
        from shared.services import instances

        spec = {"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
                "variables": {"outputFile": "out/result.txt", "count": 1, "cost": "1"}}
        form = {"application_id": "datamanagerjobs.squonk.it", "project_id": self.project_id,
                "as_name": "Run", "specification": json.dumps(spec)}
        out = []
        with transaction(self.engine) as s:
            checked = instances.check_launch(s, self.alice, self.storage, form)
            for n in range(count):
                launch = dataclasses.replace(checked, instance_id=new_id("instance"), name=f"Cold {prefix} {n}")
                row, task = instances.record(s, self.alice, launch)
                out.append((row.id, task.id))
        return out

    @staticmethod
    def _pod_message(instance_id: str, task_id: str) -> tuple[dict, bytes, str]:
        from shared.db.base import utcnow
        from shared.events.contracts import PodMessageEvent
        from shared.messages.pod_message_pb2 import PodMessage

        now = utcnow().isoformat().replace("+00:00", "Z")
        body = PodMessage(timestamp=now, pod_name=instance_id, task=task_id, phase="Running", instance=instance_id,
                          start_timestamp=now).SerializeToString()
        headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": PodMessageEvent.TYPE,
                   "ce-source": PodMessageEvent.SOURCE, "Content-Type": PodMessageEvent.CONTENT_TYPE}
        return headers, body, instance_id

    def _pod_event(self, instance_id: str, task_id: str) -> tuple[dict, bytes, str]:
        from cloudevents.conversion import to_binary

        from shared.launchers import pods
        from shared.launchers.base import LaunchSpec
        from shared.launchers.local import pod_event

        logs = self.settings.pod_logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{instance_id}.log").write_text("2026-11-23T10:00:00+00:00 # INFO -EVENT- Starting\nplain output\n"
                                                 "2026-11-23T10:00:00+00:00 # INFO -COST- 1.5 1\n")
        spec = LaunchSpec(instance_id=instance_id, task_id=task_id, project_id=self.project_id, owner="alice",
                          image="informaticsmatters/dm-test:1.0.0", command=["python3", "-c", "pass"])
        pod = pods.pod_object(spec, "Running", namespace=self.settings.kubernetes_namespace, uid=str(uuid.uuid4()),
                              created="2026-11-23T10:00:00Z", started_at="2026-11-23T10:00:01Z")
        headers, body = to_binary(pod_event("update", pod))
        return dict(headers), body, instance_id

    def _tick(self, n: int) -> tuple[dict, bytes, str]:
        """An ended instance with its charges stored (as kew leaves them), and the tick that sends them."""
        from shared.db.base import utcnow
        from shared.db.models import Instance, InstanceCharge
        from shared.db.session import transaction
        from shared.events import wire
        from shared.events.contracts import ScheduleTick

        now, instance_id = utcnow(), f"instance-cold-{n:04d}"
        with transaction(self.engine) as s:
            s.add(Instance(id=instance_id, name=f"cold {n}", project_id=self.project_id, owner="alice",
                           application_id="datamanagerjobs.squonk.it", application_version="v3",
                           application_type="JOB", task_id=f"task-cold-{n:04d}", phase="COMPLETED", launched=now,
                           started=now, stopped=now, authorisation_code=5000 + n, launch_exchange_rate="1000",
                           job_collection="bench", job_job="cost", job_version="1.0.0"))
            s.flush()
            for sqn in range(1, CHARGES_PER_INSTANCE + 1):
                s.add(InstanceCharge(instance_id=instance_id, sqn=sqn, cost="0.01", total="0", coins="0.01",
                                     timestamp="2026-12-05T10:00:00Z", recorded=now))
        headers, body = wire.to_http(wire.event_of(ScheduleTick(job="processing-charges")))
        return dict(headers), body, instance_id

    def _uploads(self, api_url: str, token: str, count: int) -> list[tuple[dict, bytes, str]]:
        """``count`` real ``POST /dataset`` uploads through the api (no K_SINK: their events wait in the
        outbox), and those events as the outbox sends them."""
        import requests
        from sqlalchemy import select

        from shared.db.models import OutboxEvent
        from shared.db.session import transaction
        from shared.events import outbox, wire
        from shared.events.contracts import DatasetUpload

        with requests.Session() as http_:
            http_.headers["Authorization"] = f"Bearer {token}"
            for n in range(count):
                resp = http_.post(f"{api_url}/dataset", timeout=60,
                                  data={"dataset_type": "chemical/x-mdl-sdfile", "unit_id": self.user["unit_id"]},
                                  files={"dataset_file": (f"cold-{n:03d}.sdf", SDF_RECORD * 50)})
                if resp.status_code != 201:
                    raise RuntimeError(f"POST /dataset: {resp.status_code} {resp.text[:300]}")
        with transaction(self.engine, readonly=True) as s:
            rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type.in_(DatasetUpload.types()))
                             .order_by(OutboxEvent.created)).all()
            events = [wire.to_http(outbox.wire_event(row)) for row in rows]
        if len(events) != count:
            raise RuntimeError(f"{len(events)} dataset upload events queued, expected {count}")
        return [(dict(h), b, "dataset upload") for h, b in events]

    def check(self, sink: Sink, rounds: int) -> list[str]:
        """What the ``rounds`` first events of each function should have left; the problems found."""
        from sqlalchemy import func, select

        from shared.db.models import DatasetVersion, Instance, InstanceCharge, OutboxEvent
        from shared.db.session import transaction

        problems = []
        with transaction(self.engine, readonly=True) as s:
            running = s.scalar(select(func.count()).select_from(Instance).where(Instance.phase == "RUNNING"))
            stored = s.scalar(select(func.count()).select_from(DatasetVersion)
                              .where(DatasetVersion.processing_stage == "DONE"))
            pod_messages = s.scalar(select(func.count()).select_from(OutboxEvent)
                                    .where(OutboxEvent.type == "dm.pod.message.v1"))
            kew_charges = s.scalar(select(func.count()).select_from(InstanceCharge)
                                   .where(InstanceCharge.instance_id.not_like("instance-cold-%")))
        self.stats = {"pbc_instances_running": running, "upload_versions_stored": stored,
                      "kew_pod_messages_queued": pod_messages, "kew_charges_recorded": kew_charges,
                      "monitor_charges_sent": sink.received}  # and any kew recorded before a tick
        expected = {"pbc_instances_running": rounds, "upload_versions_stored": rounds,
                    "kew_pod_messages_queued": rounds, "kew_charges_recorded": rounds,
                    "monitor_charges_sent": rounds * CHARGES_PER_INSTANCE}
        for key, want in expected.items():
            if self.stats[key] < want if key == "monitor_charges_sent" else self.stats[key] != want:
                problems.append(f"{key}: {self.stats[key]}, expected {want}")
        return problems


def post_until_202(function: "c.Function", headers: dict, body: bytes, interval: float = 0.005,
                   timeout: float = 60.0) -> float:
    """POST the event from the moment the port accepts; seconds from the spawn to its 202."""
    import time

    deadline = function.started + timeout
    while time.perf_counter() < deadline:
        if function.proc.poll() is not None:
            raise RuntimeError(f"function exited with {function.proc.returncode}:\n{function.log()}")
        conn = http.client.HTTPConnection("127.0.0.1", function.port, timeout=timeout)
        try:
            conn.connect()
        except ConnectionRefusedError:
            conn.close()
            time.sleep(interval)
            continue
        try:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 202:
            raise RuntimeError(f"the event answered {resp.status}: {data[:300]!r}\n{function.log()}")
        return time.perf_counter() - function.started
    raise TimeoutError(f"no 202 within {timeout} s\n{function.log()}")
