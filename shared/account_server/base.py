"""The Account Server seen from the Data Manager: may this user spend on this product?"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.auth.verify import Principal

PROJECT_TIER = "DATA_MANAGER_PROJECT_TIER_SUBSCRIPTION"
DATASET_STORAGE = "DATA_MANAGER_STORAGE_SUBSCRIPTION"

# The Python client's well-known test identifiers: the DM accepts this product from
# admins without any Account Server (python-client.md §8).
TEST_PRODUCT_ID = "product-11111111-1111-1111-1111-111111111111"
TEST_UNIT_ID = "unit-11111111-1111-1111-1111-111111111111"
TEST_ORG_ID = "org-11111111-1111-1111-1111-111111111111"


@dataclass(frozen=True)
class ProductGrant:
    """What the Account Server says about a product a Project may claim."""

    product_id: str
    flavour: str | None
    unit_id: str
    organisation_id: str | None


class AccountServer(Protocol):
    def authorise_project_tier(self, principal: "Principal", product_id: str) -> ProductGrant:
        """Check ``principal`` may claim the project-tier ``product_id`` for a new Project.

        Raises NotFound (no such product), Forbidden (not a member of its unit),
        Unsupported (not a project-tier product) or Conflict (already claimed).
        """

    def authorise_dataset_storage(self, principal: "Principal", unit_id: str) -> int:
        """Check ``principal`` may store Datasets paid for by ``unit_id``; returns an authorisation code.

        Raises NotFound (no such unit) or Forbidden (not a member, or the unit holds
        no dataset-storage subscription).
        """

    def authorise_processing(self, principal: "Principal", product_id: str) -> int:
        """Check the Project product ``product_id`` may pay for a Job or Application; returns an authorisation code.

        Raises NotFound (no such product), Unsupported (not a project-tier product) or
        Forbidden (the product is at its coin limit).
        """

    def check_not_at_limit(self, principal: "Principal", product_id: str) -> None:
        """Refuse anything more that ``product_id`` would pay for once it is at its coin limit
        (as-api.md §2.1: adding files, running jobs); call it before a file or dataset upload.

        Raises NotFound (no such product) or Forbidden (at its limit).
        """

    def is_member(self, principal: "Principal", *, unit_id: str | None = None,
                  organisation_id: str | None = None) -> bool:
        """Whether ``principal`` belongs to the unit ``unit_id`` (or to its organisation), or to the
        organisation ``organisation_id``; False for one the Account Server does not know.

        Unlike the authorisations above this grants nothing to administrators as such.
        """

    def namespace(self) -> str:
        """What identifies the Account Server in use ("" for none)."""

    def registration(self) -> dict:
        """This Data Manager's merchant registration: merchant_id, name, registered."""


PRODUCT_ID = re.compile(r"product-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_product_id(product_id: str) -> str:
    """An Account Server product id (``product-<uuid>``), or BadRequest."""
    from shared.errors import BadRequest

    if not PRODUCT_ID.fullmatch(product_id):
        raise BadRequest(f"'{product_id[:80]}' is not a product id (product-<uuid>)")
    return product_id


UNIT_ID = re.compile(r"unit-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_unit_id(unit_id: str) -> str:
    """An Account Server unit id (``unit-<uuid>``), or BadRequest."""
    from shared.errors import BadRequest

    if not UNIT_ID.fullmatch(unit_id):
        raise BadRequest(f"'{unit_id[:80]}' is not a unit id (unit-<uuid>)")
    return unit_id


ORG_ID = re.compile(r"org-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_org_id(org_id: str) -> str:
    """An Account Server organisation id (``org-<uuid>``), or BadRequest."""
    from shared.errors import BadRequest

    if not ORG_ID.fullmatch(org_id):
        raise BadRequest(f"'{org_id[:80]}' is not an organisation id (org-<uuid>)")
    return org_id
