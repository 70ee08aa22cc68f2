"""How a run ends when the engine cannot end it: its Project deleted, its message dead-lettered.

Plain guarded SQL, no engine: a run that has ended never moves again, and its unfinished steps end
with it (a step's instance that still runs finishes on its own; its PodMessage then finds the run
ended and changes nothing).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from shared.db.base import utcnow
from shared.db.models import RunningWorkflow, RunningWorkflowStep

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.workflows")
PROJECT_DELETED = "The run's Project was deleted"
ENDED = ("Succeeded", "Completed", "Failed")  # a pod's final phases, as instances.ENDED


def end_run(s: "Session", run_id: str, *, status: str, error_msg: str | None = None, error_num: int = 1) -> bool:
    """End the run (and its unfinished steps) unless it has ended; returns whether it moved."""
    now = utcnow()
    good = status == "SUCCESS"
    runs, steps = RunningWorkflow.__table__, RunningWorkflowStep.__table__
    moved = s.execute(update(runs).where(runs.c.id == run_id, runs.c.done.is_(False)).values(
        status=status, done=True, success=good, error_num=0 if good else error_num,
        error_msg=None if good else error_msg, stopped=now)).rowcount
    if moved and not good:
        s.execute(update(steps).where(steps.c.running_workflow_id == run_id, steps.c.done.is_(False)).values(
            status="FAILURE", done=True, success=False, error_num=error_num, error_msg=error_msg, stopped=now))
    if moved:
        log.info("Running workflow %s ended %s%s", run_id, status, f": {error_msg}" if error_msg else "")
    return bool(moved)


def forget_if_deleting(s: "Session", run_id: str) -> bool:
    """A run deleted while it ran goes once it has ended (its steps with it; their instances stay)."""
    from sqlalchemy import delete

    runs = RunningWorkflow.__table__
    return bool(s.execute(delete(runs).where(runs.c.id == run_id, runs.c.deleting.is_(True),
                                             runs.c.done.is_(True))).rowcount)


def end_runs_of_project(s: "Session", project_id: str, reason: str = PROJECT_DELETED) -> int:
    runs = RunningWorkflow.__table__
    ids = list(s.scalars(select(runs.c.id).where(runs.c.project_id == project_id, runs.c.done.is_(False))))
    return sum(end_run(s, run_id, status="FAILURE", error_msg=reason) for run_id in ids)


def step_of_instance(s: "Session", instance_id: str) -> tuple[str, str] | None:
    """(step id, run id) of the step an instance runs, or None for an instance of no workflow."""
    steps = RunningWorkflowStep.__table__
    row = s.execute(select(steps.c.id, steps.c.running_workflow_id)
                    .where(steps.c.instance_id == instance_id)).first()
    return (row.id, row.running_workflow_id) if row is not None else None


def end_for_dead_letter(s: "Session", event_type: str, data: bytes | None) -> str | None:
    """A workflow's message, or a step instance's PodMessage, that could not be delivered ends the
    run FAILURE (nothing else would move it on); returns the run's id."""
    from shared.errors import DmError
    from shared.events import contracts

    if event_type not in (contracts.WorkflowMessageEvent.TYPE, contracts.PodMessageEvent.TYPE):
        return None
    try:
        event = contracts.contract_for(event_type).from_bytes(data, event_type)
    except DmError:
        return None
    message = event.message
    if event_type == contracts.WorkflowMessageEvent.TYPE:
        run_id, what = message.running_workflow, f"its {message.action} message"
    else:
        found = step_of_instance(s, message.instance)
        if found is None:
            return None
        run_id, what = found[1], f"the end of step instance {message.instance}"
    end_run(s, run_id, status="FAILURE",
            error_msg=f"The platform could not deliver {what}; an administrator has been told (service error)")
    forget_if_deleting(s, run_id)
    return run_id


STEP_END_CONSUMER = "pbc-workflow-step"  # the inbox lane of "this step instance's end reached the engine"


def is_step_end(s: "Session", message) -> bool:  # noqa: ANN001 - a PodMessage
    """Whether this PodMessage is the end of a workflow step's instance, seen here for the first time
    (one inbox row per instance: the kew's message and a reconciliation's for the same end, or a
    redelivery, reach the engine once)."""
    from shared.events import inbox

    if message.phase not in ENDED or step_of_instance(s, message.instance) is None:
        return False
    return inbox.claim(s, STEP_END_CONSUMER, message.instance, "-")


def queue_step_end(s: "Session", message) -> str | None:  # noqa: ANN001 - a PodMessage
    """An end the monitor found (the pod vanished) goes to pbc as any other PodMessage, so the engine
    hears of it; returns the queued event's id (None for an instance of no workflow)."""
    if step_of_instance(s, message.instance) is None:
        return None
    from shared.events import outbox
    from shared.events.contracts import PodMessageEvent

    return outbox.add(s, PodMessageEvent(message)).id
