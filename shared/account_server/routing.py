"""What the Account Server API's routes share: the request's ``Call``, a ``Router`` per route
module, and the lookups that check who may see or change what (as-api.md §2)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from werkzeug.wrappers import Request, Response

from shared.account_server.base import check_product_id, check_unit_id
from shared.db import integers
from shared.errors import BadRequest, Forbidden, NotFound
from shared.lazy import lazy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.config import Settings

models = lazy("shared.db.models")
ledger = lazy("shared.account_server.ledger")

PRIVACIES = ("ALWAYS_PUBLIC", "ALWAYS_PRIVATE", "DEFAULT_PUBLIC", "DEFAULT_PRIVATE")
NAME_LENGTH = 80


@dataclass
class Call:
    """One request: the caller, its transaction and the settings; all a route receives."""

    request: Request
    settings: "Settings"
    s: "Session" = None
    principal: "Principal" = None

    @functools.cached_property
    def today(self):
        from shared.db.base import utcnow

        return utcnow().date()

    @functools.cached_property
    def body(self) -> dict:
        """The JSON object sent (an empty body is an empty object)."""
        if not self.request.get_data():
            return {}
        try:
            body = json.loads(self.request.get_data())
        except ValueError:
            raise BadRequest("The body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object")
        return body

    def text(self, name: str, *, required: bool = False, length: int = NAME_LENGTH) -> str | None:
        value = self.body.get(name)
        if value is None:
            if required:
                raise BadRequest(f"'{name}' is required")
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > length:
            raise BadRequest(f"'{name}' must be text of 1 to {length} characters")
        return value.strip()

    def whole(self, name: str, *, required: bool = False, low: int = 1, high: int | None = None) -> int | None:
        value = self.body.get(name)
        if value is None:
            if required:
                raise BadRequest(f"'{name}' is required")
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        high = integers.INT64_MAX if high is None else high  # the widest column; past it the database refuses
        if not integers.fits(value, low, high):
            raise BadRequest(f"'{name}' must be a whole number of at least {low} and at most {high}")
        return value

    def privacy(self) -> str | None:
        value = self.body.get("default_product_privacy")
        if value is not None and value not in PRIVACIES:
            raise BadRequest(f"'default_product_privacy' must be one of {', '.join(PRIVACIES)}")
        return value

    def api_hostname(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.settings.base_url).hostname or ""


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    view: Callable
    auth: bool
    status: int
    raw: bool = False  # answered from the request itself: no token, no transaction
    writes: bool = False  # a GET that may write (its transaction is not read-only)


class Router:
    """Routes as decorators; ``view(call, **path_args)`` returns a JSON-able body, None or a Response."""

    def __init__(self):
        self.routes: list[Route] = []

    def route(self, method: str, path: str, *, auth: bool = True, status: int = 200, raw: bool = False,
              writes: bool = False):
        def register(view: Callable) -> Callable:
            self.routes.append(Route(path, method, view, auth, status, raw, writes))
            return view
        return register

    def get(self, path: str, **kw):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw):
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw):
        return self.route("DELETE", path, **kw)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")


# --- lookups -----------------------------------------------------------------------------------


def get_unit(call: Call, unit_id: str, *, use: bool = True):
    """The unit (404), one the caller may use unless ``use`` is False (403)."""
    unit = call.s.get(models.LedgerUnit, check_unit_id(unit_id))
    if unit is None:
        raise NotFound(f"Unit {unit_id} does not exist")
    if use and not ledger.may_use_unit(call.s, call.principal, unit):
        raise Forbidden(f"You are not a member of unit {unit_id} or of its organisation")
    return unit


def may_manage_unit(call: Call, unit) -> bool:
    """Its owner, its organisation's owner and members, and administrators change or delete a unit."""
    if call.principal.is_admin or unit.owner == call.principal.username:
        return True
    return ledger.in_organisation(call.s, call.principal.username, call.s.get(models.LedgerOrganisation,
                                                                               unit.organisation_id))


def get_product(call: Call, product_id: str):
    """The product (404) and its unit, which the caller may use (403)."""
    product = call.s.get(models.LedgerProduct, check_product_id(product_id))
    if product is None:
        raise NotFound(f"Product {product_id} does not exist")
    unit = call.s.get(models.LedgerUnit, product.unit_id)
    if not ledger.may_use_unit(call.s, call.principal, unit):
        raise Forbidden(f"You are not a member of the unit of product {product_id} or of its organisation")
    return product, unit


def check_privacy(org, privacy: str | None) -> None:
    """A unit's default privacy must not contradict its organisation's ALWAYS_ one."""
    if privacy and org.default_product_privacy.startswith("ALWAYS_") and privacy != org.default_product_privacy:
        raise BadRequest(f"The organisation's products are {org.default_product_privacy}: a unit cannot be "
                         f"{privacy}")


def check_username(user_id: str) -> str:
    if not user_id or len(user_id) > NAME_LENGTH or any(c.isspace() for c in user_id):
        raise BadRequest(f"'{user_id[:NAME_LENGTH]}' is not a user name")
    return user_id


def require_admin(call: Call) -> None:
    if not call.principal.is_admin:
        raise Forbidden("Only administrators may do this")
