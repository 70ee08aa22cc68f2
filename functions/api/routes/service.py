"""Service facts: versions, mode, input handlers and the Account Server in use."""

from functions.api.router import Router
from shared.config import VERSION
from shared.lazy import lazy

configuration = lazy("shared.services.configuration")

router = Router("accounting")


@router.get("/version", auth=False)
def get_version(ctx):
    """The Data Manager API version."""
    return {"version": VERSION}


@router.get("/mode", auth=False)
def get_mode(ctx):
    """DEVELOPMENT or PRODUCTION."""
    return {"mode": ctx.settings.mode}


@router.get("/job-definition-schema/version")
def get_job_definition_schema_version(ctx):
    """The version of the job decoder whose schema job definitions are checked against."""
    return {"version": configuration.job_definition_schema_version()}


@router.get("/input-handler")
def get_input_handlers(ctx):
    """How each type of job input is read when an instance is launched."""
    return configuration.input_handlers()


@router.get("/account-server/namespace")
def get_account_server_namespace(ctx):
    """What identifies the Account Server in use."""
    return {"namespace": ctx.account_server.namespace()}


@router.get("/account-server/registration")
def get_account_server_registration(ctx):
    """This Data Manager's merchant registration with the Account Server."""
    return ctx.account_server.registration()
