"""Tasks: follow long work."""

from functions.api.router import Router
from shared.db.session import transaction
from shared.lazy import lazy

tasks = lazy("shared.services.tasks")

router = Router("task")


@router.get("/task")
def get_tasks(ctx):
    """The tasks the caller can see."""
    filters = dict(
        purpose=ctx.param("purpose"),
        exclude_done=ctx.flag("exclude_done"),
        exclude_removal=ctx.flag("exclude_removal"),
        exclude_purpose=ctx.param("exclude_purpose"),
        project_id=ctx.param("project_id"),
    )
    with transaction(ctx.engine, readonly=True) as s:
        items = tasks.list_tasks(s, ctx.user, **filters)
    return {"count": len(items), "tasks": items}


@router.get("/task/<task_id>")
def get_task(ctx, task_id):
    """One task with its states and (paged) events."""
    limit = ctx.integer("event_limit", minimum=0) or None
    prior = ctx.integer("event_prior_ordinal", 0, minimum=0)
    with transaction(ctx.engine, readonly=True) as s:
        return tasks.detail(s, tasks.get_visible(s, ctx.user, task_id), prior_ordinal=prior, limit=limit)


@router.delete("/task/<task_id>", status=204)
def delete_task(ctx, task_id):
    """Delete a finished task."""
    with transaction(ctx.engine) as s:
        tasks.delete(s, ctx.user, task_id)
