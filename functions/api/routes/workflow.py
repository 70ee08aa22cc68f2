"""Workflows and Running Workflows (dm-api §3.16)."""

from __future__ import annotations

from functions.api.multipart import FormLimits, stream_form
from functions.api.router import Router
from shared.db.session import transaction
from shared.errors import BadRequest, TooLarge
from shared.lazy import lazy

workflows = lazy("shared.services.workflows")
running_workflows = lazy("shared.services.running_workflows")
outbox = lazy("shared.events.outbox")

router = Router("workflow")

DEFINITION_LIMIT = 256 * 1024  # workflows.MAX_DEFINITION_BYTES, without importing the service here
# A definition (text or file) and three short fields. The Python client always sends a
# `definition_file` part: with an empty file name and its own source (about 110 kB) as filler
# when no file is meant, so a part without a file name is read past, up to FILLER_LIMIT.
DEFINITION_FORM = FormLimits(field_bytes=DEFINITION_LIMIT, parts=16, fields_bytes=DEFINITION_LIMIT + 16 * 1024)
FILLER_LIMIT = 1024 * 1024
FIELDS = ("name", "scope", "scope_id", "definition")


def _definition_form(ctx) -> tuple[dict[str, str], str | None]:
    """The text fields and the definition (text or file; not both) of POST and PATCH /workflow."""
    request = ctx.request
    fields: dict[str, str] = {}
    file_text: list[str] = []
    if request.mimetype == "multipart/form-data":
        def on_file(field, filename, chunks, _fields):
            if field != "definition_file" or not filename:
                for _ in chunks:  # not ours, or the client's filler: read past it
                    pass
                return None
            data = bytearray()
            for chunk in chunks:
                data += chunk
                if len(data) > DEFINITION_LIMIT:
                    raise TooLarge(f"The definition file is larger than {DEFINITION_LIMIT} bytes")
            try:
                file_text.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest("The definition file must be UTF-8 text") from None
            return filename

        sent, _ = stream_form(request, on_file, FILLER_LIMIT, DEFINITION_FORM)
        if "\x00" in "".join(sent.get(name, "") for name in FIELDS):
            raise BadRequest("A form field contains a NUL character")
        fields.update({name: sent[name] for name in FIELDS if name in sent})
    for name in FIELDS:  # the query string wins, as everywhere (and a URL-encoded body is read there too)
        value = ctx.param(name) if request.mimetype != "multipart/form-data" else request.args.get(name)
        if value is not None:
            if "\x00" in value:
                raise BadRequest(f"The '{name}' parameter contains a NUL character")
            fields[name] = value
    text = fields.pop("definition", None) or None
    if text is not None and file_text:
        raise BadRequest("Give the definition as 'definition' text or as a 'definition_file', not both")
    return fields, text if text is not None else (file_text[0] if file_text else None)


def _viewer(ctx, s):
    return workflows.Viewer(s, ctx.user, ctx.account_server)


@router.get("/workflow-engine/version")
def get_workflow_engine_version(ctx):
    """The version of the workflow engine that validates and runs Workflows."""
    return {"version": workflows.engine_version()}


@router.get("/workflow")
def get_workflows(ctx):
    """The Workflows the caller can see, newest first."""
    with transaction(ctx.engine, readonly=True) as s:
        items = workflows.list_visible(s, _viewer(ctx, s))
    return {"count": len(items), "workflows": items}


@router.post("/workflow", status=201)
def create_workflow(ctx):
    """Create a Workflow from a YAML definition (validated at CREATE level, stored either way)."""
    fields, text = _definition_form(ctx)
    name = workflows.check_name(fields.get("name"))
    scope, scope_id = workflows.check_scope(fields.get("scope"), fields.get("scope_id"))
    if text is None:
        raise BadRequest("Give the definition as 'definition' text or as a 'definition_file'")
    with transaction(ctx.engine) as s:
        workflow = workflows.create(s, _viewer(ctx, s), name=name, scope=scope, scope_id=scope_id, text=text)
        return {"id": workflow.id, "validated": workflow.validated}


@router.get("/workflow/<workflow_id>")
def get_workflow(ctx, workflow_id):
    """One Workflow (without its definition); its steps when it is valid."""
    with transaction(ctx.engine, readonly=True) as s:
        return workflows.detail(workflows.get_visible(s, _viewer(ctx, s), workflow_id))


@router.patch("/workflow/<workflow_id>")
def update_workflow(ctx, workflow_id):
    """Rename a Workflow or replace its definition (validated again at CREATE level)."""
    fields, text = _definition_form(ctx)
    with transaction(ctx.engine) as s:
        workflow = workflows.patch(s, _viewer(ctx, s), workflow_id, name=fields.get("name"), text=text,
                                   mode=ctx.settings.mode)
        return {"validated": workflow.validated}


@router.delete("/workflow/<workflow_id>", status=204)
def delete_workflow(ctx, workflow_id):
    """Delete a Workflow (not while it is the source of a versioned copy)."""
    with transaction(ctx.engine) as s:
        workflows.delete(s, _viewer(ctx, s), workflow_id)


@router.get("/workflow/<workflow_id>/definition")
def get_workflow_definition(ctx, workflow_id):
    """A Workflow's YAML definition, as it was given."""
    with transaction(ctx.engine, readonly=True) as s:
        return {"definition": workflows.get_visible(s, _viewer(ctx, s), workflow_id).definition}


@router.put("/workflow/<workflow_id>/version", status=201)
def version_workflow(ctx, workflow_id):
    """Make a versioned copy of a Workflow (validated at TAG level)."""
    version = ctx.param("version")
    with transaction(ctx.engine) as s:
        return {"id": workflows.make_version(s, _viewer(ctx, s), workflow_id, version).id}


@router.post("/workflow/<workflow_id>/run", status=201)
def run_workflow(ctx, workflow_id):
    """Run a Workflow in a Project (validated at RUN level); the workflow engine takes it from there."""
    form = {name: ctx.param(name) for name in ("project_id", "as_name", "variables", "debug")}
    with transaction(ctx.engine) as s:
        run_id, event_id = running_workflows.start(s, _viewer(ctx, s), workflow_id, mode=ctx.settings.mode, **form)
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])  # after the commit; re-sent if it fails
    return {"id": run_id}


@router.get("/running-workflow")
def get_running_workflows(ctx):
    """The Running Workflows the caller can see, oldest first."""
    with transaction(ctx.engine, readonly=True) as s:
        items = running_workflows.list_runs(s, ctx.user, workflow_id=ctx.param("workflow_id"),
                                    project_id=ctx.param("project_id"))
    return {"count": len(items), "running_workflows": items}


@router.get("/running-workflow/<running_workflow_id>")
def get_running_workflow(ctx, running_workflow_id):
    """One Running Workflow."""
    with transaction(ctx.engine, readonly=True) as s:
        return running_workflows.run_detail(s, running_workflows.get_run(s, ctx.user, running_workflow_id))


@router.get("/running-workflow/<running_workflow_id>/steps")
def get_running_workflow_steps(ctx, running_workflow_id):
    """The steps of a Running Workflow that are running or have run, oldest first."""
    with transaction(ctx.engine, readonly=True) as s:
        items = running_workflows.steps(s, running_workflows.get_run(s, ctx.user, running_workflow_id))
    return {"count": len(items), "running_workflow_steps": items}


@router.put("/running-workflow/<running_workflow_id>/stop", status=204)
def stop_running_workflow(ctx, running_workflow_id):
    """Ask the workflow engine to stop a Running Workflow."""
    with transaction(ctx.engine) as s:
        event_id = running_workflows.stop(s, ctx.user, running_workflow_id)
    outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])


@router.delete("/running-workflow/<running_workflow_id>", status=204)
def delete_running_workflow(ctx, running_workflow_id):
    """Delete a Running Workflow; one still running is stopped first (and gone from view at once)."""
    with transaction(ctx.engine) as s:
        event_id = running_workflows.delete_run(s, ctx.user, running_workflow_id)
    if event_id:
        outbox.deliver(ctx.engine, ctx.settings.broker_url, [event_id])
