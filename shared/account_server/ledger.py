"""The built-in ledger: the local stack's Account Server, kept in the Data Manager's database.

Generous by design: a user's project-tier product may back any number of Projects,
so a developer can create Projects without first buying a product for each. Coins are
not: the charges the DM sends (``receiver``) are counted (``coins``), and a product at its
coin limit pays for nothing more — no new instances, no new files or dataset versions
(``check_not_at_limit``). The same tables are served as the Account Server's REST API
(``rest``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from shared.account_server.base import (
    DATASET_STORAGE,
    PROJECT_TIER,
    TEST_ORG_ID,
    TEST_PRODUCT_ID,
    TEST_UNIT_ID,
    ProductGrant,
)
from shared.db.base import iso, utcnow
from shared.db.models import (
    LedgerOrganisation,
    LedgerOrganisationMember,
    LedgerProduct,
    LedgerUnit,
    LedgerUnitMember,
)
from shared.db.models.ledger import DEFAULT_PRIVACY
from shared.db.session import insert_new, transaction
from shared.errors import Forbidden, NotFound, Unsupported

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.config import Settings

# The name the web UI looks for (its NEXT_PUBLIC_DEFAULT_ORG_NAME) when it finds a Personal Unit.
DEFAULT_ORGANISATION = "Default"
_OLD_DEFAULT_NAME = "Default Organisation"  # before the web UI's name was used
_NAMESPACE = uuid.UUID("6f1c1e7e-2f0a-4a53-9a4e-7d3c3b1b9d11")


def _authorisation_code() -> int:
    import secrets

    return 1 + secrets.randbelow(2_147_483_647)  # as-api.md §4: 1 … 2,147,483,647


def _stable_id(prefix: str, *parts: str) -> str:
    # The same user gets the same unit and products on every fresh install.
    return f"{prefix}-{uuid.uuid5(_NAMESPACE, '/'.join(parts))}"


def personal_unit_id(username: str) -> str:
    return _stable_id("unit", "personal", username)


DEFAULT_ORGANISATION_ID = _stable_id("org", "default")


def is_default(org: LedgerOrganisation) -> bool:
    return org.id == DEFAULT_ORGANISATION_ID


# --- who belongs where ----------------------------------------------------------------------


def unit_members(s: "Session", unit_id: str) -> list[str]:
    """The unit's members, its owner among them."""
    return list(s.scalars(select(LedgerUnitMember.username).where(LedgerUnitMember.unit_id == unit_id)
                          .order_by(LedgerUnitMember.username)))


def organisation_members(s: "Session", org_id: str) -> list[str]:
    return list(s.scalars(select(LedgerOrganisationMember.username)
                          .where(LedgerOrganisationMember.organisation_id == org_id)
                          .order_by(LedgerOrganisationMember.username)))


def in_organisation(s: "Session", username: str, org: LedgerOrganisation) -> bool:
    """Whether ``username`` owns or belongs to ``org`` (the Default Organisation has no members)."""
    return org.owner == username or s.get(LedgerOrganisationMember, (org.id, username)) is not None


def in_unit(s: "Session", username: str, unit: LedgerUnit) -> bool:
    return unit.owner == username or s.get(LedgerUnitMember, (unit.id, username)) is not None


def may_use_unit(s: "Session", principal: "Principal", unit: LedgerUnit) -> bool:
    """Members of a unit or of its organisation, and administrators, may use its products."""
    if principal.is_admin or in_unit(s, principal.username, unit):
        return True
    return in_organisation(s, principal.username, s.get(LedgerOrganisation, unit.organisation_id))


def default_organisation(s: "Session", create: bool = False) -> LedgerOrganisation | None:
    """The organisation of Personal Units; ``create`` makes it, or renames one made under its old name."""
    org = s.get(LedgerOrganisation, DEFAULT_ORGANISATION_ID)
    if org is None and create:
        # ON CONFLICT DO NOTHING: two first callers at once (the web UI asks for it twice) both succeed
        insert_new(s, LedgerOrganisation.__table__, {
            "id": DEFAULT_ORGANISATION_ID, "name": DEFAULT_ORGANISATION, "created": utcnow(),
            "default_product_privacy": DEFAULT_PRIVACY})
        org = s.get(LedgerOrganisation, DEFAULT_ORGANISATION_ID)
    elif create and org.name == _OLD_DEFAULT_NAME and s.scalar(
            select(LedgerOrganisation.id).where(LedgerOrganisation.name == DEFAULT_ORGANISATION)) is None:
        org.name = DEFAULT_ORGANISATION
        s.flush()
    return org


def storage_product(s: "Session", unit_id: str) -> LedgerProduct | None:
    """The unit's dataset-storage subscription that pays for its datasets: the oldest."""
    return s.scalar(select(LedgerProduct).where(LedgerProduct.unit_id == unit_id,
                                                LedgerProduct.type == DATASET_STORAGE)
                    .order_by(LedgerProduct.created, LedgerProduct.id).limit(1))


def refuse_at_limit(s: "Session", product: LedgerProduct, unit: LedgerUnit) -> None:
    """Forbidden when the product has used its coin limit in this billing period."""
    from shared.account_server.coins import money, product_coins

    coins = product_coins(s, product, unit, utcnow().date())
    if coins.at_limit:
        raise Forbidden(f"Product {product.id} has reached its coin limit ({money(coins.used)} of "
                        f"{coins.limit} coins used this billing period): it pays for nothing more until "
                        "its limit is raised or the period ends")


class LedgerAccountServer:
    def __init__(self, settings: "Settings", engine: "Engine"):
        self.settings = settings
        self.engine = engine

    def authorise_project_tier(self, principal: "Principal", product_id: str) -> ProductGrant:
        if product_id == TEST_PRODUCT_ID:
            if not principal.is_admin:
                raise Forbidden("The test product is for administrators only")
            return ProductGrant(product_id, "GOLD", TEST_UNIT_ID, TEST_ORG_ID)
        with transaction(self.engine) as s:
            product = s.get(LedgerProduct, product_id)
            if product is None:
                raise NotFound(f"Product {product_id} does not exist")
            unit = s.get(LedgerUnit, product.unit_id)
            if not may_use_unit(s, principal, unit):
                raise Forbidden(f"You are not a member of the unit of product {product_id}")
            if product.type != PROJECT_TIER:
                raise Unsupported(f"Product {product_id} is not a project-tier subscription")
            return ProductGrant(product.id, product.flavour, unit.id, unit.organisation_id)

    def authorise_dataset_storage(self, principal: "Principal", unit_id: str) -> int:
        with transaction(self.engine, readonly=True) as s:
            unit = s.get(LedgerUnit, unit_id)
            if unit is None:
                raise NotFound(f"Unit {unit_id} does not exist")
            if not may_use_unit(s, principal, unit):
                raise Forbidden(f"You are not a member of unit {unit_id}")
            product = storage_product(s, unit_id)
            if product is None:
                raise Forbidden(f"Unit {unit_id} has no dataset-storage subscription")
            refuse_at_limit(s, product, unit)
        return _authorisation_code()

    def authorise_processing(self, principal: "Principal", product_id: str) -> int:
        self._check_product(product_id, project_tier=True)
        return _authorisation_code()

    def is_member(self, principal: "Principal", *, unit_id: str | None = None,
                  organisation_id: str | None = None) -> bool:
        with transaction(self.engine, readonly=True) as s:
            if unit_id:
                unit = s.get(LedgerUnit, unit_id)
                if unit is None:
                    return False
                if in_unit(s, principal.username, unit):
                    return True
                organisation_id = unit.organisation_id
            org = s.get(LedgerOrganisation, organisation_id) if organisation_id else None
            return org is not None and in_organisation(s, principal.username, org)

    def check_not_at_limit(self, principal: "Principal", product_id: str) -> None:
        """Refuse (Forbidden) anything more for a product at its coin limit, e.g. a file upload
        into a Project it pays for; NotFound for a product the ledger does not know."""
        self._check_product(product_id, project_tier=False)

    def _check_product(self, product_id: str, *, project_tier: bool) -> None:
        if product_id == TEST_PRODUCT_ID:  # the administrators' test product pays for anything
            return
        with transaction(self.engine, readonly=True) as s:
            product = s.get(LedgerProduct, product_id)
            if product is None:
                raise NotFound(f"Product {product_id} does not exist")
            if project_tier and product.type != PROJECT_TIER:
                raise Unsupported(f"Product {product_id} is not a project-tier subscription")
            refuse_at_limit(s, product, s.get(LedgerUnit, product.unit_id))

    def namespace(self) -> str:
        return self.settings.account_server_namespace or "built-in-ledger"

    def registration(self) -> dict:
        with transaction(self.engine, readonly=True) as s:
            org = default_organisation(s)
            created = org.created if org else utcnow()
        return {"merchant_id": 1, "name": "Data Manager (built-in ledger)", "registered": iso(created)}

    def ensure_personal_unit(self, s: "Session", username: str) -> dict:
        """The user's personal unit with one project-tier and one dataset-storage product."""
        org = default_organisation(s, create=True)
        unit_id = personal_unit_id(username)
        if s.get(LedgerUnit, unit_id) is None:
            s.add(LedgerUnit(id=unit_id, organisation_id=org.id, name=f"{username} (personal)",
                             owner=username, personal=True, created=utcnow()))
            s.flush()
            s.add(LedgerUnitMember(unit_id=unit_id, username=username))
        products = {}
        for kind, ptype, flavour in (("project_tier", PROJECT_TIER, "BRONZE"),
                                     ("dataset_storage", DATASET_STORAGE, None)):
            pid = _stable_id("product", kind, username)
            if s.get(LedgerProduct, pid) is None:
                s.add(LedgerProduct(id=pid, unit_id=unit_id, type=ptype, flavour=flavour,
                                    name=f"{username} {kind.replace('_', ' ')}", created=utcnow()))
            products[kind] = pid
        return {
            "unit_id": unit_id,
            "organisation_id": org.id,
            "project_tier_product_id": products["project_tier"],
            "dataset_storage_product_id": products["dataset_storage"],
        }
