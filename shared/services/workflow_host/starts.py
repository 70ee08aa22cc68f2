"""Starting the pods of the steps the engine launched, after the host's commit, at most once each.

The engine's launch records the step, its instance and the pod to start (``pod_to_start``) in the
host's transaction; the pod starts after the commit and the record is then cleared. A host that
dies in between leaves the record: the redelivered message finds its claim taken and does nothing,
so reconciliation (``start_stranded``) starts the pod once ``start_by`` has passed, instead of the
step waiting for the PENDING deadline to fail it. Taking a stranded start moves ``start_by`` on
first (compare-and-set), so two monitors never start the same pod; a pod already there (the host
died just after starting it) is not started again. Needs no engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from shared.db.base import utcnow
from shared.db.models import Instance, RunningWorkflow, RunningWorkflowStep
from shared.db.session import transaction
from shared.services import instances
from shared.services.workflow_host import ends, links

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.launchers.base import Launcher, LaunchSpec
    from shared.storage.base import Storage

log = logging.getLogger("dm.workflows")
RUNS, STEPS, INSTANCES = RunningWorkflow.__table__, RunningWorkflowStep.__table__, Instance.__table__
# how long the host that recorded a step has to start its pod before another may: far above a
# pod's creation, so a slow host is never raced
START_WITHIN_S = 60.0


@dataclass
class Pending:
    """A step's pod, recorded with the step, to start once the record has committed."""

    spec: "LaunchSpec"
    run_id: str
    step_id: str
    step_name: str
    dependent_instances: list[str] = field(default_factory=list)
    project_inputs: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"spec": dataclasses.asdict(self.spec), "dependent_instances": self.dependent_instances,
                           "project_inputs": self.project_inputs})

    @classmethod
    def from_row(cls, row) -> "Pending":  # noqa: ANN001 - a steps row with pod_to_start
        from shared.launchers.base import LaunchSpec

        saved = json.loads(row.pod_to_start)
        spec = saved["spec"]
        spec["paths"] = tuple(spec.get("paths") or ())
        return cls(spec=LaunchSpec(**spec), run_id=row.running_workflow_id, step_id=row.id, step_name=row.name,
                   dependent_instances=saved["dependent_instances"], project_inputs=saved["project_inputs"])


def record(s: "Session", pending: Pending, now: dt.datetime | None = None) -> None:
    """Keep the pod to start with its step, in the caller's transaction."""
    start_by = (now or utcnow()) + dt.timedelta(seconds=START_WITHIN_S)
    s.execute(update(STEPS).where(STEPS.c.id == pending.step_id).values(
        instance_id=pending.spec.instance_id, task_id=pending.spec.task_id, pod_to_start=pending.to_json(),
        start_by=start_by))


def launch_pending(engine: "Engine", storage: "Storage", launcher: "Launcher", pending: list[Pending]) -> None:
    """Start the recorded steps' pods (after the commit), their inputs linked in first; the records
    of those started are cleared, and a step whose pod cannot start fails, and its run with it."""
    from shared.launchers.base import LaunchError

    started = []
    for step in pending:
        spec = step.spec
        try:
            links.link_inputs(storage, spec.project_id, spec.instance_id,
                              instances=step.dependent_instances, project_files=step.project_inputs)
            launcher.launch(spec)
            started.append(step.step_id)
            continue
        except (LaunchError, OSError) as exc:
            reason = f"The step's instance could not be launched: {exc}"
        except Exception:  # noqa: BLE001 - a fault here; the step cannot wait for a pod that never comes
            log.exception("Launching step %s (%s) failed", step.step_name, spec.instance_id)
            reason = "The step's instance could not be launched (a fault here)"
        with transaction(engine) as s:
            instances.launch_failed(s, spec.instance_id, spec.task_id, reason)
            text = f"Step '{step.step_name}' ERROR(1): {reason}"
            s.execute(update(STEPS).where(STEPS.c.id == step.step_id).values(pod_to_start=None, start_by=None))
            s.execute(update(STEPS).where(STEPS.c.id == step.step_id, STEPS.c.done.is_(False)).values(
                status="FAILURE", done=True, success=False, error_num=1, error_msg=text, stopped=utcnow()))
            ends.end_run(s, step.run_id, status="FAILURE", error_msg=text)
    if started:
        with transaction(engine) as s:
            s.execute(update(STEPS).where(STEPS.c.id.in_(started)).values(pod_to_start=None, start_by=None))


def start_stranded(engine: "Engine", storage: "Storage", launcher: "Launcher", *,
                   now: dt.datetime | None = None) -> int:
    """Start the pods their hosts recorded but did not start in time; returns how many were taken."""
    now = now or utcnow()
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(STEPS.c.id, STEPS.c.start_by)
                         .join(RUNS, RUNS.c.id == STEPS.c.running_workflow_id)
                         .where(STEPS.c.pod_to_start.is_not(None), STEPS.c.start_by < now,
                                STEPS.c.done.is_(False), RUNS.c.done.is_(False))).all()
    taken: list[Pending] = []
    for row in rows:
        with transaction(engine) as s:
            moved = s.execute(update(STEPS).where(STEPS.c.id == row.id, STEPS.c.start_by == row.start_by).values(
                start_by=now + dt.timedelta(seconds=START_WITHIN_S))).rowcount
            step = s.execute(select(STEPS.c.id, STEPS.c.running_workflow_id, STEPS.c.name, STEPS.c.pod_to_start)
                             .where(STEPS.c.id == row.id)).first() if moved else None
            if step is None or step.pod_to_start is None:
                continue  # another took it, or its host started it after all
            pending = Pending.from_row(step)
            phase = s.scalar(select(INSTANCES.c.phase).where(INSTANCES.c.id == pending.spec.instance_id,
                                                             INSTANCES.c.deleted.is_(False)))
        if phase != "PENDING":  # it has moved on (or was deleted): its pod was started
            _forget(engine, [row.id])
            continue
        try:
            there = launcher.pod(pending.spec.instance_id) is not None
        except Exception:  # noqa: BLE001 - the API server is away: try again next time
            log.warning("Could not look up the pod of step %s", row.id, exc_info=True)
            continue
        if there:
            _forget(engine, [row.id])
            continue
        log.warning("Step %s of run %s was recorded but its pod never started: starting it now",
                    pending.step_name, pending.run_id)
        taken.append(pending)
    if taken:
        launch_pending(engine, storage, launcher, taken)
    return len(taken)


def _forget(engine: "Engine", step_ids: list[str]) -> None:
    with transaction(engine) as s:
        s.execute(update(STEPS).where(STEPS.c.id.in_(step_ids)).values(pod_to_start=None, start_by=None))
