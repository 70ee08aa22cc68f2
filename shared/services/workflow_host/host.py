"""The workflow engine hosted in pbc: each WorkflowMessage, and each step instance's end, handed to
``WorkflowEngine.handle_message`` once, inside one transaction with the inbox claim.

- The run's row is locked first, so the messages of one run take turns (replicas of a step ending
  together: the last one sees them all done and launches the combiner, once).
- The pods the engine asked for start after the commit (``starts``); one that cannot start fails its
  step and the run, and one this host died before starting is started by reconciliation.
- STOP: the engine only ends a run that has no step running, so the host first stops the running
  steps' instances (the instance delete path: a DELETE task, the pod stopped), then ends the steps
  and passes STOP on: the run ends USER_STOPPED. The claim is taken with that end, so a STOP that
  failed half way is retried whole.
- An engine fault that retrying cannot mend (its assertions, a definition it cannot follow) ends
  the run FAILURE; a database fault is retried.
- A run deleted while it ran (``deleting``) is removed once its STOP has ended it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from shared.db.base import utcnow
from shared.db.models import Instance, RunningWorkflow, RunningWorkflowStep
from shared.db.models.job import TERMINAL_PHASES
from shared.db.session import transaction
from shared.services import instances, tasks
from shared.services.workflow_host import ends, starts

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.events.inbox import Claim
    from shared.services.workflow_host.launcher import Collaborators
    from shared.services.workflow_host.starts import Pending

log = logging.getLogger("dm.workflows")
RUNS, STEPS, INSTANCES = RunningWorkflow.__table__, RunningWorkflowStep.__table__, Instance.__table__
STOP_FAILED = "The instance could not be stopped; try again"


class StopIncomplete(Exception):
    """A step's instance could not be stopped: the broker retries the STOP."""


def _lock_run(s: "Session", run_id: str):
    return s.execute(select(RUNS.c.id, RUNS.c.done, RUNS.c.stopping_user, RUNS.c.running_user)
                     .where(RUNS.c.id == run_id).with_for_update()).first()


def _engine_message(message) -> Any:  # noqa: ANN001 - one of the platform's protobufs
    """The same bytes as the engine's own class (im-protobuf): it tells Pod from Workflow messages
    by class."""
    from informaticsmatters.protobuf.datamanager.pod_message_pb2 import PodMessage
    from informaticsmatters.protobuf.datamanager.workflow_message_pb2 import WorkflowMessage

    cls = PodMessage if type(message).__name__ == "PodMessage" else WorkflowMessage
    return cls.FromString(message.SerializeToString())


def _run_engine(s: "Session", services: "Collaborators", message, run_id: str, *, stopping: bool = False,
                reason: str | None = None) -> list["Pending"]:  # noqa: ANN001 - an engine message
    from sqlalchemy.exc import SQLAlchemyError
    from workflow.workflow_engine import WorkflowEngine

    from shared.services.workflow_host.adapter import TableAdapter
    from shared.services.workflow_host.launcher import PlatformLauncher

    adapter = TableAdapter(s, services.storage)
    adapter.stopping, adapter.reason = stopping, reason
    launcher = PlatformLauncher(s, services)
    try:
        with s.begin_nested():
            WorkflowEngine(wapi_adapter=adapter, instance_launcher=launcher).handle_message(message)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # noqa: BLE001 - the engine's own faults: the same message would fail again
        log.exception("The workflow engine failed on run %s", run_id)
        launcher.pending.clear()
        ends.end_run(s, run_id, status="FAILURE", error_msg=f"The workflow engine could not go on: {exc!r}"[:2000])
    return launcher.pending


def launch_pending(services: "Collaborators", pending: list["Pending"]) -> None:
    starts.launch_pending(services.engine, services.storage, services.launcher, pending)


# --- messages ------------------------------------------------------------------------------


def on_workflow_message(services: "Collaborators", message, claim: "Claim") -> None:  # noqa: ANN001
    """A START or STOP for a run (redelivered or repeated ones change nothing)."""
    if message.action == "STOP":
        return _stop(services, message, claim)
    run_id = message.running_workflow
    pending: list = []
    with transaction(services.engine) as s:
        if not claim(s):
            return
        run = _lock_run(s, run_id)
        if run is None or run.done or run.stopping_user:  # gone, ended, or a STOP is on its way
            return
        pending = _run_engine(s, services, _engine_message(message), run_id)
    launch_pending(services, pending)


def after_step_end(s: "Session", services: "Collaborators", instance_id: str) -> list["Pending"]:
    """A step's instance has ended (``ends.is_step_end`` said so, once): the engine moves the run on.
    The caller starts the returned pods after its commit."""
    found = ends.step_of_instance(s, instance_id)
    if found is None:
        return []
    step_id, run_id = found
    run = _lock_run(s, run_id)
    if run is None or run.done:
        return []  # a late end (stopped, failed before): nothing to move on
    instance = s.execute(select(INSTANCES.c.phase, INSTANCES.c.exit_code, INSTANCES.c.error_message)
                         .where(INSTANCES.c.id == instance_id)).first()
    good = instance is not None and instance.phase in TERMINAL_PHASES and instance.phase != "FAILED"
    reason = None if good else (instance.error_message if instance is not None else None)
    if run.stopping_user:  # a STOP is on its way and ends the run: the step ends, nothing more starts
        s.execute(update(STEPS).where(STEPS.c.id == step_id, STEPS.c.done.is_(False)).values(
            status="SUCCESS" if good else "FAILURE", done=True, success=good, stopped=utcnow(),
            error_num=0 if good else 1, error_msg=None if good else reason))
        return []
    from shared.messages.pod_message_pb2 import PodMessage

    # the engine acts on the exit code only: the instance's own end decides it (a pod that vanished
    # has none), and its reason goes with a failure
    code = 0 if good else ((instance.exit_code if instance is not None else None) or 1)
    message = PodMessage(instance=instance_id, pod_name=instance_id, phase="Succeeded" if good else "Failed",
                         has_exit_code=True, exit_code=code)
    return _run_engine(s, services, _engine_message(message), run_id, reason=reason)


# --- stopping ------------------------------------------------------------------------------


def _open_stops(s: "Session", run) -> list[tuple[str, str]]:  # noqa: ANN001 - a runs row
    """(instance, DELETE task) of each running step whose instance still runs; a task opened by an
    earlier try that has not finished is used again."""
    who = run.stopping_user or run.running_user
    rows = s.execute(select(INSTANCES.c.id, INSTANCES.c.project_id, INSTANCES.c.name, INSTANCES.c.delete_task_id)
                     .join(STEPS, STEPS.c.instance_id == INSTANCES.c.id)
                     .where(STEPS.c.running_workflow_id == run.id, STEPS.c.done.is_(False),
                            INSTANCES.c.deleted.is_(False), INSTANCES.c.phase.not_in(TERMINAL_PHASES))).all()
    out = []
    for row in rows:
        task_id = row.delete_task_id
        if task_id is None or tasks.state_of(s, task_id) in ("SUCCESS", "FAILURE"):
            task_id = tasks.create(s, purpose="INSTANCE", purpose_id=row.id, owner=who, project_id=row.project_id,
                                   removal=True, message=f"Deleting {row.name} (its workflow was stopped)").id
            s.execute(update(INSTANCES).where(INSTANCES.c.id == row.id).values(delete_task_id=task_id))
        out.append((row.id, task_id))
    return out


def _stop(services: "Collaborators", message, claim: "Claim") -> None:  # noqa: ANN001 - a WorkflowMessage
    run_id = message.running_workflow
    with transaction(services.engine) as s:
        run = _lock_run(s, run_id)
        if run is None or run.done:
            claim(s)
            ends.forget_if_deleting(s, run_id)
            return
        targets = _open_stops(s, run)
    failed = set()
    for instance_id, _task_id in targets:
        try:
            services.launcher.stop(instance_id)
        except Exception:  # noqa: BLE001 - its task says so, and the STOP is tried again
            log.exception("Stopping step instance %s failed", instance_id)
            failed.add(instance_id)
    with transaction(services.engine) as s:
        for instance_id, task_id in targets:
            instances.finish_delete(s, instance_id, task_id, STOP_FAILED if instance_id in failed else None)
        if not failed and claim(s):
            run = _lock_run(s, run_id)
            if run is not None and not run.done:
                who = run.stopping_user or run.running_user
                s.execute(update(STEPS).where(STEPS.c.running_workflow_id == run_id, STEPS.c.done.is_(False)).values(
                    status="FAILURE", done=True, success=False, error_num=1, error_msg=f"Stopped by {who}",
                    stopped=utcnow()))
                _run_engine(s, services, _engine_message(message), run_id, stopping=True)
                # the engine ends a run with no step running; should it not, the stop still holds
                ends.end_run(s, run_id, status="USER_STOPPED", error_msg="User stopped")
                ends.forget_if_deleting(s, run_id)
    if failed:
        raise StopIncomplete(f"{len(failed)} step instance(s) of {run_id} could not be stopped")
