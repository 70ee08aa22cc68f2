"""Every Knative object in knative/ against Knative's own CRD schemas, strictly (unknown fields refused,
as the API server's strict field validation does), plus the webhook rules the schemas cannot express."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
KNATIVE = ROOT / "knative"
SCHEMAS = ROOT / "tests" / "data" / "schemas" / "knative"  # Knative's CRDs, copied (see SOURCES.md there)
CRD_FILES = {("serving.knative.dev", "Service"): "service.yaml", ("eventing.knative.dev", "Broker"): "broker.yaml",
             ("eventing.knative.dev", "Trigger"): "trigger.yaml",
             ("sources.knative.dev", "ApiServerSource"): "apiserversource.yaml",
             ("sources.knative.dev", "PingSource"): "pingsource.yaml",
             ("sources.knative.dev", "SinkBinding"): "sinkbindings.yaml"}
ISO_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")


def strict(schema):
    """additionalProperties: false wherever the schema lists properties and keeps no unknown fields."""
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def knative_objects():
    for path in sorted(KNATIVE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and (doc["apiVersion"].split("/")[0], doc["kind"]) in CRD_FILES:
                yield pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")


def schema_for(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    (crd,) = [d for d in yaml.safe_load_all((SCHEMAS / CRD_FILES[(group, kind)]).read_text()) if d]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = served["schema"]["openAPIV3Schema"]
    # the API server checks the object's own envelope itself; some CRD schemas leave it out
    for name in ("apiVersion", "kind"):
        schema.setdefault("properties", {}).setdefault(name, {"type": "string"})
    schema["properties"].setdefault("metadata", {"type": "object"})
    return strict(schema)


@pytest.mark.parametrize("obj", list(knative_objects()))
def test_the_crd_schema_accepts_it_strictly(obj):
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(schema_for(obj["apiVersion"], obj["kind"])).iter_errors(obj),
                    key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def deliveries(obj):
    spec = obj.get("spec") or {}
    if spec.get("delivery"):
        yield spec["delivery"]


@pytest.mark.parametrize("obj", list(knative_objects()))
def test_the_webhook_rules(obj):
    spec = obj.get("spec") or {}
    for delivery in deliveries(obj):
        assert delivery.get("backoffPolicy", "exponential") in ("linear", "exponential")
        assert delivery.get("retry", 0) >= 0
        for field in ("backoffDelay", "timeout"):
            if field in delivery:
                assert ISO_DURATION.match(delivery[field]), f"{field} {delivery[field]} is not an ISO-8601 duration"
    if obj["kind"] == "Service":
        assert not any(k.startswith("autoscaling.knative.dev/") for k in obj["metadata"].get("annotations") or {})
        template = spec["template"]
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        assert all(isinstance(v, str) for v in annotations.values())
        low = int(annotations.get("autoscaling.knative.dev/min-scale", "0"))
        high = int(annotations.get("autoscaling.knative.dev/max-scale", "0"))
        assert high == 0 or low <= high
        pod = template["spec"]
        assert 0 <= pod.get("containerConcurrency", 0) <= 1000
        assert 0 < pod.get("timeoutSeconds", 300) <= 600
        (container,) = pod["containers"]
        assert container.get("image")
        assert len(container.get("ports") or []) <= 1
    if obj["kind"] == "Trigger":
        assert spec.get("broker") and spec.get("subscriber")
        for expression in spec.get("filters") or []:
            assert len(expression) == 1  # one dialect per item
        for name in ((spec.get("filter") or {}).get("attributes") or {}):
            assert re.fullmatch(r"[a-z][a-z0-9]*", name)
    if obj["kind"] == "ApiServerSource":
        assert spec.get("mode") in ("Reference", "Resource") and spec.get("sink")
        assert all(r.get("apiVersion") and r.get("kind") for r in spec["resources"])


def test_the_checks_catch_typos_and_wrong_types():
    import copy

    import jsonschema

    (service,) = [d for d in yaml.safe_load_all((KNATIVE / "api.yaml").read_text()) if d["kind"] == "Service"]
    validator = jsonschema.Draft7Validator(schema_for(service["apiVersion"], "Service"))
    assert not list(validator.iter_errors(service))
    typo = copy.deepcopy(service)
    typo["spec"]["template"]["spec"]["containerConcurency"] = 10
    assert list(validator.iter_errors(typo))
    wrong_type = copy.deepcopy(service)
    wrong_type["spec"]["template"]["spec"]["timeoutSeconds"] = "600"
    assert list(validator.iter_errors(wrong_type))
    assert ISO_DURATION.match("PT0.5S") and ISO_DURATION.match("PT10M") and not ISO_DURATION.match("10s")
