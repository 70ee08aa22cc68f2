"""The caller's account and the user directory."""

from functions.api.router import Router
from shared.db.session import transaction
from shared.lazy import lazy

users = lazy("shared.services.users")
api_log = lazy("shared.services.api_log")

router = Router("user")


@router.get("/user")
def get_users(ctx):
    """Users who have used the Data Manager and are not private."""
    with transaction(ctx.engine, readonly=True) as s:
        items = users.list_users(s)
    return {"count": len(items), "users": items}


@router.get("/user/account")
def get_user_account(ctx):
    """The caller's account."""
    with transaction(ctx.engine, readonly=True) as s:
        return users.account(s, ctx.user)


@router.patch("/user/account", status=204)
def patch_user_account(ctx):
    """Change the caller's privacy or admin mode."""
    private = ctx.flag("private") if ctx.param("private") not in (None, "") else None
    become_admin = ctx.flag("become_admin") if ctx.param("become_admin") not in (None, "") else None
    with transaction(ctx.engine) as s:
        users.patch_account(s, ctx.user, private=private, become_admin=become_admin)


@router.get("/user/api-log")
def get_user_api_log(ctx):
    """The caller's state-changing API calls, oldest first (from inclusive, until exclusive)."""
    since = api_log.parse_instant("from", ctx.param("from"))
    until = api_log.parse_instant("until", ctx.param("until"))
    with transaction(ctx.engine, readonly=True) as s:
        items = api_log.entries(s, ctx.user.username, since=since, until=until)
    return {"count": len(items), "api_log": items}


@router.get("/user/token")
def get_user_api_token(ctx):
    """The caller's API token: the bearer token of this request."""
    return {"token": ctx.user.token}
