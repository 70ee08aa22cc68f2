"""Admin operations: service errors and user accounts (job manifests live with the jobs)."""

from functions.api.router import Router
from shared.db import integers
from shared.db.session import transaction
from shared.lazy import lazy

service_errors = lazy("shared.services.service_errors")
user_admin = lazy("shared.services.user_admin")
users = lazy("shared.services.users")
outbox = lazy("shared.events.outbox")

router = Router("admin")


def _error_id(text: str) -> int:
    # parsed here, not by a converter: a value that is not a number is a 400, not an unlisted path
    return integers.id_of("service error", text, minimum=1)


# --- service errors ------------------------------------------------------------------------


@router.get("/admin/service-error")
def get_service_errors(ctx):
    """Service errors, oldest first; acknowledged ones only with include_acknowledged (admins)."""
    users.require_admin(ctx.user)
    include = ctx.flag("include_acknowledged")
    with transaction(ctx.engine, readonly=True) as s:
        items = service_errors.list_errors(s, include_acknowledged=include)
    return {"count": len(items), "service_errors": items}


@router.patch("/admin/service-error/<error_id>", status=204)
def acknowledge_service_error(ctx, error_id):
    """Acknowledge a service error (admins)."""
    users.require_admin(ctx.user)
    number = _error_id(error_id)
    with transaction(ctx.engine) as s:
        service_errors.acknowledge(s, number, ctx.user.username)


@router.delete("/admin/service-error/<error_id>", status=204)
def delete_service_error(ctx, error_id):
    """Delete a service error (admins)."""
    users.require_admin(ctx.user)
    number = _error_id(error_id)
    with transaction(ctx.engine) as s:
        service_errors.delete(s, number)


# --- user accounts ---------------------------------------------------------------------------


@router.get("/admin/user")
def get_admin_users(ctx):
    """Every user but the caller, with account details (admins)."""
    users.require_admin(ctx.user)
    idle_days = ctx.integer("idle_days", minimum=1, maximum=user_admin.MAX_DAYS)
    active_days = ctx.integer("active_days", minimum=1, maximum=user_admin.MAX_DAYS)
    with transaction(ctx.engine, readonly=True) as s:
        items = user_admin.list_users(s, ctx.user, idle_days=idle_days, active_days=active_days)
    return {"count": len(items), "users": items}


@router.put("/admin/user/<user_id>", status=201)
def put_admin_user(ctx, user_id):
    """Prepare a user's account (admins)."""
    users.require_admin(ctx.user)
    with transaction(ctx.engine) as s:
        return user_admin.prepare(s, ctx.user, user_id)


@router.patch("/admin/user/<user_id>", status=204)
def patch_admin_user(ctx, user_id):
    """Suspend a user's account with a message, or restore it with /restore (admins)."""
    users.require_admin(ctx.user)
    message = ctx.param("suspend_message")
    with transaction(ctx.engine) as s:
        user_admin.set_suspension(s, ctx.user, user_id, message)
    users.forget_suspensions()  # this process applies it at once; others within SUSPENSIONS_TTL_S


@router.delete("/admin/user/<user_id>", status=204)
def delete_admin_user(ctx, user_id):
    """Delete a user's account and the Datasets it owns (admins)."""
    users.require_admin(ctx.user)
    with transaction(ctx.engine) as s:
        events = user_admin.delete_user(s, ctx.user, user_id)
    users.forget_visits(user_id)
    outbox.deliver(ctx.engine, ctx.settings.broker_url, events)
