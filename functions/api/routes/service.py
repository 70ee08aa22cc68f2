"""Service facts: version, mode and the Account Server in use."""

from functions.api.router import Router
from shared.config import VERSION

router = Router("accounting")


@router.get("/version", auth=False)
def get_version(ctx):
    """The Data Manager API version."""
    return {"version": VERSION}


@router.get("/mode", auth=False)
def get_mode(ctx):
    """DEVELOPMENT or PRODUCTION."""
    return {"mode": ctx.settings.mode}


@router.get("/account-server/namespace")
def get_account_server_namespace(ctx):
    """What identifies the Account Server in use."""
    return {"namespace": ctx.account_server.namespace()}


@router.get("/account-server/registration")
def get_account_server_registration(ctx):
    """This Data Manager's merchant registration with the Account Server."""
    return ctx.account_server.registration()
