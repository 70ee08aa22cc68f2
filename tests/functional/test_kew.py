"""kew: ApiServerSource pod events (real CloudEvents) in; task events, charges and PodMessages out.

The log is read through a real launcher: the local one (the file a local process writes)
or the Kubernetes one against the HTTP stand-in of the API server.
"""

import json
import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from tests.functional.test_pbc import instance, pbc_fn  # noqa: F401

LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "logs"
EVENT = "2026-11-23T10:00:00+00:00 # INFO -EVENT- {}\n"
COST = "2026-11-23T10:00:00+00:00 # INFO -COST- {} {}\n"


class Pod:
    """One instance pod's life: states built as the API server reports them, sent as kew receives them."""

    def __init__(self, kew_fn, instance_id, task_id, labels=None):
        from shared.launchers.base import LaunchSpec

        self.kew_fn = kew_fn
        self.spec = LaunchSpec(instance_id=instance_id, task_id=task_id, project_id="project-x", owner="alice",
                               image="informaticsmatters/dm-test:1.0.0", command=["python3", "-c", "pass"])
        self.uid, self.labels = str(uuid.uuid4()), labels

    def state(self, phase, **status):
        from shared.launchers import pods

        pod = pods.pod_object(self.spec, phase, namespace="data-manager", uid=self.uid,
                              created="2026-11-23T10:00:00Z", **status)
        if self.labels is not None:
            pod["metadata"]["labels"] = self.labels
        return pod

    def send(self, action, phase, event_id=None, **status):
        return send_pod(self.kew_fn, action, self.state(phase, **status), event_id)

    def run(self):
        return self.send("update", "Running", started_at="2026-11-23T10:00:01Z")

    def end(self, code=0):
        return self.send("update", "Succeeded" if code == 0 else "Failed", started_at="2026-11-23T10:00:01Z",
                         finished_at="2026-11-23T10:00:09Z", exit_code=code)


def send_pod(kew_fn, action, pod, event_id=None):
    from cloudevents.conversion import to_binary

    from shared.launchers.local import pod_event

    event = pod_event(action, pod)
    if event_id:
        event["id"] = event_id
    headers, body = to_binary(event)
    return kew_fn.post("/", data=body, headers=headers)


@pytest.fixture
def logs_root(tmp_path):
    path = tmp_path / "pod-logs"
    path.mkdir()
    return path


@pytest.fixture
def kew_fn(api, monkeypatch, logs_root, tmp_path):
    """The kew function (its own functions-framework app) reading logs through the local launcher."""
    import functions_framework

    from functions.kew import handler
    from shared.launchers import create_launcher
    from tests.conftest import ROOT

    launcher = create_launcher("local", projects_root=tmp_path / "projects", logs_root=logs_root, sink_url=None)

    class Same:
        settings = api.settings
        engine = api.services.engine

    Same.launcher = launcher
    monkeypatch.setattr(handler, "services", Same())
    yield functions_framework.create_app(target="kew", source=str(ROOT / "main.py"),
                                         signature_type="http").test_client()
    launcher.close()


def write_log(logs_root, instance_id, text, mode="w"):
    with open(logs_root / f"{instance_id}.log", mode + "b") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def pod_messages(api):
    """The PodMessages kew queued, decoded, oldest first."""
    from sqlalchemy import select

    from shared.db.models import OutboxEvent
    from shared.db.session import transaction
    from shared.messages.pod_message_pb2 import PodMessage

    with transaction(api.services.engine, readonly=True) as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "dm.pod.message.v1")
                         .order_by(OutboxEvent.created))
        return [(row, PodMessage.FromString(row.data)) for row in rows]


def charges(api, instance_id):
    from sqlalchemy import select

    from shared.db.models import InstanceCharge
    from shared.db.session import transaction

    with transaction(api.services.engine, readonly=True) as s:
        return [(c.sqn, c.cost, c.total) for c in s.scalars(
            select(InstanceCharge).where(InstanceCharge.instance_id == instance_id).order_by(InstanceCharge.recorded,
                                                                                            InstanceCharge.sqn))]


def task_events(alice, task_id):
    return [(e["level"], e["message"]) for e in alice.get(f"/task/{task_id}").get_json()["events"]]


def test_a_job_pod_from_start_to_end(api, alice, kew_fn, pbc_fn, logs_root, instance):  # noqa: F811
    instance_id, task_id = instance
    pod = Pod(kew_fn, instance_id, task_id)
    assert pod.send("add", "Pending").status_code == 202
    assert pod_messages(api) == []  # nothing to tell while it waits
    write_log(logs_root, instance_id, EVENT.format("Starting") + "plain output\n" + COST.format("1.5", 1))
    assert pod.run().status_code == 202
    ((_, running),) = pod_messages(api)
    assert (running.phase, running.instance, running.task, running.pod_name) == ("Running", instance_id, task_id,
                                                                               instance_id)
    assert running.start_timestamp == "2026-11-23T10:00:01Z" and not running.has_exit_code
    write_log(logs_root, instance_id, COST.format("+2", 2) + EVENT.format("Done") + "no newline at the end",
              mode="a")
    assert pod.end(0).status_code == 202
    assert pod.send("delete", "Succeeded", started_at="2026-11-23T10:00:01Z", finished_at="2026-11-23T10:00:09Z",
                    exit_code=0).status_code == 202
    messages = pod_messages(api)
    assert [m.phase for _, m in messages] == ["Running", "Succeeded"]
    ended = messages[1][1]
    assert ended.has_exit_code and ended.exit_code == 0 and ended.finish_timestamp == "2026-11-23T10:00:09Z"
    events = task_events(alice, task_id)
    assert ("INFO", "Starting") in events and ("INFO", "Done") in events
    assert not any("plain output" in m for _, m in events)
    assert charges(api, instance_id) == [(1, "1.5", "1.5"), (2, "+2", "3.5")]
    got = alice.get(f"/instance/{instance_id}").get_json()
    assert Decimal(got["cost"]) == Decimal("3.5")
    # pbc turns the PodMessages into the task's end
    from tests.functional.test_pbc import send

    for row, _ in messages:
        assert send(pbc_fn, row.data, row.id).status_code == 202
    task = alice.get(f"/task/{task_id}").get_json()
    assert [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"] and task["exit_code"] == 0
    assert alice.get(f"/instance/{instance_id}").get_json()["phase"] == "COMPLETED"


def test_events_again_or_late_record_nothing_twice(api, alice, kew_fn, logs_root, instance):  # noqa: F811
    instance_id, task_id = instance
    pod = Pod(kew_fn, instance_id, task_id)
    write_log(logs_root, instance_id, EVENT.format("One") + COST.format("5", 1))
    assert pod.run().status_code == 202
    running = pod.state("Running", started_at="2026-11-23T10:00:01Z")
    assert send_pod(kew_fn, "update", running, "fixed").status_code == 202
    assert send_pod(kew_fn, "update", running, "fixed").status_code == 202  # the broker's redelivery
    assert pod.run().status_code == 202
    write_log(logs_root, instance_id, COST.format("5", 1) + COST.format("7", 2), mode="a")  # sqn 1 again
    assert pod.end(0).status_code == 202
    assert pod.end(0).status_code == 202  # several updates follow a termination
    assert pod.send("update", "Running", started_at="2026-11-23T10:00:01Z").status_code == 202  # late
    assert [m.phase for _, m in pod_messages(api)] == ["Running", "Succeeded"]
    assert [m for _, m in task_events(alice, task_id)].count("One") == 1
    assert charges(api, instance_id) == [(1, "5", "5"), (2, "7", "7")]


def test_a_failing_pod_and_a_pod_deleted_while_running(api, alice, kew_fn, logs_root, instance):  # noqa: F811
    instance_id, task_id = instance
    pod = Pod(kew_fn, instance_id, task_id)
    write_log(logs_root, instance_id, "Traceback: boom\n")
    assert pod.end(3).status_code == 202
    ((_, ended),) = pod_messages(api)
    assert (ended.phase, ended.has_exit_code, ended.exit_code) == ("Failed", True, 3)


def test_a_pod_deleted_before_it_ended_is_reported_failed(api, kew_fn, logs_root, instance):  # noqa: F811
    instance_id, task_id = instance
    pod = Pod(kew_fn, instance_id, task_id)
    assert pod.run().status_code == 202
    assert pod.send("delete", "Running", started_at="2026-11-23T10:00:01Z").status_code == 202
    assert [(m.phase, m.has_exit_code) for _, m in pod_messages(api)] == [("Running", False), ("Failed", False)]


def test_pods_that_are_not_instances_are_ignored(api, kew_fn, instance):  # noqa: F811
    instance_id, task_id = instance
    other = Pod(kew_fn, instance_id, task_id, labels={"app": "something-else"})
    assert other.run().status_code == 202
    assert other.end(1).status_code == 202
    assert pod_messages(api) == []


def test_events_kew_can_never_handle(kew_fn, instance):  # noqa: F811
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    headers, body = to_binary(CloudEvent({"type": "dev.knative.apiserver.resource.update", "source": "k8s",
                                          "datacontenttype": "application/json"}, {"kind": "Service"}))
    assert kew_fn.post("/", data=body, headers=headers).status_code == 422
    pod = Pod(kew_fn, "instance-unknown", "task-unknown")
    assert pod.run().status_code == 422


@pytest.mark.skipif(not LOGS.is_dir(), reason="the reference job logs are not beside the repository")
@pytest.mark.parametrize("name", ["sucos-like-success", "screen-like-failure"])
def test_the_reference_logs(api, alice, kew_fn, logs_root, instance, name):  # noqa: F811
    instance_id, task_id = instance
    expected = json.loads((LOGS / f"{name}.expected.json").read_text())
    data = (LOGS / f"{name}.log").read_bytes()
    pod = Pod(kew_fn, instance_id, task_id)
    half = len(data) // 2  # read in two deliveries, split inside a line
    write_log(logs_root, instance_id, data[:half])
    assert pod.run().status_code == 202
    write_log(logs_root, instance_id, data)
    assert pod.end(expected["exit_code"]).status_code == 202
    events = [(e["level"], e["message"]) for e in alice.get(f"/task/{task_id}").get_json()["events"]][1:]
    wanted = [(r["level"], r["message"]) for r in expected["records_in_order"] if r["type"] == "EVENT"]
    assert events == wanted  # after the task's own "Launching" event: exactly the log's, in order
    costs = [(r["sqn"], r["cost"]) for r in expected["records_in_order"] if r["type"] == "COST"]
    got = charges(api, instance_id)
    assert [(sqn, cost) for sqn, cost, _ in got] == costs
    assert Decimal(got[-1][2]) == Decimal(expected["final_cost"])


def test_hostile_logs_are_survived(api, alice, kew_fn, logs_root, instance):  # noqa: F811
    instance_id, task_id = instance
    pod = Pod(kew_fn, instance_id, task_id)
    noise = os.urandom(200_000).replace(b"\n", b"")
    huge = b"x" * (5 * 1024 * 1024)  # one line far past the reader's limit
    log = (EVENT.format("before").encode() + noise + b"\n" + huge + b"\n" + COST.format("2", 5).encode()
           + COST.format("1", 3).encode() + COST.format("2", 5).encode() + b"\xff\xfe # INFO -COST- x 1\n"
           + COST.format("-4", 6).encode() + EVENT.format("after").encode())
    write_log(logs_root, instance_id, log)
    assert pod.end(0).status_code == 202
    assert [m for _, m in task_events(alice, task_id)][-2:] == ["before", "after"]
    # out of order but new: applied; repeated: ignored; malformed: skipped
    assert charges(api, instance_id) == [(3, "1", "1"), (5, "2", "2")]  # recorded together: in sqn order


def test_kew_reads_logs_through_the_kubernetes_api(api, alice, monkeypatch, instance):  # noqa: F811
    """The same handling with the Kubernetes launcher, against the HTTP stand-in of the API server."""
    from kubernetes import client

    from shared.events.contracts import PodChange
    from shared.launchers import create_launcher
    from shared.launchers.base import LaunchSpec
    from shared.services import instance_pods
    from tests.k8s_standin import KubernetesStandIn

    instance_id, task_id = instance
    with KubernetesStandIn() as standin:
        api_client = client.ApiClient(client.Configuration(host=standin.url))
        launcher = create_launcher("kubernetes", namespace="data-manager", api_client=api_client)
        spec = LaunchSpec(instance_id=instance_id, task_id=task_id, project_id="project-x", owner="alice",
                          image="informaticsmatters/dm-test:1.0.0", command=["run"])
        launcher.launch(spec)
        standin.set_phase(instance_id, "Running")
        standin.append_log(instance_id, EVENT.format("Working") + COST.format("+1", 1))
        instance_pods.observe(api.services.engine, launcher, PodChange("update", standin.pod(instance_id)))
        standin.append_log(instance_id, COST.format("+1", 2) + EVENT.format("Finished"))
        standin.set_phase(instance_id, "Succeeded", exit_code=0)
        instance_pods.observe(api.services.engine, launcher, PodChange("update", standin.pod(instance_id)),
                              remove_finished=True)
        assert standin.pod(instance_id) is None  # removed once its log was read
        api_client.close()
    assert [m for _, m in task_events(alice, task_id)][-2:] == ["Working", "Finished"]
    assert charges(api, instance_id) == [(1, "+1", "1"), (2, "+1", "2")]
    assert [m.phase for _, m in pod_messages(api)] == ["Running", "Succeeded"]
