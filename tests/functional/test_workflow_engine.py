"""The workflow engine hosted in pbc, on SQLite and PostgreSQL: START and STOP messages and the ends of
step instances (real CloudEvents to the pbc function) run the test workflows' steps as ordinary local
instances, each step once, whatever is redelivered or handled twice at the same time."""

from __future__ import annotations

import json
import os
import threading
import uuid

import pytest

from tests.conftest import ROOT
from tests.functional.test_workflows import CHAIN, FAN_OUT, create, jobs, rows, run  # noqa: F401 - jobs: a fixture

pytest.importorskip("workflow.workflow_engine", reason="the workflow engine needs Python 3.12 or later")

FAILING = """
kind: DataManagerWorkflow
kind-version: '2025.2'
name: failing
steps:
- name: boom
  specification:
    collection: dm-test
    job: fail
    version: '1.0.0'
    variables:
      code: 3
- name: never
  specification:
    collection: dm-test
    job: event-and-cost
    version: '1.0.0'
    variables:
      outputFile: never.txt
      count: 1
      cost: '1'
"""
SLEEPING = """
kind: DataManagerWorkflow
kind-version: '2025.2'
name: sleeping
steps:
- name: nap
  specification:
    collection: dm-test
    job: sleep
    version: '1.0.0'
    variables:
      seconds: 60
- name: after
  specification:
    collection: dm-test
    job: event-and-cost
    version: '1.0.0'
    variables:
      outputFile: after.txt
      count: 1
      cost: '1'
"""


@pytest.fixture
def pbc_fn(api, monkeypatch):
    """The pbc function (its own functions-framework app) with the api's collaborators: its
    database, project volume, local launcher and ledger."""
    import functions_framework

    from functions.pbc import handler

    monkeypatch.setattr(handler, "services", api.services)
    return functions_framework.create_app(target="pbc", source=str(ROOT / "main.py"),
                                          signature_type="http").test_client()


def post_event(pbc_fn, type_: str, data: bytes, event_id: str):
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": type_, "ce-source": "/data-manager",
               "Content-Type": "application/protobuf"}
    return pbc_fn.post("/", data=data, headers=headers)


def workflow_events(api) -> list:
    """The queued dm.workflow.v1 events (id, data), oldest first."""
    from shared.db.models import OutboxEvent

    return [(e.id, e.data) for e in sorted(rows(api, OutboxEvent, type="dm.workflow.v1"), key=lambda e: e.created)]


def send_workflow_messages(api, pbc_fn, sent: set) -> None:
    for event_id, data in workflow_events(api):
        if event_id not in sent:
            assert post_event(pbc_fn, "dm.workflow.v1", data, event_id).status_code == 202
            sent.add(event_id)


def steps_of(api, run_id: str) -> list:
    from shared.db.models import RunningWorkflowStep

    return sorted(rows(api, RunningWorkflowStep, running_workflow_id=run_id), key=lambda r: (r.started, r.replica))


def the_run(api, run_id: str):
    from shared.db.models import RunningWorkflow

    [found] = rows(api, RunningWorkflow, id=run_id)
    return found


def end_message(api, instance_id: str) -> bytes:
    """The final PodMessage of a step's instance, as kew sends it once its process has ended."""
    from shared.db.models import Instance
    from shared.events.contracts import PodChange
    from shared.messages.pod_message_pb2 import PodMessage
    from shared.services.instance_pods import pod_facts

    assert api.services.launcher.wait(instance_id, timeout=60), f"{instance_id} did not end"
    facts = pod_facts(PodChange("update", api.services.launcher.pod(instance_id)))
    [instance] = rows(api, Instance, id=instance_id)
    message = PodMessage(timestamp="2026-01-01T00:00:06Z", pod_name=instance_id, task=instance.task_id,
                         phase=facts["phase"], instance=instance_id, start_timestamp=facts["started"] or "",
                         finish_timestamp=facts["finished"] or "")
    if facts["exit_code"] is not None:
        message.has_exit_code, message.exit_code = True, facts["exit_code"]
    return message.SerializeToString()


def finish(api, pbc_fn, instance_id: str, event_id: str | None = None) -> str:
    event_id = event_id or f"end-{instance_id}"
    assert post_event(pbc_fn, "dm.pod.message.v1", end_message(api, instance_id), event_id).status_code == 202
    return event_id


def drive(api, pbc_fn, run_id: str, limit: int = 12) -> list[str]:
    """Report each step instance's end until the run ends; returns the event ids sent."""
    sent, reported = [], set()
    for _ in range(limit):
        if the_run(api, run_id).done:
            return sent
        waiting = [s.instance_id for s in steps_of(api, run_id) if s.instance_id and s.instance_id not in reported]
        assert waiting, "the run is neither done nor running a step"
        for instance_id in waiting:
            sent.append(finish(api, pbc_fn, instance_id))
            reported.add(instance_id)
    raise AssertionError(f"{run_id} did not end")


def start(api, alice, pbc_fn, definition: str, variables: dict, sent: set | None = None) -> tuple[str, str]:
    """A run of ``definition`` in a new Project of alice's, its START delivered: (run id, project id)."""
    workflow = create(alice, definition, name=f"W {uuid.uuid4().hex[:6]}")
    assert workflow["validated"] is True, workflow
    project_id = alice.create_project(f"P {uuid.uuid4().hex[:6]}")
    resp = run(alice, workflow["id"], project_id, variables)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    send_workflow_messages(api, pbc_fn, set() if sent is None else sent)
    return resp.get_json()["id"], project_id


def project_file(api, project_id: str, name: str) -> str:
    return (api.settings.project_volume_path / project_id / name).read_text()


# --- runs that end well --------------------------------------------------------------------------


def test_a_two_step_chain_feeds_the_first_steps_output_to_the_second(api, alice, pbc_fn, jobs):
    run_id, project_id = start(api, alice, pbc_fn, CHAIN, {"resultFile": "result.txt"})
    [first] = steps_of(api, run_id)
    assert (first.name, first.replica, first.status) == ("first", 0, "RUNNING") and first.instance_id
    drive(api, pbc_fn, run_id)
    done = alice.get(f"/running-workflow/{run_id}").get_json()
    assert (done["status"], done["done"], done["success"]) == ("SUCCESS", True, True), done
    first, second = steps_of(api, run_id)
    assert second.prior_step_id == first.id
    assert json.loads(second.variables)["inputFile"] == f".{first.instance_id}/first.txt"
    # the first step's directory is hard-linked into the second's: the same file, not a copy
    volume = api.settings.project_volume_path / project_id
    original = volume / f".{first.instance_id}" / "first.txt"
    linked = volume / f".{second.instance_id}" / f".{first.instance_id}" / "first.txt"
    assert os.stat(original).st_ino == os.stat(linked).st_ino and original.read_text() == "done 0\n"
    assert project_file(api, project_id, "result.txt") == "done 7\n"  # read 7 bytes, into the Project
    listed = alice.get(f"/running-workflow/{run_id}/steps").get_json()
    assert [(s["name"], s["status"], s["done"]) for s in listed["running_workflow_steps"]] == [
        ("first", "SUCCESS", True), ("second", "SUCCESS", True)]
    for step in (first, second):  # ordinary instances of alice's, with their tasks, events and costs
        instance = alice.get(f"/instance/{step.instance_id}").get_json()
        assert (instance["owner"], instance["phase"]) == ("alice", "COMPLETED")
        task = alice.get(f"/task/{step.task_id}").get_json()
        assert task["done"] and task["exit_code"] == 0


def test_a_fan_out_over_several_files_and_a_combiner(api, alice, pbc_fn, jobs):
    run_id, project_id = start(api, alice, pbc_fn, FAN_OUT, {"parts": 3, "combinedFile": "combined.txt"})
    drive(api, pbc_fn, run_id)
    assert the_run(api, run_id).status == "SUCCESS", the_run(api, run_id).error_msg
    steps = steps_of(api, run_id)
    assert [(s.name, s.replica, s.replicas) for s in steps] == [
        ("split", 0, 1), ("process", 0, 3), ("process", 1, 3), ("process", 2, 3), ("combine", 0, 1)]
    split = steps[0]
    inputs = sorted(json.loads(s.variables)["inputFile"] for s in steps[1:4])
    assert inputs == [f".{split.instance_id}/part-{n}.txt" for n in (1, 2, 3)]
    assert json.loads(split.outputs)["values"] == {"outputFiles": ["part-1.txt", "part-2.txt", "part-3.txt"]}
    assert project_file(api, project_id, "combined.txt") == "done 7\n" * 3
    assert len({s.instance_id for s in steps}) == 5


# --- runs that end otherwise ---------------------------------------------------------------------


def test_a_failing_step_ends_the_run_with_its_error(api, alice, pbc_fn, jobs):
    run_id, _ = start(api, alice, pbc_fn, FAILING, {})
    drive(api, pbc_fn, run_id)
    done = alice.get(f"/running-workflow/{run_id}").get_json()
    assert (done["status"], done["done"], done["success"]) == ("FAILURE", True, False)
    assert "boom" in done["error_msg"] and "exit code 3" in done["error_msg"], done
    [boom] = steps_of(api, run_id)  # the next step never started
    assert (boom.status, boom.done, boom.error_num) == ("FAILURE", True, 3) and "exit code 3" in boom.error_msg


def test_stop_while_a_step_runs_stops_its_instance_and_ends_the_run_user_stopped(api, alice, bob, pbc_fn, jobs):
    sent: set = set()
    run_id, project_id = start(api, alice, pbc_fn, SLEEPING, {}, sent)
    [nap] = steps_of(api, run_id)
    assert alice.put(f"/running-workflow/{run_id}/stop").status_code == 204
    send_workflow_messages(api, pbc_fn, sent)
    assert api.services.launcher.wait(nap.instance_id, timeout=30)  # the process was stopped
    done = alice.get(f"/running-workflow/{run_id}").get_json()
    assert (done["status"], done["stopping_user"], done["done"]) == ("USER_STOPPED", "alice", True), done
    [nap] = steps_of(api, run_id)
    assert (nap.status, nap.done, nap.error_msg) == ("FAILURE", True, "Stopped by alice")
    from shared.db.models import Instance, Task

    [instance] = rows(api, Instance, id=nap.instance_id)
    assert instance.deleted and instance.delete_task_id
    [task] = rows(api, Task, id=instance.delete_task_id)
    assert task.state == "SUCCESS"
    # the stopped pod's end arrives late: nothing moves, the next step never starts
    finish(api, pbc_fn, nap.instance_id)
    assert len(steps_of(api, run_id)) == 1 and the_run(api, run_id).status == "USER_STOPPED"


def test_deleting_a_running_run_stops_its_step_then_removes_it(api, alice, pbc_fn, jobs):
    from shared.db.models import Instance, RunningWorkflow, RunningWorkflowStep

    sent: set = set()
    run_id, project_id = start(api, alice, pbc_fn, SLEEPING, {}, sent)
    [nap] = steps_of(api, run_id)
    assert alice.delete(f"/running-workflow/{run_id}").status_code == 204
    assert rows(api, RunningWorkflow, id=run_id)  # hidden, not yet gone: its step still runs
    send_workflow_messages(api, pbc_fn, sent)  # the STOP
    assert api.services.launcher.wait(nap.instance_id, timeout=30)  # the step's process was stopped
    assert rows(api, RunningWorkflow, id=run_id) == [] and rows(api, RunningWorkflowStep, id=nap.id) == []
    [instance] = rows(api, Instance, id=nap.instance_id)  # an ordinary instance: it outlives the run
    assert instance.deleted and instance.project_id == project_id
    finish(api, pbc_fn, nap.instance_id)  # its end arrives late: nothing moves, nothing is made again
    assert rows(api, RunningWorkflow, id=run_id) == [] and len(rows(api, Instance, project_id=project_id)) == 1


def test_a_step_whose_pod_was_never_started_is_started_by_reconciliation(api, alice, pbc_fn, jobs, monkeypatch):
    """pbc dies between recording a step and starting its pod (here: the launch never returns). The
    redelivered START finds its claim taken; reconciliation starts the pod once the host's time to
    start it has passed, not before, and only once."""
    import datetime as dt

    from shared.services import reconcile
    from shared.services.workflow_host import starts

    class Died(BaseException):
        """The process ends here: nothing after it runs."""

    launch = api.services.launcher.launch
    monkeypatch.setattr(api.services.launcher, "launch", lambda spec: (_ for _ in ()).throw(Died()))
    workflow = create(alice, CHAIN)
    project_id = alice.create_project(f"P {uuid.uuid4().hex[:6]}")
    run_id = run(alice, workflow["id"], project_id, {"resultFile": "result.txt"}).get_json()["id"]
    [(start_id, start_data)] = workflow_events(api)
    with pytest.raises(Died):
        post_event(pbc_fn, "dm.workflow.v1", start_data, start_id)
    monkeypatch.setattr(api.services.launcher, "launch", launch)
    assert post_event(pbc_fn, "dm.workflow.v1", start_data, start_id).status_code == 202  # redelivered
    [first] = steps_of(api, run_id)
    assert first.pod_to_start and api.services.launcher.pod(first.instance_id) is None

    def take(seconds: float) -> int:
        now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
        return starts.start_stranded(api.services.engine, api.services.storage, api.services.launcher, now=now)

    assert take(0) == 0 and api.services.launcher.pod(first.instance_id) is None  # its host may yet start it
    assert take(starts.START_WITHIN_S + 1) == 1
    assert api.services.launcher.pod(first.instance_id) is not None
    assert take(2 * starts.START_WITHIN_S + 2) == 0  # started, and its record cleared
    [first] = steps_of(api, run_id)
    assert first.pod_to_start is None and first.start_by is None
    drive(api, pbc_fn, run_id)
    assert the_run(api, run_id).status == "SUCCESS"
    assert project_file(api, project_id, "result.txt") == "done 7\n"
    assert len(steps_of(api, run_id)) == 2
    # the monitor's job does the same: nothing is left to start
    assert reconcile.reconcile(api.services) == 0


def test_a_stranded_record_of_a_pod_that_did_start_starts_nothing(api, alice, pbc_fn, jobs):
    """The host died just after starting the pod, before clearing its record: the pod is there, so
    reconciliation only clears the record."""
    import datetime as dt

    from sqlalchemy import update

    from shared.db.models import RunningWorkflowStep
    from shared.db.session import transaction
    from shared.launchers.base import LaunchSpec
    from shared.services.workflow_host import starts

    run_id, project_id = start(api, alice, pbc_fn, SLEEPING, {})
    [nap] = steps_of(api, run_id)
    uid = api.services.launcher.pod(nap.instance_id)["metadata"]["uid"]
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    record = starts.Pending(LaunchSpec(instance_id=nap.instance_id, task_id=nap.task_id, project_id=project_id,
                                       owner="alice", image="python:3", command=["true"]),
                            run_id=run_id, step_id=nap.id, step_name=nap.name)
    with transaction(api.services.engine) as s:
        s.execute(update(RunningWorkflowStep).where(RunningWorkflowStep.id == nap.id).values(
            pod_to_start=record.to_json(), start_by=past))
    assert starts.start_stranded(api.services.engine, api.services.storage, api.services.launcher) == 0
    assert api.services.launcher.pod(nap.instance_id)["metadata"]["uid"] == uid  # the same pod
    [nap] = steps_of(api, run_id)
    assert nap.pod_to_start is None
    api.services.launcher.stop(nap.instance_id)


def test_a_vanished_pod_fails_the_run_through_the_engine(api, alice, pbc_fn, jobs, monkeypatch):
    import datetime as dt

    from shared.events import outbox
    from shared.services import reconcile

    run_id, _ = start(api, alice, pbc_fn, SLEEPING, {})
    [nap] = steps_of(api, run_id)
    from shared.messages.pod_message_pb2 import PodMessage

    running = PodMessage(pod_name=nap.instance_id, instance=nap.instance_id, task=nap.task_id, phase="Running")
    assert post_event(pbc_fn, "dm.pod.message.v1", running.SerializeToString(), "running").status_code == 202
    api.services.launcher.stop(nap.instance_id)  # gone, and no end reported
    assert api.services.launcher.wait(nap.instance_id, timeout=30)
    delivered = []
    monkeypatch.setattr(outbox, "deliver", lambda engine, url, ids: delivered.extend(ids))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)  # past the PENDING deadline
    monkeypatch.setattr(api.services.launcher, "pods", lambda ids: {})  # no pod left
    assert reconcile.reconcile_instances(api.services.engine, api.services.launcher, "http://broker", now=later) == 1
    from shared.db.models import OutboxEvent

    [event] = [e for e in rows(api, OutboxEvent, type="dm.pod.message.v1") if e.id in delivered]
    assert post_event(pbc_fn, event.type, event.data, event.id).status_code == 202
    done = the_run(api, run_id)
    assert done.status == "FAILURE" and "disappeared" in done.error_msg, done.error_msg
    assert len(steps_of(api, run_id)) == 1


def test_a_dead_lettered_start_ends_the_run(api, alice, jobs):
    from shared.db.session import transaction
    from shared.events import wire
    from shared.services import dead_letters

    workflow = create(alice, CHAIN)
    project_id = alice.create_project("Dead")
    run_id = run(alice, workflow["id"], project_id).get_json()["id"]
    [(event_id, data)] = workflow_events(api)
    event = wire.from_attributes({"specversion": "1.0", "id": event_id, "type": "dm.workflow.v1",
                                  "source": "/data-manager/api", "knativeerrorcode": "422"}, data)
    with transaction(api.services.engine) as s:
        assert dead_letters.receive(s, event)
    done = alice.get(f"/running-workflow/{run_id}").get_json()
    assert done["status"] == "FAILURE" and "START" in done["error_msg"]


def test_deleting_the_project_ends_its_runs(api, alice, pbc_fn, jobs):
    run_id, project_id = start(api, alice, pbc_fn, SLEEPING, {})
    assert alice.delete(f"/project/{project_id}").status_code == 200
    done = the_run(api, run_id)
    assert done.status == "FAILURE" and "Project was deleted" in done.error_msg
    [nap] = steps_of(api, run_id)
    api.services.launcher.stop(nap.instance_id)
    finish(api, pbc_fn, nap.instance_id)  # its end changes nothing now
    assert the_run(api, run_id).status == "FAILURE" and len(steps_of(api, run_id)) == 1


# --- exactly once --------------------------------------------------------------------------------


def test_redelivered_and_repeated_messages_change_nothing(api, alice, pbc_fn, jobs):
    from shared.db.models import Instance
    from shared.db.session import transaction
    from shared.events import outbox
    from shared.events.contracts import WorkflowMessageEvent
    from shared.messages.workflow_message_pb2 import WorkflowMessage

    sent: set = set()
    run_id, project_id = start(api, alice, pbc_fn, CHAIN, {"resultFile": "result.txt"}, sent)
    [(start_id, start_data)] = workflow_events(api)
    assert post_event(pbc_fn, "dm.workflow.v1", start_data, start_id).status_code == 202  # the same event
    assert post_event(pbc_fn, "dm.workflow.v1", start_data, str(uuid.uuid4())).status_code == 202  # a copy
    [first] = steps_of(api, run_id)
    end_id = finish(api, pbc_fn, first.instance_id)
    finish(api, pbc_fn, first.instance_id, end_id)  # redelivered
    finish(api, pbc_fn, first.instance_id, str(uuid.uuid4()))  # the same end, reported again
    first, second = steps_of(api, run_id)
    finish(api, pbc_fn, second.instance_id)
    assert the_run(api, run_id).status == "SUCCESS"
    # after the end: a START again, a STOP (twice) and the ends once more
    with transaction(api.services.engine) as s:
        outbox.add(s, WorkflowMessageEvent(WorkflowMessage(timestamp="2026-01-01T00:00:00Z", action="STOP",
                                                           running_workflow=run_id)))
    send_workflow_messages(api, pbc_fn, sent)
    for event_id, data in workflow_events(api):
        assert post_event(pbc_fn, "dm.workflow.v1", data, event_id).status_code == 202
    for step in (first, second):
        finish(api, pbc_fn, step.instance_id, str(uuid.uuid4()))
    assert the_run(api, run_id).status == "SUCCESS"
    assert [(s.name, s.replica) for s in steps_of(api, run_id)] == [("first", 0), ("second", 0)]
    assert len(rows(api, Instance, project_id=project_id)) == 2  # each step ran once


def test_two_handlers_of_the_same_message_at_once_launch_once(api, alice, pbc_fn, jobs):
    import functions_framework

    from shared.db.models import Instance

    workflow = create(alice, CHAIN)
    project_id = alice.create_project("Twice")
    run_id = run(alice, workflow["id"], project_id).get_json()["id"]
    [(start_id, start_data)] = workflow_events(api)
    clients = [functions_framework.create_app(target="pbc", source=str(ROOT / "main.py"),
                                              signature_type="http").test_client() for _ in range(2)]

    def at_once(send) -> list[int]:
        barrier, codes = threading.Barrier(len(clients)), []

        def one(client):
            barrier.wait()
            codes.append(send(client))

        threads = [threading.Thread(target=one, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return codes

    assert at_once(lambda c: post_event(c, "dm.workflow.v1", start_data, start_id).status_code) == [202, 202]
    [first] = steps_of(api, run_id)
    data = end_message(api, first.instance_id)
    assert at_once(lambda c: post_event(c, "dm.pod.message.v1", data, "end-first").status_code) == [202, 202]
    first, second = steps_of(api, run_id)
    # the same end in two different events at once: still one next step
    data = end_message(api, second.instance_id)
    codes = at_once(lambda c: post_event(c, "dm.pod.message.v1", data, str(uuid.uuid4())).status_code)
    assert codes == [202, 202]
    assert the_run(api, run_id).status == "SUCCESS"
    assert len(steps_of(api, run_id)) == 2 and len(rows(api, Instance, project_id=project_id)) == 2
