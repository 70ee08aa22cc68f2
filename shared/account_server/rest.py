"""The built-in ledger as the Account Server's REST API (as-api.md §5), and its charge receiver.

The local stack mounts ``create_account_server_app(settings)`` at ``/account-server-api``;
paths here are below that. Callers send the DM API's bearer tokens; the DM's admin role is
the Account Server's admin. Errors are ``{"error": text}`` (400, 403, 404, 409); 401 has no
body (as-api.md §1). Unknown objects are 404, malformed ids 400, objects of units and
organisations the caller does not belong to 403. ``POST /event`` is the ``ledger``
consumer: the broker's processing and storage charges (``receiver``), without a token,
as Knative delivers them.

Here: the app, state, merchants, products, units and product and unit charges; ``org``
holds the organisations' routes, ``routing`` what routes share, ``shapes`` the JSON.
Cold start: only werkzeug is imported here; the database, models and shapes on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING

from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from shared.account_server.base import DATASET_STORAGE, PROJECT_TIER
from shared.account_server.routing import (
    Call,
    Route,
    Router,
    check_privacy,
    check_username,
    get_product,
    get_unit,
    json_response,
    may_manage_unit,
)
from shared.errors import BadRequest, Conflict, DmError, Forbidden, NotFound, Unauthorized
from shared.lazy import lazy

if TYPE_CHECKING:
    from shared.auth.verify import Principal
    from shared.config import Settings

log = logging.getLogger("dm.account_server")
sa = lazy("sqlalchemy")
models = lazy("shared.db.models")
ledger = lazy("shared.account_server.ledger")
shapes = lazy("shared.account_server.shapes")
coins = lazy("shared.account_server.coins")

VERSION = "4.4.0"  # the Account Server API these shapes follow (@squonk/account-server-client 4.4.0)

router = Router()


class AccountServerApp:
    """The WSGI app; collaborators are built on the first request that needs them."""

    def __init__(self, settings: "Settings", routes: list[Route]):
        self.settings = settings
        self.routes = routes
        rules = [Rule(r.path, methods=[r.method], endpoint=i) for i, r in enumerate(routes)]
        self.url_map = Map(rules, strict_slashes=True, redirect_defaults=False, merge_slashes=False)
        [self.event_route] = [r for r in routes if r.method == "POST" and r.path == EVENT_PATH]

    @functools.cached_property
    def engine(self):
        from shared.db.session import get_engine

        return get_engine(self.settings.sqlalchemy_url)

    @functools.cached_property
    def verifier(self):
        from shared.auth.verify import create_verifier

        return create_verifier(self.settings)

    @functools.cached_property
    def consumer(self):
        from shared.account_server.receiver import create_consumer
        from shared.events.signing import key_of

        return create_consumer(self.engine, key_of(self.settings), production=self.settings.mode == "PRODUCTION")

    def __call__(self, environ, start_response):
        return self.answer(Request(environ))(environ, start_response)

    def answer(self, request: Request) -> Response:
        if request.method == "POST" and request.path == EVENT_PATH:  # every charge: no route map to walk
            route, args = self.event_route, {}
        else:
            try:
                index, args = self.url_map.bind_to_environ(request.environ).match()
            except (RouteNotFound, RequestRedirect):
                return json_response({"error": "Not found"}, 404)
            except MethodNotAllowed:
                return json_response({"error": f"Method {request.method} is not allowed here"}, 405)
            route = self.routes[index]
        call = Call(request, self.settings)
        try:
            if route.raw:  # the broker's CloudEvents: the consumer answers as Knative expects
                return _event_response(self.consumer.handle(request))
            if route.auth:
                call.principal = as_caller(self.verifier.verify(request.headers.get("Authorization")))
            from shared.db.session import transaction

            with transaction(self.engine, readonly=route.method == "GET" and not route.writes) as call.s:
                result = route.view(call, **args)
        except Unauthorized as exc:  # as-api.md §1: no body
            said = exc.message[:200].replace('"', "'").encode("ascii", "replace").decode()
            return Response(status=401, headers={"WWW-Authenticate": f'Bearer error="invalid_token", '
                                                                     f'error_description="{said}"'})
        except DmError as exc:
            return json_response({"error": exc.message}, exc.status)
        except Exception:
            log.exception("Unhandled error in %s %s", request.method, request.path)
            return json_response({"error": "Internal server error"}, 500)
        if isinstance(result, Response):
            return result
        return Response(status=route.status) if result is None else json_response(result, route.status)


def _event_response(answer) -> Response:
    body, status = answer
    return json_response(body, status) if body else Response(status=status)


def create_account_server_app(settings: "Settings") -> AccountServerApp:
    """The Account Server API and charge receiver on ``settings``' database and identity provider."""
    from shared.account_server import org

    return AccountServerApp(settings, router.routes + org.router.routes)


AS_ADMIN_ROLE = "account-server-admin"  # the Account Server's own administrators (web-ui.md)


def as_caller(principal: "Principal") -> "Principal":
    """The caller as the Account Server sees them: its own admin role, as well as the Data Manager's,
    gives administrator privilege here."""
    if principal.is_admin or AS_ADMIN_ROLE not in principal.roles:
        return principal
    return dataclasses.replace(principal, is_admin=True)


# --- state, merchants, the caller ----------------------------------------------------------------


@router.get("/version", auth=False)
def get_version(call: Call):
    return {"version": VERSION}


@router.get("/event-stream/version", auth=False)
@router.get("/event-stream")
@router.post("/event-stream")
def event_stream(call: Call):
    raise NotFound("The event-stream service is not installed on the built-in ledger")


@router.get("/user/account")
def get_account(call: Call):
    # the web UI shows Account Server pages to holders of its account-server-* roles
    roles = sorted(r for r in call.principal.roles
                   if r == call.settings.admin_role or r.startswith("account-server-"))
    return {"user": {"id": call.principal.username}, "caller_has_admin_privilege": call.principal.is_admin,
            "account_server_roles": roles}


def _merchant(call: Call) -> dict:
    org = ledger.default_organisation(call.s)
    from shared.db.base import utcnow

    return shapes.merchant(org.created if org else utcnow(), call.api_hostname())


@router.get("/merchant")
def get_merchants(call: Call):
    return {"count": 1, "merchants": [_merchant(call)]}


@router.get("/merchant/<int(signed=True):m_id>")
def get_merchant(call: Call, m_id: int):
    if m_id != shapes.MERCHANT_ID:
        raise NotFound(f"Merchant {m_id} does not exist")
    return _merchant(call)


# --- products --------------------------------------------------------------------------------


@router.get("/product-type")
def get_product_types(call: Call):
    return shapes.product_types()


@router.get("/product-default-storage-cost")
def get_default_storage_cost(call: Call):
    return shapes.default_storage_cost()


@router.get("/product")
def get_products(call: Call):
    s, p = call.s, call.principal
    units = list(s.scalars(sa.select(models.LedgerUnit).order_by(models.LedgerUnit.created, models.LedgerUnit.id)))
    visible = [u.id for u in units if ledger.may_use_unit(s, p, u)]
    return shapes.products(s, shapes.products_of(s, visible), p, call.today)


@router.get("/product/unit/<unit_id>")
def get_unit_products(call: Call, unit_id: str):
    unit = get_unit(call, unit_id)
    return shapes.products(call.s, shapes.products_of(call.s, [unit.id]), call.principal, call.today)


@router.get("/product/<product_id>")
def get_product_route(call: Call, product_id: str):
    product, _ = get_product(call, product_id)
    return {"product": shapes.product(call.s, product, call.principal, call.today)}


@router.post("/product/unit/<unit_id>", status=201)
def create_product(call: Call, unit_id: str):
    unit = get_unit(call, unit_id)
    name = call.text("name", required=True)
    kind = call.body.get("type")
    flavour = call.body.get("flavour")
    if kind == PROJECT_TIER:
        if not isinstance(flavour, str) or flavour not in coins.FLAVOURS:
            raise BadRequest(f"A project-tier product needs a 'flavour': one of {', '.join(coins.FLAVOURS)}")
        if "allowance" in call.body or "limit" in call.body:
            raise BadRequest("A project-tier product's allowance and limit are its flavour's: do not send them")
        allowance = limit = None
    elif kind == DATASET_STORAGE:
        if flavour is not None:
            raise BadRequest("A storage subscription has no 'flavour'")
        allowance = call.whole("allowance", required=True)
        limit = call.whole("limit")
        limit = allowance if limit is None else limit
        if limit < allowance:
            raise BadRequest("'limit' must be at least the 'allowance'")
    else:
        raise BadRequest(f"'type' must be {PROJECT_TIER} or {DATASET_STORAGE}")
    from shared.db.base import new_id, utcnow

    product = models.LedgerProduct(id=new_id("product"), unit_id=unit.id, type=kind, flavour=flavour, name=name,
                                   created=utcnow(), allowance=allowance, coin_limit=limit)
    call.s.add(product)
    return {"id": product.id}


@router.patch("/product/<product_id>")
def patch_product(call: Call, product_id: str):
    product, _ = get_product(call, product_id)
    name = call.text("name")
    allowance, limit = coins.allowance_and_limit(product)
    new_allowance = call.whole("allowance")
    new_limit = call.whole("limit")
    if new_allowance is not None and new_allowance < allowance:
        raise BadRequest(f"An allowance can be raised, never lowered (it is {allowance})")
    if new_limit is not None and new_limit < limit:
        raise BadRequest(f"A limit can be raised, never lowered (it is {limit})")
    if (new_limit or limit) < (new_allowance or allowance):
        raise BadRequest("'limit' must be at least the 'allowance'")
    if name is not None:
        product.name = name
    if new_allowance is not None or new_limit is not None:
        product.allowance, product.coin_limit = new_allowance or allowance, new_limit or limit
    return None


@router.delete("/product/<product_id>", status=204)
def delete_product(call: Call, product_id: str):
    product, _ = get_product(call, product_id)
    claimed = shapes.claim(call.s, product)
    if claimed:
        raise Forbidden(f"Product {product_id} is claimed by Project {claimed['id']}: delete the Project first")
    call.s.delete(product)


# --- units ---------------------------------------------------------------------------------------


@router.get("/unit/<unit_id>")
def get_unit_route(call: Call, unit_id: str):
    return shapes.unit(call.s, get_unit(call, unit_id), call.principal)


@router.get("/unit")
def get_units(call: Call):
    s, p = call.s, call.principal
    query = sa.select(models.LedgerUnit).order_by(models.LedgerUnit.created, models.LedgerUnit.id)
    if call.request.args.get("name"):
        query = query.where(models.LedgerUnit.name == call.request.args["name"])
    by_org: dict[str, list] = {}
    for unit in s.scalars(query):
        if ledger.may_use_unit(s, p, unit):
            by_org.setdefault(unit.organisation_id, []).append(unit)
    return {"units": [shapes.organisation_units(s, s.get(models.LedgerOrganisation, org_id), units, p)
                      for org_id, units in by_org.items()]}


@router.patch("/unit/<unit_id>")
def patch_unit(call: Call, unit_id: str):
    unit = get_unit(call, unit_id, use=False)
    if not may_manage_unit(call, unit):
        raise Forbidden(f"Only the owner of unit {unit_id}, its organisation or an administrator may change it")
    name, privacy = call.text("name"), call.privacy()
    check_privacy(call.s.get(models.LedgerOrganisation, unit.organisation_id), privacy)
    if name is not None:
        unit.name = name
    if privacy is not None:
        unit.default_product_privacy = privacy
    return None


def _delete_unit(call: Call, unit) -> None:
    if shapes.products_of(call.s, [unit.id]):
        raise Forbidden(f"Unit {unit.id} still has products: delete them first")
    call.s.execute(sa.delete(models.LedgerUnitMember).where(models.LedgerUnitMember.unit_id == unit.id))
    call.s.delete(unit)


@router.delete("/unit/<unit_id>", status=204)
def delete_unit(call: Call, unit_id: str):
    unit = get_unit(call, unit_id, use=False)
    if not may_manage_unit(call, unit):
        raise Forbidden(f"Only the owner of unit {unit_id}, its organisation or an administrator may delete it")
    _delete_unit(call, unit)


def _personal_unit(call: Call):
    unit = call.s.get(models.LedgerUnit, ledger.personal_unit_id(call.principal.username))
    if unit is None:
        raise NotFound("You have no Personal Unit")
    return unit


@router.get("/personal-unit")
def get_personal_unit(call: Call):
    return shapes.unit(call.s, _personal_unit(call), call.principal)


@router.put("/personal-unit", status=201)
@router.put("/unit", status=201)  # deprecated
def put_personal_unit(call: Call):
    billing_day = call.whole("billing_day", required=True, high=28)
    username = call.principal.username
    unit_id = ledger.personal_unit_id(username)
    if call.s.get(models.LedgerUnit, unit_id) is not None:
        raise Conflict("You already have a Personal Unit")
    from shared.db.base import utcnow

    org = ledger.default_organisation(call.s, create=True)
    call.s.add(models.LedgerUnit(id=unit_id, organisation_id=org.id, name=f"{username} (personal)", owner=username,
                                 personal=True, created=utcnow(), billing_day=billing_day,
                                 default_product_privacy=org.default_product_privacy))
    call.s.flush()
    call.s.add(models.LedgerUnitMember(unit_id=unit_id, username=username))
    return {"organisation_id": org.id, "id": unit_id}


@router.delete("/personal-unit", status=204)
@router.delete("/unit", status=204)  # deprecated
def delete_personal_unit(call: Call):
    _delete_unit(call, _personal_unit(call))


@router.get("/unit/<unit_id>/user")
def get_unit_users(call: Call, unit_id: str):
    unit = get_unit(call, unit_id)
    users = [{"id": u} for u in ledger.unit_members(call.s, unit.id) if u != unit.owner]
    return {"count": len(users), "unit": shapes.unit(call.s, unit, call.principal, users=False), "users": users}


def _member_unit(call: Call, unit_id: str, user_id: str):
    unit = get_unit(call, unit_id)
    check_username(user_id)
    if unit.personal:
        raise Forbidden("A Personal Unit has no other members")
    return unit


@router.put("/unit/<unit_id>/user/<user_id>", status=201)
def put_unit_user(call: Call, unit_id: str, user_id: str):
    unit = _member_unit(call, unit_id, user_id)
    if call.s.get(models.LedgerUnitMember, (unit.id, user_id)) is None:
        call.s.add(models.LedgerUnitMember(unit_id=unit.id, username=user_id))


@router.delete("/unit/<unit_id>/user/<user_id>", status=204)
def delete_unit_user(call: Call, unit_id: str, user_id: str):
    unit = _member_unit(call, unit_id, user_id)
    if user_id == unit.owner:
        raise Forbidden("The owner of a unit cannot leave it")
    member = call.s.get(models.LedgerUnitMember, (unit.id, user_id))
    if member is None:
        raise NotFound(f"{user_id} is not a member of unit {unit_id}")
    call.s.delete(member)


# --- charges -----------------------------------------------------------------------------------


@router.get("/charges/product/<product_id>")
def get_product_charges(call: Call, product_id: str):
    product, unit = get_product(call, product_id)
    start, until = coins.Window.of(call.request.args, call.today).for_unit(unit.billing_day, call.today)
    usage = coins.usage(call.s, coins.payers_of(call.s, product), start, until, call.today)
    return shapes.product_charges(call.s, product, unit, usage, call.today, call.api_hostname())


@router.get("/charges/unit/<unit_id>")
def get_unit_charges(call: Call, unit_id: str):
    unit = get_unit(call, unit_id)
    window = coins.Window.of(call.request.args, call.today)
    return shapes.unit_charges_of(call.s, unit, call.principal, window, call.today)


EVENT_PATH = "/event"  # the broker's deliveries of charges


@router.route("POST", EVENT_PATH, auth=False, status=202, raw=True)
def receive_event(call: Call):
    """The broker's charges: answered by the ``ledger`` consumer itself (AccountServerApp.answer)."""
