"""What the Squonk2 web UI (``squonk2-data-manager-ui`` 6.1.0) asks of the Account Server, call by
call, on the built-in ledger's API over real HTTP: the fields it reads, its status codes, who may
make each call (owner or member, stranger, administrator, no token, a bad token), and the journey of
a newcomer from sign-in to a Project on a product bought through the Account Server API.
Each test runs on SQLite and on PostgreSQL; ``ledger`` seeds personal units for alice, bob, carol and
admin, while dave and erin start with nothing, as a user new to the platform does."""

from __future__ import annotations

import uuid

import pytest

from tests.ledger_server import PROJECT_TIER, ledger  # noqa: F401 - fixtures

ISO = r"\d{4}-\d\d-\d\dT"
PRIVACIES = {"ALWAYS_PUBLIC", "ALWAYS_PRIVATE", "DEFAULT_PUBLIC", "DEFAULT_PRIVATE"}
UNIT_FIELDS = {"id", "name", "owner_id", "caller_is_member", "private", "created", "billing_day",
               "default_product_privacy", "users"}
ORG_FIELDS = {"id", "name", "caller_is_member", "private", "created", "default_product_privacy", "users"}


def check_organisation(org: dict) -> None:
    """As UserBootstrapper and SelectOrganisation read it."""
    assert ORG_FIELDS <= set(org), org
    assert all(isinstance(org[k], str) for k in ("id", "name", "created"))
    assert isinstance(org["caller_is_member"], bool) and isinstance(org["private"], bool)
    assert org["default_product_privacy"] in PRIVACIES
    assert all(set(u) == {"id"} for u in org["users"])


def check_unit(unit: dict) -> None:
    """UnitAllDetail, as the Unit selector, Settings and useGetPersonalUnit read it."""
    assert UNIT_FIELDS <= set(unit), unit
    assert unit["id"].startswith("unit-") and isinstance(unit["owner_id"], str)
    assert isinstance(unit["caller_is_member"], bool) and isinstance(unit["private"], bool)
    assert 1 <= unit["billing_day"] <= 28 and unit["default_product_privacy"] in PRIVACIES
    assert all(set(u) == {"id"} for u in unit["users"])


def check_product(body: dict, *, tier: bool = True) -> None:
    """ProductDmProjectTier (or ProductDmStorage), as ProductsView and the project stats read it."""
    assert {"id", "created", "type"} <= set(body["product"])
    check_organisation(body["organisation"])
    check_unit(body["unit"])
    assert set(body["storage"]["size"]) == {"peak", "current", "unit_size", "units_used"}
    assert set(body["storage"]["coins"]) == {"used", "unit_cost"}
    assert set(body["coins"]) == {"allowance", "limit", "used", "at_limit", "current_burn_rate", "billing_prediction",
                                  "billing_prediction_storage_contribution", "billing_day", "allowance_multiplier",
                                  "overspend_multiplier", "remaining_days"}
    assert isinstance(body["coins"]["at_limit"], bool) and isinstance(body["claimable"], bool)
    if tier:
        assert body["product"]["flavour"] in {"EVALUATION", "BRONZE", "SILVER", "GOLD"}
        assert set(body["instance"]) == {"coins"} and "used" in body["instance"]["coins"]


def personal_unit(answer: dict, username: str) -> dict | None:
    """The personal unit as useGetPersonalUnit finds it in ``GET /unit``."""
    for group in answer["units"]:
        if group["organisation"]["name"] == "Default":
            for unit in group["units"]:
                if unit["owner_id"] == username:
                    return unit
    return None


# --- one call at a time, in the order a session makes them ---------------------------------------------


def test_the_version_and_the_missing_event_stream(ledger, token_for):
    for token in (None, "not-a-jwt", token_for("dave")):
        version = ledger.call("GET", "/version", token)
        assert version.status_code == 200 and isinstance(version.json()["version"], str)
        # as an Account Server without its event service: the UI leaves its event stream off
        stream = ledger.call("GET", "/event-stream/version", token)
        assert stream.status_code == 404 and "protocol" not in stream.json()


def test_the_default_organisation_is_there_for_a_newcomer(ledger, token_for):
    default = ledger.call("GET", "/default/organisation", token_for("dave"))
    assert default.status_code == 200
    org = default.json()
    check_organisation(org)
    assert org["name"] == "Default" and "owner_id" not in org and org["caller_is_member"] is False
    assert org["private"] is False and org["users"] == []


def test_the_first_calls_on_an_empty_ledger_make_the_default_organisation_once(settings, token_for):
    """Before any Personal Unit exists, concurrent first calls (the UI makes two) agree on one organisation."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from shared.account_server.rest import create_account_server_app
    from tests.conftest import _Server

    server = _Server(create_account_server_app(settings))
    try:
        def first(_):
            return requests.get(server.url + "/default/organisation", timeout=10,
                                headers={"Authorization": f"Bearer {token_for('dave')}"})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(first, range(6)))
    finally:
        server.stop()
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1 and answers[0].json()["name"] == "Default"


def test_a_newcomer_has_no_personal_unit_until_put_unit_makes_one(ledger, token_for):
    dave = token_for("dave")
    assert ledger.call("GET", "/unit", dave).json() == {"units": []}  # the UI offers its bootstrap form
    made = ledger.call("PUT", "/unit", dave, json={"billing_day": 9})
    assert made.status_code == 201
    default = ledger.call("GET", "/default/organisation", dave).json()
    assert set(made.json()) == {"id", "organisation_id"} and made.json()["organisation_id"] == default["id"]
    units = ledger.call("GET", "/unit", dave).json()
    unit = personal_unit(units, "dave")
    assert unit is not None and unit["id"] == made.json()["id"]
    check_unit(unit)
    assert unit["caller_is_member"] is True and unit["billing_day"] == 9 and unit["users"] == []
    check_organisation(units["units"][0]["organisation"])
    assert ledger.call("PUT", "/unit", dave, json={"billing_day": 9}).status_code == 409  # one each
    assert personal_unit(ledger.call("GET", "/unit", token_for("erin")).json(), "erin") is None
    for bad in ({}, {"billing_day": 0}, {"billing_day": 29}, {"billing_day": "9"}):
        assert ledger.call("PUT", "/unit", token_for("erin"), json=bad).status_code == 400, bad


def test_the_organisations_a_user_may_select(ledger, token_for):
    alice = ledger.call("GET", "/organisation", token_for("alice")).json()
    assert alice["count"] == 1 and [o["name"] for o in alice["organisations"]] == ["Default"]
    for org in alice["organisations"]:
        check_organisation(org)
    assert ledger.call("GET", "/organisation", token_for("dave")).json() == {"count": 0, "organisations": []}
    made = ledger.call("POST", "/organisation", token_for("admin"), json={"name": "Lab", "owner": "carol"}).json()
    everything = ledger.call("GET", "/organisation", token_for("admin")).json()
    assert {o["id"] for o in everything["organisations"]} >= {made["id"], alice["organisations"][0]["id"]}
    carol = ledger.call("GET", "/organisation", token_for("carol")).json()["organisations"]
    lab = next(o for o in carol if o["id"] == made["id"])
    assert lab["owner_id"] == "carol" and lab["caller_is_member"] is True
    # the Default Organisation's name is its own
    clash = ledger.call("POST", "/organisation", token_for("admin"), json={"name": "Default", "owner": "carol"})
    assert clash.status_code == 409 and clash.json()["error"]
    assert ledger.call("PATCH", f"/organisation/{made['id']}", token_for("carol"),
                       json={"name": "Default"}).status_code == 409


def test_the_units_of_an_organisation(ledger, token_for):
    org = ledger.call("GET", "/default/organisation", token_for("alice")).json()["id"]
    answer = ledger.call("GET", f"/organisation/{org}/unit", token_for("alice")).json()
    assert set(answer) == {"count", "organisation", "units"} and answer["count"] == 1
    check_organisation(answer["organisation"])
    [unit] = answer["units"]
    check_unit(unit)
    assert unit["id"] == ledger.unit("alice") and unit["caller_is_member"] is True  # listed in Settings
    assert ledger.call("GET", f"/organisation/{org}/unit", token_for("admin")).json()["count"] == 4


def test_the_tiers_the_create_project_form_lists(ledger, token_for):
    answer = ledger.call("GET", "/product-type", token_for("dave")).json()
    assert answer["count"] == len(answer["product_types"])
    tiers = [t["flavour"] for t in answer["product_types"] if t["type"] == PROJECT_TIER]
    assert tiers == ["EVALUATION", "BRONZE", "SILVER", "GOLD"]
    assert all(t["service_kind"] == "DATA_MANAGER" for t in answer["product_types"])


def test_products_as_the_products_view_and_project_stats_read_them(ledger, token_for):
    alice = token_for("alice")
    listing = ledger.call("GET", "/product", alice).json()
    assert listing["count"] == 2 == len(listing["products"])
    for body in listing["products"]:
        check_product(body, tier=body["product"]["type"] == PROJECT_TIER)
    unit = ledger.call("GET", f"/product/unit/{ledger.unit('alice')}", alice).json()
    assert unit["count"] == 2 and {p["product"]["id"] for p in unit["products"]} == {
        p["product"]["id"] for p in listing["products"]}
    one = ledger.call("GET", f"/product/{ledger.product('alice')}", alice).json()
    assert set(one) == {"product"}
    check_product(one["product"])
    assert ledger.call("GET", "/product-default-storage-cost", alice).json()["default_storage_cost"]["cost"] == "1"


def test_the_default_organisation_keeps_its_id_when_renamed_from_its_old_name(ledger, token_for):
    """A ledger made before the web UI's name was used: its Default Organisation is renamed in place."""
    from sqlalchemy import update

    from shared.account_server.ledger import DEFAULT_ORGANISATION_ID
    from shared.db.models import LedgerOrganisation
    from shared.db.session import transaction

    with transaction(ledger.engine) as s:
        s.execute(update(LedgerOrganisation).where(LedgerOrganisation.id == DEFAULT_ORGANISATION_ID)
                  .values(name="Default Organisation"))
    assert ledger.call("GET", "/default/organisation", token_for("dave")).json()["id"] == DEFAULT_ORGANISATION_ID
    assert ledger.call("PUT", "/unit", token_for("dave"), json={"billing_day": 1}).status_code == 201
    assert personal_unit(ledger.call("GET", "/unit", token_for("dave")).json(), "dave") is not None
    with transaction(ledger.engine, readonly=True) as s:
        assert s.get(LedgerOrganisation, DEFAULT_ORGANISATION_ID).name == "Default"


def test_the_callers_account_server_roles(settings):
    """``GET /user/account`` names the caller's account-server-* roles, which the UI's pages require."""
    from werkzeug.test import Client

    from shared.account_server.rest import create_account_server_app
    from shared.auth.verify import Principal

    class Verifier:
        def verify(self, header):
            return Principal("dave", frozenset({"account-server-user", "data-manager-user", "offline_access"}),
                             False, "token")

    app = create_account_server_app(settings)
    app.__dict__["verifier"] = Verifier()
    answer = Client(app).get("/user/account", headers={"Authorization": "Bearer token"}).get_json()
    assert answer == {"user": {"id": "dave"}, "caller_has_admin_privilege": False,
                      "account_server_roles": ["account-server-user"]}


def test_the_account_servers_own_admin_role_gives_admin_privilege_there(settings):
    """``account-server-admin`` (without the Data Manager's admin role) is an administrator of the
    Account Server: privileged in ``GET /user/account`` and able to see another user's unit."""
    from werkzeug.test import Client

    from shared.account_server.rest import create_account_server_app
    from shared.auth.verify import Principal

    class Verifier:
        def __init__(self, username, roles):
            self.principal = Principal(username, frozenset(roles), False, "token")

        def verify(self, header):
            return self.principal

    app = create_account_server_app(settings)
    client = Client(app)
    app.__dict__["verifier"] = Verifier("erin", {"account-server-user"})
    unit = client.put("/unit", json={"billing_day": 1}, headers={"Authorization": "Bearer token"})
    assert unit.status_code == 201, unit.get_data(as_text=True)
    unit_id = unit.get_json()["id"]
    app.__dict__["verifier"] = Verifier("frank", {"account-server-user"})
    assert client.get(f"/unit/{unit_id}", headers={"Authorization": "Bearer token"}).status_code in (403, 404)
    app.__dict__["verifier"] = Verifier("frank", {"account-server-user", "account-server-admin"})
    account = client.get("/user/account", headers={"Authorization": "Bearer token"}).get_json()
    assert account["caller_has_admin_privilege"] is True
    assert account["account_server_roles"] == ["account-server-admin", "account-server-user"]
    seen = client.get(f"/unit/{unit_id}", headers={"Authorization": "Bearer token"})
    assert seen.status_code == 200 and seen.get_json()["id"] == unit_id


# --- a newcomer's journey, through the Account Server and the Data Manager APIs --------------------------


def test_a_newcomer_buys_a_tier_and_the_data_manager_accepts_it_for_a_project(api, caller, ledger, token_for):
    """Bootstrap: a personal unit (PUT /unit), a tier product in it (POST /product/unit/{unit}),
    then the DM's POST /project with that product id, as CreateProjectForm does."""
    dave = token_for("dave")
    assert ledger.call("GET", "/default/organisation", dave).json()["id"]
    unit = ledger.call("PUT", "/unit", dave, json={"billing_day": 1}).json()["id"]
    bought = ledger.call("POST", f"/product/unit/{unit}", dave,
                         json={"name": "My project", "type": PROJECT_TIER, "flavour": "BRONZE"})
    assert bought.status_code == 201 and set(bought.json()) == {"id"}
    product_id = bought.json()["id"]
    made = caller("dave").post("/project", data={"name": "My project", "tier_product_id": product_id,
                                                  "private": "true"})
    assert made.status_code == 201, made.get_data(as_text=True)
    project_id = made.get_json()["project_id"]
    project = caller("dave").get(f"/project/{project_id}").get_json()
    assert project["product_id"] == product_id and project["unit_id"] == unit and project["private"] is True
    # the product now shows its claim, as useSyncUnitAndOrgFromProduct and ProductsView read it
    body = ledger.call("GET", f"/product/{product_id}", dave).json()["product"]
    check_product(body)
    assert body["claim"] == {"id": project_id, "name": "My project"} and body["claimable"] is True
    assert body["unit"]["id"] == unit and body["organisation"]["name"] == "Default"
    assert [p["product"]["id"] for p in ledger.call("GET", "/product", dave).json()["products"]] == [product_id]
    # an EVALUATION tier makes public Projects only; a stranger cannot use dave's product
    trial = ledger.call("POST", f"/product/unit/{unit}", dave,
                        json={"name": "Trial", "type": PROJECT_TIER, "flavour": "EVALUATION"}).json()["id"]
    assert caller("dave").post("/project", data={"name": "Trial", "tier_product_id": trial,
                                                 "private": "true"}).status_code == 400
    assert caller("dave").post("/project", data={"name": "Trial", "tier_product_id": trial}).status_code == 201
    refused = caller("erin").post("/project", data={"name": "Not mine", "tier_product_id": product_id})
    assert refused.status_code == 403


# --- who may call what ----------------------------------------------------------------------------------

OK = (200, 201, 204)
# (method, path, body, expected status by caller): "owner" is alice, whose personal unit and products
# these are; "stranger" bob; "admin" an administrator; None no token; "bad" a token that is not one.
UI_CALLS = [
    ("GET", "/version", None, {"owner": 200, "stranger": 200, "admin": 200, None: 200, "bad": 200}),
    ("GET", "/event-stream/version", None, {"owner": 404, "stranger": 404, "admin": 404, None: 404, "bad": 404}),
    ("GET", "/default/organisation", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("GET", "/organisation", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("GET", "/organisation/{org}", None, {"owner": 200, "newcomer": 403, "admin": 200}),
    ("GET", "/organisation/{org}/unit", None, {"owner": 200, "newcomer": 403, "admin": 200}),
    ("GET", "/unit", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("GET", "/unit/{unit}", None, {"owner": 200, "stranger": 403, "admin": 200}),
    ("PUT", "/unit", {"billing_day": 1}, {"owner": 409, "newcomer": 201, "admin": 409}),
    ("GET", "/product-type", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("POST", "/product/unit/{unit}", {"name": "Tier", "type": PROJECT_TIER, "flavour": "BRONZE"},
     {"owner": 201, "stranger": 403, "admin": 201}),
    ("GET", "/product", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("GET", "/product/unit/{unit}", None, {"owner": 200, "stranger": 403, "admin": 200}),
    ("GET", "/product/{product}", None, {"owner": 200, "stranger": 403, "admin": 200}),
    ("GET", "/product-default-storage-cost", None, {"owner": 200, "stranger": 200, "admin": 200}),
    ("GET", "/charges/product/{product}", None, {"owner": 200, "stranger": 403, "admin": 200}),
    ("GET", "/charges/unit/{unit}", None, {"owner": 200, "stranger": 403, "admin": 200}),
    ("GET", "/user/account", None, {"owner": 200, "stranger": 200, "admin": 200}),
]
WHO = {"owner": "alice", "stranger": "bob", "newcomer": "dave", "admin": "admin"}


@pytest.mark.parametrize("method, template, body, expected", UI_CALLS,
                         ids=[f"{m} {p}" for m, p, _, _ in UI_CALLS])
def test_who_may_make_each_call_of_the_web_ui(ledger, token_for, method, template, body, expected):
    org = ledger.units["alice"]["organisation_id"]
    path = template.format(org=org, unit=ledger.unit("alice"), product=ledger.product("alice"))
    expected = {None: 401, "bad": 401, **expected}  # before sign-in: 401, never 5xx
    for who, status in expected.items():
        token = {None: None, "bad": "not-a-jwt"}.get(who) if who in (None, "bad") else token_for(WHO[who])
        resp = ledger.call(method, path, token, json=body)
        assert resp.status_code == status, (method, path, who, resp.status_code, resp.text)
        if status == 401:
            assert resp.content == b"" and resp.headers["WWW-Authenticate"].startswith("Bearer")
        elif status not in OK:
            assert resp.json()["error"], (method, path, who)


def test_every_other_call_of_the_web_ui_answers_401_before_sign_in(ledger):
    """The calls the UI makes outside the journey: never a 5xx without a token."""
    org, unit, product = ledger.units["alice"]["organisation_id"], ledger.unit("alice"), ledger.product("alice")
    calls = [("GET", f"/organisation/{org}"), ("GET", f"/unit/{unit}"), ("PATCH", f"/unit/{unit}"),
             ("DELETE", "/unit"), ("DELETE", f"/unit/{unit}"), ("POST", "/organisation"),
             ("POST", f"/organisation/{org}/unit"), ("GET", f"/organisation/{org}/user"),
             ("PUT", f"/organisation/{org}/user/erin"), ("DELETE", f"/organisation/{org}/user/erin"),
             ("GET", f"/unit/{unit}/user"), ("PUT", f"/unit/{unit}/user/erin"),
             ("DELETE", f"/unit/{unit}/user/erin"), ("PATCH", f"/product/{product}"),
             ("DELETE", f"/product/{product}"), ("GET", "/product-default-storage-cost"),
             ("GET", f"/charges/product/{product}"), ("GET", f"/charges/unit/{unit}"),
             ("GET", "/event-stream"), ("POST", "/event-stream")]
    for method, path in calls:
        for token in (None, "not-a-jwt", f"{uuid.uuid4().hex}.{uuid.uuid4().hex}.x"):
            resp = ledger.call(method, path, token, json={})
            assert resp.status_code == 401, (method, path, token, resp.status_code)
