"""The Account Server client over real HTTP, against a small stand-in that answers as the AS does."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.account_server.base import DATASET_STORAGE, PROJECT_TIER
from shared.account_server.http import AccountServerUnavailable, HttpAccountServer
from shared.auth.verify import Principal
from shared.config import Settings
from shared.errors import Conflict, Forbidden, NotFound, Unsupported

PRODUCT = "product-00000000-0000-0000-0000-000000000001"
UNIT = "unit-00000000-0000-0000-0000-000000000001"


class StandIn:
    """Serves ``routes[path] = (status, body)``; records the Authorization headers it saw."""

    def __init__(self):
        self.routes, self.seen = {}, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.seen.append((self.path, self.headers.get("Authorization")))
                status, body = outer.routes.get(self.path, (404, {"error": "not found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/account-server-api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def standin():
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def client(standin):
    return HttpAccountServer(Settings(account_server_url=standin.url))


ALICE = Principal("alice", frozenset(), False, "alice-token")


def product_body(type_=PROJECT_TIER, at_limit=False, claimable=True, claim=None):
    return {"product": {"product": {"id": PRODUCT, "type": type_, "flavour": "GOLD"},
                        "unit": {"id": UNIT, "caller_is_member": True}, "organisation": {"id": "org-1"},
                        "coins": {"at_limit": at_limit, "used": 10, "limit": 100}, "claimable": claimable,
                        **({"claim": claim} if claim else {})}}


def test_processing_is_authorised_for_a_project_tier_product(standin, client):
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (200, product_body())
    assert client.authorise_processing(ALICE, PRODUCT) == 0
    assert standin.seen == [(f"/account-server-api/product/{PRODUCT}", "Bearer alice-token")]


def test_processing_is_refused_at_the_coin_limit(standin, client):
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (200, product_body(at_limit=True))
    with pytest.raises(Forbidden, match="limit"):
        client.authorise_processing(ALICE, PRODUCT)


def test_processing_needs_a_project_tier_product(standin, client):
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (200, product_body(type_=DATASET_STORAGE))
    with pytest.raises(Unsupported):
        client.authorise_processing(ALICE, PRODUCT)


def test_project_tier_claims(standin, client):
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (200, product_body())
    grant = client.authorise_project_tier(ALICE, PRODUCT)
    assert (grant.product_id, grant.flavour, grant.unit_id) == (PRODUCT, "GOLD", UNIT)
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (200, product_body(claimable=False,
                                                                                  claim={"id": "project-x"}))
    with pytest.raises(Conflict):
        client.authorise_project_tier(ALICE, PRODUCT)


def test_dataset_storage_needs_membership_and_a_subscription(standin, client):
    standin.routes[f"/account-server-api/unit/{UNIT}"] = (200, {"id": UNIT, "caller_is_member": True})
    standin.routes[f"/account-server-api/product/unit/{UNIT}"] = (
        200, {"products": [{"product": {"type": DATASET_STORAGE}}]})
    assert client.authorise_dataset_storage(ALICE, UNIT) == 0
    standin.routes[f"/account-server-api/product/unit/{UNIT}"] = (200, {"products": []})
    with pytest.raises(Forbidden, match="subscription"):
        client.authorise_dataset_storage(ALICE, UNIT)
    standin.routes[f"/account-server-api/unit/{UNIT}"] = (200, {"id": UNIT, "caller_is_member": False})
    with pytest.raises(Forbidden, match="member"):
        client.authorise_dataset_storage(ALICE, UNIT)


@pytest.mark.parametrize("status, error", [(404, NotFound), (403, Forbidden), (401, Forbidden),
                                           (500, AccountServerUnavailable)])
def test_refusals_and_faults_of_the_account_server(standin, client, status, error):
    standin.routes[f"/account-server-api/product/{PRODUCT}"] = (status, {"error": "no"})
    with pytest.raises(error):
        client.authorise_processing(ALICE, PRODUCT)


def test_an_unreachable_account_server_is_a_503(standin):
    standin.close()
    with pytest.raises(AccountServerUnavailable) as caught:
        HttpAccountServer(Settings(account_server_url=standin.url)).authorise_processing(ALICE, PRODUCT)
    assert caught.value.status == 503


def test_namespace_names_the_configured_account_server(standin):
    configured = HttpAccountServer(Settings(account_server_url=standin.url, account_server_namespace="as-prod"))
    reached = HttpAccountServer(Settings(account_server_url=standin.url))
    assert configured.namespace() == "as-prod"
    assert reached.namespace() == standin.url.split("/")[2]  # host:port, never "" (which means no AS)
    assert standin.seen == []  # answered without a call
