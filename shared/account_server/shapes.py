"""The ledger's objects as the Account Server's JSON (as-api.md §6): organisations, units,
products with their coins, and charges."""

from __future__ import annotations

import ast
import datetime as dt
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shared.account_server import coins as ledger_coins
from shared.account_server.base import PROJECT_TIER
from shared.account_server.ledger import in_organisation, in_unit, organisation_members, unit_members
from shared.db.base import iso
from shared.db.models import LedgerOrganisation, LedgerProduct, LedgerUnit, Project

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal

MERCHANT_ID = 1
MERCHANT_KIND = "DATA_MANAGER"
MERCHANT_NAME = "Data Manager (built-in ledger)"


def humanised(n: int) -> str:
    """Bytes for people: ``0 B``, ``512 B``, ``1.5 GiB``."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def additional_data(text: str | None) -> dict | None:
    """A merchant's stringified map as an object: JSON, or a Python dict's ``str()``; other text
    is kept under ``text``."""
    if not text:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return json.loads(json.dumps(value, default=str))
    return {"text": text}


# --- organisations and units -------------------------------------------------------------


def organisation(s: "Session", org: LedgerOrganisation, caller: "Principal", *, users: bool = True) -> dict:
    """OrganisationAllDetail (OrganisationDetail without ``users``)."""
    members = organisation_members(s, org.id)
    body: dict[str, Any] = {
        "caller_is_member": caller.username == org.owner or caller.username in members,
        "id": org.id, "name": org.name, "private": False, "created": iso(org.created),
        "default_product_privacy": org.default_product_privacy,
    }
    if org.owner:
        body["owner_id"] = org.owner
    if users:
        body["users"] = [{"id": name} for name in members]
    return body


def unit(s: "Session", unit_: LedgerUnit, caller: "Principal", *, users: bool = True) -> dict:
    """UnitAllDetail (UnitDetail without ``users``): the owner is a member, not listed."""
    members = unit_members(s, unit_.id)
    body: dict[str, Any] = {
        "caller_is_member": caller.username == unit_.owner or caller.username in members,
        "id": unit_.id, "name": unit_.name, "owner_id": unit_.owner, "private": unit_.personal,
        "created": iso(unit_.created), "billing_day": unit_.billing_day,
        "default_product_privacy": unit_.default_product_privacy,
    }
    if users:
        body["users"] = [{"id": name} for name in members if name != unit_.owner]
    return body


def organisation_units(s: "Session", org: LedgerOrganisation, units: list[LedgerUnit], caller: "Principal") -> dict:
    """OrganisationUnitsGetResponse."""
    return {"count": len(units), "organisation": organisation(s, org, caller),
            "units": [unit(s, u, caller) for u in units]}


def sees_unit(s: "Session", caller: "Principal", unit_: LedgerUnit, org: LedgerOrganisation) -> bool:
    return caller.is_admin or in_unit(s, caller.username, unit_) or in_organisation(s, caller.username, org)


# --- products ------------------------------------------------------------------------------


def claim(s: "Session", product: LedgerProduct) -> dict | None:
    """The Project that claims a project-tier product (the oldest, should several share it)."""
    if product.type != PROJECT_TIER:
        return None
    project = s.execute(select(Project.id, Project.name).where(Project.product_id == product.id,
                                                               Project.deleted.is_(None))
                        .order_by(Project.created, Project.id).limit(1)).first()
    return {"id": project.id, "name": project.name} if project else None


def product_detail(product: LedgerProduct) -> dict:
    body = {"id": product.id, "created": iso(product.created), "type": product.type, "name": product.name}
    if product.flavour:
        body["flavour"] = product.flavour
    return body


def product(s: "Session", product_: LedgerProduct, caller: "Principal", today: dt.date) -> dict:
    """ProductDmProjectTier or ProductDmStorage, with the coins of the current billing period."""
    unit_ = s.get(LedgerUnit, product_.unit_id)
    org = s.get(LedgerOrganisation, unit_.organisation_id)
    coins = ledger_coins.product_coins(s, product_, unit_, today)
    peak = coins.usage.days.get(today, 0)
    n = ledger_coins.number
    body: dict[str, Any] = {
        "product": product_detail(product_),
        "organisation": organisation(s, org, caller),
        "unit": unit(s, unit_, caller),
        "storage": {
            "size": {"peak": humanised(peak), "current": humanised(coins.usage.today_current),
                     "unit_size": humanised(ledger_coins.STORAGE_UNIT_BYTES),
                     "units_used": ledger_coins.storage_units(peak)},
            "coins": {"used": n(coins.storage_today), "unit_cost": n(ledger_coins.STORAGE_UNIT_COST)},
        },
        "coins": {
            "allowance": coins.allowance, "limit": coins.limit, "used": n(coins.used), "at_limit": coins.at_limit,
            "current_burn_rate": n(coins.burn_rate), "billing_prediction": n(coins.prediction),
            "billing_prediction_storage_contribution": n(coins.storage_prediction),
            "billing_day": unit_.billing_day, "allowance_multiplier": 1, "overspend_multiplier": 1,
            "remaining_days": coins.remaining_days,
        },
        "claimable": product_.type == PROJECT_TIER,
    }
    if product_.type == PROJECT_TIER:
        body["instance"] = {"coins": {"used": n(coins.usage.processing_coins)}}
        claimed = claim(s, product_)
        if claimed:
            body["claim"] = claimed
    return body


def products(s: "Session", found: list[LedgerProduct], caller: "Principal", today: dt.date) -> dict:
    """ProductsGetResponse."""
    return {"count": len(found), "products": [product(s, p, caller, today) for p in found]}


def product_types() -> dict:
    """ProductsGetTypesResponse: every type and flavour the ledger sells."""
    types = [{"type": PROJECT_TIER, "flavour": flavour, "service_kind": MERCHANT_KIND}
             for flavour in ledger_coins.FLAVOURS]
    types.append({"type": "DATA_MANAGER_STORAGE_SUBSCRIPTION", "service_kind": MERCHANT_KIND})
    return {"count": len(types), "product_types": types}


def default_storage_cost() -> dict:
    return {"default_storage_cost": {
        "cost": ledger_coins.money(ledger_coins.STORAGE_UNIT_COST),
        "units": humanised(ledger_coins.STORAGE_UNIT_BYTES),
        "description": f"Coins per {humanised(ledger_coins.STORAGE_UNIT_BYTES)} (or part thereof) of each "
                       "day's peak storage",
    }}


def merchant(created: dt.datetime, api_hostname: str) -> dict:
    """MerchantDetail: the one merchant, this Data Manager."""
    return {"id": MERCHANT_ID, "created": iso(created), "kind": MERCHANT_KIND, "name": MERCHANT_NAME,
            "api_hostname": api_hostname}


# --- charges ---------------------------------------------------------------------------------


def _summary(processing: Decimal, storage: Decimal) -> list[dict]:
    return [{"type": "PROCESSING", "coins": ledger_coins.money(processing)},
            {"type": "STORAGE", "coins": ledger_coins.money(storage)}]


def _processing_charges(group: ledger_coins.ProcessingGroup, api_hostname: str) -> dict:
    first, last = group.charges[0], group.charges[-1]
    eoc = next((c for c in group.charges if c.eoc), None)
    charge: dict[str, Any] = {"id": first.id, "sqn": last.sqn, "name": last.name, "username": last.username,
                              "timestamp": last.timestamp, "coins": ledger_coins.money(group.coins)}
    data = additional_data(last.additional_data)
    if data is not None:
        charge["additional_data"] = data
    body: dict[str, Any] = {"merchant_name": last.merchant_name or MERCHANT_NAME,
                            "merchant_kind": last.merchant_kind or MERCHANT_KIND,
                            "merchant_api_hostname": api_hostname, "final": eoc is not None, "charge": charge}
    if eoc is not None:
        body["closed"] = iso(eoc.received)
        body["post_final_charges"] = any(c.sqn > eoc.sqn for c in group.charges)
    return body


def _storage_items(usage: ledger_coins.Usage, today: dt.date) -> list[dict]:
    items = []
    for number, (day, peak) in enumerate(usage.days.items(), start=1):
        item: dict[str, Any] = {
            "item_number": number, "date": day.isoformat(), "coins": ledger_coins.money(usage.day_coins(day)),
            "current_burn_rate": ledger_coins.money(usage.day_coins(day)),
            "additional_data": {"peak": humanised(peak), "peak_bytes": peak,
                                "units": ledger_coins.storage_units(peak)},
        }
        if day < today:
            item["closed"] = iso(dt.datetime.combine(day + dt.timedelta(1), dt.time.min, tzinfo=dt.timezone.utc))
        items.append(item)
    return items


def product_charges(s: "Session", product_: LedgerProduct, unit_: LedgerUnit, usage: ledger_coins.Usage,
                    today: dt.date, api_hostname: str) -> dict:
    """ProductChargesGetResponse."""
    processing = [_processing_charges(g, api_hostname) for g in usage.processing]
    items = _storage_items(usage, today)
    body: dict[str, Any] = {
        "product_id": product_.id, "product_type": product_.type, "billing_day": unit_.billing_day,
        "claimable": product_.type == PROJECT_TIER, "count": len(processing) + len(items),
        "from": usage.start.isoformat(), "until": usage.until.isoformat(), "coins": ledger_coins.money(usage.coins),
        "processing_charges": processing, "storage_charges": {"num_items": len(items), "items": items},
    }
    claimed = claim(s, product_)
    if claimed:
        body["claim"] = claimed
    return body


def unit_charges(s: "Session", unit_: LedgerUnit, caller: "Principal", start: dt.date, until: dt.date,
                 per_product: list[tuple[LedgerProduct, ledger_coins.Usage]]) -> dict:
    """UnitChargesGetResponse."""
    processing = sum((u.processing_coins for _, u in per_product), Decimal(0))
    storage = sum((u.storage_coins for _, u in per_product), Decimal(0))
    body = unit(s, unit_, caller, users=False)
    return {
        "unit_id": unit_.id, "name": unit_.name, "owner_id": unit_.owner, "caller_is_member": body["caller_is_member"],
        "private": unit_.personal, "created": iso(unit_.created), "billing_day": unit_.billing_day,
        "from": start.isoformat(), "until": until.isoformat(), "coins": ledger_coins.money(processing + storage),
        "count": len(per_product), "summary": {"charges": _summary(processing, storage)},
        "products": [{"product_id": p.id, "product_type": p.type,
                      "charges": _summary(u.processing_coins, u.storage_coins)} for p, u in per_product],
    }


def unit_charges_of(s: "Session", unit_: LedgerUnit, caller: "Principal", window: ledger_coins.Window,
                    today: dt.date) -> dict:
    """UnitChargesGetResponse for ``window`` in the unit's billing periods."""
    start, until = window.for_unit(unit_.billing_day, today)
    per_product = [(p, ledger_coins.usage(s, ledger_coins.payers_of(s, p), start, until, today))
                   for p in products_of(s, [unit_.id])]
    return unit_charges(s, unit_, caller, start, until, per_product)


def totals(charges: dict) -> tuple[Decimal, Decimal]:
    """(processing, storage) coins of a ChargeSummary list, or of a unit's ``summary``."""
    summary = charges["summary"]["charges"] if isinstance(charges["summary"], dict) else charges["summary"]
    found = {entry["type"]: Decimal(entry["coins"]) for entry in summary}
    return found.get("PROCESSING", Decimal(0)), found.get("STORAGE", Decimal(0))


def organisation_charges(org: LedgerOrganisation, units: list[dict]) -> dict:
    """OrganisationChargesGetResponse, from its units' UnitChargesGetResponses."""
    processing = sum((totals(u)[0] for u in units), Decimal(0))
    storage = sum((totals(u)[1] for u in units), Decimal(0))
    return {
        "organisation_id": org.id, "name": org.name, "coins": ledger_coins.money(processing + storage),
        "summary": _summary(processing, storage),
        "unit_charges": [{"unit_id": u["unit_id"], "name": u["name"], "billing_day": u["billing_day"],
                          "from": u["from"], "until": u["until"], "summary": u["summary"]["charges"]} for u in units],
    }


def all_charges(orgs: list[dict]) -> dict:
    """ChargesGetResponse, from every organisation's OrganisationChargesGetResponse."""
    processing = sum((totals(o)[0] for o in orgs), Decimal(0))
    storage = sum((totals(o)[1] for o in orgs), Decimal(0))
    return {"coins": ledger_coins.money(processing + storage), "count": len(orgs),
            "summary": _summary(processing, storage),
            "organisation_charges": [{"organisation_id": o["organisation_id"], "name": o["name"],
                                      "summary": o["summary"]} for o in orgs]}


def products_of(s: "Session", unit_ids: list[str]) -> list[LedgerProduct]:
    if not unit_ids:
        return []
    return list(s.scalars(select(LedgerProduct).where(LedgerProduct.unit_id.in_(unit_ids))
                          .order_by(LedgerProduct.created, LedgerProduct.id)))
