"""Runs of Workflows in Projects and the steps of a run (dm-api §2.14, §3.16).

A run is recorded RUNNING, after the RUN-level validation of its Workflow, and a START
``WorkflowMessage`` is queued in the same transaction; the engine, hosted by pbc, launches the
steps and records them. Who may see, stop or delete a run: see ``workflows``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, or_, select

from shared.db.base import iso, new_id, utcnow
from shared.db.models import ProjectMember, RunningWorkflow, RunningWorkflowStep
from shared.errors import BadRequest, Forbidden, NotFound
from shared.services import projects, users
from shared.services.workflows import (MAX_DEBUG, MAX_VARIABLES_BYTES, RUN, RUN_NAME, UNVERSIONED, Viewer,
                                       get_visible, parse, validate)
from shared.storage import paths

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.db.models import Project


def _check_run_form(as_name: str | None, variables: str | None, debug: str | None) -> tuple[str, dict]:
    name = (as_name or "").strip()
    if not (2 <= len(name) <= 80 and RUN_NAME.fullmatch(name)):
        raise BadRequest("'as_name' must be 2-80 letters, digits, spaces or -_. and start and end alphanumeric")
    values: Any = {}
    if variables:
        if len(variables.encode()) > MAX_VARIABLES_BYTES:
            raise BadRequest(f"'variables' is larger than {MAX_VARIABLES_BYTES} bytes")
        try:
            values = json.loads(variables)
        except (ValueError, RecursionError):
            raise BadRequest("'variables' must be JSON text") from None
        if not isinstance(values, dict):
            raise BadRequest("'variables' must be a JSON object")
    if debug is not None and (len(debug) > MAX_DEBUG or paths.has_control(debug)):
        raise BadRequest(f"'debug' must be at most {MAX_DEBUG} characters, without control characters")
    return name, values


def start(s: "Session", viewer: Viewer, workflow_id: str, *, project_id: str | None, as_name: str | None,
          variables: str | None, debug: str | None, mode: str) -> tuple[str, str]:
    """Record a run (RUNNING) and queue its START message, once the RUN-level validation passes;
    returns the run's id and the message's event id."""
    from shared.events import outbox
    from shared.events.contracts import WorkflowMessageEvent
    from shared.messages.workflow_message_pb2 import WorkflowMessage

    name, values = _check_run_form(as_name, variables, debug)
    workflow = get_visible(s, viewer, workflow_id)
    project: "Project" = projects.load(s, viewer.principal, project_id or "", projects.WRITE, admin_view=False)
    if mode == "PRODUCTION" and workflow.version is None:
        raise BadRequest(f"Workflow {workflow_id} has no version: only versioned workflows run in PRODUCTION mode")
    num, messages = validate(s, parse(workflow.definition), RUN, values)
    if num:
        raise BadRequest(f"The workflow cannot run: validation error {num}: {'; '.join(messages)}")
    now = utcnow()
    run = RunningWorkflow(id=new_id("r-workflow"), name=name, workflow_id=workflow.id,
                          workflow_name=workflow.name, workflow_version=workflow.version or UNVERSIONED,
                          project_id=project.id, running_user=viewer.principal.username,
                          variables=json.dumps(values), debug=debug or None, status="RUNNING", done=False,
                          success=False, error_num=0, started=now)
    s.add(run)
    s.flush()
    event = outbox.add(s, WorkflowMessageEvent(WorkflowMessage(timestamp=iso(now), action="START",
                                                               running_workflow=run.id)))
    return run.id, event.id


def _project_names(s: "Session", project_ids: set[str]) -> dict[str, str]:
    from shared.db.models import Project

    if not project_ids:
        return {}
    return dict(s.execute(select(Project.id, Project.name).where(Project.id.in_(project_ids))).all())


def _run_visible(s: "Session", principal: "Principal", run: RunningWorkflow, everything: bool) -> bool:
    if everything or run.running_user == principal.username:
        return True
    return bool(s.scalar(select(exists().where(ProjectMember.project_id == run.project_id,
                                               ProjectMember.username == principal.username))))


def get_run(s: "Session", principal: "Principal", run_id: str, *, lock: bool = False) -> RunningWorkflow:
    query = select(RunningWorkflow).where(RunningWorkflow.id == run_id)
    run = s.scalar(query.with_for_update() if lock else query)
    if run is None or run.deleting or not _run_visible(s, principal, run,
                                                          not lock and users.sees_everything(s, principal)):
        raise NotFound(f"Running workflow {run_id[:80]} does not exist")
    return run


def _get_changeable(s: "Session", principal: "Principal", run_id: str) -> RunningWorkflow:
    run = get_run(s, principal, run_id, lock=True)
    if run.running_user != principal.username:
        roles = set(s.scalars(select(ProjectMember.role).where(ProjectMember.project_id == run.project_id,
                                                               ProjectMember.username == principal.username)))
        if not roles.intersection(projects.WRITE):
            raise Forbidden(f"Only {run.running_user} or an editor of project {run.project_id} can do this")
    return run


def list_runs(s: "Session", principal: "Principal", *, workflow_id: str | None, project_id: str | None) -> list[dict]:
    query = select(RunningWorkflow).where(RunningWorkflow.deleting.is_(False))
    if workflow_id:
        query = query.where(RunningWorkflow.workflow_id == workflow_id)
    if project_id:
        query = query.where(RunningWorkflow.project_id == project_id)
    if not users.sees_everything(s, principal):
        mine = select(ProjectMember.project_id).where(ProjectMember.username == principal.username)
        query = query.where(or_(RunningWorkflow.running_user == principal.username,
                                RunningWorkflow.project_id.in_(mine)))
    runs = list(s.scalars(query.order_by(RunningWorkflow.started, RunningWorkflow.id)))
    names = _project_names(s, {r.project_id for r in runs})
    return [run_summary(r, names) for r in runs]


def run_summary(run: RunningWorkflow, project_names: dict[str, str]) -> dict:
    out = {"id": run.id, "name": run.name, "status": run.status, "started": iso(run.started),
           "error_num": run.error_num,
           "workflow": {"id": run.workflow_id, "name": run.workflow_name, "version": run.workflow_version},
           "project": {"id": run.project_id}}
    if run.project_id in project_names:
        out["project"]["name"] = project_names[run.project_id]
    if run.error_msg:
        out["error_msg"] = run.error_msg
    if run.stopped is not None:
        out["stopped"] = iso(run.stopped)
    return out


def run_detail(s: "Session", run: RunningWorkflow) -> dict:
    out = run_summary(run, _project_names(s, {run.project_id}))
    out.update({"running_user": run.running_user, "done": run.done, "success": run.success,
                "variables": json.loads(run.variables)})
    if run.debug is not None:
        out["debug"] = run.debug
    if run.stopping_user is not None:
        out["stopping_user"] = run.stopping_user
    return out


def steps(s: "Session", run: RunningWorkflow) -> list[dict]:
    parent = run_summary(run, _project_names(s, {run.project_id}))
    rows = s.scalars(select(RunningWorkflowStep).where(RunningWorkflowStep.running_workflow_id == run.id)
                     .order_by(RunningWorkflowStep.started, RunningWorkflowStep.replica, RunningWorkflowStep.id))
    out = []
    for step in rows:
        item = {"id": step.id, "name": step.name, "variables": json.loads(step.variables), "status": step.status,
                "started": iso(step.started), "done": step.done, "success": step.success,
                "error_num": step.error_num, "running_workflow": parent}
        for key in ("instance_id", "task_id", "error_msg"):
            if getattr(step, key) is not None:
                item[key] = getattr(step, key)
        if step.stopped is not None:
            item["stopped"] = iso(step.stopped)
        out.append(item)
    return out


def stop(s: "Session", principal: "Principal", run_id: str) -> str:
    """Record who stopped the run and queue its STOP message (the engine ends it); returns the event id."""
    run = _get_changeable(s, principal, run_id)
    if run.status != "RUNNING":
        raise NotFound(f"Running workflow {run_id} is not running (it is {run.status})")
    return _queue_stop(s, principal, run)


def _queue_stop(s: "Session", principal: "Principal", run: RunningWorkflow) -> str:
    from shared.events import outbox
    from shared.events.contracts import WorkflowMessageEvent
    from shared.messages.workflow_message_pb2 import WorkflowMessage

    run.stopping_user = principal.username
    return outbox.add(s, WorkflowMessageEvent(WorkflowMessage(
        timestamp=iso(utcnow()), action="STOP", running_workflow=run.id))).id


def delete_run(s: "Session", principal: "Principal", run_id: str) -> str | None:
    """Delete a run; one still running is stopped first: it disappears at once, and its row goes once
    the STOP has ended it. Returns the STOP's event id, if one was queued."""
    run = _get_changeable(s, principal, run_id)
    if run.status == "RUNNING":
        run.deleting = True
        return _queue_stop(s, principal, run)
    s.delete(run)  # its steps go with it; their instances stay
    return None
