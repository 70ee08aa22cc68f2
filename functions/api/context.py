"""What a route function receives besides its path arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.config import Settings
from shared.db import integers
from shared.errors import BadRequest

if TYPE_CHECKING:
    from flask import Request
    from sqlalchemy.engine import Engine

    from shared.account_server.base import AccountServer
    from shared.auth.verify import Principal
    from shared.process_services import ProcessServices
    from shared.storage.base import Storage

_TRUE = {"true", "True", "TRUE", "1", "yes"}
_FALSE = {"false", "False", "FALSE", "0", "no"}


class RequestContext:
    """The request, the caller and the services a route may use, each built on first use."""

    def __init__(self, request: "Request", settings: Settings, services: "ProcessServices"):
        self.request = request
        self.settings = settings
        self.services = services
        self.principal: "Principal | None" = None

    @property
    def user(self) -> "Principal":
        assert self.principal is not None, "route registered without auth"
        return self.principal

    @property
    def engine(self) -> "Engine":
        return self.services.engine

    @property
    def storage(self) -> "Storage":
        return self.services.storage

    @property
    def account_server(self) -> "AccountServer":
        return self.services.account_server

    # --- inputs: the query string, then a form body (clients differ in which they use)

    def param(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.request.args.get(name)
        if value is None and self.request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            value = self.request.form.get(name)
        if value is None:
            if required:
                raise BadRequest(f"The '{name}' parameter is required")
            return default
        if "\x00" in value:
            raise BadRequest(f"The '{name}' parameter contains a NUL character")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.param(name)
        if value is None or value == "":
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise BadRequest(f"The '{name}' parameter must be true or false, not {value!r}")

    def integer(self, name: str, default: int | None = None, *, minimum: int = 0,
                maximum: int = integers.INT32_MAX) -> int | None:
        """A whole number in ``minimum..maximum`` (by default one an INTEGER column holds), else 400."""
        value = self.param(name)
        if value is None or value == "":
            return default
        return integers.parameter(name, value, minimum=minimum, maximum=maximum)
