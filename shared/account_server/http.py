"""The real Account Server over HTTP, asked with the caller's own token (as-api.md §3.1)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

from shared.account_server.base import DATASET_STORAGE, PROJECT_TIER, ProductGrant
from shared.errors import Conflict, DmError, Forbidden, NotFound, Unsupported

if TYPE_CHECKING:
    from shared.auth.verify import Principal
    from shared.config import Settings

TIMEOUT_S = 3


class AccountServerUnavailable(DmError):
    status = 503


class HttpAccountServer:
    def __init__(self, settings: "Settings"):
        self.settings = settings
        self.base = settings.account_server_url

    def _get(self, path: str, token: str) -> dict:
        req = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"The Account Server does not know {path.rsplit('/', 1)[-1]}") from None
            if exc.code in (401, 403):
                raise Forbidden("The Account Server refused access") from None
            raise AccountServerUnavailable(f"The Account Server answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise AccountServerUnavailable(f"The Account Server cannot be reached: {exc}") from None

    def authorise_project_tier(self, principal: "Principal", product_id: str) -> ProductGrant:
        body = self._get(f"/product/{product_id}", principal.token).get("product") or {}
        product = body.get("product") or {}
        unit = body.get("unit") or {}
        if product.get("type") != PROJECT_TIER:
            raise Unsupported(f"Product {product_id} is not a project-tier subscription")
        if not body.get("claimable", False) or body.get("claim"):
            raise Conflict(f"Product {product_id} is already claimed by a Project")
        members = {u.get("username") if isinstance(u, dict) else u for u in unit.get("users", [])}
        if not (unit.get("caller_is_member") or principal.username in members or principal.is_admin):
            raise Forbidden(f"You are not a member of the unit of product {product_id}")
        org = body.get("organisation") or {}
        return ProductGrant(product_id, product.get("flavour"), unit.get("id", ""), org.get("id"))

    def authorise_dataset_storage(self, principal: "Principal", unit_id: str) -> int:
        unit = self._get(f"/unit/{unit_id}", principal.token)
        if not (unit.get("caller_is_member") or principal.is_admin):
            raise Forbidden(f"You are not a member of unit {unit_id}")
        products = self._get(f"/product/unit/{unit_id}", principal.token).get("products") or []
        if not any((p.get("product") or {}).get("type") == DATASET_STORAGE for p in products):
            raise Forbidden(f"Unit {unit_id} has no dataset-storage subscription")
        return 0  # the real grant travels on the merchant channel, which this client does not speak

    def authorise_processing(self, principal: "Principal", product_id: str) -> int:
        body = self._get(f"/product/{product_id}", principal.token).get("product") or {}
        product = body.get("product") or {}
        if product.get("type") != PROJECT_TIER:
            raise Unsupported(f"Product {product_id} is not a project-tier subscription")
        coins = body.get("coins") or product.get("coins") or {}
        if coins.get("at_limit"):
            raise Forbidden(f"Product {product_id} has reached its coin limit: nothing more can run in its Projects")
        return 0  # the real grant travels on the merchant channel, which this client does not speak

    def check_not_at_limit(self, principal: "Principal", product_id: str) -> None:
        body = self._get(f"/product/{product_id}", principal.token).get("product") or {}
        if (body.get("coins") or {}).get("at_limit"):
            raise Forbidden(f"Product {product_id} has reached its coin limit: it pays for nothing more")

    def is_member(self, principal: "Principal", *, unit_id: str | None = None,
                  organisation_id: str | None = None) -> bool:
        try:
            if unit_id:
                unit = self._get(f"/unit/{unit_id}", principal.token)
                if unit.get("caller_is_member"):
                    return True
                organisation_id = unit.get("organisation_id") or (unit.get("organisation") or {}).get("id")
            if organisation_id:
                org = self._get(f"/organisation/{organisation_id}", principal.token)
                return bool(org.get("caller_is_member"))
        except (NotFound, Forbidden):  # unknown to the Account Server, or not the caller's to see
            return False
        return False

    def namespace(self) -> str:
        # the configured name (the AS's Kubernetes namespace), else where it is reached: never "" (that means none)
        return self.settings.account_server_namespace or urllib.parse.urlsplit(self.base).netloc

    def registration(self) -> dict:
        return {"merchant_id": 1, "name": "Data Manager", "registered": ""}
