"""The consumer plumbing: a delivery is decoded by its contract, claimed once, answered as a Broker expects."""

import pytest
from flask import Flask, request

from shared.errors import Conflict, DmError
from shared.events import wire
from shared.events.consumer import Consumer
from shared.events.contracts import FileAttach, PodChange


@pytest.fixture
def consumer_app():
    consumer = Consumer("test")
    seen = []

    @consumer.on(FileAttach)
    def on_attach(event, received):
        if event.file_id == "refuse":
            raise Conflict("refused by the service")
        if event.file_id == "flaky":
            raise DmError("down for a moment", status=503)
        seen.append((event, received.id, received.consumer))

    @consumer.on(PodChange)
    def on_pod(event, received):
        seen.append((event.type, received.id))

    app = Flask(__name__)
    app.add_url_rule("/", "handle", lambda: consumer.handle(request), methods=["GET", "POST"])
    app.testing = True
    return app.test_client(), seen, consumer


def post(client, event, mode="binary"):
    headers, body = wire.to_http(event, mode)
    return client.post("/", data=body, headers=headers)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_good_event_is_decoded_and_answered_202(consumer_app, mode):
    client, seen, consumer = consumer_app
    contract = FileAttach(task_id="t", file_id="f", source_key="k")
    event = wire.event_of(contract)
    response = post(client, event, mode)
    assert response.status_code == 202 and response.get_data() == b""
    assert seen == [(contract, event.id, "test")]
    assert consumer.accepts == frozenset({FileAttach.TYPE, *PodChange.types()})


def test_every_type_of_a_contract_reaches_its_handler(consumer_app):
    client, seen, _ = consumer_app
    for event_type in PodChange.types():
        event = wire.new_event(event_type, "k8s", b'{"kind": "Pod"}', content_type="application/json")
        assert post(client, event).status_code == 202
    assert [t for t, _ in seen] == list(PodChange.types())


def test_what_can_never_be_handled(consumer_app):
    client, seen, _ = consumer_app
    assert client.get("/").status_code == 405
    bad = client.post("/", data=b"x", headers={"ce-specversion": "1.0", "ce-type": "t"})
    assert bad.status_code == 400 and "Not a readable CloudEvent" in bad.get_json()["error"]
    unknown = post(client, wire.new_event("dm.other.v1", "/s", b"{}"))
    assert unknown.status_code == 400 and "dm.other.v1" in unknown.get_json()["error"]
    broken = post(client, wire.new_event(FileAttach.TYPE, "/s", b'{"task_id": "t"}'))
    assert broken.status_code == 422 and "file_id is missing" in broken.get_json()["error"]
    refused = post(client, wire.event_of(FileAttach(task_id="t", file_id="refuse", source_key="k")))
    assert refused.status_code == 422 and refused.get_json()["error"] == "refused by the service"
    assert seen == []


def test_a_passing_fault_is_left_to_the_broker_to_retry(consumer_app):
    client, seen, _ = consumer_app
    with pytest.raises(DmError, match="down for a moment"):  # functions-framework answers it with a 500
        post(client, wire.event_of(FileAttach(task_id="t", file_id="flaky", source_key="k")))


def test_a_claim_holds_once_per_event_and_content(db_url):
    from shared.db.session import get_engine, transaction
    from shared.errors import PermanentFailure
    from shared.events.consumer import Received

    engine = get_engine(db_url)
    event = wire.new_event(FileAttach.TYPE, "/s", b"one")
    with transaction(engine) as s:
        assert Received("c", event).claim(s) is True
    with transaction(engine) as s:
        assert Received("c", event).claim(s) is False  # the same event again
        assert Received("other", event).claim(s) is True  # another consumer's inbox
    forged = wire.WireEvent({**event.attributes}, b"two")
    with pytest.raises(PermanentFailure, match="different content"):
        with transaction(engine) as s:
            Received("c", forged).claim(s)
    with pytest.raises(RuntimeError):
        with transaction(engine) as s:  # a claim rolled back with its transaction is no claim
            assert Received("d", event).claim(s)
            raise RuntimeError("the effect failed")
    with transaction(engine) as s:
        assert Received("d", event).claim(s) is True
