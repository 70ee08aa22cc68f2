"""The Account Server API's organisations: the organisations themselves, their units and
products, their members and their charges (as-api.md §5). Only administrators create and delete organisations
and read every charge; an organisation's owner and members manage it; the Default
Organisation has no members and holds only Personal Units."""

from __future__ import annotations

from shared.account_server.routing import Call, Router, check_privacy, check_username, require_admin
from shared.errors import Conflict, Forbidden, NotFound
from shared.lazy import lazy

sa = lazy("sqlalchemy")
models = lazy("shared.db.models")
ledger = lazy("shared.account_server.ledger")
shapes = lazy("shared.account_server.shapes")
coins = lazy("shared.account_server.coins")

router = Router()


def get_organisation(call: Call, org_id: str):
    """The organisation (404; 400 for what is not an ``org-<uuid>``)."""
    from shared.account_server.base import check_org_id

    org = call.s.get(models.LedgerOrganisation, check_org_id(org_id))
    if org is None:
        raise NotFound(f"Organisation {org_id} does not exist")
    return org


def _units(call: Call, org) -> list:
    return list(call.s.scalars(sa.select(models.LedgerUnit).where(models.LedgerUnit.organisation_id == org.id)
                               .order_by(models.LedgerUnit.created, models.LedgerUnit.id)))


def in_organisation(call: Call, org) -> bool:
    return call.principal.is_admin or ledger.in_organisation(call.s, call.principal.username, org)


def visible_units(call: Call, org) -> list:
    """The organisation's units the caller sees: all for its members, else those it uses (403 if none)."""
    units = _units(call, org)
    if in_organisation(call, org):
        return units
    mine = [u for u in units if ledger.in_unit(call.s, call.principal.username, u)]
    if not mine:
        raise Forbidden(f"You are not a member of organisation {org.id} or of any of its units")
    return mine


def _manage(call: Call, org) -> None:
    if not (call.principal.is_admin or (org.owner and org.owner == call.principal.username)):
        raise Forbidden(f"Only the owner of organisation {org.id} or an administrator may change it")


def _unique_name(call: Call, name: str, org_id: str | None = None) -> None:
    if name == ledger.DEFAULT_ORGANISATION:  # kept for Personal Units, even before the first one
        raise Conflict(f"The name '{name}' is the Default Organisation's")
    found = call.s.scalar(sa.select(models.LedgerOrganisation.id).where(models.LedgerOrganisation.name == name))
    if found is not None and found != org_id:
        raise Conflict(f"There is already an organisation called '{name}'")


# --- organisations -------------------------------------------------------------------------------


@router.get("/organisation")
def get_organisations(call: Call):
    query = sa.select(models.LedgerOrganisation).order_by(models.LedgerOrganisation.created,
                                                          models.LedgerOrganisation.id)
    if call.request.args.get("name"):
        query = query.where(models.LedgerOrganisation.name == call.request.args["name"])
    found = [org for org in call.s.scalars(query)
             if in_organisation(call, org)
             or any(ledger.in_unit(call.s, call.principal.username, u) for u in _units(call, org))]
    return {"count": len(found), "organisations": [shapes.organisation(call.s, org, call.principal) for org in found]}


@router.post("/organisation", status=201)
def create_organisation(call: Call):
    require_admin(call)
    name = call.text("name", required=True)
    owner = check_username(call.text("owner", required=True))
    privacy = call.privacy() or "DEFAULT_PRIVATE"
    _unique_name(call, name)
    from shared.db.base import new_id, utcnow

    org = models.LedgerOrganisation(id=new_id("org"), name=name, owner=owner, created=utcnow(),
                                    default_product_privacy=privacy)
    call.s.add(org)
    return {"id": org.id}


# Made on first call: the web UI offers a new user a Personal Unit only once this has an id.
@router.get("/default/organisation", writes=True)
def get_default_organisation(call: Call):
    return shapes.organisation(call.s, ledger.default_organisation(call.s, create=True), call.principal)


@router.get("/organisation/<org_id>")
def get_organisation_route(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    visible_units(call, org)
    return shapes.organisation(call.s, org, call.principal)


@router.patch("/organisation/<org_id>")
def patch_organisation(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    _manage(call, org)
    name, privacy = call.text("name"), call.privacy()
    if name is not None and name != org.name:
        if ledger.is_default(org):
            raise Forbidden("The Default Organisation keeps its name")
        _unique_name(call, name, org.id)
        org.name = name
    if privacy is not None:
        org.default_product_privacy = privacy
    return None


@router.delete("/organisation/<org_id>", status=204)
def delete_organisation(call: Call, org_id: str):
    require_admin(call)
    org = get_organisation(call, org_id)
    if ledger.is_default(org):
        raise Forbidden("The Default Organisation cannot be deleted")
    if _units(call, org):
        raise Forbidden(f"Organisation {org_id} still has units: delete them first")
    call.s.execute(sa.delete(models.LedgerOrganisationMember)
                   .where(models.LedgerOrganisationMember.organisation_id == org.id))
    call.s.delete(org)


# --- its units ----------------------------------------------------------------------------------


@router.get("/organisation/<org_id>/unit")
def get_organisation_units(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    return shapes.organisation_units(call.s, org, visible_units(call, org), call.principal)


@router.post("/organisation/<org_id>/unit", status=201)
def create_unit(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    if ledger.is_default(org):
        raise Forbidden("The Default Organisation holds only Personal Units: use PUT /personal-unit")
    if not in_organisation(call, org):
        raise Forbidden(f"You are not a member of organisation {org_id}")
    name = call.text("name", required=True)
    billing_day = call.whole("billing_day", required=True, high=28)
    privacy = call.privacy()
    check_privacy(org, privacy)
    if any(u.name == name for u in _units(call, org)):
        raise Conflict(f"Organisation {org_id} already has a unit called '{name}'")
    from shared.db.base import new_id, utcnow

    owner = call.principal.username
    unit = models.LedgerUnit(id=new_id("unit"), organisation_id=org.id, name=name, owner=owner, personal=False,
                             created=utcnow(), billing_day=billing_day,
                             default_product_privacy=privacy or org.default_product_privacy)
    call.s.add(unit)
    call.s.flush()
    call.s.add(models.LedgerUnitMember(unit_id=unit.id, username=owner))
    return {"id": unit.id}


@router.get("/product/organisation/<org_id>")
def get_organisation_products(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    units = visible_units(call, org)
    return shapes.products(call.s, shapes.products_of(call.s, [u.id for u in units]), call.principal, call.today)


# --- its members ----------------------------------------------------------------------------------


@router.get("/organisation/<org_id>/user")
def get_organisation_users(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    if not in_organisation(call, org):
        raise Forbidden(f"You are not a member of organisation {org_id}")
    users = [{"id": u} for u in ledger.organisation_members(call.s, org.id)]
    return {"count": len(users), "organisation": shapes.organisation(call.s, org, call.principal, users=False),
            "users": users}


def _member_organisation(call: Call, org_id: str, user_id: str):
    org = get_organisation(call, org_id)
    check_username(user_id)
    if not in_organisation(call, org):
        raise Forbidden(f"You are not a member of organisation {org_id}")
    if ledger.is_default(org):
        raise Forbidden("The Default Organisation has no members")
    return org


@router.put("/organisation/<org_id>/user/<user_id>", status=201)
def put_organisation_user(call: Call, org_id: str, user_id: str):
    org = _member_organisation(call, org_id, user_id)
    if call.s.get(models.LedgerOrganisationMember, (org.id, user_id)) is None:
        call.s.add(models.LedgerOrganisationMember(organisation_id=org.id, username=user_id))


@router.delete("/organisation/<org_id>/user/<user_id>", status=204)
def delete_organisation_user(call: Call, org_id: str, user_id: str):
    org = _member_organisation(call, org_id, user_id)
    member = call.s.get(models.LedgerOrganisationMember, (org.id, user_id))
    if member is None:
        raise NotFound(f"{user_id} is not a member of organisation {org_id}")
    call.s.delete(member)


# --- charges ------------------------------------------------------------------------------------


def _organisation_charges(call: Call, org, window) -> dict:
    units = [shapes.unit_charges_of(call.s, u, call.principal, window, call.today) for u in _units(call, org)]
    return shapes.organisation_charges(org, units)


@router.get("/charges/organisation/<org_id>")
def get_organisation_charges(call: Call, org_id: str):
    org = get_organisation(call, org_id)
    if not in_organisation(call, org):
        raise Forbidden(f"Only members of organisation {org_id} and administrators may read its charges")
    return _organisation_charges(call, org, coins.Window.of(call.request.args, call.today))


@router.get("/charges")
def get_charges(call: Call):
    require_admin(call)
    window = coins.Window.of(call.request.args, call.today)
    orgs = call.s.scalars(sa.select(models.LedgerOrganisation).order_by(models.LedgerOrganisation.created,
                                                                        models.LedgerOrganisation.id))
    return shapes.all_charges([_organisation_charges(call, org, window) for org in orgs])
