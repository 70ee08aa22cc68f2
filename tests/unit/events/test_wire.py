"""The one CloudEvents codec: binary and structured HTTP messages, data kept as raw bytes."""

import datetime as dt
import json

import pytest

from shared.events import wire
from shared.events.contracts import FileAttach

PROTOBUF = bytes(range(256))


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("data, content_type", [(PROTOBUF, "application/protobuf"), (b'{"a":1}', "application/json"),
                                                (None, None)])
def test_round_trip(mode, data, content_type):
    event = wire.new_event("dm.x.v1", "/s", data, content_type=content_type, subject="sub", extra="e")
    headers, body = wire.to_http(event, mode)
    if mode == "binary":
        assert headers["ce-type"] == "dm.x.v1" and body == (data or b"")
    else:
        assert headers["content-type"].startswith("application/cloudevents+json")
    back = wire.from_http(headers, body)
    assert back.data == data
    assert {k: v for k, v in back.attributes.items()} == dict(event.attributes)
    assert wire.looks_like_cloudevent({k.lower(): v for k, v in headers.items()})


def test_an_attribute_a_header_cannot_carry_goes_structured():
    event = wire.new_event("dm.x.v1", "/s", b"x", subject="résumé ✓")
    headers, body = wire.to_http(event)
    assert "ce-subject" not in headers and json.loads(body)["subject"] == "résumé ✓"
    assert wire.from_http(headers, body).subject == "résumé ✓"


def test_a_contract_on_the_wire():
    contract = FileAttach(task_id="t", file_id="f", source_key="k")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    event = wire.event_of(contract, id_="fixed", time=when)
    assert (event.id, event.type, event.source, event.subject) == ("fixed", FileAttach.TYPE, FileAttach.SOURCE, "f")
    assert event.attributes["time"] == "2026-01-02T03:04:05Z" and event.content_type == "application/json"
    assert FileAttach.from_bytes(event.data, event.type) == contract


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "application/json"}, b'{"type": "dm.x.v1"}'),
    ({"ce-specversion": "1.0", "ce-type": "dm.x.v1", "ce-source": "/s"}, b"no id"),
    ({"ce-specversion": "1.0", "ce-type": "dm.x.v1", "ce-source": "/s", "ce-id": "1", "ce-Bad_Name": "x"}, b""),
])
def test_what_is_not_a_cloudevent(headers, body):
    with pytest.raises(wire.NotACloudEvent):
        wire.from_http(headers, body)


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError):
        wire.to_http(wire.new_event("dm.x.v1", "/s", b""), "xml")
