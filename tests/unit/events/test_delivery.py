"""The local Broker stand-in, over real HTTP: events are POSTed to the router's ingress on a
local port, subscribers and dead-letter sinks are small WSGI apps on their own ports."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from tests.unit.events.broker_kit import (
    DLS, NS, PROTOBUF, Received, Subscriber, broker, dead_letter_lines, exact_type, free_port, post, retries,
    service, settle, trigger,
)


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
