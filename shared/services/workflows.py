"""Workflows, their runs and the steps of a run (dm-api §2.13, §2.14, §3.16).

A definition is kept as the YAML text it was given in, and judged by the workflow engine's own
validator (``im-data-manager-workflow-engine``): CREATE level when it is created or replaced
(an invalid definition is stored all the same, for editing later), TAG level before a versioned
copy is made, RUN level (with the run's variables and the jobs the platform knows) before a run
is recorded. A run is recorded RUNNING and a START ``WorkflowMessage`` is queued in the same
transaction; the engine, hosted by pbc, launches the steps and records them.

Who may do what:
- see a Workflow: its creator; everyone for GLOBAL; members of its unit (or of the unit's
  organisation) for AS_UNIT, of its organisation for AS_ORGANISATION, as the Account Server says;
  admins in admin mode see every one. One the caller may not see is reported missing (404).
- alter, version or delete a Workflow: its creator only (403 for others who see it).
- run a Workflow: anyone who sees it, in a Project they administer or edit (as for instances).
- see a run and its steps: its running user and the members of its Project (any role); admin mode
  sees every run. Stop or delete a run: its running user, or an administrator or editor of its Project.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, or_, select

from shared.account_server.base import check_org_id, check_unit_id
from shared.db.base import iso, new_id, utcnow
from shared.db.models import Job, ProjectMember, RunningWorkflow, RunningWorkflowStep, Workflow
from shared.errors import BadRequest, Conflict, DmError, Forbidden, NotFound
from shared.services import projects, users
from shared.storage import paths

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.account_server.base import AccountServer
    from shared.auth.verify import Principal
    from shared.db.models import Project

ENGINE_DISTRIBUTION = "im-data-manager-workflow-engine"
WORKFLOW_ID = re.compile(r"workflow-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RUN_NAME = re.compile(r"[A-Za-z0-9]+[A-Za-z0-9-_. ]*[A-Za-z0-9]+")  # as an instance's as_name
MAX_DEFINITION_BYTES = 256 * 1024  # a definition is a few steps of YAML: this is generous
MAX_VARIABLES_BYTES = 256 * 1024
MAX_VERSION = 80
MAX_DEBUG = 80
UNVERSIONED = "Unversioned"
# The request's scope names (dm-api §1.8, and the Python client's) to the stored (response) ones.
SCOPES = {"GLOBAL": "GLOBAL", "AS_ORGANISATION": "AS_ORGANISATION", "AS_UNIT": "AS_UNIT",
          "AS_PROJECT": "AS_UNIT", "ORGANISATION": "AS_ORGANISATION", "UNIT": "AS_UNIT"}
CREATE, TAG, RUN = "CREATE", "TAG", "RUN"


class EngineMissing(DmError):
    """The workflow engine package is not installed here (it needs Python 3.12 or later)."""

    status = 503


# --- the engine, imported on the paths that use it ---------------------------------------------


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(ENGINE_DISTRIBUTION)
    except PackageNotFoundError:
        raise EngineMissing("The workflow engine is not installed") from None


@functools.lru_cache(maxsize=1)
def _engine():
    """The validator, its levels and a job-lookup adapter class (the engine imports jsonschema and
    the job decoder, so this waits for the first workflow call)."""
    try:
        from workflow.workflow_abc import WorkflowAPIAdapter
        from workflow.workflow_validator import ValidationLevel, WorkflowValidator
    except ImportError:
        raise EngineMissing("The workflow engine is not installed") from None

    class JobLookup(WorkflowAPIAdapter):
        """The one adapter call the validator makes (RUN level): does a step's job exist?
        The engine's host implements the whole adapter over the workflow tables."""

        def __init__(self, s: "Session"):
            self.s = s

        def get_job(self, *, collection: str, job: str, version: str) -> tuple[dict[str, Any], int]:
            found = self.s.scalar(select(Job).where(Job.collection == collection, Job.job == job,
                                                    Job.version == version))
            if found is None:
                return {}, 404
            return {"command": found.command, "definition": json.loads(found.definition)}, 200

        def _unused(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("validation looks up jobs only")

        get_workflow = get_running_workflow = get_running_steps = _unused
        get_status_of_all_step_instances_by_name = set_running_workflow_done = _unused
        get_running_workflow_step = get_running_workflow_step_by_name = _unused
        set_running_workflow_step_done = get_instance = _unused
        get_running_workflow_step_output_values_for_output = _unused

    return WorkflowValidator, ValidationLevel, JobLookup


def validate(s: "Session", definition: dict, level: str, variables: dict | None = None) -> tuple[int, list[str]]:
    """The engine validator's verdict: (error number, messages); (0, []) when valid."""
    validator, levels, lookup = _engine()
    result = validator.validate(level=levels[level], workflow_definition=definition, wapi_adapter=lookup(s),
                                variables=variables)
    return result.error_num, list(result.error_msg or [])


# --- definitions -------------------------------------------------------------------------------


def _loader():
    import yaml

    class NoAliases(yaml.SafeLoader):
        """The safe loader without anchors and aliases: an alias repeats a node by reference, and a
        few lines of them expand to gigabytes once a response writes them out."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "YAML aliases are not accepted", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliases


def _plain(value: Any) -> Any:
    """What YAML gave, as JSON can carry it: dates as text, non-finite numbers as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # dates, times, bytes (!!binary)


def parse(text: str) -> dict:
    """A definition's YAML as a mapping, or BadRequest saying why not."""
    import yaml

    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise BadRequest(f"The definition is larger than {MAX_DEFINITION_BYTES} bytes")
    if "\x00" in text:
        raise BadRequest("The definition contains a NUL character")
    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise BadRequest(f"The definition is not YAML: {str(exc)[:500]}") from None
    except RecursionError:
        raise BadRequest("The definition is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("The definition must be a YAML mapping (a workflow with kind, name and steps)")
    return _plain(data)


def _describe(workflow: Workflow, definition: dict) -> None:
    name, description = definition.get("name"), definition.get("description")
    workflow.workflow_name = name if isinstance(name, str) else None
    workflow.workflow_description = description if isinstance(description, str) else None


def _judge(s: "Session", workflow: Workflow, text: str) -> None:
    """Store ``text`` with its CREATE-level verdict."""
    definition = parse(text)
    num, messages = validate(s, definition, CREATE)
    workflow.definition = text
    workflow.validation_error_num = num
    workflow.validation_error_msg = json.dumps(messages) if num else None
    _describe(workflow, definition)


def check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not 2 <= len(name) <= 80:
        raise BadRequest("A workflow name must be 2 to 80 characters long")
    if paths.has_control(name):
        raise BadRequest("A workflow name must not contain control characters")
    return name


def check_scope(scope: str | None, scope_id: str | None) -> tuple[str, str | None]:
    stored = SCOPES.get((scope or "").strip())
    if stored is None:
        raise BadRequest("'scope' must be GLOBAL, AS_ORGANISATION, AS_PROJECT or AS_UNIT")
    scope_id = (scope_id or "").strip() or None
    if stored == "GLOBAL":
        if scope_id:
            raise BadRequest("A GLOBAL workflow takes no 'scope_id'")
        return stored, None
    if not scope_id:
        raise BadRequest(f"A {scope} workflow needs a 'scope_id'")
    return stored, check_unit_id(scope_id) if stored == "AS_UNIT" else check_org_id(scope_id)


# --- who sees what -----------------------------------------------------------------------------


class Viewer:
    """The caller, with the answers about scopes remembered (a listing asks once per unit)."""

    def __init__(self, s: "Session", principal: "Principal", account_server: "AccountServer"):
        self.principal = principal
        self.account_server = account_server
        self.everything = users.sees_everything(s, principal)
        self._member: dict[tuple[str, str], bool] = {}

    def sees(self, workflow: Workflow) -> bool:
        if self.everything or workflow.scope == "GLOBAL" or workflow.creator == self.principal.username:
            return True
        key = (workflow.scope, workflow.scope_id or "")
        if key not in self._member:
            kind = "unit_id" if workflow.scope == "AS_UNIT" else "organisation_id"
            self._member[key] = bool(workflow.scope_id) and self.account_server.is_member(
                self.principal, **{kind: workflow.scope_id})
        return self._member[key]


def _load(s: "Session", workflow_id: str, *, lock: bool = False) -> Workflow:
    query = select(Workflow).where(Workflow.id == workflow_id)
    workflow = s.scalar(query.with_for_update() if lock else query) if WORKFLOW_ID.fullmatch(workflow_id) else None
    if workflow is None:
        raise NotFound(f"Workflow {workflow_id[:80]} does not exist")
    return workflow


def get_visible(s: "Session", viewer: Viewer, workflow_id: str, *, lock: bool = False) -> Workflow:
    workflow = _load(s, workflow_id, lock=lock)
    if not viewer.sees(workflow):
        raise NotFound(f"Workflow {workflow_id} does not exist")
    return workflow


def get_own(s: "Session", viewer: Viewer, workflow_id: str) -> Workflow:
    """A Workflow the caller created (locked for the change), else 404 or 403."""
    workflow = get_visible(s, viewer, workflow_id, lock=True)
    if workflow.creator != viewer.principal.username:
        raise Forbidden(f"Only the creator of workflow {workflow_id} ({workflow.creator}) can change it")
    return workflow


def _running(s: "Session", workflow_id: str) -> bool:
    return bool(s.scalar(select(exists().where(RunningWorkflow.workflow_id == workflow_id,
                                               RunningWorkflow.status == "RUNNING"))))


# --- workflows ---------------------------------------------------------------------------------


def create(s: "Session", viewer: Viewer, *, name: str, scope: str, scope_id: str | None, text: str) -> Workflow:
    if scope != "GLOBAL" and not viewer.account_server.is_member(
            viewer.principal, **{"unit_id" if scope == "AS_UNIT" else "organisation_id": scope_id}):
        what = "unit" if scope == "AS_UNIT" else "organisation"
        raise Forbidden(f"You are not a member of {what} {scope_id}")
    workflow = Workflow(id=new_id("workflow"), name=name, creator=viewer.principal.username, created=utcnow(),
                        scope=scope, scope_id=scope_id)
    _judge(s, workflow, text)
    s.add(workflow)
    s.flush()
    return workflow


def patch(s: "Session", viewer: Viewer, workflow_id: str, *, name: str | None, text: str | None,
          mode: str) -> Workflow:
    workflow = get_own(s, viewer, workflow_id)
    if workflow.version is not None and mode == "PRODUCTION":
        raise Forbidden(f"Workflow {workflow_id} is a versioned copy: it cannot be altered in PRODUCTION mode")
    if _running(s, workflow.id):
        raise Conflict(f"Workflow {workflow_id} cannot be altered while a run of it is RUNNING")
    if name is not None:
        workflow.name = check_name(name)
    if text is not None:
        _judge(s, workflow, text)
    return workflow


def delete(s: "Session", viewer: Viewer, workflow_id: str) -> None:
    workflow = get_own(s, viewer, workflow_id)
    copy = s.scalar(select(Workflow.id).where(Workflow.source_id == workflow.id).limit(1))
    if copy is not None:
        raise Conflict(f"Workflow {workflow_id} is the source of versioned workflow {copy}: delete that first")
    if _running(s, workflow.id):
        raise Conflict(f"Workflow {workflow_id} cannot be deleted while a run of it is RUNNING")
    s.delete(workflow)


def make_version(s: "Session", viewer: Viewer, workflow_id: str, version: str | None) -> Workflow:
    """An immutable (in PRODUCTION mode) copy of the Workflow carrying ``version``; TAG level first."""
    version = (version or "").strip()
    if not 1 <= len(version) <= MAX_VERSION or paths.has_control(version):
        raise BadRequest(f"'version' must be 1 to {MAX_VERSION} characters, without control characters")
    source = get_own(s, viewer, workflow_id)
    if source.version is not None:
        raise BadRequest(f"Workflow {workflow_id} is itself a versioned copy (version {source.version})")
    if s.scalar(select(exists().where(Workflow.source_id == source.id, Workflow.version == version))):
        raise Conflict(f"Workflow {workflow_id} already has a version {version}")
    num, messages = validate(s, parse(source.definition), TAG)
    if num:
        raise BadRequest(f"The workflow cannot be versioned: validation error {num}: {'; '.join(messages)}")
    copy = Workflow(id=new_id("workflow"), name=source.name, creator=viewer.principal.username, created=utcnow(),
                    scope=source.scope, scope_id=source.scope_id, definition=source.definition,
                    workflow_name=source.workflow_name, workflow_description=source.workflow_description,
                    validation_error_num=0, validation_error_msg=None, version=version, source_id=source.id)
    s.add(copy)
    s.flush()
    return copy


def list_visible(s: "Session", viewer: Viewer) -> list[dict]:
    rows = s.scalars(select(Workflow).order_by(Workflow.created.desc(), Workflow.id))
    return [summary(w) for w in rows if viewer.sees(w)]


def summary(workflow: Workflow) -> dict:
    out = {"id": workflow.id, "name": workflow.name, "validated": workflow.validated, "scope": workflow.scope}
    for key in ("workflow_name", "workflow_description", "version", "source_id", "scope_id"):
        if getattr(workflow, key) is not None:
            out[key] = getattr(workflow, key)
    return out


def detail(workflow: Workflow) -> dict:
    out = summary(workflow)
    out.update({"creating_user": workflow.creator, "created": iso(workflow.created)})
    if workflow.validation_error_num:
        out["validation_error_num"] = workflow.validation_error_num
        out["validation_error_msg"] = json.loads(workflow.validation_error_msg or "[]")
        return out
    definition = parse(workflow.definition)
    if isinstance(definition.get("variables"), dict):
        out["variables"] = definition["variables"]
    out["steps"] = [{"name": step["name"], "specification": step["specification"]}
                    for step in definition.get("steps") or []]
    return out


# --- runs --------------------------------------------------------------------------------------


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
