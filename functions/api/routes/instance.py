"""Applications, and instances of jobs and applications running in projects."""

import logging

from functions.api.router import Router
from shared.db.session import transaction
from shared.lazy import lazy

instances = lazy("shared.services.instances")
applications = lazy("shared.jobs.applications")

router = Router("instance")
log = logging.getLogger("dm.api.instance")
LAUNCH_FIELDS = ("application_id", "project_id", "as_name", "callback_url", "callback_context",
                 "generate_callback_token", "callback_token", "debug", "specification")


@router.get("/application")
def get_applications(ctx):
    """The applications that can be instantiated."""
    items = [a.summary() for a in applications.APPLICATIONS.values()]
    return {"count": len(items), "applications": items}


@router.get("/application/<application_id>")
def get_application(ctx, application_id):
    """One application, with its specification template and the caller's instances of it."""
    from sqlalchemy import select

    from shared.db.models import Instance

    application = applications.get(application_id)
    with transaction(ctx.engine, readonly=True) as s:
        ids = list(s.scalars(select(Instance.id).where(Instance.application_id == application.id,
                                                       Instance.owner == ctx.user.username,
                                                       Instance.deleted.is_(False))))
    return application.detail(ids)


def _form(ctx) -> dict:
    return {name: ctx.param(name) for name in LAUNCH_FIELDS}


@router.post("/instance/dry-run", status=201)
def dry_run_instance(ctx):
    """Check a launch and show the command it would run; nothing is launched."""
    with transaction(ctx.engine, readonly=True) as s:
        launch = instances.check_launch(s, ctx.user, ctx.storage, _form(ctx))
    out = {}
    if launch.command is not None:
        out["command"] = launch.command
    if launch.callback_token:
        out["callback_token"] = launch.callback_token
    return out


@router.post("/instance", status=201)
def create_instance(ctx):
    """Launch a job or an application; its task follows it."""
    from shared.launchers.base import LaunchError

    with transaction(ctx.engine, readonly=True) as s:
        launch = instances.check_launch(s, ctx.user, ctx.storage, _form(ctx))
    # the Project's product pays: the Account Server may refuse (at its limit), before anything is recorded
    code = ctx.account_server.authorise_processing(ctx.user, launch.product_id)
    with transaction(ctx.engine) as s:
        instance, task = instances.record(s, ctx.user, launch, authorisation_code=code)
        instance_id, task_id = instance.id, task.id
        if not launch.application.is_job:  # shown once it runs (instances.summary)
            from shared.services.instance_access import instance_url

            instance.url = instance_url(ctx.settings, instance_id)
    try:  # after the commit: the pod's events find the instance recorded
        ctx.services.launcher.launch(instances.launch_spec(launch, task_id, ctx.user.username))
    except LaunchError as exc:
        with transaction(ctx.engine) as s:
            instances.launch_failed(s, instance_id, task_id, f"The instance could not be launched: {exc}")
    except Exception:  # a passing fault: the instance stays PENDING for the monitor to reconcile
        log.exception("Launching %s failed", instance_id)
        with transaction(ctx.engine) as s:
            instances.launch_failed(s, instance_id, task_id, "The instance could not be launched (a fault here)")
    out = {"instance_id": instance_id, "task_id": task_id}
    if launch.command is not None:
        out["command"] = launch.command
    if launch.callback_token:
        out["callback_token"] = launch.callback_token
    return out


@router.get("/instance")
def get_instances(ctx):
    """The instances the caller can see."""
    project_id = ctx.param("project_id")
    with transaction(ctx.engine, readonly=True) as s:
        items = instances.list_visible(s, ctx.user, project_id=project_id)
    return {"count": len(items), "instances": items}


@router.get("/instance/<instance_id>")
def get_instance(ctx, instance_id):
    """One instance, with its tasks and costs."""
    with transaction(ctx.engine, readonly=True) as s:
        return instances.detail(instances.get_visible(s, ctx.user, instance_id))


@router.patch("/instance/<instance_id>", status=204)
def patch_instance(ctx, instance_id):
    """Archive or un-archive an instance."""
    archive = ctx.param("archive")
    with transaction(ctx.engine) as s:
        instance = instances.get_editable(s, ctx.user, instance_id)
        if archive not in (None, ""):
            instance.archived = ctx.flag("archive")


@router.delete("/instance/<instance_id>", status=200)
def delete_instance(ctx, instance_id):
    """Stop an instance and remove its pod; answers the deletion task."""
    with transaction(ctx.engine) as s:
        instance, task = instances.begin_delete(s, ctx.user, instance_id)
        task_id = task.id
    error = None
    try:
        ctx.services.launcher.stop(instance_id)
    except Exception:  # noqa: BLE001 - the task says so; the instance stays, so the call can be repeated
        log.exception("Stopping %s failed", instance_id)
        error = "The instance could not be stopped; try again"
    with transaction(ctx.engine) as s:
        instances.finish_delete(s, instance_id, task_id, error)
    return {"task_id": task_id}


@router.delete("/instance/<instance_id>/token/<token>", status=204, auth=False)
def delete_instance_token(ctx, instance_id, token):
    """Revoke an instance's callback token (no sign-in: remote systems hold the token)."""
    with transaction(ctx.engine) as s:
        instances.revoke_token(s, instance_id, token)
