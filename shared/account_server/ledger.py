"""The built-in ledger: the local stack's Account Server, kept in the Data Manager's database.

Generous by design: a user's project-tier product may back any number of Projects,
so a developer can create Projects without first buying a product for each.
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
from shared.db.models import LedgerOrganisation, LedgerProduct, LedgerUnit, LedgerUnitMember
from shared.db.session import transaction
from shared.errors import Forbidden, NotFound, Unsupported

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.config import Settings

DEFAULT_ORGANISATION = "Default Organisation"
_NAMESPACE = uuid.UUID("6f1c1e7e-2f0a-4a53-9a4e-7d3c3b1b9d11")


def _authorisation_code() -> int:
    import secrets

    return 1 + secrets.randbelow(2_147_483_647)  # as-api.md §4: 1 … 2,147,483,647


def _stable_id(prefix: str, *parts: str) -> str:
    # The same user gets the same unit and products on every fresh install.
    return f"{prefix}-{uuid.uuid5(_NAMESPACE, '/'.join(parts))}"


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
            member = s.get(LedgerUnitMember, (product.unit_id, principal.username))
            if member is None and not principal.is_admin:
                raise Forbidden(f"You are not a member of the unit of product {product_id}")
            if product.type != PROJECT_TIER:
                raise Unsupported(f"Product {product_id} is not a project-tier subscription")
            return ProductGrant(product.id, product.flavour, unit.id, unit.organisation_id)

    def authorise_dataset_storage(self, principal: "Principal", unit_id: str) -> int:
        with transaction(self.engine, readonly=True) as s:
            if s.get(LedgerUnit, unit_id) is None:
                raise NotFound(f"Unit {unit_id} does not exist")
            if s.get(LedgerUnitMember, (unit_id, principal.username)) is None:
                raise Forbidden(f"You are not a member of unit {unit_id}")
            product = s.scalar(select(LedgerProduct).where(LedgerProduct.unit_id == unit_id,
                                                           LedgerProduct.type == DATASET_STORAGE))
            if product is None:
                raise Forbidden(f"Unit {unit_id} has no dataset-storage subscription")
        return _authorisation_code()

    def authorise_processing(self, principal: "Principal", product_id: str) -> int:
        # The built-in ledger keeps no coin limits: any project-tier product may pay.
        if product_id != TEST_PRODUCT_ID:
            with transaction(self.engine, readonly=True) as s:
                product = s.get(LedgerProduct, product_id)
                if product is None:
                    raise NotFound(f"Product {product_id} does not exist")
                if product.type != PROJECT_TIER:
                    raise Unsupported(f"Product {product_id} is not a project-tier subscription")
        return _authorisation_code()

    def namespace(self) -> str:
        return self.settings.account_server_namespace or "built-in-ledger"

    def registration(self) -> dict:
        with transaction(self.engine) as s:
            org = s.scalar(select(LedgerOrganisation).where(LedgerOrganisation.name == DEFAULT_ORGANISATION))
            created = org.created if org else utcnow()
        return {"merchant_id": 1, "name": "Data Manager (built-in ledger)", "registered": iso(created)}

    def ensure_personal_unit(self, s: "Session", username: str) -> dict:
        """The user's personal unit with one project-tier and one dataset-storage product."""
        org = s.scalar(select(LedgerOrganisation).where(LedgerOrganisation.name == DEFAULT_ORGANISATION))
        if org is None:
            org = LedgerOrganisation(id=_stable_id("org", "default"), name=DEFAULT_ORGANISATION,
                                     created=utcnow())
            s.add(org)
            s.flush()
        unit_id = _stable_id("unit", "personal", username)
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
