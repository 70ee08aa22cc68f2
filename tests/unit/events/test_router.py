"""The local Broker stand-in, over real HTTP: events are POSTed to the router's ingress on a
local port, subscribers and dead-letter sinks are small WSGI apps on their own ports."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import yaml
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.events.router import (
    AllOf, AnyOf, Attributes, DeliverySpec, Exact, Not, Prefix, Router, Suffix, load_routing,
    parse_duration, service_resolver,
)

NS = "test"
PROTOBUF = bytes(range(256)) + b"\x00\xff\x80\x0a\x0d{\"not\": json}\xc3\x28"  # not UTF-8, not JSON
SCALE = 0.01  # PT1S in a manifest waits 10 ms here


# --- real HTTP plumbing -------------------------------------------------------------------


class Server:
    """A WSGI app served on a free local port."""

    def __init__(self, app: Callable):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def event(self) -> CloudEvent:
        return from_http(self.headers, self.body, data_unmarshaller=lambda b: b)


class Subscriber:
    """Records every request and answers from a script; the last answer repeats. An answer is
    a status, a (status, body[, headers]) tuple, or a callable taking the Received request."""

    def __init__(self, *script: Any):
        self.script = list(script) or [202]
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        got = Received(request.path, {k.lower(): v for k, v in request.headers.items()}, request.get_data())
        with self._lock:
            self.received.append(got)
            answer = self.script[min(len(self.received), len(self.script)) - 1]
        if callable(answer):
            answer = answer(got)
        if isinstance(answer, int):
            answer = (answer,)
        status, body, headers = (tuple(answer) + (b"", {}))[:3]
        return Response(body, status=status, headers=headers)(environ, start_response)

    def paths(self, event_id: str | None = None) -> list[str]:
        return [r.path for r in self.received if event_id is None or r.headers.get("ce-id") == event_id]


def free_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- manifests ----------------------------------------------------------------------------


def service(name: str, uri: str | None = None) -> dict:
    ref = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}
    destination: dict[str, Any] = {"ref": ref}
    if uri:
        destination["uri"] = uri
    return destination


def trigger(name: str, *, filters: list | None = None, attributes: dict | None = None,
            subscriber: dict | None = None, delivery: dict | None = None) -> dict:
    spec: dict[str, Any] = {"broker": "default", "subscriber": subscriber or service("sink", f"/{name}")}
    if filters is not None:
        spec["filters"] = filters
    if attributes is not None:
        spec["filter"] = {"attributes": attributes}
    if delivery is not None:
        spec["delivery"] = delivery
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def broker(delivery: dict | None = None) -> dict:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
            "metadata": {"name": "default", "namespace": NS},
            "spec": {"delivery": delivery} if delivery else {}}


def exact_type(type_: str) -> list:
    return [{"exact": {"type": type_}}]


def retries(n: int, delay: str = "PT1S", policy: str = "exponential", **more: Any) -> dict:
    return {"retry": n, "backoffPolicy": policy, "backoffDelay": delay, **more}


DLS = service("monitor", "/dead-letter")


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(app: Callable) -> str:
        servers.append(Server(app))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dead_letter_file(tmp_path) -> Path:
    return tmp_path / "dead-letters.jsonl"


@pytest.fixture
def make_router(tmp_path, serve, dead_letter_file):
    """make_router(objects, services) -> (router, ingress URL): the objects written to a YAML
    file, read back by load_routing, the router started and its ingress served."""
    routers: list[Router] = []

    def make(objects: list[dict], services: dict[str, str], **options: Any) -> tuple[Router, str]:
        path = tmp_path / f"routing-{len(routers)}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        options.setdefault("time_scale", SCALE)
        router = Router(load_routing([path]), service_resolver(services), dead_letter_file=dead_letter_file,
                        **options)
        routers.append(router.start())
        return router, serve(router.wsgi_app)

    yield make
    for router in routers:
        assert router.stop(5)


def post(ingress: str, type_: str, data: bytes | None = b"", *, mode: str = "binary",
         content_type: str | None = "application/octet-stream", **extensions: str) -> CloudEvent:
    attributes = {"type": type_, "source": "/test", **extensions}
    if content_type:
        attributes["datacontenttype"] = content_type
    event = CloudEvent(attributes, data)
    headers, body = to_binary(event) if mode == "binary" else to_structured(event)
    response = requests.post(ingress, headers=headers, data=body, timeout=5)
    assert response.status_code == 202, response.text
    assert response.content == b""
    return event


def settle(router: Router) -> None:
    assert router.wait_idle(5), "the router did not settle"


def dead_letter_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- filters ------------------------------------------------------------------------------

FILTER_TRIGGERS = [
    trigger("exact", filters=exact_type("dm.a.v1")),
    trigger("prefix", filters=[{"prefix": {"type": "dm.a."}}]),
    trigger("suffix", filters=[{"suffix": {"type": ".v2"}}]),
    trigger("all", filters=[{"all": [{"prefix": {"type": "dm."}}, {"exact": {"source": "/kew"}}]}]),
    trigger("any", filters=[{"any": [{"exact": {"type": "dm.b.v1"}}, {"exact": {"subject": "special"}}]}]),
    trigger("not", filters=[{"not": {"prefix": {"type": "dm."}}}]),
    trigger("listand", filters=[{"prefix": {"type": "dm."}}, {"suffix": {"type": ".v1"}}]),
    trigger("legacy", attributes={"type": "dm.a.v1", "source": "/api"}),
    trigger("present", attributes={"tenant": ""}),
    trigger("tenant", attributes={"tenant": "acme"}),
    trigger("override", filters=exact_type("dm.b.v1"), attributes={"type": "dm.a.v1"}),
    trigger("everything"),
]


@pytest.mark.parametrize("attributes, expected", [
    ({"type": "dm.a.v1", "source": "/api"}, {"exact", "prefix", "listand", "legacy", "everything"}),
    ({"type": "dm.a.v2", "source": "/kew"}, {"prefix", "suffix", "all", "everything"}),
    ({"type": "dm.b.v1", "source": "/api", "tenant": "acme"},
     {"any", "listand", "present", "tenant", "override", "everything"}),
    ({"type": "other.x", "source": "/api", "subject": "special"}, {"any", "not", "everything"}),
    ({"type": "dm.c.v1", "source": "/api", "tenant": ""}, {"listand", "everything"}),  # "" is not "present"
    ({"type": "DM.A.V1", "source": "/API", "tenant": "ACME"}, {"not", "present", "everything"}),  # case matters
], ids=["a-v1", "a-v2-kew", "b-tenant", "other-subject", "empty-extension", "upper-case"])
def test_filters(make_router, serve, attributes, expected):
    sink = Subscriber()
    router, ingress = make_router(FILTER_TRIGGERS, {"sink": serve(sink)})
    sent = CloudEvent(attributes, b"x")
    headers, body = to_binary(sent)
    assert requests.post(ingress, headers=headers, data=body, timeout=5).status_code == 202
    settle(router)
    assert {p.strip("/") for p in sink.paths(sent["id"])} == expected
    assert len(sink.paths()) == len(expected)  # each Trigger once


def test_filters_never_look_at_data():
    routing = load_routing_from([trigger("t", filters=exact_type("dm.a.v1"))])
    assert routing.matching({"type": "dm.b.v1", "data": "dm.a.v1", "id": "1", "source": "/s"}) == []


def test_filter_objects():
    attrs = {"type": "dm.a.v1", "source": "/api", "tenant": "acme"}
    assert AllOf((Exact("type", "dm.a.v1"), Prefix("source", "/a"), Suffix("tenant", "me"))).matches(attrs)
    assert AnyOf((Exact("type", "nope"), Exact("tenant", "acme"))).matches(attrs)
    assert AnyOf().matches(attrs) and AllOf().matches(attrs)
    assert Not(Exact("missing", "x")).matches(attrs)
    assert not Exact("missing", "x").matches(attrs) and not Prefix("missing", "x").matches(attrs)
    assert Attributes((("tenant", ""),)).matches(attrs)
    assert not Attributes((("missing", ""),)).matches(attrs)
    assert not Attributes((("type", "DM.A.V1"),)).matches(attrs)


# --- fan-out and retries ------------------------------------------------------------------


def test_one_event_reaches_two_triggers_independently(make_router, serve):
    ok, rejecting, monitor = Subscriber(202), Subscriber((422, b"never")), Subscriber(202)
    router, ingress = make_router(
        [broker({"deadLetterSink": DLS}),
         trigger("first", filters=exact_type("dm.x.v1"), subscriber=service("ok")),
         trigger("second", filters=exact_type("dm.x.v1"), subscriber=service("rejecting"))],
        {"ok": serve(ok), "rejecting": serve(rejecting), "monitor": serve(monitor)})
    event = post(ingress, "dm.x.v1", b"payload")
    settle(router)
    assert [r.body for r in ok.received] == [b"payload"]
    assert [r.body for r in rejecting.received] == [b"payload"]
    assert [d.trigger for d in router.delivered] == ["first"]
    assert [(d.trigger, d.event_id) for d in router.dead_letters] == [("second", event["id"])]
    assert len(monitor.received) == 1


def test_retries_then_delivered_once(make_router, serve):
    sink = Subscriber(503, 503, 202)
    router, ingress = make_router(
        [trigger("t", filters=exact_type("dm.x.v1"), delivery=retries(5, "PT1S", "linear"))],
        {"sink": serve(sink)})
    event = post(ingress, "dm.x.v1", b"payload")
    settle(router)
    assert len(sink.received) == 3
    assert {r.headers["ce-id"] for r in sink.received} == {event["id"]}
    assert all(r.headers.get("prefer") == "reply" for r in sink.received)
    [delivered] = router.delivered
    assert (delivered.trigger, delivered.status, delivered.attempts) == ("t", 202, 3)
    assert router.dead_letters == []


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 502, 504])
def test_retryable_statuses(make_router, serve, status):
    sink = Subscriber(status, 202)
    router, ingress = make_router([trigger("t", delivery=retries(1))], {"sink": serve(sink)})
    post(ingress, "dm.x.v1")
    settle(router)
    assert [d.attempts for d in router.delivered] == [2]


@pytest.mark.parametrize("status", [301, 400, 401, 403, 413, 415, 422])
def test_non_retryable_status_goes_straight_to_the_dead_letter_sink(make_router, serve, status):
    error_body = b'{"error": "this event can never be handled"}'
    sink, monitor = Subscriber((status, error_body, {"Location": "/elsewhere"})), Subscriber(202)
    sink_url, monitor_url = serve(sink), serve(monitor)
    router, ingress = make_router(
        [trigger("t", filters=exact_type("dm.x.v1"), delivery=retries(5, deadLetterSink=DLS))],
        {"sink": sink_url, "monitor": monitor_url})
    event = post(ingress, "dm.x.v1", PROTOBUF, content_type="application/protobuf", subject="s1")
    settle(router)
    assert len(sink.received) == 1  # no retry, redirect not followed
    [dead] = monitor.received
    assert dead.path == "/dead-letter"
    assert dead.body == PROTOBUF  # the ORIGINAL data, byte for byte
    assert dead.headers["content-type"] == "application/protobuf"
    assert [dead.headers[f"ce-{name}"] for name in ("id", "type", "subject")] == [event["id"], "dm.x.v1", "s1"]
    assert dead.headers["ce-knativeerrorcode"] == str(status)
    assert dead.headers["ce-knativeerrordest"] == f"{sink_url}/t"
    assert base64.b64decode(dead.headers["ce-knativeerrordata"]) == error_body
    [record] = router.dead_letters
    assert (record.error_code, record.attempts, record.sink) == (status, 1, f"{monitor_url}/dead-letter")
    assert router.delivered == []


def test_exhausted_retries_go_to_the_dead_letter_sink(make_router, serve):
    long_body = b"E" * 3000
    sink, monitor = Subscriber((500, long_body)), Subscriber(202)
    router, ingress = make_router(
        [trigger("t", delivery=retries(2, deadLetterSink=DLS))], {"sink": serve(sink), "monitor": serve(monitor)})
    post(ingress, "dm.x.v1", b"payload")
    settle(router)
    assert len(sink.received) == 3  # the first attempt and 2 retries
    [dead] = monitor.received
    assert dead.headers["ce-knativeerrorcode"] == "500"
    assert base64.b64decode(dead.headers["ce-knativeerrordata"]) == long_body[:1024]
    assert dead.body == b"payload"
    assert [r.attempts for r in router.dead_letters] == [3]


def test_a_2xx_with_a_body_that_is_not_a_cloudevent_is_retried(make_router, serve):
    # What a functions-framework `cloudevent` function answers (knative.md §1.3).
    sink = Subscriber((200, b"OK", {"Content-Type": "text/html"}), 200)
    router, ingress = make_router([trigger("t", delivery=retries(3))], {"sink": serve(sink)})
    post(ingress, "dm.x.v1")
    settle(router)
    assert len(sink.received) == 2
    assert [(d.status, d.attempts) for d in router.delivered] == [(200, 2)]


def test_a_202_body_is_never_a_reply(make_router, serve):
    reply_headers, reply_body = to_binary(CloudEvent({"type": "dm.reply.v1", "source": "/r"}, b"r"))
    sink, other = Subscriber((202, reply_body, reply_headers)), Subscriber()
    router, ingress = make_router(
        [trigger("t", filters=exact_type("dm.x.v1")), trigger("replies", filters=exact_type("dm.reply.v1"))],
        {"sink": serve(sink)})
    post(ingress, "dm.x.v1")
    settle(router)
    assert sink.paths() == ["/t"]
    assert [(d.status, d.reply_type) for d in router.delivered] == [(202, None)]


def test_the_trigger_delivery_replaces_the_brokers_but_the_dead_letter_sink_falls_back(make_router, serve):
    sink, monitor = Subscriber(503), Subscriber(202)
    router, ingress = make_router(
        [broker(retries(2, deadLetterSink=DLS)),
         trigger("inherits", filters=exact_type("dm.x.v1")),
         trigger("own", filters=exact_type("dm.x.v1"), delivery={"retry": 0})],
        {"sink": serve(sink), "monitor": serve(monitor)})
    post(ingress, "dm.x.v1")
    settle(router)
    assert sorted(sink.paths()) == ["/inherits"] * 3 + ["/own"]
    failed = sorted(r.headers["ce-knativeerrordest"].rsplit("/", 1)[1] for r in monitor.received)
    assert failed == ["inherits", "own"]


def test_a_timed_out_attempt_is_retried(make_router, serve):
    def slow(_: Received):
        time.sleep(1)
        return 202

    sink = Subscriber(slow, 202)
    # PT30S timeout × 0.01 = 0.3 s per attempt
    router, ingress = make_router([trigger("t", delivery=retries(2, timeout="PT30S"))], {"sink": serve(sink)})
    post(ingress, "dm.x.v1")
    settle(router)
    assert len(sink.received) == 2
    assert [d.attempts for d in router.delivered] == [2]


def test_retries_do_not_hold_up_other_events(make_router, serve):
    failing_once, quick = Subscriber(503, 202), Subscriber(202)
    router, ingress = make_router(
        [trigger("slow", filters=exact_type("dm.slow.v1"), subscriber=service("failing"),
                 delivery=retries(1, "PT100S", "linear")),  # 1 s before the retry
         trigger("fast", filters=exact_type("dm.fast.v1"), subscriber=service("quick"))],
        {"failing": serve(failing_once), "quick": serve(quick)}, workers=1)
    post(ingress, "dm.slow.v1")
    deadline = time.monotonic() + 5
    while not failing_once.received and time.monotonic() < deadline:
        time.sleep(0.01)
    post(ingress, "dm.fast.v1")
    while not router.delivered and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [d.trigger for d in router.delivered] == ["fast"]  # while "slow" waits for its retry
    settle(router)
    assert [(d.trigger, d.attempts) for d in router.delivered] == [("fast", 1), ("slow", 2)]


# --- dead letters without a sink ----------------------------------------------------------


def test_subscriber_down_is_retried_then_written_to_the_dead_letter_file(make_router, dead_letter_file):
    down = f"http://127.0.0.1:{free_port()}"
    # The monitor is not running here, so the sink resolves to nothing: the file keeps it.
    router, ingress = make_router([trigger("t", delivery=retries(2, deadLetterSink=DLS))], {"sink": down})
    event = post(ingress, "dm.x.v1", PROTOBUF, content_type="application/protobuf")
    settle(router)
    [record] = router.dead_letters
    assert (record.attempts, record.error_code, record.sink) == (3, 500, None)
    [line] = dead_letter_lines(dead_letter_file)
    assert line["trigger"] == "t" and "not running here" in line["reason"]
    written = line["event"]
    assert written["id"] == event["id"] and written["type"] == "dm.x.v1"
    assert base64.b64decode(written["data_base64"]) == PROTOBUF
    assert written["knativeerrorcode"] == "500"
    assert written["knativeerrordest"] == f"{down}/t"
    assert base64.b64decode(written["knativeerrordata"]).startswith(b"dispatch error")


def test_a_failing_dead_letter_sink_ends_in_the_file(make_router, serve, dead_letter_file):
    sink, monitor = Subscriber(422), Subscriber(500)
    router, ingress = make_router([trigger("t", delivery=retries(1, deadLetterSink=DLS))],
                                  {"sink": serve(sink), "monitor": serve(monitor)})
    post(ingress, "dm.x.v1", b"payload")
    settle(router)
    assert len(monitor.received) == 2  # the sink gets the trigger's retries too
    [line] = dead_letter_lines(dead_letter_file)
    assert "dead-letter sink" in line["reason"] and line["event"]["knativeerrorcode"] == "422"
    assert base64.b64decode(line["event"]["data_base64"]) == b"payload"


def test_no_dead_letter_sink_configured_ends_in_the_file(make_router, serve, dead_letter_file):
    router, ingress = make_router([trigger("t")], {"sink": serve(Subscriber(400))})
    post(ingress, "dm.x.v1")
    settle(router)
    [line] = dead_letter_lines(dead_letter_file)
    assert "no dead-letter sink" in line["reason"]


# --- replies ------------------------------------------------------------------------------


def test_a_reply_is_published_back_and_routed(make_router, serve):
    def answer(request: Received):
        asked = request.event()
        reply = CloudEvent({"type": "dm.answer.v1", "source": "/asker", "subject": asked["id"],
                            "datacontenttype": "application/protobuf"}, PROTOBUF)
        headers, body = to_binary(reply)
        return 200, body, headers

    asker, answers = Subscriber(answer), Subscriber(202)
    router, ingress = make_router(
        [trigger("ask", filters=exact_type("dm.ask.v1"), subscriber=service("asker")),
         trigger("answer", filters=exact_type("dm.answer.v1"), subscriber=service("answers"))],
        {"asker": serve(asker), "answers": serve(answers)})
    asked = post(ingress, "dm.ask.v1", b"?")
    settle(router)
    [got] = answers.received
    assert got.headers["ce-type"] == "dm.answer.v1" and got.headers["ce-subject"] == asked["id"]
    assert got.body == PROTOBUF
    assert "ce-knativebrokerttl" not in got.headers  # the hop count never reaches subscribers
    assert [(d.trigger, d.reply_type) for d in router.delivered] == [("ask", "dm.answer.v1"), ("answer", None)]


def test_reply_loops_end_at_the_hop_limit(make_router, serve):
    def echo(_: Received):
        headers, body = to_structured(CloudEvent({"type": "dm.loop.v1", "source": "/echo"}, {"n": 1}))
        return 200, body, headers

    looper = Subscriber(echo)
    router, ingress = make_router([trigger("loop", filters=exact_type("dm.loop.v1"))], {"sink": serve(looper)})
    post(ingress, "dm.loop.v1", knativebrokerttl="3")
    settle(router)
    assert len(looper.received) == 3
    assert len(router.dropped) == 1


# --- data and encodings -------------------------------------------------------------------


@pytest.mark.parametrize("ingress_mode", ["binary", "structured"])
@pytest.mark.parametrize("delivery_format", [None, "binary", "json"])
def test_protobuf_bytes_arrive_byte_identical(make_router, serve, ingress_mode, delivery_format):
    sink = Subscriber()
    delivery = {"format": delivery_format} if delivery_format else None
    router, ingress = make_router([trigger("t", delivery=delivery)], {"sink": serve(sink)})
    sent = post(ingress, "dm.pod.message.v1", PROTOBUF, mode=ingress_mode, content_type="application/protobuf",
                dataschema="type.googleapis.com/dm.PodMessage")
    settle(router)
    [got] = sink.received
    if delivery_format == "json":
        assert got.headers["content-type"].startswith("application/cloudevents+json")
    else:
        assert got.body == PROTOBUF
        assert got.headers["content-type"] == "application/protobuf"
    event = got.event()
    assert event.data == PROTOBUF
    assert (event["id"], event["dataschema"]) == (sent["id"], "type.googleapis.com/dm.PodMessage")
    assert event["knativearrivaltime"]


def test_structured_json_ingress_is_delivered_in_binary_mode(make_router, serve):
    sink = Subscriber()
    router, ingress = make_router([trigger("t")], {"sink": serve(sink)})
    payload = {"dataset": "dataset-1", "sizes": [1, 2], "name": "é"}
    sent = post(ingress, "dm.dataset.upload.v1", payload, mode="structured", content_type=None)
    settle(router)
    [got] = sink.received
    assert got.headers["ce-id"] == sent["id"]
    assert got.headers["content-type"] == "application/json"
    assert json.loads(got.body) == payload


def test_an_attribute_a_header_cannot_carry_is_delivered_structured(make_router, serve):
    sink = Subscriber()
    router, ingress = make_router([trigger("t")], {"sink": serve(sink)})
    post(ingress, "dm.x.v1", PROTOBUF, mode="structured", subject="résumé ✓")
    settle(router)
    [got] = sink.received
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    event = got.event()
    assert (event["subject"], event.data) == ("résumé ✓", PROTOBUF)


def test_publish_from_python(make_router, serve):
    sink = Subscriber()
    router, _ = make_router([trigger("t", filters=exact_type("dm.x.v1"))], {"sink": serve(sink)})
    assert router.publish(CloudEvent({"type": "dm.x.v1", "source": "/py"}, b"\x00\x01")) == 1
    assert router.publish(CloudEvent({"type": "dm.other.v1", "source": "/py"}, None)) == 0
    settle(router)
    assert [r.body for r in sink.received] == [b"\x00\x01"]
    with pytest.raises(ValueError, match="attribute name"):
        router.publish(CloudEvent({"type": "dm.x.v1", "source": "/py", "bad_name": "x"}, None))


# --- the ingress --------------------------------------------------------------------------


@pytest.mark.parametrize("headers, body", [
    ({"Content-Type": "text/plain"}, b"hello"),
    ({"Content-Type": "application/json"}, b'{"type": "dm.x.v1"}'),
    ({"Content-Type": "application/cloudevents+json"}, b'{"specversion": "1.0", "type": "dm.x.v1"}'),
    ({"ce-specversion": "1.0", "ce-type": "dm.x.v1", "ce-source": "/s"}, b"no id"),
    ({"ce-specversion": "1.0", "ce-type": "", "ce-source": "/s", "ce-id": "1"}, b"empty type"),
    ({"Content-Type": "application/cloudevents+json"},
     b'{"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "Bad_Name": "x"}'),
    ({}, b""),
], ids=["text", "json", "no-id-structured", "no-id-binary", "empty-type", "bad-extension", "empty"])
def test_ingress_rejects_what_is_not_a_cloudevent(make_router, headers, body):
    router, ingress = make_router([trigger("t")], {})
    response = requests.post(ingress, headers=headers, data=body, timeout=5)
    assert response.status_code == 400
    assert "not a CloudEvent" in response.json()["error"]


def test_ingress_routes_and_methods(make_router):
    router, ingress = make_router([broker(), trigger("t")], {})
    assert requests.get(f"{ingress}/healthz", timeout=5).status_code == 200
    assert requests.get(ingress, timeout=5).status_code == 405
    assert requests.put(ingress, data=b"x", timeout=5).status_code == 405
    assert requests.post(f"{ingress}/elsewhere", data=b"x", timeout=5).status_code == 404
    headers, body = to_binary(CloudEvent({"type": "dm.x.v1", "source": "/s"}, b""))
    # The MT broker's ingress path, /<namespace>/<broker>, works too.
    assert requests.post(f"{ingress}/{NS}/default", headers=headers, data=body, timeout=5).status_code == 202


def test_triggers_whose_subscriber_is_not_running_here_are_skipped(make_router, dead_letter_file):
    router, ingress = make_router([trigger("t")], {})
    post(ingress, "dm.x.v1")
    settle(router)
    assert router.delivered == [] and router.dead_letters == []
    assert not dead_letter_file.exists()


# --- lifecycle ----------------------------------------------------------------------------


def test_stop_ends_the_threads_promptly_even_with_retries_waiting(make_router, serve):
    sink = Subscriber(503)
    router, ingress = make_router([trigger("t", delivery=retries(3, "PT1H"))], {"sink": serve(sink)})
    post(ingress, "dm.x.v1")
    deadline = time.monotonic() + 5
    while not sink.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert router_threads()
    assert not router.wait_idle(0.1)  # a retry is waiting, 2 hours away (72 s here)
    started = time.monotonic()
    assert router.stop(5)
    assert time.monotonic() - started < 2
    assert router_threads() == []
    assert router.wait_idle(0)
    response = requests.post(ingress, headers=to_binary(CloudEvent({"type": "t", "source": "/s"}, b""))[0],
                             timeout=5)
    assert response.status_code == 503
    with pytest.raises(RuntimeError):
        router.start()


def router_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dm-router")]


# --- loading ------------------------------------------------------------------------------


def load_routing_from(objects: list[dict]):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "routing.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        return load_routing([path])


def test_load_routing_reads_brokers_and_triggers_and_ignores_other_kinds():
    routing = load_routing_from([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}},
        {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "sink"}},
        {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RabbitmqBrokerConfig", "metadata": {"name": "r"}},
        broker(retries(10, "PT0.2S", deadLetterSink=DLS)),
        trigger("t", filters=exact_type("dm.x.v1"), delivery=retries(5, "PT0.5S", timeout="PT10M")),
        trigger("u", filters=exact_type("dm.y.v1"), delivery={"retry": 1}),
    ])
    [b] = routing.brokers
    assert (b.name, b.namespace, b.delivery.retry, b.delivery.backoff_delay) == ("default", NS, 10, 0.2)
    t, u = routing.triggers
    assert routing.delivery_for(t) == DeliverySpec(5, "exponential", 0.5, 600.0, DLS)
    assert routing.delivery_for(u) == DeliverySpec(retry=1, dead_letter_sink=DLS)  # the sink falls back
    assert [x.name for x in routing.matching({"type": "dm.x.v1", "source": "/s"})] == ["t"]


BAD_TRIGGERS = [
    ({"broker": None}, "spec.broker is required"),
    ({"subscriber": None}, "spec.subscriber is required"),
    ({"subscriber": {"uri": "/relative"}}, "absolute"),
    ({"subscriber": {"ref": {"kind": "Service", "name": "x"}}}, "apiVersion, kind and name"),
    ({"filters": [{"exact": {"Type": "dm.x.v1"}}]}, "bad attribute name 'Type'"),
    ({"filter": {"attributes": {"my-ext": "x"}}}, "bad attribute name 'my-ext'"),
    ({"filter": {"attributes": {"retry": 5}}}, "must be a string"),
    ({"filters": [{"exact": {"type": "a", "source": "b"}}]}, "exactly one attribute"),
    ({"filters": [{"exact": {"type": ""}}]}, "non-empty string"),
    ({"filters": [{"exact": {"type": "a"}, "prefix": {"type": "b"}}]}, "one dialect"),
    ({"filters": [{"exacts": {"type": "a"}}]}, "unknown filter dialect"),
    ({"filters": [{"not": [{"exact": {"type": "a"}}]}]}, "one filter expression"),
    ({"filtres": []}, "unknown spec fields"),
    ({"delivery": {"retry": -1}}, "retry"),
    ({"delivery": {"retry": "3"}}, "retry"),
    ({"delivery": {"backoffPolicy": "Exponential"}}, "backoffPolicy"),
    ({"delivery": {"backoffDelay": "0.5s"}}, "backoffDelay"),
    ({"delivery": {"timeout": "10m"}}, "timeout"),
    ({"delivery": {"format": "xml"}}, "format"),
    ({"delivery": {"backofDelay": "PT1S"}}, "unknown delivery fields"),
    ({"delivery": {"deadLetterSink": {}}}, "deadLetterSink"),
]


@pytest.mark.parametrize("change, message", BAD_TRIGGERS, ids=[m for _, m in BAD_TRIGGERS])
def test_load_routing_rejects_bad_triggers_naming_them(change, message):
    obj = trigger("bad-one")
    for key, value in change.items():
        if value is None:
            del obj["spec"][key]
        else:
            obj["spec"][key] = value
    with pytest.raises(ValueError) as caught:
        load_routing_from([obj])
    assert f"Trigger {NS}/bad-one" in str(caught.value) and message in str(caught.value)


def test_load_routing_rejects_a_bad_broker_delivery_and_duplicates():
    with pytest.raises(ValueError, match=f"Broker {NS}/default: delivery.backoffDelay"):
        load_routing_from([broker({"backoffDelay": "soon"})])
    with pytest.raises(ValueError, match="defined twice"):
        load_routing_from([trigger("t"), trigger("t")])


def test_cesql_is_refused_at_load_time():
    with pytest.raises(NotImplementedError, match=f"Trigger {NS}/sql.*cesql"):
        load_routing_from([trigger("sql", filters=[{"cesql": "type LIKE 'dm.%'"}])])


@pytest.mark.parametrize("text, seconds", [
    ("PT0.5S", 0.5), ("PT10M", 600), ("PT1H2M3.5S", 3723.5), ("PT0,2S", 0.2), ("P1D", 86400), ("P1W", 604800),
    ("PT1H", 3600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "0.5S", "PT-1S", "pt1s", "P1Y", "PT1S ", 5])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_backoff():
    assert [DeliverySpec(3, "linear", 0.5).backoff(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert [DeliverySpec(3, "exponential", 0.5).backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert DeliverySpec(3).backoff(2) == 0.0  # no policy: retried at once
    assert DeliverySpec(3, None, 0.5).backoff(2) == 0.0


def test_service_resolver():
    resolve = service_resolver({"dm-monitor": "http://127.0.0.1:8085", "dm-upload": "http://127.0.0.1:8082/"})
    assert resolve(service("dm-monitor", "/dead-letter")) == "http://127.0.0.1:8085/dead-letter"
    assert resolve(service("dm-upload")) == "http://127.0.0.1:8082/"
    assert resolve(service("dm-kew")) is None
    assert resolve({"uri": "http://example.org/hook"}) == "http://example.org/hook"
    assert resolve({"ref": {"apiVersion": "v1", "kind": "Pod", "name": "dm-upload"}}) is None
