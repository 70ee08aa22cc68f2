"""The built-in ledger's Account Server API on a real HTTP server, and charge messages to send it:
fixtures and builders for ``tests/functional/test_account_server_api.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import USERS, _Server

PROJECT_TIER = "DATA_MANAGER_PROJECT_TIER_SUBSCRIPTION"
STORAGE = "DATA_MANAGER_STORAGE_SUBSCRIPTION"
GIB = 1024**3


@dataclass
class Ledger:
    url: str  # …/account-server-api
    settings: object
    engine: object
    units: dict  # username: the ensure_personal_unit facts

    def product(self, username: str, kind: str = "project_tier") -> str:
        return self.units[username][f"{kind}_product_id"]

    def unit(self, username: str) -> str:
        return self.units[username]["unit_id"]

    def call(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def send(self, contract, *, id_: str | None = None) -> requests.Response:
        """POST the contract as a binary-mode CloudEvent, as the broker delivers it."""
        from shared.events import wire

        headers, body = wire.to_http(self.signed(wire.event_of(contract, id_=id_)))
        assert "ce-specversion" in headers and headers["content-type"] == "application/protobuf"
        return requests.post(self.url + "/event", headers=headers, data=body, timeout=10)

    def signed(self, event):
        """``event`` signed as the monitor signs what it sends (the ledger takes nothing else)."""
        from shared.events import signing

        return signing.sign(event, signing.key_of(self.settings))

    def server(self):
        from shared.account_server.ledger import LedgerAccountServer

        return LedgerAccountServer(self.settings, self.engine)


@pytest.fixture
def ledger(settings):
    """The Account Server API on a real HTTP server, the ledger seeded for the development users;
    it takes only charges signed with its settings' event-signing key."""
    import dataclasses

    settings = dataclasses.replace(settings, event_signing_key="ledger-test-key")
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.wrappers import Response

    from shared.account_server.ledger import LedgerAccountServer
    from shared.account_server.rest import create_account_server_app
    from shared.db.session import get_engine, transaction
    from squonk2.as_api import AsApi

    engine = get_engine(settings.sqlalchemy_url)
    with transaction(engine) as s:
        units = {u: LedgerAccountServer(settings, engine).ensure_personal_unit(s, u) for u in USERS}
    server = _Server(DispatcherMiddleware(Response("not here", 404),
                                          {"/account-server-api": create_account_server_app(settings)}))
    AsApi.set_api_url(server.url + "/account-server-api")
    yield Ledger(server.url + "/account-server-api", settings, engine, units)
    server.stop()


@pytest.fixture
def as_api():
    from squonk2.as_api import AsApi

    return AsApi


def principal(username: str):
    from shared.auth.verify import Principal

    return Principal(username, frozenset({"data-manager-admin"} if username == "admin" else ()),
                     username == "admin", "unused")


def processing(product: str, *, auth_code: int = 4242, sqn: int = 1, coins: str = "10", eoc: bool = False,
               user: str = "alice", additional_data: str | None = None, timestamp: str = "2026-12-01T10:00:00Z"):
    from shared.events.contracts import ProcessingCharge
    from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage

    data = additional_data if additional_data is not None else json.dumps(
        {"instance_id": f"instance-{auth_code}", "cost": coins, "job_job": "sucos"})
    return ProcessingCharge(MerchantProcessingChargeMessage(
        timestamp=timestamp, merchant_kind="DATA_MANAGER", merchant_name="data-manager", auth_code=auth_code,
        name=f"instance {auth_code}", coins=coins, sqn=sqn, eoc=eoc, user=user, product=product,
        additional_data=data))


def storage(size: str, *, product: str = "", unit: str = "", reason: int = 2, name: str = "Project A"):
    from shared.events.contracts import StorageCharge
    from shared.messages.merchant_storage_charge_message_pb2 import MerchantStorageChargeMessage

    return StorageCharge(MerchantStorageChargeMessage(
        timestamp="2026-12-01T10:00:00Z", merchant_kind="DATA_MANAGER", merchant_name="data-manager",
        reason=reason, name=name, bytes=size, user="alice", product=product, unit=unit))


def add_project(ledger: Ledger, product_id: str, name: str = "Claiming project") -> str:
    """A DM Project claiming ``product_id`` (the ledger reads claims from the projects table)."""
    from shared.db.base import new_id, utcnow
    from shared.db.models import Project
    from shared.db.session import transaction

    project_id = new_id("project")
    with transaction(ledger.engine) as s:
        s.add(Project(id=project_id, name=name, name_key=name, creator="alice", created=utcnow(),
                      product_id=product_id, unit_id=ledger.unit("alice"), size=0))
    return project_id
