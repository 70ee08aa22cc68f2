"""Routing as the manifests declare it: Trigger filters (over real HTTP through the local
Broker's ingress), loading Brokers and Triggers, durations, backoff and resolving
destinations."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from shared.events.triggers import (
    AllOf, AnyOf, Attributes, DeliverySpec, Exact, Not, Prefix, Suffix, load_routing, parse_duration,
    service_resolver,
)
from tests.unit.events.broker_kit import (
    DLS, NS, Subscriber, broker, exact_type, retries, service, settle, trigger,
)


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
