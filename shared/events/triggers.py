"""Routing as the Broker and Trigger manifests in `knative/` declare it.

The manifests are the one source of routing truth (DESIGN.md, "How events move"): the
cluster's Broker applies them, and so does the local stand-in (`shared.events.delivery`).
`load_routing` reads them into Brokers and Triggers, checking what the Knative webhook would
check; a Trigger's filter decides which events it takes (reference/knative.md §5), and
`service_resolver` turns a subscriber or dead-letter sink into a local URL.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol
from urllib.parse import urljoin, urlsplit

import yaml

from shared.events.wire import attribute_text

__all__ = [
    "AllOf", "AnyOf", "Attributes", "Broker", "DeliverySpec", "Exact", "Filter", "Not", "Prefix", "Routing",
    "Suffix", "Trigger", "load_routing", "parse_duration", "service_resolver",
]

EVENTING_API = "eventing.knative.dev/v1"

_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*$")  # Trigger filter keys (webhook rule)
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION = re.compile(
    rf"P(?!$)(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?=\d)(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)


def parse_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration such as PT0.5S, PT10M or PT1H2M3.5S (weeks and days too)."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    weeks, days, hours, minutes, seconds = (float(g.replace(",", ".")) if g else 0.0 for g in match.groups())
    return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds


# --- filters ------------------------------------------------------------------------------


class Filter(Protocol):
    def matches(self, attributes: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True)
class Exact:
    attribute: str
    value: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return attributes.get(self.attribute) == self.value


@dataclass(frozen=True)
class Prefix:
    attribute: str
    value: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        actual = attributes.get(self.attribute)
        return actual is not None and actual.startswith(self.value)


@dataclass(frozen=True)
class Suffix:
    attribute: str
    value: str

    def matches(self, attributes: Mapping[str, str]) -> bool:
        actual = attributes.get(self.attribute)
        return actual is not None and actual.endswith(self.value)


@dataclass(frozen=True)
class AllOf:
    filters: tuple[Filter, ...] = ()

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True)
class AnyOf:
    filters: tuple[Filter, ...] = ()

    def matches(self, attributes: Mapping[str, str]) -> bool:
        # Knative skips an empty `any` when it builds the filter, so it lets everything through.
        return not self.filters or any(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True)
class Not:
    filter: Filter

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.filter.matches(attributes)


@dataclass(frozen=True)
class Attributes:
    """The legacy `filter.attributes` dialect: every pair equal; "" = present and non-empty."""

    pairs: tuple[tuple[str, str], ...] = ()

    def matches(self, attributes: Mapping[str, str]) -> bool:
        for name, wanted in self.pairs:
            actual = attributes.get(name)
            if actual is None or (actual != wanted if wanted else actual == ""):
                return False
        return True


# --- routing objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySpec:
    """A Broker's or Trigger's `delivery`, durations in seconds."""

    retry: int = 0
    backoff_policy: str | None = None
    backoff_delay: float | None = None
    timeout: float | None = None
    dead_letter_sink: Mapping[str, Any] | None = None
    format: str | None = None

    def backoff(self, n: int) -> float:
        """Seconds before retry number n (1 for the first); no policy or delay = at once."""
        if self.backoff_policy is None or self.backoff_delay is None:
            return 0.0
        return self.backoff_delay * (n if self.backoff_policy == "linear" else 2**n)


@dataclass(frozen=True)
class Broker:
    name: str
    namespace: str | None = None
    delivery: DeliverySpec | None = None
    broker_class: str | None = None


@dataclass(frozen=True, eq=False)
class Trigger:
    name: str
    broker: str
    subscriber: Mapping[str, Any]
    filter: Filter = AllOf()
    namespace: str | None = None
    delivery: DeliverySpec | None = None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.filter.matches(attributes)


@dataclass(frozen=True)
class Routing:
    """Brokers and Triggers read from manifests."""

    brokers: tuple[Broker, ...] = ()
    triggers: tuple[Trigger, ...] = ()

    def broker(self, name: str = "default", namespace: str | None = None) -> Broker | None:
        for broker in self.brokers:
            if broker.name == name and _same_namespace(broker.namespace, namespace):
                return broker
        return None

    def triggers_for(self, broker: str = "default", namespace: str | None = None) -> tuple[Trigger, ...]:
        return tuple(t for t in self.triggers if t.broker == broker and _same_namespace(t.namespace, namespace))

    def delivery_for(self, trigger: Trigger) -> DeliverySpec:
        """The Trigger's delivery if it has one, else its Broker's (as a whole); the dead-letter
        sink alone falls back to the Broker's (knative.md §5)."""
        broker = self.broker(trigger.broker, trigger.namespace)
        broker_delivery = broker.delivery if broker is not None else None
        if trigger.delivery is None:
            return broker_delivery or DeliverySpec()
        if trigger.delivery.dead_letter_sink is None and broker_delivery is not None:
            return dataclasses.replace(trigger.delivery, dead_letter_sink=broker_delivery.dead_letter_sink)
        return trigger.delivery

    def matching(self, attributes: Mapping[str, Any], broker: str = "default",
                 namespace: str | None = None) -> list[Trigger]:
        """The Triggers of `broker` whose filters pass these context attributes."""
        text = {name: attribute_text(value) for name, value in attributes.items() if value is not None}
        return [t for t in self.triggers_for(broker, namespace) if t.matches(text)]


def _same_namespace(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


# --- loading ------------------------------------------------------------------------------


def load_routing(paths: Iterable[Path | str]) -> Routing:
    """Read Brokers and Triggers from multi-document YAML files; other kinds are ignored.

    Raises ValueError naming the object for what the Knative webhook would reject (and a few
    typos it would let through); NotImplementedError for a `cesql` filter.
    """
    brokers: list[Broker] = []
    triggers: list[Trigger] = []
    for path in paths:
        path = Path(path)
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            for obj in _objects(doc, f"{path.name} document {index + 1}"):
                kind, api = obj.get("kind"), obj.get("apiVersion")
                if api == EVENTING_API and kind == "Broker":
                    brokers.append(_broker(obj))
                elif api == EVENTING_API and kind == "Trigger":
                    triggers.append(_trigger(obj))
    _unique([(b.namespace, b.name) for b in brokers], "Broker")
    _unique([(t.namespace, t.name) for t in triggers], "Trigger")
    return Routing(tuple(brokers), tuple(triggers))


def _objects(doc: Any, where: str) -> list[Mapping[str, Any]]:
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: not a mapping")
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return [item for item in doc["items"] if isinstance(item, Mapping)]
    return [doc]


def _unique(keys: list[tuple[str | None, str]], kind: str) -> None:
    seen = set()
    for namespace, name in keys:
        if (namespace, name) in seen:
            raise ValueError(f"{kind} {_label(namespace, name)} is defined twice")
        seen.add((namespace, name))


def _label(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _metadata(obj: Mapping[str, Any], kind: str) -> tuple[str, str | None, Mapping[str, Any]]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ValueError(f"a {kind} has no metadata.name")
    namespace = meta.get("namespace")
    return meta["name"], namespace if isinstance(namespace, str) else None, meta


def _broker(obj: Mapping[str, Any]) -> Broker:
    name, namespace, meta = _metadata(obj, "Broker")
    where = f"Broker {_label(namespace, name)}"
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: spec must be a mapping")
    annotations = meta.get("annotations") or {}
    return Broker(name=name, namespace=namespace,
                  delivery=_delivery(spec.get("delivery"), where),
                  broker_class=annotations.get("eventing.knative.dev/broker.class"))


_TRIGGER_KEYS = {"broker", "brokerRef", "filter", "filters", "subscriber", "delivery"}


def _trigger(obj: Mapping[str, Any]) -> Trigger:
    name, namespace, _ = _metadata(obj, "Trigger")
    where = f"Trigger {_label(namespace, name)}"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: spec is missing")
    # The CRD keeps unknown fields in a Trigger's spec, so a typo would pass the API server.
    unknown = set(spec) - _TRIGGER_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown spec fields {sorted(unknown)}")
    broker = spec.get("broker")
    if not broker and isinstance(spec.get("brokerRef"), Mapping):
        broker = spec["brokerRef"].get("name")
    if not isinstance(broker, str) or not broker:
        raise ValueError(f"{where}: spec.broker is required")
    if spec.get("subscriber") is None:
        raise ValueError(f"{where}: spec.subscriber is required")
    subscriber = _destination(spec["subscriber"], f"{where}: spec.subscriber")
    filters = spec.get("filters")
    if filters:  # a non-empty `filters` replaces `filter` (knative.md §5)
        if not isinstance(filters, list):
            raise ValueError(f"{where}: spec.filters must be a list")
        flt: Filter = AllOf(tuple(_expression(item, f"{where}: spec.filters[{i}]")
                                  for i, item in enumerate(filters)))
    else:
        flt = _legacy_filter(spec.get("filter"), f"{where}: spec.filter")
    return Trigger(name=name, namespace=namespace, broker=broker, subscriber=subscriber, filter=flt,
                   delivery=_delivery(spec.get("delivery"), where))


def _legacy_filter(obj: Any, where: str) -> Filter:
    if obj is None:
        return AllOf()
    if not isinstance(obj, Mapping) or set(obj) - {"attributes"}:
        raise ValueError(f"{where}: only `attributes` is allowed")
    attributes = obj.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise ValueError(f"{where}.attributes must be a mapping")
    pairs = []
    for key, value in attributes.items():
        _check_name(key, f"{where}.attributes")
        if not isinstance(value, str):
            raise ValueError(f'{where}.attributes.{key}: the value must be a string ("" for any value)')
        pairs.append((key, value))
    return Attributes(tuple(pairs))


_DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
_SINGLE = {"exact": Exact, "prefix": Prefix, "suffix": Suffix}


def _expression(item: Any, where: str) -> Filter:
    """One Subscriptions-API filter expression."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: a filter expression must be a mapping")
    unknown = set(item) - set(_DIALECTS)
    if unknown:
        raise ValueError(f"{where}: unknown filter dialect {sorted(unknown)}; use one of {', '.join(_DIALECTS)}")
    present = [d for d in _DIALECTS if item.get(d) not in (None, "", {}, [])]
    if len(present) > 1:
        raise ValueError(f"{where}: one dialect per expression, found {present}")
    if not present:
        return AllOf()  # Knative ignores an empty expression
    dialect = present[0]
    body = item[dialect]
    if dialect == "cesql":
        raise NotImplementedError(
            f"{where}: cesql filters are not supported by the local router; "
            "express the filter with exact/prefix/suffix/all/any/not")
    if dialect in _SINGLE:
        if not isinstance(body, Mapping) or len(body) != 1:
            # The Knative webhook takes exactly one attribute per exact/prefix/suffix item.
            raise ValueError(f"{where}.{dialect}: exactly one attribute per item (combine items with all)")
        (key, value), = body.items()
        _check_name(key, f"{where}.{dialect}")
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}.{dialect}.{key}: the value must be a non-empty string")
        return _SINGLE[dialect](key, value)
    if dialect == "not":
        if not isinstance(body, Mapping):
            raise ValueError(f"{where}.not: must be one filter expression")
        return Not(_expression(body, f"{where}.not"))
    if not isinstance(body, list):
        raise ValueError(f"{where}.{dialect}: must be a list of filter expressions")
    parts = tuple(_expression(sub, f"{where}.{dialect}[{i}]") for i, sub in enumerate(body))
    return AllOf(parts) if dialect == "all" else AnyOf(parts)


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
        raise ValueError(f"{where}: bad attribute name {name!r} (must match {_ATTRIBUTE_NAME.pattern})")


_DELIVERY_KEYS = {"retry", "backoffPolicy", "backoffDelay", "timeout", "deadLetterSink", "retryAfterMax", "format"}


def _delivery(obj: Any, where: str) -> DeliverySpec | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: delivery must be a mapping")
    unknown = set(obj) - _DELIVERY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown delivery fields {sorted(unknown)}")
    retry = obj.get("retry", 0)
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ValueError(f"{where}: delivery.retry must be an integer >= 0, not {retry!r}")
    policy = obj.get("backoffPolicy")
    if policy is not None and policy not in ("linear", "exponential"):
        raise ValueError(f"{where}: delivery.backoffPolicy must be linear or exponential, not {policy!r}")
    fmt = obj.get("format")
    if fmt is not None and fmt not in ("json", "binary"):
        raise ValueError(f"{where}: delivery.format must be json or binary, not {fmt!r}")

    def duration(key: str) -> float | None:
        if obj.get(key) is None:
            return None
        try:
            return parse_duration(obj[key])
        except ValueError as exc:
            raise ValueError(f"{where}: delivery.{key}: {exc}") from None

    delay, timeout = duration("backoffDelay"), duration("timeout")
    duration("retryAfterMax")  # validated only: an alpha feature, off by default
    if timeout is not None and timeout <= 0:
        raise ValueError(f"{where}: delivery.timeout must be positive")
    sink = obj.get("deadLetterSink")
    return DeliverySpec(
        retry=retry, backoff_policy=policy, backoff_delay=delay, timeout=timeout, format=fmt,
        dead_letter_sink=None if sink is None else _destination(sink, f"{where}: delivery.deadLetterSink"))


def _destination(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping) or not (obj.get("ref") or obj.get("uri")):
        raise ValueError(f"{where}: a destination needs a ref or a uri")
    unknown = set(obj) - {"ref", "uri", "CACerts", "audience"}
    if unknown:
        raise ValueError(f"{where}: unknown destination fields {sorted(unknown)}")
    ref, uri = obj.get("ref"), obj.get("uri")
    if ref is not None:
        if not isinstance(ref, Mapping) or not all(isinstance(ref.get(k), str) and ref[k]
                                                   for k in ("apiVersion", "kind", "name")):
            raise ValueError(f"{where}.ref: apiVersion, kind and name are required")
    if uri is not None:
        if not isinstance(uri, str):
            raise ValueError(f"{where}.uri must be a string")
        if ref is None and not (urlsplit(uri).scheme and urlsplit(uri).netloc):
            raise ValueError(f"{where}.uri must be absolute when there is no ref")
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in obj.items()}


def service_resolver(services: Mapping[str, str]) -> Callable[[Mapping[str, Any]], str | None]:
    """A `resolve` for the local Broker (`delivery.Router`): a ref to a Knative Service (by
    name) becomes that service's local base URL with the destination's uri resolved against
    it; an absolute uri alone is kept; anything else is not running here (None)."""

    def resolve(destination: Mapping[str, Any]) -> str | None:
        ref, uri = destination.get("ref"), destination.get("uri")
        if ref is None:
            return uri or None
        if ref.get("kind") != "Service" or ref.get("name") not in services:
            return None
        base = services[ref["name"]]
        return urljoin(base, uri) if uri else base

    return resolve
