"""Workflows: their definitions, who sees them, and their versions (dm-api §2.13); their runs are
``running_workflows``.

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

from sqlalchemy import exists, select

from shared.account_server.base import check_org_id, check_unit_id
from shared.db.base import iso, new_id, utcnow
from shared.db.models import Job, RunningWorkflow, Workflow
from shared.errors import BadRequest, Conflict, DmError, Forbidden, NotFound
from shared.services import users
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
