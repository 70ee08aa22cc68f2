"""The engine's WorkflowAPIAdapter over the workflow tables, in the host's transaction.

Every answer is read afresh with Core statements (no identity map to go stale between the
engine's calls) and handed over as new dicts: the engine changes what it is given (a step's
specification variables become its prime variables). Every end is guarded: a run or step that
has ended never moves again, whatever the engine asks later.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from workflow.workflow_abc import WorkflowAPIAdapter

from shared.db.base import utcnow
from shared.db.models import Instance, Job, RunningWorkflow, RunningWorkflowStep, Workflow
from shared.services import workflows
from shared.services.workflow_host import links

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.storage.base import Storage

RUNS, STEPS, INSTANCES = RunningWorkflow.__table__, RunningWorkflowStep.__table__, Instance.__table__
Answer = tuple[dict[str, Any], int]


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> dict[str, Any]:
    """A definition parsed once: the engine asks for it on every message (a fan-out's replicas each
    end with one), and YAML parsing costs more than a copy."""
    return workflows.parse(text)


class TableAdapter(WorkflowAPIAdapter):
    """``stopping``: the run is being stopped by a user (its failure is USER_STOPPED).
    ``reason``: what the platform knows of a failed step beyond its exit code (the instance's
    error message), added to the failure the engine records."""

    def __init__(self, s: "Session", storage: "Storage"):
        self.s = s
        self.storage = storage
        self.stopping = False
        self.reason: str | None = None

    # --- workflows and runs ----------------------------------------------------------------

    def get_workflow(self, *, workflow_id: str) -> Answer:
        text = self.s.scalar(select(Workflow.__table__.c.definition).where(Workflow.__table__.c.id == workflow_id))
        if text is None:
            return {}, 404
        return copy.deepcopy(_parsed(text)), 200

    def get_running_workflow(self, *, running_workflow_id: str) -> Answer:
        run = self.s.execute(select(RUNS).where(RUNS.c.id == running_workflow_id)).first()
        if run is None:
            return {}, 404
        # No user token: steps launch under the platform's identity (the user's may have expired),
        # owned by the running user. The engine insists on the key.
        return {"id": run.id, "name": run.name, "running_user": run.running_user, "running_user_api_token": "",
                "done": run.done, "success": run.success, "error_num": run.error_num,
                "error_msg": run.error_msg or "", "debug": run.debug, "workflow": {"id": run.workflow_id},
                "project": {"id": run.project_id}, "variables": json.loads(run.variables or "{}")}, 200

    def get_running_steps(self, *, running_workflow_id: str) -> Answer:
        names = list(self.s.scalars(select(STEPS.c.name).where(STEPS.c.running_workflow_id == running_workflow_id,
                                                              STEPS.c.done.is_(False))
                                    .order_by(STEPS.c.started, STEPS.c.replica)))
        return {"count": len(names), "steps": [{"name": n} for n in names]}, 200

    def set_running_workflow_done(self, *, running_workflow_id: str, success: bool, error_num: int | None = None,
                                  error_msg: str | None = None) -> None:
        now = utcnow()
        if success:
            values: dict[str, Any] = dict(status="SUCCESS", success=True, error_num=0, error_msg=None)
        elif self.stopping:
            values = dict(status="USER_STOPPED", success=False, error_num=error_num or 1,
                          error_msg=error_msg or "User stopped")
        else:
            values = dict(status="FAILURE", success=False, error_num=error_num or 1,
                          error_msg=self._with_reason(error_msg))
        self.s.execute(update(RUNS).where(RUNS.c.id == running_workflow_id, RUNS.c.done.is_(False))
                       .values(done=True, stopped=now, **values))

    # --- steps -----------------------------------------------------------------------------

    def _step(self, row) -> dict[str, Any]:  # noqa: ANN001 - a steps row
        out: dict[str, Any] = {
            "id": row.id, "name": row.name, "done": row.done, "success": row.success, "error_num": row.error_num,
            "error_msg": row.error_msg or "", "replica": row.replica, "replicas": row.replicas,
            "variables": json.loads(row.variables or "{}"), "running_workflow": {"id": row.running_workflow_id}}
        if row.instance_id:
            out["instance_id"] = row.instance_id
            out["instance_directory"] = "." + row.instance_id
        if row.prior_step_id:
            out["prior_running_workflow_step"] = {"id": row.prior_step_id}
        return out

    def get_running_workflow_step(self, *, running_workflow_step_id: str) -> Answer:
        row = self.s.execute(select(STEPS).where(STEPS.c.id == running_workflow_step_id)).first()
        return (self._step(row), 200) if row is not None else ({}, 404)

    def get_running_workflow_step_by_name(self, *, name: str, running_workflow_id: str, replica: int = 0) -> Answer:
        row = self.s.execute(select(STEPS).where(STEPS.c.running_workflow_id == running_workflow_id,
                                                 STEPS.c.name == name, STEPS.c.replica == replica)).first()
        return (self._step(row), 200) if row is not None else ({}, 404)

    def get_status_of_all_step_instances_by_name(self, *, name: str, running_workflow_id: str) -> Answer:
        rows = self.s.execute(select(STEPS.c.id, STEPS.c.done, STEPS.c.success, STEPS.c.instance_id)
                              .where(STEPS.c.running_workflow_id == running_workflow_id, STEPS.c.name == name)
                              .order_by(STEPS.c.replica)).all()
        status = [{"done": r.done, "success": r.success, "running_workflow_step_id": r.id,
                   "instance_id": r.instance_id} for r in rows]
        return {"count": len(status), "status": status}, 200

    def set_running_workflow_step_done(self, *, running_workflow_step_id: str, success: bool,
                                       error_num: int | None = None, error_msg: str | None = None) -> None:
        row = self.s.execute(select(STEPS).where(STEPS.c.id == running_workflow_step_id,
                                                 STEPS.c.done.is_(False))).first()
        if row is None:
            return
        values: dict[str, Any] = dict(done=True, success=success, stopped=utcnow(),
                                      status="SUCCESS" if success else "FAILURE")
        if success:
            values["outputs"] = json.dumps(self._finish_outputs(row))
        else:
            values.update(error_num=error_num or 1, error_msg=self._with_reason(error_msg))
        self.s.execute(update(STEPS).where(STEPS.c.id == row.id, STEPS.c.done.is_(False)).values(**values))

    def _finish_outputs(self, row) -> dict[str, Any]:  # noqa: ANN001 - a steps row
        """A step that ended well: its Project outputs linked into the Project, and the files each of
        its job's outputs matched remembered (what the next step fans out over)."""
        outputs = json.loads(row.outputs or "{}")
        instance = self.s.execute(select(INSTANCES.c.project_id, INSTANCES.c.outputs)
                                  .where(INSTANCES.c.id == row.instance_id)).first()
        if instance is None:
            return outputs
        outputs["project"] = links.link_outputs(self.storage, instance.project_id, row.instance_id,
                                                outputs.get("project") or [])
        patterns = json.loads(instance.outputs or "{}")
        outputs["values"] = {name: links.output_values(self.storage, instance.project_id, row.instance_id, pattern)
                             for name, pattern in patterns.items()}
        return outputs

    def get_running_workflow_step_output_values_for_output(self, *, running_workflow_step_id: str,
                                                           output_variable: str) -> Answer:
        text = self.s.scalar(select(STEPS.c.outputs).where(STEPS.c.id == running_workflow_step_id))
        values = (json.loads(text or "{}").get("values") or {}).get(output_variable) or []
        return {"output": list(values)}, 200

    # --- instances and jobs ----------------------------------------------------------------

    def get_instance(self, *, instance_id: str) -> Answer:
        step_id = self.s.scalar(select(STEPS.c.id).where(STEPS.c.instance_id == instance_id))
        if step_id is None:
            return {}, 404
        return {"id": instance_id, "running_workflow_step_id": step_id}, 200

    def get_job(self, *, collection: str, job: str, version: str) -> Answer:
        found = self.s.execute(select(Job.__table__.c.command, Job.__table__.c.definition).where(
            Job.__table__.c.collection == collection, Job.__table__.c.job == job,
            Job.__table__.c.version == version)).first()
        if found is None:
            return {}, 404
        # the engine reads the answer as the job definition itself (its variables at the top), the
        # adapter's contract as {command, definition}: both
        definition = json.loads(found.definition)
        return {**definition, "command": found.command, "definition": definition}, 200

    def _with_reason(self, error_msg: str | None) -> str:
        text = error_msg or "The step failed"
        if self.reason and self.reason not in text:
            text = f"{text}: {self.reason}"
        return text
