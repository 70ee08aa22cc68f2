"""Instances: jobs and applications run in a project (dm-api §2.7, §3.8).

Launching is checked in full before anything is recorded: the job, its variables against
the job's schema, the input files in the project, the command rendered by the job decoder.
The api records the instance and its task, and launches the pod after the commit; what
the pod does afterwards arrives as pod events (kew) and PodMessages (pbc).
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select

from shared.db.base import iso, new_id, utcnow
from shared.db.models import Instance, Job, ProjectMember, ProjectToken, Task
from shared.errors import BadRequest, Conflict, NotFound
from shared.jobs import applications
from shared.jobs import variables as job_variables
from shared.services import files, jobs, projects, tasks, users
from shared.storage import paths

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.storage.base import Storage

NAME_PATTERN = r"^[A-Za-z0-9]+[A-Za-z0-9-_. ]*[A-Za-z0-9]+$"
TOKEN_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # short-uuid's, as the client
TEMPLATE_MARKS = ("{{", "}}", "{%", "%}", "{#", "#}")
# what users see (python-client.md §5-6): a job that ended well is COMPLETED
PHASE_OF_POD = {"Pending": "PENDING", "Running": "RUNNING", "Succeeded": "COMPLETED", "Completed": "COMPLETED",
                "Failed": "FAILED", "Unknown": "UNKNOWN", "CrashLoopBackOff": "CRASH_LOOP_BACKOFF",
                "ImagePullBackOff": "IMAGE_PULL_BACKOFF"}


@dataclass
class Launch:
    """A checked launch: what to record and what to run."""

    application: applications.Application
    project_id: str
    product_id: str  # the Project's Account Server product: it pays for the instance
    name: str
    instance_id: str
    specification: str | None
    command: str | None = None  # rendered (jobs)
    argv: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()  # project-relative paths the command uses (confined; the launcher looks again)
    image: str = ""
    job: Job | None = None
    working_directory: str = "/data"
    project_directory: str = "/data"
    environment: dict[str, str] = field(default_factory=dict)
    memory: str | None = None
    cores: str | None = None
    debug: bool = False
    callback_url: str | None = None
    callback_context: str | None = None
    callback_token: str | None = None


def check_launch(s: "Session", principal: "Principal", storage: "Storage", form: dict[str, str | None], *,
                 check_inputs: bool = True) -> Launch:
    """Everything POST /instance and its dry run check, before anything is recorded.

    ``check_inputs=False``: input files are not looked for in the project (a workflow step reads
    them from its instance directory, linked in just before it starts)."""
    import re

    app_id = (form.get("application_id") or "").strip()
    if not app_id:
        raise BadRequest("'application_id' is required")
    application = applications.get(app_id)
    project = projects.load(s, principal, form.get("project_id") or "", projects.WRITE)
    name = (form.get("as_name") or "").strip()
    if not (2 <= len(name) <= 80 and re.fullmatch(NAME_PATTERN, name)):
        raise BadRequest("'as_name' must be 2-80 letters, digits, spaces or -_. and start and end alphanumeric")
    spec_text = form.get("specification") or None
    spec: dict[str, Any] = {}
    if spec_text:
        try:
            spec = json.loads(spec_text)
        except ValueError:
            raise BadRequest("'specification' must be JSON text") from None
        if not isinstance(spec, dict):
            raise BadRequest("'specification' must be a JSON object")
    launch = Launch(application=application, project_id=project.id, product_id=project.product_id, name=name,
                    instance_id=new_id("instance"),
                    specification=spec_text, debug=(form.get("debug") or "0") not in ("0", "", "false", "False"))
    launch.callback_url = form.get("callback_url") or None
    context = form.get("callback_context")
    if context is not None and not 1 <= len(context) <= 256:
        raise BadRequest("'callback_context' must be 1-256 characters")
    launch.callback_context = context
    launch.callback_token = _callback_token(form)
    if application.is_job:
        _check_job(s, storage, launch, spec, check_inputs)
    else:
        applications.check_variables(application, spec.get("variables") or {})
        launch.image = application.image
    return launch


def _callback_token(form: dict[str, str | None]) -> str | None:
    token = form.get("callback_token")
    if token:
        if len(token) != 22 or any(c not in TOKEN_ALPHABET for c in token):
            raise BadRequest("'callback_token' must be a 22-character short UUID")
        return token
    if (form.get("generate_callback_token") or "").lower() == "true":
        return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(22))
    return None


def _check_job(s: "Session", storage: "Storage", launch: Launch, spec: dict, check_inputs: bool = True) -> None:
    import jsonschema

    try:
        collection, job_name, version = spec["collection"], spec["job"], spec["version"]
    except KeyError:
        raise BadRequest("A job's specification names its 'collection', 'job' and 'version'") from None
    if not all(isinstance(v, str) for v in (collection, job_name, version)):
        raise BadRequest("'collection', 'job' and 'version' must be strings")
    job = jobs.by_version(s, collection, job_name, version)
    definition = json.loads(job.definition)
    variables = spec.get("variables") or {}
    if not isinstance(variables, dict):
        raise BadRequest("'variables' must be a JSON object")
    _refuse_template_text(variables)
    declared = definition.get("variables") or {}
    variables = job_variables.refuse_undeclared(declared, variables, job.command)
    # options: the job's own JSON Schema (defaults are not filled in: templates test `is defined`)
    options = declared.get("options") or {}
    option_values = {k: v for k, v in variables.items() if k in (options.get("properties") or {})}
    try:
        jsonschema.validate(option_values, options or {"type": "object"})
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise BadRequest(f"Invalid option{' ' + where if where else ''}: {exc.message}") from None
    except jsonschema.SchemaError:
        raise BadRequest(f"The options schema of {collection}/{job_name} is not valid JSON Schema") from None
    image = definition["image"]
    mount = image["project-directory"]
    confined = job_variables.confine(declared, variables, mount)  # every path variable, made project-relative
    if check_inputs:
        _check_inputs(storage, launch.project_id, declared.get("inputs") or {}, confined.values)
    sub_path = spec.get("sub_path")
    if sub_path is not None:
        sub_path = paths.project_relative(sub_path, "'sub_path'") or None
    values = {**confined.values, "DM_INSTANCE_DIRECTORY": f".{launch.instance_id}"}
    launch.command = _render(job.command, values, "command")
    try:
        launch.argv = shlex.split(launch.command.replace("\r", " ").replace("\n", " "))
    except ValueError as exc:
        raise BadRequest(f"The rendered command cannot be split into arguments: {exc}") from None
    for out_name, out in (declared.get("outputs") or {}).get("properties", {}).items():
        if isinstance(out, dict) and out.get("creates"):
            created = _render(out["creates"], values, f"output {out_name}")
            launch.outputs[out_name] = paths.project_relative(created, f"The output '{out_name}'", mount=mount)
            if not launch.outputs[out_name]:
                raise paths.PathRefused(f"The output '{out_name}' must name a file in the project, not its root")
    on_host = {f"The variable '{name}' ({p!r})": p for name, found in confined.paths.items() for p in found}
    on_host.update({f"The output '{k}' ({v!r})": v for k, v in launch.outputs.items()})
    on_host["The instance directory"] = values["DM_INSTANCE_DIRECTORY"]
    if sub_path:
        on_host["'sub_path'"] = sub_path
    _confine_on_store(storage, launch.project_id, on_host)
    launch.paths = tuple(dict.fromkeys(on_host.values()))
    launch.job = job
    launch.image = f"{job.image_name}:{job.image_tag}"
    launch.working_directory = image["working-directory"] + (f"/{sub_path}" if sub_path else "")
    launch.project_directory = mount
    launch.memory, launch.cores = image.get("memory"), (str(image["cores"]) if "cores" in image else None)
    from decoder import decoder

    launch.environment = {k: str(v) for k, v in (decoder.get_environment_constants(definition) or {}).items()}
    launch.environment["DM_INSTANCE_DIRECTORY"] = f".{launch.instance_id}"


def _refuse_template_text(value: Any) -> None:
    """User values never carry template syntax: the decoder re-reads what it renders."""
    if isinstance(value, str):
        if any(mark in value for mark in TEMPLATE_MARKS):
            raise BadRequest("Variable values must not contain template delimiters ({{, {%, {#)")
    elif isinstance(value, dict):
        for item in value.values():
            _refuse_template_text(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_template_text(item)


def _check_inputs(storage: "Storage", project_id: str, inputs: dict, variables: dict) -> None:
    properties = inputs.get("properties") or {}
    for name in inputs.get("required") or []:
        if variables.get(name) in (None, "", []):
            raise BadRequest(f"The input '{name}' is required")
    for name, spec in properties.items():
        value = variables.get(name)
        if value in (None, "", []):
            continue
        many = spec.get("multiple") or spec.get("type") == "files"
        given = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not many:
            raise BadRequest(f"The input '{name}' takes one file")
        for path in given:
            if not isinstance(path, str):
                raise BadRequest(f"The input '{name}' must be a project file path")
            clean = files.check_path("/" + path)  # confined before (job_variables.confine); a second look
            folder, _, file_name = clean.rpartition("/")
            try:
                found = bool(file_name) and storage.exists(files.project_key(project_id, folder, file_name))
            except paths.PathRefused:
                raise paths.PathRefused(f"The input '{name}' ({path!r}) leads outside the project through a "
                                        "symbolic link") from None
            if not found:
                raise BadRequest(f"The input '{name}' names {path}, which is not a file in the project")


def _confine_on_store(storage: "Storage", project_id: str, named: dict[str, str]) -> None:
    """Each project path as the store resolves it: a local store refuses one a symbolic link leads out of."""
    for what, relative in named.items():
        key = files.project_key(project_id, "" if relative == "." else relative)
        try:
            storage.local_path(key)
        except paths.PathRefused:
            raise paths.PathRefused(f"{what} leads outside the project through a symbolic link") from None


def _render(template: str, values: dict, subject: str) -> str:
    from decoder import decoder

    try:
        text, ok = decoder.decode(template, values, subject, decoder.TextEncoding.JINJA2_3_0)
    except Exception as exc:  # noqa: BLE001 - jinja2 raises for some templates (jobs.md §2)
        raise BadRequest(f"The job's {subject} cannot be rendered: {exc}") from None
    if not ok:
        raise BadRequest(text)
    return text


def record(s: "Session", principal: "Principal", launch: Launch,
           authorisation_code: int | None = None) -> tuple[Instance, Task]:
    """The instance and its CREATE task, in the caller's transaction.

    ``authorisation_code`` is the Account Server's grant for the processing (every charge carries it).
    """
    now = utcnow()
    app = launch.application
    projects.load(s, principal, launch.project_id, projects.WRITE)  # still there, still theirs
    if s.scalar(select(Instance.id).where(Instance.project_id == launch.project_id, Instance.name == launch.name,
                                         Instance.deleted.is_(False), Instance.phase.in_(("PENDING", "RUNNING")))):
        raise Conflict(f"An instance called {launch.name} is already running in this project")
    task = tasks.create(s, purpose="INSTANCE", purpose_id=launch.instance_id, owner=principal.username,
                        project_id=launch.project_id, message=f"Launching {launch.name}")
    task.image = launch.image or None
    task.instance_specification = launch.specification
    job = launch.job
    instance = Instance(
        id=launch.instance_id, name=launch.name, project_id=launch.project_id, owner=principal.username,
        application_id=app.id, application_version=app.version, application_type="JOB" if app.is_job else "APPLICATION",
        specification=launch.specification, image=launch.image, command=launch.command,
        outputs=json.dumps(launch.outputs), phase="PENDING", launched=now, task_id=task.id, debug=launch.debug,
        callback_url=launch.callback_url, callback_context=launch.callback_context,
        callback_token=launch.callback_token,
        launch_exchange_rate=(jobs.current_rate(s, job.id) or jobs.DEFAULT_EXCHANGE_RATE) if job else None,
        authorisation_code=authorisation_code,
    )
    if job is not None:
        instance.job_id, instance.job_collection, instance.job_job = job.id, job.collection, job.job
        instance.job_version, instance.job_name, instance.job_image_type = job.version, job.name, job.image_type
    s.add(instance)
    if launch.callback_token:  # lets the instance's callers fetch project files without signing in
        if s.get(ProjectToken, launch.callback_token) is not None:
            raise Conflict("That callback token is already in use")
        s.add(ProjectToken(token=launch.callback_token, project_id=launch.project_id, created=now,
                           instance_id=launch.instance_id))
    s.flush()
    return instance, task


def launch_spec(launch: Launch, task_id: str, owner: str):
    from shared.launchers.base import LaunchSpec

    argv = launch.argv or applications.local_argv(launch.application)
    return LaunchSpec(instance_id=launch.instance_id, task_id=task_id, project_id=launch.project_id, owner=owner,
                      image=launch.image, command=argv, working_directory=launch.working_directory,
                      project_directory=launch.project_directory, environment=launch.environment,
                      is_job=launch.application.is_job, memory=launch.memory, cores=launch.cores, debug=launch.debug,
                      paths=launch.paths, port=None if launch.application.is_job else launch.application.port)


def launch_failed(s: "Session", instance_id: str, task_id: str, reason: str) -> None:
    instance = s.get(Instance, instance_id)
    if instance is not None:
        instance.phase, instance.error_message, instance.stopped = "FAILED", reason, utcnow()
    tasks.set_state(s, task_id, "FAILURE", reason)


# --- reading ----------------------------------------------------------------------------


def _visible(s: "Session", principal: "Principal"):
    query = select(Instance).where(Instance.deleted.is_(False))
    if users.sees_everything(s, principal):
        return query
    member_projects = select(ProjectMember.project_id).where(ProjectMember.username == principal.username)
    return query.where(or_(Instance.owner == principal.username, Instance.project_id.in_(member_projects)))


def get_visible(s: "Session", principal: "Principal", instance_id: str) -> Instance:
    instance = s.scalar(_visible(s, principal).where(Instance.id == instance_id))
    if instance is None:
        raise NotFound(f"Instance {instance_id} does not exist")
    return instance


def get_editable(s: "Session", principal: "Principal", instance_id: str) -> Instance:
    instance = get_visible(s, principal, instance_id)
    if instance.owner != principal.username:
        projects.load(s, principal, instance.project_id, projects.WRITE)  # an editor of its project
    return instance


def list_visible(s: "Session", principal: "Principal", project_id: str | None = None) -> list[dict]:
    query = _visible(s, principal).with_only_columns(*_SUMMARY_COLUMNS)
    if project_id:
        query = query.where(Instance.project_id == project_id)
    return [summary(i) for i in s.execute(query.order_by(Instance.launched, Instance.id))]


# What summary reads: a listing takes plain rows, not entities (no identity map, no unused columns).
_SUMMARY_COLUMNS = (
    Instance.id, Instance.name, Instance.project_id, Instance.owner, Instance.archived, Instance.application_id,
    Instance.application_version, Instance.application_type, Instance.phase, Instance.launched, Instance.started,
    Instance.stopped, Instance.outputs, Instance.coins, Instance.specification, Instance.url,
    Instance.error_message, Instance.authorisation_code, Instance.job_collection, Instance.job_job,
    Instance.job_name, Instance.job_id, Instance.job_version, Instance.job_image_type,
)


def _run_time(instance: Instance) -> str:
    if instance.started is None:
        return "0:00:00"
    end = instance.stopped or utcnow()
    return str(end - instance.started).split(".")[0]


def summary(instance: Instance) -> dict:
    out = {
        "id": instance.id,
        "name": instance.name,
        "project_id": instance.project_id,
        "owner": instance.owner,
        "archived": instance.archived,
        "application_id": instance.application_id,
        "application_version": instance.application_version,
        "application_type": instance.application_type,
        "phase": instance.phase,
        "launched": iso(instance.launched),
        "run_time": _run_time(instance),
        "outputs": json.loads(instance.outputs or "{}"),
        "coins": instance.coins,
    }
    if instance.specification:
        out["application_specification"] = instance.specification
    for name in ("started", "stopped"):  # only once it has started / stopped (python-client.md §6)
        if getattr(instance, name) is not None:
            out[name] = iso(getattr(instance, name))
    if instance.url is not None and instance.phase == "RUNNING":  # an application's, while it can be opened
        out["url"] = instance.url
    for name in ("error_message", "authorisation_code", "job_collection", "job_job", "job_name",
                 "job_id", "job_version", "job_image_type"):
        if getattr(instance, name) is not None:
            out[name] = getattr(instance, name)
    return out


def detail(instance: Instance) -> dict:
    out = summary(instance)
    out["tasks"] = [{"id": instance.task_id, "purpose": "CREATE"}]
    if instance.delete_task_id:
        out["tasks"].append({"id": instance.delete_task_id, "purpose": "DELETE"})
    out["has_valid_callback_token"] = instance.callback_token is not None
    out["cost"] = instance.cost
    if instance.launch_exchange_rate is not None:
        out["launch_exchange_rate"] = instance.launch_exchange_rate
    return out


def begin_delete(s: "Session", principal: "Principal", instance_id: str) -> tuple[Instance, Task]:
    """Open the instance's DELETE task; the caller stops the pod after the commit, then ``finish_delete``."""
    instance = get_editable(s, principal, instance_id)
    task = tasks.create(s, purpose="INSTANCE", purpose_id=instance.id, owner=principal.username,
                        project_id=instance.project_id, removal=True, message=f"Deleting {instance.name}")
    instance.delete_task_id = task.id
    return instance, task


def finish_delete(s: "Session", instance_id: str, task_id: str, error: str | None = None) -> None:
    """The pod is gone (the instance disappears) or could not be stopped (it stays, the task fails)."""
    if error:
        tasks.set_state(s, task_id, "FAILURE", error)
        return
    instance = s.get(Instance, instance_id)
    if instance is not None:
        instance.deleted = True
        if instance.stopped is None:
            instance.stopped = utcnow()
    tasks.set_state(s, task_id, "SUCCESS", "The instance is stopped and its pod removed", exit_code=0)


def revoke_token(s: "Session", instance_id: str, token: str) -> None:
    instance = s.get(Instance, instance_id)
    if instance is None or instance.callback_token is None or not secrets.compare_digest(instance.callback_token,
                                                                                         token):
        raise NotFound("No such instance token")
    instance.callback_token = None
    s.execute(delete(ProjectToken).where(ProjectToken.token == token, ProjectToken.instance_id == instance_id))


# --- what pods report (PodMessages, through pbc): its own module, named here as before -------

from shared.services.pod_messages import ENDED, ENDED_WELL, TROUBLED, apply_pod_message  # noqa: E402, F401
