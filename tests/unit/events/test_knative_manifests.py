"""The Broker and Triggers in knative/: well formed, routing the upload events to dm-upload,
and readable by the local router (the one source of routing truth)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.events.triggers import load_routing

KNATIVE = Path(__file__).resolve().parents[3] / "knative"
NAMESPACE = "data-manager"
SERVING = "serving.knative.dev/v1"
FUNCTIONS = {"dm-upload": "upload", "dm-kew": "kew", "dm-pbc": "pbc", "dm-monitor": "monitor"}  # Service: role


def accepted(role: str) -> frozenset[str]:
    """The CloudEvent types a function's consumer takes (its contracts')."""
    import importlib

    return importlib.import_module(f"functions.{role}.handler").consumer.accepts


UPLOAD_TYPES = accepted("upload")
PLANNED_SERVICES: set[str] = set()  # Services not (yet) in knative/
ACCOUNT_SERVER = {"apiVersion": "v1", "kind": "Service", "name": "account-server"}  # the operator's
DEAD_LETTER_SINK = {"ref": {"apiVersion": SERVING, "kind": "Service", "name": "dm-monitor"}, "uri": "/dead-letter"}


def documents(*names: str) -> list[dict]:
    paths = [KNATIVE / n for n in names] if names else sorted(KNATIVE.glob("*.yaml"))
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def test_every_manifest_parses_and_names_itself():
    docs = documents()
    assert docs
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str), doc
        assert isinstance(doc.get("metadata", {}).get("name"), str), doc


def test_the_broker_is_durable_and_dead_letters_to_the_monitor():
    docs = documents("broker.yaml")
    [broker] = of_kind(docs, "Broker")
    assert broker["apiVersion"] == "eventing.knative.dev/v1"
    assert (broker["metadata"]["name"], broker["metadata"]["namespace"]) == ("default", NAMESPACE)
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "RabbitMQBroker"
    config = broker["spec"]["config"]
    assert config == {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RabbitmqBrokerConfig",
                      "name": "dm-rabbitmq"}
    assert broker["spec"]["delivery"] == {"retry": 10, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S",
                                          "deadLetterSink": DEAD_LETTER_SINK}

    [rabbit] = of_kind(docs, "RabbitmqBrokerConfig")
    assert rabbit["apiVersion"] == config["apiVersion"]
    assert (rabbit["metadata"]["name"], rabbit["metadata"]["namespace"]) == (config["name"], NAMESPACE)
    assert rabbit["spec"] == {"rabbitmqClusterReference": {"name": "rabbitmq", "namespace": "rabbitmq-system"},
                              "queueType": "quorum"}


def test_one_trigger_per_upload_type_to_dm_upload():
    triggers = of_kind(documents("triggers.yaml"), "Trigger")
    types = []
    for t in triggers:
        assert t["apiVersion"] == "eventing.knative.dev/v1"
        assert t["metadata"]["namespace"] == NAMESPACE
        spec = t["spec"]
        assert spec["broker"] == "default"
        [expression] = spec["filters"]
        type_ = expression["exact"]["type"]
        assert expression == {"exact": {"type": type_}}
        # The RabbitMQ broker applies only the legacy dialect: both must say the same.
        assert spec["filter"] == {"attributes": {"type": type_}}
        assert spec["subscriber"] == {"ref": {"apiVersion": SERVING, "kind": "Service", "name": "dm-upload"}}
        assert spec["delivery"] == {"retry": 5, "backoffPolicy": "exponential", "backoffDelay": "PT0.5S",
                                    "timeout": "PT10M", "deadLetterSink": DEAD_LETTER_SINK}
        types.append(type_)
    assert sorted(types) == sorted(UPLOAD_TYPES)  # each exactly once


def test_destinations_name_services_that_exist_or_are_planned():
    docs = documents()
    services = {d["metadata"]["name"] for d in of_kind(docs, "Service") if d["apiVersion"] == SERVING}
    destinations = []
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc["kind"] == "Trigger":
            destinations.append(spec["subscriber"])
        if doc["kind"] in ("Trigger", "Broker") and (spec.get("delivery") or {}).get("deadLetterSink"):
            destinations.append(spec["delivery"]["deadLetterSink"])
    assert destinations
    for destination in destinations:
        ref = destination["ref"]
        if ref == ACCOUNT_SERVER:  # charges go to the Account Server's receiver, outside the functions
            assert destination["uri"] == "/account-server-api/event"
            continue
        assert (ref["apiVersion"], ref["kind"]) == (SERVING, "Service")
        assert ref["name"] in services | PLANNED_SERVICES, ref


def test_the_upload_function_serves_the_triggers_and_the_api_sends_to_the_broker():
    docs = documents("upload.yaml", "api.yaml")
    services = {d["metadata"]["name"]: d for d in of_kind(docs, "Service")}
    upload = services["dm-upload"]
    assert upload["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    spec = upload["spec"]["template"]["spec"]
    [container] = spec["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["FUNCTION_TARGET"], env["FUNCTION_SIGNATURE_TYPE"]) == ("upload", "http")
    assert spec["timeoutSeconds"] >= 600  # not shorter than the Triggers' delivery timeout
    [binding] = of_kind(docs, "SinkBinding")
    assert binding["spec"]["subject"] == {"apiVersion": SERVING, "kind": "Service",
                                          "selector": {"matchLabels": {"app.kubernetes.io/part-of": "data-manager"}}}
    for service in of_kind(documents(), "Service"):  # the api and kew emit: each must be bound
        if service["apiVersion"] == SERVING:
            assert service["metadata"]["labels"]["app.kubernetes.io/part-of"] == "data-manager"
    assert binding["spec"]["sink"]["ref"] == {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                                              "name": "default"}
    assert "dm-api" in services


def test_the_local_router_reads_the_manifests():
    load_routing(sorted(KNATIVE.glob("*.yaml")))  # everything in knative/ loads
    routing = load_routing([KNATIVE / "broker.yaml", KNATIVE / "triggers.yaml"])
    broker = routing.broker("default", NAMESPACE)
    assert broker is not None and broker.broker_class == "RabbitMQBroker"
    assert (broker.delivery.retry, broker.delivery.backoff_delay) == (10, 0.2)
    for type_ in UPLOAD_TYPES:
        [t] = routing.matching({"type": type_, "source": "/data-manager", "id": "1", "specversion": "1.0"})
        assert t.subscriber["ref"]["name"] == "dm-upload"
        delivery = routing.delivery_for(t)
        assert (delivery.retry, delivery.backoff_policy, delivery.backoff_delay, delivery.timeout) == (
            5, "exponential", 0.5, 600.0)
        assert delivery.dead_letter_sink == DEAD_LETTER_SINK


def test_every_event_a_function_takes_is_routed_to_it_and_nothing_else():
    """What the consumers accept (their contracts) and what the Triggers route agree, both ways."""
    from shared.events import contracts

    routing = load_routing(sorted(KNATIVE.glob("*.yaml")))
    every_type = {t for c in contracts.ALL for t in c.types()}
    for service, role in FUNCTIONS.items():
        takes = accepted(role)
        assert takes and takes <= every_type
        for type_ in every_type:
            routed = {t.subscriber["ref"]["name"] for t in routing.matching(
                {"type": type_, "source": "/s", "id": "1", "specversion": "1.0"}, namespace=NAMESPACE)}
            assert (service in routed) == (type_ in takes), (service, type_, routed)


@pytest.mark.parametrize("type_", ["dm.dataset.upload.v2", "DM.DATASET.UPLOAD.V1", "dm.pod.message.v1",
                                   "dm.dataset"])
def test_other_types_reach_no_upload_trigger(type_):
    routing = load_routing([KNATIVE / "broker.yaml", KNATIVE / "triggers.yaml"])
    assert routing.matching({"type": type_, "source": "/data-manager", "id": "1", "specversion": "1.0"}) == []
