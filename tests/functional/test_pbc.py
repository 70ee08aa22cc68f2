"""pbc: PodMessages (real protobuf bytes in real CloudEvents) become task states and instance phases."""

import uuid

import pytest

from tests.functional.test_jobs import TEST_MANIFEST, spec


@pytest.fixture
def pbc_fn(api, monkeypatch):
    """The pbc function (its own functions-framework app) on the api's database."""
    import functions_framework

    from functions.pbc import handler
    from tests.conftest import ROOT

    class Same:
        settings = api.settings
        engine = api.services.engine

    monkeypatch.setattr(handler, "services", Same())
    return functions_framework.create_app(target="pbc", source=str(ROOT / "main.py"),
                                          signature_type="http").test_client()


@pytest.fixture
def instance(api, admin, alice):
    """A recorded (not launched) job instance of alice's: (instance id, task id)."""
    from shared.db.session import transaction
    from shared.services import instances

    assert admin.put("/admin/job-manifest", data={"url": str(TEST_MANIFEST)}).status_code == 200
    pid = alice.create_project("Runs")
    form = {"application_id": "datamanagerjobs.squonk.it", "project_id": pid, "as_name": "A run",
            "specification": spec("fail", code=3)}
    from shared.auth.verify import Principal

    principal = Principal("alice", frozenset(), False, "")
    with transaction(api.services.engine) as s:
        launch = instances.check_launch(s, principal, api.services.storage, form)
        row, task = instances.record(s, principal, launch)
        return row.id, task.id


def pod_message(instance_id, task_id, phase, exit_code=None, started="2026-01-01T00:00:00Z",
                finished="2026-01-01T00:00:05Z"):
    from shared.messages.pod_message_pb2 import PodMessage

    message = PodMessage(timestamp="2026-01-01T00:00:06Z", pod_name=instance_id, task=task_id, phase=phase,
                         instance=instance_id, start_timestamp=started or "")
    if phase in ("Succeeded", "Failed"):
        message.finish_timestamp = finished
    if exit_code is not None:
        message.has_exit_code, message.exit_code = True, exit_code
    return message.SerializeToString()


def send(pbc_fn, data: bytes, event_id: str | None = None):
    headers = {"ce-specversion": "1.0", "ce-id": event_id or str(uuid.uuid4()), "ce-type": "dm.pod.message.v1",
               "ce-source": "/data-manager", "Content-Type": "application/protobuf"}
    return pbc_fn.post("/", data=data, headers=headers)


def states(alice, task_id):
    task = alice.get(f"/task/{task_id}").get_json()
    return [s["state"] for s in task["states"]], task


def test_a_job_that_ends_well(alice, pbc_fn, instance):
    instance_id, task_id = instance
    before = alice.get(f"/instance/{instance_id}").get_json()
    assert before["phase"] == "PENDING" and "started" not in before and "stopped" not in before
    assert send(pbc_fn, pod_message(instance_id, task_id, "Running", finished=None)).status_code == 202
    running = alice.get(f"/instance/{instance_id}").get_json()
    assert running["phase"] == "RUNNING" and running["started"].startswith("2026-01-01T00:00:00") and "stopped" not in running
    assert states(alice, task_id)[0] == ["PENDING", "STARTED"]
    assert send(pbc_fn, pod_message(instance_id, task_id, "Succeeded", 0)).status_code == 202
    done = alice.get(f"/instance/{instance_id}").get_json()
    assert done["phase"] == "COMPLETED" and done["stopped"].startswith("2026-01-01T00:00:05") and done["run_time"] == "0:00:05"
    names, task = states(alice, task_id)
    assert names == ["PENDING", "STARTED", "SUCCESS"] and task["done"] is True and task["exit_code"] == 0


def test_a_failing_job_keeps_its_exit_code(alice, pbc_fn, instance):
    instance_id, task_id = instance
    assert send(pbc_fn, pod_message(instance_id, task_id, "Failed", 3)).status_code == 202
    names, task = states(alice, task_id)
    assert names == ["PENDING", "STARTED", "FAILURE"] and task["exit_code"] == 3
    assert any("exit code 3" in e["message"] for e in task["events"])
    got = alice.get(f"/instance/{instance_id}").get_json()
    assert got["phase"] == "FAILED" and "exit code 3" in got["error_message"]


def test_duplicates_and_late_messages_change_nothing(alice, pbc_fn, instance):
    instance_id, task_id = instance
    ended = pod_message(instance_id, task_id, "Succeeded", 0)
    assert send(pbc_fn, ended, "same-id").status_code == 202
    assert send(pbc_fn, ended, "same-id").status_code == 202  # redelivered
    assert send(pbc_fn, ended).status_code == 202  # the same news under another id
    assert send(pbc_fn, pod_message(instance_id, task_id, "Running", finished=None)).status_code == 202  # late
    assert send(pbc_fn, pod_message(instance_id, task_id, "Failed", 1)).status_code == 202  # contradicting, late
    names, task = states(alice, task_id)
    assert names == ["PENDING", "STARTED", "SUCCESS"] and task["exit_code"] == 0
    assert alice.get(f"/instance/{instance_id}").get_json()["phase"] == "COMPLETED"


def test_an_event_id_reused_for_other_content_is_refused(pbc_fn, instance):
    instance_id, task_id = instance
    assert send(pbc_fn, pod_message(instance_id, task_id, "Running", finished=None), "reused").status_code == 202
    assert send(pbc_fn, pod_message(instance_id, task_id, "Failed", 2), "reused").status_code == 422


@pytest.mark.parametrize("data", [b"\xff\xff not protobuf", b""])
def test_unreadable_messages_are_dead_lettered(pbc_fn, data):
    assert send(pbc_fn, data).status_code == 422


def test_a_message_for_an_unknown_instance_is_dead_lettered(pbc_fn):
    assert send(pbc_fn, pod_message("instance-nope", "task-nope", "Running")).status_code == 422


def apply(api, instance_id, task_id, phase, exit_code=None, claim=None, started="2026-01-01T00:00:00Z"):
    """``pod_messages.apply_pod_message`` in a transaction of its own; what it found."""
    from shared.db.session import transaction
    from shared.messages.pod_message_pb2 import PodMessage
    from shared.services import pod_messages

    message = PodMessage.FromString(pod_message(instance_id, task_id, phase, exit_code, started=started))
    with transaction(api.services.engine) as s:
        return pod_messages.apply_pod_message(s, message, claim=claim)


def test_a_start_and_a_task_state_are_recorded_once(api, alice, instance):
    instance_id, task_id = instance
    apply(api, instance_id, task_id, "Running")
    apply(api, instance_id, task_id, "Running", started="2026-02-02T00:00:00Z")  # seen again: no new start
    got = alice.get(f"/instance/{instance_id}").get_json()
    assert got["phase"] == "RUNNING" and got["started"].startswith("2026-01-01T00:00:00")
    assert states(alice, task_id)[0] == ["PENDING", "STARTED"]
    apply(api, instance_id, task_id, "CrashLoopBackOff")  # troubled: shown, not final
    assert alice.get(f"/instance/{instance_id}").get_json()["phase"] == "CRASH_LOOP_BACKOFF"
    apply(api, instance_id, task_id, "Failed", 7)
    names, task = states(alice, task_id)
    assert names == ["PENDING", "STARTED", "FAILURE"] and task["exit_code"] == 7 and task["done"] is True
    assert [(e["level"], e["message"]) for e in task["events"]][-1] == ("ERROR", "The job failed with exit code 7")
    got = alice.get(f"/instance/{instance_id}").get_json()
    assert got["phase"] == "FAILED" and got["started"].startswith("2026-01-01T00:00:00")


def test_a_claim_is_made_once_and_a_loaded_task_follows(api, alice, instance):
    from shared.db.models import Task
    from shared.db.session import transaction
    from shared.messages.pod_message_pb2 import PodMessage
    from shared.services import pod_messages

    instance_id, task_id = instance
    claim = pod_messages.Claim("pbc", "event-1", "sha")
    found = apply(api, instance_id, task_id, "Running", claim=claim)
    assert found is not None and found.phase == "PENDING" and not found.step
    assert apply(api, instance_id, task_id, "Running", claim=claim) is None  # handled before
    message = PodMessage.FromString(pod_message(instance_id, task_id, "Succeeded", 0))
    with transaction(api.services.engine) as s:
        task = s.get(Task, task_id)
        assert task.state == "STARTED"
        pod_messages.apply_pod_message(s, message)
        assert (task.state, task.done, task.exit_code) == ("SUCCESS", True, 0)
    names, task = states(alice, task_id)
    assert names == ["PENDING", "STARTED", "SUCCESS"]
    assert [(e["level"], e["message"]) for e in task["events"]][-1] == ("INFO", "The instance finished")
