"""The built-in ledger as the Account Server: its REST API driven by the real Python client
(``squonk2.as_api.AsApi``) over real HTTP and who may call what; its charge receiver fed real
binary-mode CloudEvents with protobuf data; and the coin limits the Data Manager obeys.
Each test runs on SQLite and on PostgreSQL (``db_url``); fixtures in ``tests/ledger_server.py``."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.conftest import USERS
from tests.ledger_server import (  # noqa: F401 - fixtures
    GIB,
    PROJECT_TIER,
    STORAGE,
    add_project,
    as_api,
    ledger,
    principal,
    processing,
    storage,
)


# --- state, the caller, merchants --------------------------------------------------------------


def test_the_version_needs_no_token(ledger, as_api):
    rv = as_api.get_version()
    assert rv.success and rv.msg == {"version": "4.4.0"}
    assert as_api.ping().success
    assert ledger.call("GET", "/event-stream/version").status_code == 404  # not installed, as the AS says


def test_the_callers_account_and_admin_privilege(ledger, as_api, token_for):
    alice = as_api.get_account(token_for("alice"))
    assert alice.success and alice.msg["user"] == {"id": "alice"} and alice.msg["caller_has_admin_privilege"] is False
    assert all(r.startswith("account-server-") for r in alice.msg["account_server_roles"])  # the token's
    admin = as_api.get_account(token_for("admin")).msg
    assert admin["caller_has_admin_privilege"] is True and "data-manager-admin" in admin["account_server_roles"]


def test_without_a_valid_token_the_answer_is_401_without_a_body(ledger):
    for token in (None, "not-a-jwt"):
        resp = ledger.call("GET", "/user/account", token)
        assert resp.status_code == 401 and resp.content == b""
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_one_merchant_is_this_data_manager(ledger, as_api, token_for):
    merchants = as_api.get_merchants(token_for("bob")).msg
    assert merchants["count"] == 1
    [merchant] = merchants["merchants"]
    assert merchant["id"] == 1 and merchant["kind"] == "DATA_MANAGER" and merchant["api_hostname"] == "127.0.0.1"
    assert as_api.get_merchant(token_for("bob"), 1).msg == merchant
    assert as_api.get_merchant(token_for("bob"), 2).http_status_code == 404


def test_unknown_paths_and_methods(ledger, token_for):
    assert ledger.call("GET", "/nothing", token_for("alice")).json() == {"error": "Not found"}
    assert ledger.call("POST", "/version").status_code == 405
    assert ledger.call("GET", "/asset", token_for("alice")).status_code == 404  # assets are not kept


# --- products ----------------------------------------------------------------------------------


def test_the_personal_products_as_the_client_reads_them(ledger, as_api, token_for):
    alice = token_for("alice")
    rv = as_api.get_product(alice, product_id=ledger.product("alice"))
    assert rv.success
    body = rv.msg["product"]
    assert body["product"]["type"] == PROJECT_TIER and body["product"]["flavour"] == "BRONZE"
    assert body["unit"]["id"] == ledger.unit("alice") and body["unit"]["caller_is_member"] is True
    assert body["unit"]["owner_id"] == "alice" and body["unit"]["users"] == []  # the owner is not listed
    assert body["unit"]["private"] is True and 1 <= body["unit"]["billing_day"] <= 28
    assert body["organisation"]["name"] == "Default" and "owner_id" not in body["organisation"]
    assert body["claimable"] is True and "claim" not in body
    assert body["coins"]["allowance"] == 1000 and body["coins"]["limit"] == 2000
    assert body["coins"]["used"] == 0 and body["coins"]["at_limit"] is False
    assert body["instance"] == {"coins": {"used": 0}}
    assert body["storage"]["size"]["unit_size"] == "1.0 GiB" and body["storage"]["size"]["units_used"] == 0
    storage_product = as_api.get_product(alice, product_id=ledger.product("alice", "dataset_storage")).msg["product"]
    assert storage_product["claimable"] is False and "instance" not in storage_product
    assert {p["product"]["id"] for p in as_api.get_available_products(alice).msg["products"]} == {
        ledger.product("alice"), ledger.product("alice", "dataset_storage")}
    unit_products = as_api.get_products_for_unit(alice, unit_id=ledger.unit("alice")).msg
    assert unit_products["count"] == 2
    everything = as_api.get_available_products(token_for("admin")).msg
    assert everything["count"] == 2 * len(USERS)


def test_a_product_is_only_for_members_of_its_unit(ledger, as_api, token_for):
    bob = token_for("bob")
    assert as_api.get_product(bob, product_id=ledger.product("alice")).http_status_code == 403
    assert as_api.get_products_for_unit(bob, unit_id=ledger.unit("alice")).http_status_code == 403
    missing = f"product-{uuid.uuid4()}"
    resp = ledger.call("GET", f"/product/{missing}", bob)
    assert resp.status_code == 404 and "does not exist" in resp.json()["error"]
    assert ledger.call("GET", "/product/product-nonsense", bob).status_code == 400
    assert as_api.get_product(token_for("admin"), product_id=ledger.product("alice")).success


def test_products_are_created_patched_and_deleted_in_a_unit(ledger, as_api, token_for):
    alice, unit = token_for("alice"), ledger.unit("alice")
    tier = as_api.create_product(alice, product_name="Gold", unit_id=unit, product_type=PROJECT_TIER,
                                 flavour="GOLD")
    assert tier.success and tier.http_status_code == 201 and tier.msg["id"].startswith("product-")
    made = as_api.get_product(alice, product_id=tier.msg["id"]).msg["product"]
    assert made["product"]["name"] == "Gold" and made["coins"]["limit"] == 50000
    box = as_api.create_product(alice, product_name="Box", unit_id=unit, product_type=STORAGE, allowance=500)
    assert box.success
    assert as_api.get_product(alice, product_id=box.msg["id"]).msg["product"]["coins"]["limit"] == 500
    for bad in ({"type": PROJECT_TIER, "name": "x"}, {"type": PROJECT_TIER, "name": "x", "flavour": "GOLD",
                                                      "allowance": 5},
                {"type": STORAGE, "name": "x"}, {"type": STORAGE, "name": "x", "allowance": 5, "limit": 4},
                {"type": STORAGE, "name": "x", "allowance": 5, "flavour": "GOLD"}, {"type": "OTHER", "name": "x"},
                {"type": STORAGE, "name": "", "allowance": 5}, {"type": STORAGE, "name": "x" * 81, "allowance": 5}):
        resp = ledger.call("POST", f"/product/unit/{unit}", alice, json=bad)
        assert resp.status_code == 400 and resp.json()["error"], bad
    assert ledger.call("POST", f"/product/unit/{unit}", alice, data=b"[1]").status_code == 400
    assert as_api.create_product(token_for("bob"), product_name="Mine", unit_id=unit, product_type=PROJECT_TIER,
                                 flavour="GOLD").http_status_code == 403
    # raise, never lower
    assert as_api.alter_product(alice, product_id=box.msg["id"], product_name="Bigger box", allowance=600,
                                limit=900).success
    coins = as_api.get_product(alice, product_id=box.msg["id"]).msg["product"]["coins"]
    assert (coins["allowance"], coins["limit"]) == (600, 900)
    assert as_api.alter_product(alice, product_id=box.msg["id"], allowance=599).http_status_code == 400
    assert as_api.alter_product(alice, product_id=box.msg["id"], limit=899).http_status_code == 400
    assert as_api.alter_product(alice, product_id=box.msg["id"], allowance=1000).http_status_code == 400
    assert as_api.alter_product(token_for("bob"), product_id=box.msg["id"], limit=5000).http_status_code == 403
    assert as_api.delete_product(token_for("bob"), product_id=box.msg["id"]).http_status_code == 403
    assert as_api.delete_product(alice, product_id=box.msg["id"]).success
    assert as_api.get_product(alice, product_id=box.msg["id"]).http_status_code == 404


def test_a_claimed_product_shows_its_project_and_cannot_be_deleted(ledger, as_api, token_for):
    alice = token_for("alice")
    product_id = as_api.create_product(alice, product_name="Claimed", unit_id=ledger.unit("alice"),
                                       product_type=PROJECT_TIER, flavour="SILVER").msg["id"]
    project_id = add_project(ledger, product_id)
    body = as_api.get_product(alice, product_id=product_id).msg["product"]
    assert body["claim"] == {"id": project_id, "name": "Claiming project"}
    rv = as_api.delete_product(alice, product_id=product_id)
    assert rv.http_status_code == 403
    assert "claimed" in ledger.call("DELETE", f"/product/{product_id}", alice).json()["error"]


def test_product_types_and_the_storage_price(ledger, as_api, token_for):
    types = as_api.get_product_types(token_for("carol")).msg["product_types"]
    assert {(t["type"], t.get("flavour")) for t in types} == {
        (PROJECT_TIER, "EVALUATION"), (PROJECT_TIER, "BRONZE"), (PROJECT_TIER, "SILVER"), (PROJECT_TIER, "GOLD"),
        (STORAGE, None)}
    cost = as_api.get_product_default_storage_cost(token_for("carol")).msg["default_storage_cost"]
    assert cost["cost"] == "1" and cost["units"] == "1.0 GiB" and cost["description"]


# --- units and organisations ----------------------------------------------------------------------


def test_personal_units(ledger, as_api, token_for):
    dave = token_for("dave")
    assert as_api.get_personal_unit(dave).http_status_code == 404
    made = as_api.create_personal_unit(dave, billing_day=12)
    assert made.http_status_code == 201
    default = as_api.get_default_organisation(dave).msg
    assert made.msg["organisation_id"] == default["id"] and default["name"] == "Default"
    unit = as_api.get_personal_unit(dave).msg
    assert unit["id"] == made.msg["id"] and unit["billing_day"] == 12 and unit["owner_id"] == "dave"
    assert as_api.create_personal_unit(dave, billing_day=3).http_status_code == 409
    for day in (0, 29, "1"):
        assert ledger.call("PUT", "/personal-unit", token_for("erin"), json={"billing_day": day}).status_code == 400
    assert as_api.add_user_to_unit(dave, unit_id=unit["id"], username="erin").http_status_code == 403
    assert as_api.delete_personal_unit(dave).http_status_code == 204
    assert as_api.get_personal_unit(dave).http_status_code == 404
    # a unit that still has products stays
    assert as_api.delete_personal_unit(token_for("alice")).http_status_code == 403


def test_units_are_grouped_by_organisation_for_their_members(ledger, as_api, token_for):
    alice = token_for("alice")
    [group] = as_api.get_available_units(alice).msg["units"]
    assert group["organisation"]["name"] == "Default" and group["organisation"]["caller_is_member"] is False
    assert [u["id"] for u in group["units"]] == [ledger.unit("alice")]
    assert as_api.get_units(alice, unit_name="alice (personal)").msg["units"][0]["count"] == 1
    assert as_api.get_units(alice, unit_name="nobody").msg == {"units": []}
    assert as_api.get_unit(alice, unit_id=ledger.unit("alice")).msg["caller_is_member"] is True
    assert as_api.get_unit(token_for("bob"), unit_id=ledger.unit("alice")).http_status_code == 403
    assert as_api.get_unit(alice, unit_id=f"unit-{uuid.uuid4()}").http_status_code == 404
    org_id = group["organisation"]["id"]
    assert [u["id"] for u in as_api.get_organisation_units(alice, org_id=org_id).msg["units"]] == [ledger.unit("alice")]
    assert len(as_api.get_organisation_units(token_for("admin"), org_id=org_id).msg["units"]) == len(USERS)
    assert as_api.get_organisation(alice, org_id=org_id).success
    assert as_api.get_organisation_units(token_for("dave"), org_id=org_id).http_status_code == 403


def test_an_organisation_its_units_and_members(ledger, as_api, token_for):
    admin, carol, bob = token_for("admin"), token_for("carol"), token_for("bob")
    assert as_api.create_organisation(carol, org_name="Lab", org_owner="carol").http_status_code == 403
    org = as_api.create_organisation(admin, org_name="Lab", org_owner="carol")
    assert org.http_status_code == 201
    org_id = org.msg["id"]
    assert as_api.create_organisation(admin, org_name="Lab", org_owner="bob").http_status_code == 409
    detail = as_api.get_organisation(carol, org_id=org_id).msg
    assert detail["owner_id"] == "carol" and detail["caller_is_member"] is True and detail["users"] == []
    assert as_api.get_organisation(bob, org_id=org_id).http_status_code == 403
    assert [o["id"] for o in as_api.get_organisations(carol, org_name="Lab").msg["organisations"]] == [org_id]
    # units: the organisation's owner and members create them
    assert as_api.create_unit(bob, unit_name="Team", org_id=org_id, billing_day=5).http_status_code == 403
    unit = as_api.create_unit(carol, unit_name="Team", org_id=org_id, billing_day=5)
    assert unit.http_status_code == 201
    unit_id = unit.msg["id"]
    assert as_api.create_unit(carol, unit_name="Team", org_id=org_id, billing_day=5).http_status_code == 409
    assert as_api.add_user_to_organisation(bob, org_id=org_id, username="bob").http_status_code == 403
    assert as_api.add_user_to_organisation(carol, org_id=org_id, username="bob").http_status_code == 201
    assert as_api.get_organisation_users(carol, org_id=org_id).msg["users"] == [{"id": "bob"}]
    assert as_api.get_unit(bob, unit_id=unit_id).msg["caller_is_member"] is False  # through the organisation
    # unit members
    assert as_api.add_user_to_unit(token_for("dave"), unit_id=unit_id, username="dave").http_status_code == 403
    assert as_api.add_user_to_unit(bob, unit_id=unit_id, username="dave").http_status_code == 201
    assert as_api.add_user_to_unit(bob, unit_id=unit_id, username="dave").http_status_code == 201  # again: same
    assert as_api.get_unit_users(carol, unit_id=unit_id).msg["users"] == [{"id": "dave"}]
    assert as_api.get_unit(token_for("dave"), unit_id=unit_id).msg["caller_is_member"] is True
    assert as_api.remove_user_from_unit(carol, unit_id=unit_id, username="carol").http_status_code == 403  # owner
    assert as_api.remove_user_from_unit(carol, unit_id=unit_id, username="dave").http_status_code == 204
    assert as_api.remove_user_from_unit(carol, unit_id=unit_id, username="dave").http_status_code == 404
    assert as_api.remove_user_from_organisation(carol, org_id=org_id, username="bob").http_status_code == 204
    assert as_api.get_unit(bob, unit_id=unit_id).http_status_code == 403
    # privacy follows the organisation's ALWAYS_ rule
    from squonk2.enumerations import DefaultProductPrivacyEnum as Privacy

    assert as_api.alter_organisation(carol, org_id=org_id, default_product_privacy=Privacy.ALWAYS_PRIVATE).success
    assert as_api.alter_unit(carol, unit_id=unit_id, default_product_privacy=Privacy.DEFAULT_PUBLIC
                             ).http_status_code == 400
    assert as_api.alter_unit(carol, unit_id=unit_id, name="Team B", default_product_privacy=Privacy.ALWAYS_PRIVATE
                             ).success
    assert as_api.get_unit(carol, unit_id=unit_id).msg["name"] == "Team B"
    assert as_api.alter_organisation(bob, org_id=org_id, name="Bob's").http_status_code == 403
    # deletion: units without products, organisations without units, organisations by admins only
    product = as_api.create_product(carol, product_name="P", unit_id=unit_id, product_type=PROJECT_TIER,
                                    flavour="EVALUATION").msg["id"]
    assert as_api.delete_organisation(admin, org_id=org_id).http_status_code == 403
    assert as_api.delete_unit(carol, unit_id=unit_id).http_status_code == 403
    assert as_api.delete_product(carol, product_id=product).success
    assert as_api.delete_unit(bob, unit_id=unit_id).http_status_code == 403
    assert as_api.delete_unit(carol, unit_id=unit_id).http_status_code == 204
    assert as_api.delete_organisation(carol, org_id=org_id).http_status_code == 403
    assert as_api.delete_organisation(admin, org_id=org_id).http_status_code == 204
    assert as_api.get_organisation(admin, org_id=org_id).http_status_code == 404


def test_the_default_organisation_has_no_members_and_only_personal_units(ledger, as_api, token_for):
    admin = token_for("admin")
    default = as_api.get_default_organisation(token_for("bob")).msg["id"]
    assert as_api.add_user_to_organisation(admin, org_id=default, username="bob").http_status_code == 403
    assert as_api.create_unit(admin, unit_name="Shared", org_id=default, billing_day=1).http_status_code == 403
    assert as_api.delete_organisation(admin, org_id=default).http_status_code == 403
    assert as_api.get_organisation(admin, org_id="org-bad").http_status_code == 400


# --- charges -------------------------------------------------------------------------------------------


def test_processing_charges_are_kept_once_per_code_and_sequence_number(ledger, as_api, token_for):
    product = ledger.product("alice")
    first = processing(product, sqn=1, coins="10.5")
    assert ledger.send(first, id_="charge-1").status_code == 202
    assert ledger.send(first, id_="charge-1").status_code == 202  # re-delivered: the inbox knows it
    resent = processing(product, sqn=1, coins="10.5", timestamp="2026-12-02T00:00:00Z")
    assert ledger.send(resent, id_="charge-1-again").status_code == 202  # re-sent under another id
    assert ledger.send(processing(product, sqn=2, coins="4.5", eoc=True)).status_code == 202
    body = as_api.get_product(token_for("alice"), product_id=product).msg["product"]
    assert body["coins"]["used"] == 15 and body["instance"]["coins"]["used"] == 15
    charges = as_api.get_product_charges(token_for("alice"), product_id=product).msg
    assert charges["coins"] == "15" and charges["product_type"] == PROJECT_TIER
    [item] = charges["processing_charges"]
    assert item["final"] is True and item["post_final_charges"] is False and item["closed"]
    assert item["merchant_kind"] == "DATA_MANAGER" and item["merchant_name"] == "data-manager"
    assert item["charge"]["sqn"] == 2 and item["charge"]["coins"] == "15" and item["charge"]["username"] == "alice"
    assert item["charge"]["additional_data"] == {"instance_id": "instance-4242", "cost": "4.5", "job_job": "sucos"}
    # a charge after the end of charges is reported as such
    assert ledger.send(processing(product, sqn=3, coins="1")).status_code == 202
    [item] = as_api.get_product_charges(token_for("alice"), product_id=product).msg["processing_charges"]
    assert item["post_final_charges"] is True and item["charge"]["coins"] == "16"


def test_additional_data_is_kept_verbatim(ledger):
    from sqlalchemy import select

    from shared.db.models import LedgerProcessingCharge
    from shared.db.session import transaction

    text = "{'cost': '1.5', 'instance_id': 'instance-x'}"  # a Python dict's str(), as Squonk2 sends it
    assert ledger.send(processing(ledger.product("alice"), auth_code=9, additional_data=text)).status_code == 202
    with transaction(ledger.engine, readonly=True) as s:
        charge = s.scalar(select(LedgerProcessingCharge).where(LedgerProcessingCharge.auth_code == 9))
    assert charge.additional_data == text and charge.eoc is False and charge.sqn == 1


def test_a_charge_resent_with_different_content_is_refused(ledger):
    product = ledger.product("alice")
    assert ledger.send(processing(product, coins="10"), id_="one").status_code == 202
    resp = ledger.send(processing(product, coins="11"), id_="two")
    assert resp.status_code == 422 and "different content" in resp.json()["error"]
    resp = ledger.send(processing(product, coins="12"), id_="one")  # the same event id, other data
    assert resp.status_code == 422


def test_unreadable_charges_are_refused_for_good(ledger):
    from shared.events import wire
    from shared.events.contracts import ProcessingCharge, StorageCharge

    for event_type in (ProcessingCharge.TYPE, StorageCharge.TYPE):
        event = wire.new_event(event_type, "/data-manager/monitor", b"\xff\x00 not protobuf",
                               content_type="application/protobuf")
        headers, body = wire.to_http(ledger.signed(event))
        resp = requests.post(ledger.url + "/event", headers=headers, data=body, timeout=10)
        assert resp.status_code == 422, resp.text
    product = ledger.product("alice")
    assert ledger.send(processing(product, coins="ten")).status_code == 422
    assert ledger.send(processing("", auth_code=0)).status_code == 422  # no auth_code
    for size in ("lots", "1,2,3", "++5", ""):
        assert ledger.send(storage(size, product=product)).status_code == 422, size
    assert ledger.send(storage("5")).status_code == 422  # no payer
    other = wire.new_event("dm.something.else", "/x", b"{}", content_type="application/json")
    headers, body = wire.to_http(other)
    assert requests.post(ledger.url + "/event", headers=headers, data=body, timeout=10).status_code == 400
    assert requests.post(ledger.url + "/event", data=b"hello", timeout=10).status_code == 400


def test_only_charges_signed_with_the_data_manager_s_key_are_taken(ledger):
    import dataclasses

    from sqlalchemy import func, select
    from werkzeug.test import Client

    from shared.account_server.rest import create_account_server_app
    from shared.db.models import LedgerProcessingCharge, LedgerStorageCharge
    from shared.db.session import transaction
    from shared.events import signing, wire

    product = ledger.product("alice")
    unsigned = wire.event_of(processing(product, auth_code=77))
    forged = signing.sign(unsigned, b"a key the Data Manager does not hold")
    for event in (unsigned, forged, wire.event_of(storage("5", product=product))):
        headers, body = wire.to_http(event)
        resp = requests.post(ledger.url + "/event", headers=headers, data=body, timeout=10)
        assert resp.status_code == 401 and "not signed" in resp.json()["error"], resp.text
    # in production a ledger without a key takes nothing at all
    production = create_account_server_app(dataclasses.replace(ledger.settings, event_signing_key="",
                                                               mode="PRODUCTION"))
    headers, body = wire.to_http(unsigned)
    refused = Client(production).post("/event", headers=headers, data=body)
    assert refused.status_code == 401 and "DM_EVENT_SIGNING_KEY" in refused.get_json()["error"]
    with transaction(ledger.engine, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(LedgerProcessingCharge)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerStorageCharge)) == 0
    assert ledger.send(processing(product, auth_code=77)).status_code == 202  # signed: taken


def test_storage_charges_keep_the_days_peak_in_whole_units(ledger, as_api, token_for):
    product = ledger.product("alice")
    for size in (f"{int(1.5 * GIB):,}", f"{GIB // 2:,}", f"+{GIB // 4:,}"):
        assert ledger.send(storage(size, product=product)).status_code == 202
    assert ledger.send(storage(f"{GIB // 2:,}", product=product), id_="same").status_code == 202
    assert ledger.send(storage(f"{GIB // 2:,}", product=product), id_="same").status_code == 202  # nothing
    assert ledger.send(storage("-1", product=product, name="Project B")).status_code == 202  # never below 0
    block = as_api.get_product(token_for("alice"), product_id=product).msg["product"]
    assert block["storage"]["size"] == {"peak": "1.5 GiB", "current": "512.0 MiB", "unit_size": "1.0 GiB",
                                        "units_used": 2}
    assert block["storage"]["coins"] == {"used": 2, "unit_cost": 1}
    assert block["coins"]["used"] == 2 and block["instance"]["coins"]["used"] == 0
    charges = as_api.get_product_charges(token_for("alice"), product_id=product).msg
    [item] = charges["storage_charges"]["items"]
    assert charges["storage_charges"]["num_items"] == 1 and item["coins"] == "2" and "closed" not in item
    assert item["additional_data"]["peak_bytes"] == int(1.5 * GIB)
    # dataset storage is charged to the unit and paid by its dataset-storage subscription
    assert ledger.send(storage(f"{3 * GIB:,}", unit=ledger.unit("alice"), reason=1, name="data")).status_code == 202
    box = as_api.get_product(token_for("alice"), product_id=ledger.product("alice", "dataset_storage")).msg
    assert box["product"]["coins"]["used"] == 3 and box["product"]["storage"]["size"]["units_used"] == 3


def test_unit_organisation_and_global_charges(ledger, as_api, token_for):
    alice, admin = token_for("alice"), token_for("admin")
    assert ledger.send(processing(ledger.product("alice"), coins="7")).status_code == 202
    assert ledger.send(storage(f"{GIB:,}", product=ledger.product("alice"))).status_code == 202
    unit = as_api.get_unit_charges(alice, unit_id=ledger.unit("alice")).msg
    assert unit["unit_id"] == ledger.unit("alice") and unit["coins"] == "8" and unit["caller_is_member"] is True
    assert unit["summary"] == {"charges": [{"type": "PROCESSING", "coins": "7"}, {"type": "STORAGE", "coins": "1"}]}
    assert {p["product_id"] for p in unit["products"]} == {ledger.product("alice"),
                                                           ledger.product("alice", "dataset_storage")}
    assert as_api.get_unit_charges(token_for("bob"), unit_id=ledger.unit("alice")).http_status_code == 403
    default = as_api.get_default_organisation(alice).msg["id"]
    assert as_api.get_organisation_charges(alice, org_id=default).http_status_code == 403
    org = as_api.get_organisation_charges(admin, org_id=default).msg
    assert org["coins"] == "8" and len(org["unit_charges"]) == len(USERS)
    everything = as_api.get_charges(admin).msg
    assert everything["coins"] == "8" and everything["organisation_charges"][0]["organisation_id"] == default
    assert as_api.get_charges(alice).http_status_code == 403
    # a window before today holds nothing; pbp picks earlier periods; nonsense is a 400
    import datetime as dt

    today = dt.datetime.now(dt.timezone.utc).date()
    earlier = as_api.get_product_charges(alice, product_id=ledger.product("alice"), from_=today - dt.timedelta(40),
                                         until=today).msg
    assert earlier["coins"] == "0" and earlier["from"] == (today - dt.timedelta(40)).isoformat()
    assert as_api.get_unit_charges(alice, unit_id=ledger.unit("alice"), pbp=-1).msg["coins"] == "0"
    assert ledger.call("GET", f"/charges/unit/{ledger.unit('alice')}", alice,
                       params={"from": "1 December 2021", "until": "1 January 2022"}).json()["until"] == "2022-01-01"
    for params in ({"pbp": "-24"}, {"pbp": "1"}, {"pbp": "x"}, {"from": "someday"},
                   {"from": "2022-01-02", "until": "2022-01-01"}):
        assert ledger.call("GET", "/charges", admin, params=params).status_code == 400, params


# --- limits --------------------------------------------------------------------------------------------


def test_a_product_at_its_limit_pays_for_nothing_more(ledger, as_api, token_for):
    from shared.errors import Forbidden

    alice = token_for("alice")
    product = as_api.create_product(alice, product_name="Trial", unit_id=ledger.unit("alice"),
                                    product_type=PROJECT_TIER, flavour="EVALUATION").msg["id"]
    server = ledger.server()
    assert server.authorise_processing(principal("alice"), product) > 0
    assert ledger.send(processing(product, auth_code=1, coins="60")).status_code == 202
    assert ledger.send(storage(f"{38 * GIB + 1:,}", product=product)).status_code == 202  # 39 units
    coins = as_api.get_product(alice, product_id=product).msg["product"]["coins"]
    assert coins["used"] == 99 and coins["at_limit"] is False and coins["limit"] == 100  # 60 + 39
    server.check_not_at_limit(principal("alice"), product)
    assert ledger.send(processing(product, auth_code=1, sqn=2, coins="0.5")).status_code == 202
    server.check_not_at_limit(principal("alice"), product)  # 99.5 of 100
    assert ledger.send(processing(product, auth_code=1, sqn=3, coins="0.5", eoc=True)).status_code == 202
    coins = as_api.get_product(alice, product_id=product).msg["product"]["coins"]
    assert coins["used"] == 100 and coins["at_limit"] is True
    with pytest.raises(Forbidden, match="coin limit"):
        server.authorise_processing(principal("alice"), product)
    with pytest.raises(Forbidden, match="coin limit"):
        server.check_not_at_limit(principal("alice"), product)
    # raising the limit lets it pay again
    assert as_api.alter_product(alice, product_id=product, limit=150).success
    assert server.authorise_processing(principal("alice"), product) > 0
    server.check_not_at_limit(principal("alice"), product)


def test_dataset_storage_is_refused_once_the_units_subscription_is_at_its_limit(ledger, as_api, token_for):
    from shared.errors import Forbidden

    server, unit = ledger.server(), ledger.unit("bob")
    assert server.authorise_dataset_storage(principal("bob"), unit) > 0
    box = ledger.product("bob", "dataset_storage")
    assert as_api.get_product(token_for("bob"), product_id=box).msg["product"]["coins"]["limit"] == 1000
    assert ledger.send(storage(f"{1000 * GIB:,}", unit=unit, reason=1, name="huge")).status_code == 202
    with pytest.raises(Forbidden, match="coin limit"):
        server.authorise_dataset_storage(principal("bob"), unit)
    with pytest.raises(Forbidden, match="coin limit"):
        server.check_not_at_limit(principal("bob"), box)
    server.check_not_at_limit(principal("bob"), ledger.product("bob"))  # the project-tier product is fine


# --- who may call what ------------------------------------------------------------------------------------

# (method, path template, body, who is refused and how: user -> status); every endpoint answers 401 without a
# token or with a bad one
ENDPOINTS = [
    ("GET", "/user/account", None, {}),
    ("GET", "/merchant", None, {}),
    ("GET", "/merchant/1", None, {}),
    ("GET", "/product-type", None, {}),
    ("GET", "/product-default-storage-cost", None, {}),
    ("GET", "/product", None, {}),
    ("GET", "/product/{product}", None, {"bob": 403}),
    ("PATCH", "/product/{product}", {"name": "x"}, {"bob": 403}),
    ("DELETE", "/product/{product}", None, {"bob": 403}),
    ("GET", "/product/unit/{unit}", None, {"bob": 403}),
    ("POST", "/product/unit/{unit}", {"name": "x", "type": PROJECT_TIER, "flavour": "GOLD"}, {"bob": 403}),
    ("GET", "/product/organisation/{org}", None, {"dave": 403}),
    ("GET", "/unit", None, {}),
    ("GET", "/unit/{unit}", None, {"bob": 403}),
    ("PATCH", "/unit/{unit}", {"name": "x"}, {"bob": 403}),
    ("DELETE", "/unit/{unit}", None, {"bob": 403}),
    ("GET", "/unit/{unit}/user", None, {"bob": 403}),
    ("PUT", "/unit/{unit}/user/erin", None, {"bob": 403}),
    ("DELETE", "/unit/{unit}/user/erin", None, {"bob": 403}),
    ("GET", "/personal-unit", None, {"dave": 404}),
    ("PUT", "/personal-unit", {"billing_day": 1}, {"alice": 409}),
    ("DELETE", "/personal-unit", None, {"dave": 404}),
    ("PUT", "/unit", {"billing_day": 1}, {"alice": 409}),  # the deprecated personal-unit calls
    ("DELETE", "/unit", None, {"dave": 404}),
    ("GET", "/organisation", None, {}),
    ("POST", "/organisation", {"name": "x", "owner": "bob"}, {"alice": 403}),
    ("GET", "/default/organisation", None, {}),
    ("GET", "/organisation/{org}", None, {"dave": 403}),
    ("PATCH", "/organisation/{org}", {"name": "x"}, {"alice": 403}),
    ("DELETE", "/organisation/{org}", None, {"alice": 403}),
    ("GET", "/organisation/{org}/unit", None, {"dave": 403}),
    ("POST", "/organisation/{org}/unit", {"name": "x", "billing_day": 1}, {"alice": 403}),
    ("GET", "/organisation/{org}/user", None, {"alice": 403}),
    ("PUT", "/organisation/{org}/user/erin", None, {"alice": 403}),
    ("DELETE", "/organisation/{org}/user/erin", None, {"alice": 403}),
    ("GET", "/charges", None, {"alice": 403}),
    ("GET", "/charges/product/{product}", None, {"bob": 403}),
    ("GET", "/charges/unit/{unit}", None, {"bob": 403}),
    ("GET", "/charges/organisation/{org}", None, {"alice": 403}),
    ("GET", "/event-stream", None, {}),
    ("POST", "/event-stream", {"format": "JSON_STRING"}, {}),
]


def test_the_table_names_every_endpoint_that_needs_a_token():
    import re

    from shared.account_server.rest import create_account_server_app
    from shared.config import Settings

    routes = {(r.method, re.sub(r"<[^>]*>", "{}", r.path))
              for r in create_account_server_app(Settings()).routes if r.auth}
    listed = {(method, re.sub(r"\{[^}]*\}|(?<=/user/)erin|(?<=/merchant/)1", "{}", path))
              for method, path, _, _ in ENDPOINTS}
    assert listed == routes


def test_every_endpoint_checks_its_caller(ledger, as_api, token_for):
    org = as_api.get_default_organisation(token_for("admin")).msg["id"]
    names = {"product": ledger.product("alice"), "unit": ledger.unit("alice"), "org": org}
    # /product/organisation is not in the client: its product listing follows the units the caller uses
    alice_org = ledger.call("GET", f"/product/organisation/{org}", token_for("alice")).json()
    assert {p["product"]["id"] for p in alice_org["products"]} == {ledger.product("alice"),
                                                                  ledger.product("alice", "dataset_storage")}
    for method, template, body, refused in ENDPOINTS:
        path = template.format(**names)
        assert ledger.call(method, path, json=body).status_code == 401, (method, path)
        assert ledger.call(method, path, "not-a-jwt", json=body).status_code == 401, (method, path)
        for user, status in refused.items():
            resp = ledger.call(method, path, token_for(user), json=body)
            assert resp.status_code == status, (method, path, user, resp.text)
            assert resp.json()["error"], (method, path)


@pytest.mark.parametrize("method, path", [("GET", "/charges"), ("POST", "/organisation"),
                                          ("DELETE", "/organisation/{org}"), ("GET", "/charges/organisation/{org}")])
def test_admin_only_endpoints_answer_administrators(ledger, as_api, token_for, method, path):
    admin = token_for("admin")
    org = as_api.create_organisation(admin, org_name=f"Org {uuid.uuid4().hex[:6]}", org_owner="carol").msg["id"]
    body = {"name": "Made by admin", "owner": "carol"} if method == "POST" else None
    resp = ledger.call(method, path.format(org=org), admin, json=body)
    assert resp.status_code in (200, 201, 204), resp.text


def test_the_data_managers_own_account_server_client_works_against_it(ledger, token_for):
    """``DM_ACCOUNT_SERVER_URL`` may point at the ledger's API: the DM's HTTP client reads its shapes."""
    from shared.account_server.http import HttpAccountServer
    from shared.auth.verify import Principal
    from shared.config import Settings
    from shared.errors import Forbidden

    client = HttpAccountServer(Settings(account_server_url=ledger.url))
    alice = Principal("alice", frozenset(), False, token_for("alice"))
    grant = client.authorise_project_tier(alice, ledger.product("alice"))
    assert (grant.product_id, grant.flavour, grant.unit_id) == (ledger.product("alice"), "BRONZE", ledger.unit("alice"))
    client.authorise_processing(alice, ledger.product("alice"))
    client.authorise_dataset_storage(alice, ledger.unit("alice"))
    client.check_not_at_limit(alice, ledger.product("alice"))
    bob = Principal("bob", frozenset(), False, token_for("bob"))
    with pytest.raises(Forbidden):
        client.authorise_processing(bob, ledger.product("alice"))
    assert ledger.send(processing(ledger.product("alice"), coins="2000")).status_code == 202
    with pytest.raises(Forbidden, match="coin limit"):
        client.check_not_at_limit(alice, ledger.product("alice"))


def test_the_data_manager_refuses_a_launch_once_the_projects_product_is_at_its_limit(api, alice, admin, ledger):
    """Through the DM API: charges received by the ledger stop the Project's instances."""
    from tests.functional.test_jobs import TEST_MANIFEST, load, spec

    assert load(admin, TEST_MANIFEST).status_code == 200
    pid = alice.create_project("Limited")
    form = {"application_id": "datamanagerjobs.squonk.it", "project_id": pid, "as_name": "Run",
            "specification": spec("fail", code=4)}
    assert alice.post("/instance/dry-run", data=form).status_code < 300  # launchable until then
    assert ledger.send(processing(ledger.product("alice"), coins="2000")).status_code == 202  # BRONZE: 2000
    resp = alice.post("/instance", data=form)
    assert resp.status_code == 403 and "coin limit" in resp.get_json()["error"]
    assert alice.get("/instance").get_json()["count"] == 0


def test_the_data_manager_refuses_a_dataset_once_the_units_subscription_is_at_its_limit(api, alice, ledger):
    from tests.functional.test_datasets import SDF, post_dataset

    assert post_dataset(alice, SDF, "before.sdf", "chemical/x-mdl-sdfile").status_code == 201
    huge = storage(f"{1000 * GIB:,}", unit=ledger.unit("alice"), reason=1, name="huge")
    assert ledger.send(huge).status_code == 202  # 1000 units: the subscription's limit
    resp = post_dataset(alice, SDF, "after.sdf", "chemical/x-mdl-sdfile")
    assert resp.status_code == 403 and "coin limit" in resp.get_json()["error"]
