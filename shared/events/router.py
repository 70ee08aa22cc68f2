"""The local stack's Broker: routes CloudEvents by the Broker and Trigger manifests in `knative/`.

The manifests are the one source of routing truth (DESIGN.md, "How events move"): the
cluster's Broker applies them, and so does this stand-in. `load_routing` reads them;
`Router` serves an ingress (POST a CloudEvent, get 202) and delivers each event to every
matching Trigger's subscriber, with that Trigger's retries, backoff, per-attempt timeout and
dead-letter sink, the way Knative's channel-based Broker does (reference/knative.md §5, §12).

Event data travels as raw bytes from ingress to subscriber and is never decoded here, so
protobuf payloads arrive byte for byte.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import heapq
import http.client
import itertools
import json
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol
from urllib.parse import urljoin, urlsplit

import yaml
from cloudevents import exceptions as ce_exceptions
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from werkzeug.wrappers import Request, Response

__all__ = [
    "AllOf", "AnyOf", "Attributes", "Broker", "DeadLettered", "Delivered", "DeliverySpec", "Exact",
    "Filter", "Not", "NotACloudEvent", "Prefix", "Router", "Routing", "Suffix", "Trigger",
    "load_routing", "parse_duration", "service_resolver",
]

log = logging.getLogger("dm.router")

EVENTING_API = "eventing.knative.dev/v1"
MAX_TTL = 255  # knativebrokerttl: hops a reply chain may take before it is dropped
TTL_EXTENSION = "knativebrokerttl"
ERROR_DATA_MAX = 1024  # bytes of a failed response kept in knativeerrordata
DEFAULT_TIMEOUT_S = 600.0  # per attempt, when the delivery sets none (not scaled)
KEEP_RECORDS = 10_000  # delivered / dead-lettered records kept for observability
RETRYABLE = frozenset({404, 408, 409, 429})  # and every 5xx (knative.md §1.4)

_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*$")  # Trigger filter keys (webhook rule)
_EVENT_ATTRIBUTE = re.compile(r"^[a-z0-9]+$")  # CloudEvents attribute names
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
        text = {name: _attribute_text(value) for name, value in attributes.items() if value is not None}
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
    """A `resolve` for Router: a ref to a Knative Service (by name) becomes that service's local
    base URL with the destination's uri resolved against it; an absolute uri alone is kept;
    anything else is not running here (None)."""

    def resolve(destination: Mapping[str, Any]) -> str | None:
        ref, uri = destination.get("ref"), destination.get("uri")
        if ref is None:
            return uri or None
        if ref.get("kind") != "Service" or ref.get("name") not in services:
            return None
        base = services[ref["name"]]
        return urljoin(base, uri) if uri else base

    return resolve


# --- events on the wire -------------------------------------------------------------------


class NotACloudEvent(ValueError):
    """A request or response that does not hold a valid CloudEvent."""


@dataclass(frozen=True)
class _Event:
    """A CloudEvent as the router carries it: string attributes, data as raw bytes."""

    attributes: Mapping[str, str]
    data: bytes | None

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")

    @property
    def type(self) -> str:
        return self.attributes.get("type", "")

    def with_attributes(self, **extra: str) -> "_Event":
        return _Event({**self.attributes, **extra}, self.data)

    def cloudevent(self) -> CloudEvent:
        event = CloudEvent(dict(self.attributes), self.data)
        if "time" not in self.attributes:
            del event["time"]  # the SDK fills one in; the router does not invent attributes
        return event


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _data_bytes(data: Any) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data).encode("utf-8")  # what the SDK's binary mode would send


def _is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return True  # structured mode's default
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _normalise(attributes: Mapping[str, Any], data: bytes | None) -> tuple[_Event, int]:
    """Check the attributes; take the hop count out (subscribers never see it)."""
    attrs = {name: _attribute_text(value) for name, value in attributes.items() if value is not None}
    for name in attrs:
        if not _EVENT_ATTRIBUTE.match(name) or name == "data":
            raise NotACloudEvent(f"bad attribute name {name!r}: lowercase letters and digits only")
    for name in ("id", "source", "type", "specversion"):
        if not attrs.get(name):
            raise NotACloudEvent(f"the required attribute {name!r} is missing or empty")
    ttl_text = attrs.pop(TTL_EXTENSION, None)
    try:
        ttl = int(ttl_text) if ttl_text is not None else MAX_TTL
    except ValueError:
        ttl = MAX_TTL
    return _Event(attrs, data), ttl


def _parse_http(headers: Mapping[str, str], body: bytes) -> tuple[_Event, int]:
    """A CloudEvent from an HTTP message, binary or structured; data kept as raw bytes."""
    lowered = {k.lower(): v for k, v in headers.items()}
    binary = "ce-specversion" in lowered
    try:
        event = from_http(lowered, body, data_unmarshaller=lambda b: b)
        envelope = None if binary else json.loads(body)
    except (ce_exceptions.GenericException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotACloudEvent(str(exc) or type(exc).__name__) from None
    attributes = dict(event.get_attributes())
    data = event.data
    if binary:
        if "ce-time" not in lowered:
            attributes.pop("time", None)
    else:
        if "time" not in envelope:
            attributes.pop("time", None)
        raw = envelope.get("data")
        if "data_base64" in envelope:
            pass  # the SDK has decoded the base64: raw bytes
        elif raw is None:
            data = None
        elif isinstance(raw, str) and not _is_json_type(attributes.get("datacontenttype")):
            data = raw  # text data in a JSON envelope is the string itself, not its JSON form
        elif "datacontenttype" not in attributes:
            attributes["datacontenttype"] = "application/json"  # so binary delivery says what it is
    return _normalise(attributes, _data_bytes(data))


def _encode(event: _Event, fmt: str | None) -> tuple[dict[str, str], bytes]:
    """Binary mode unless the delivery asks for json; structured keeps bytes as data_base64."""
    ce = event.cloudevent()
    if fmt != "json":
        headers, body = to_binary(ce)
        try:
            for value in headers.values():
                value.encode("latin-1")
        except UnicodeEncodeError:
            pass  # an attribute an HTTP header cannot carry: send this one structured
        else:
            return dict(headers), body or b""
    headers, body = to_structured(ce)
    return dict(headers), body


def _structured_dict(event: _Event) -> dict[str, Any]:
    return json.loads(to_structured(event.cloudevent())[1])  # data stays base64


def _looks_like_cloudevent(headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "").lower()
    return "ce-specversion" in headers or content_type.startswith("application/cloudevents")


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One POST with a deadline for the whole exchange; redirects are not followed."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = connection_class(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=dict(headers))
        sock = conn.sock
        response = conn.getresponse()
        chunks = []
        while not response.isclosed():  # closed once the whole body has been read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response within {timeout:g}s")
            if sock is not None:
                sock.settimeout(remaining)
            chunk = response.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, b"".join(chunks)
    finally:
        conn.close()


# --- the router ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """An event a subscriber accepted."""

    trigger: str
    event_id: str
    event_type: str
    url: str
    status: int
    attempts: int
    reply_type: str | None = None


@dataclass(frozen=True)
class DeadLettered:
    """An event that could not be delivered: sent to `sink`, or (sink None) written to the
    dead-letter file and the log."""

    trigger: str
    event_id: str
    event_type: str
    error_dest: str
    error_code: int
    reason: str
    attempts: int
    sink: str | None


@dataclass
class _Job:
    trigger: Trigger
    delivery: DeliverySpec
    event: _Event
    url: str
    ttl: int
    attempts: int = 0
    failure: DeadLettered | None = None  # set when this job carries a dead letter to its sink


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "ok", "retry" or "fail"
    code: int
    body: bytes = b""
    reason: str = ""
    reply: tuple[_Event, int] | None = None


class Router:
    """The Broker stand-in: an ingress plus a small pool of delivery workers.

    `resolve(destination)` turns a Destination ({ref, uri}) into a local URL, or None when that
    service is not running here (its Triggers are skipped; a dead-letter sink that resolves to
    None sends dead letters to the file). `time_scale` multiplies backoff delays and the
    configured per-attempt timeouts, so tests can run a manifest's schedule quickly.
    """

    def __init__(self, routing: Routing, resolve: Callable[[Mapping[str, Any]], str | None], *,
                 dead_letter_file: Path | None = None, time_scale: float = 1.0,
                 broker: str = "default", namespace: str | None = None, workers: int = 4):
        if time_scale < 0 or workers < 1:
            raise ValueError("time_scale must be >= 0 and workers >= 1")
        self.routing = routing
        self.broker = broker
        self.dead_letter_file = Path(dead_letter_file) if dead_letter_file is not None else None
        self.time_scale = time_scale
        self._resolve = resolve
        known = routing.broker(broker, namespace)
        self.namespace = namespace if namespace is not None else (known.namespace if known else None)
        self._routes = [(t, routing.delivery_for(t)) for t in routing.triggers_for(broker, self.namespace)]
        self._workers = workers
        self._ready: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._delayed: list[tuple[float, int, _Job]] = []
        self._sequence = itertools.count()
        self._changed = threading.Condition()  # guards everything below; notified on any change
        self._pending = 0  # jobs queued, waiting for a retry, or in flight
        self._threads: list[threading.Thread] = []
        self._started = self._stopping = False
        self._delivered: collections.deque[Delivered] = collections.deque(maxlen=KEEP_RECORDS)
        self._dead_letters: collections.deque[DeadLettered] = collections.deque(maxlen=KEEP_RECORDS)
        self._dropped: collections.deque[str] = collections.deque(maxlen=KEEP_RECORDS)
        self._unresolved: set[str] = set()
        self._file_lock = threading.Lock()

    # observability ----------------------------------------------------------------------

    @property
    def delivered(self) -> list[Delivered]:
        """The most recent deliveries a subscriber accepted, oldest first."""
        with self._changed:
            return list(self._delivered)

    @property
    def dead_letters(self) -> list[DeadLettered]:
        """The most recent events that could not be delivered, oldest first."""
        with self._changed:
            return list(self._dead_letters)

    @property
    def dropped(self) -> list[str]:
        """Ids of events dropped because their hop count (knativebrokerttl) ran out."""
        with self._changed:
            return list(self._dropped)

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> "Router":
        with self._changed:
            if self._stopping:
                raise RuntimeError("a stopped Router cannot be started again")
            if self._started:
                return self
            self._started = True
        self._threads = [threading.Thread(target=self._schedule, name="dm-router-scheduler", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"dm-router-worker-{i}", daemon=True)
                          for i in range(self._workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the threads: a request in flight finishes, anything queued or waiting for a
        retry is dropped with a warning (the outbox sends it again). True if all ended in time."""
        with self._changed:
            if not self._stopping:
                self._stopping = True
                for _, _, job in self._delayed:
                    self._abandon(job)
                self._pending -= len(self._delayed)
                self._delayed.clear()
                self._changed.notify_all()
                for _ in range(self._workers if self._started else 0):
                    self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued, waiting for a retry or in flight (for tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def __enter__(self) -> "Router":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ingress ----------------------------------------------------------------------------

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """POST / (or /<namespace>/<broker>) takes a binary or structured CloudEvent: 202."""
        request = Request(environ)
        return self._ingress(request)(environ, start_response)

    __call__ = wsgi_app

    def _ingress(self, request: Request) -> Response:
        if request.path == "/healthz":
            if request.method in ("GET", "HEAD"):
                return _json({"status": "ok"}, 200)
            return _json({"error": "method not allowed"}, 405, allow="GET, HEAD")
        paths = {"/", f"/{self.namespace}/{self.broker}" if self.namespace else f"/{self.broker}"}
        if request.path not in paths:
            return _json({"error": f"no broker at {request.path}"}, 404)
        if request.method != "POST":
            return _json({"error": "method not allowed"}, 405, allow="POST")
        try:
            event, ttl = _parse_http(dict(request.headers), request.get_data())
        except NotACloudEvent as exc:
            return _json({"error": f"not a CloudEvent: {exc}"}, 400)
        if self._stopping:
            return _json({"error": "the broker is stopping"}, 503)
        self._publish(event.with_attributes(knativearrivaltime=_now()), ttl)
        return Response(status=202)

    def publish(self, event: CloudEvent) -> int:
        """Route one event as if it came through the ingress; returns how many Triggers took it."""
        try:
            normal, ttl = _normalise(event.get_attributes(), _data_bytes(event.data))
        except NotACloudEvent as exc:
            raise ValueError(str(exc)) from None
        if "knativearrivaltime" not in normal.attributes:
            normal = normal.with_attributes(knativearrivaltime=_now())
        return self._publish(normal, ttl)

    def _publish(self, event: _Event, ttl: int) -> int:
        if ttl <= 0:
            log.warning("dropped event %s (%s): its hop count ran out (a reply loop?)", event.id, event.type)
            with self._changed:
                self._dropped.append(event.id)
            return 0
        taken = 0
        for trigger, delivery in self._routes:
            if not trigger.matches(event.attributes):
                continue
            url = self._resolve_quietly(trigger.subscriber)
            if url is None:
                if trigger.name not in self._unresolved:
                    self._unresolved.add(trigger.name)
                    log.info("trigger %s: its subscriber is not running here; its events are skipped",
                             trigger.name)
                continue
            self._submit(_Job(trigger, delivery, event, url, ttl))
            taken += 1
        return taken

    def _resolve_quietly(self, destination: Mapping[str, Any]) -> str | None:
        try:
            return self._resolve(destination)
        except Exception:  # noqa: BLE001 - a broken resolver must not lose the event
            log.exception("could not resolve %s", destination)
            return None

    # the machinery -----------------------------------------------------------------------

    def _submit(self, job: _Job, delay: float = 0.0) -> None:
        with self._changed:
            if self._stopping:
                self._abandon(job)
                return
            self._pending += 1
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._sequence), job))
                self._changed.notify_all()
            else:
                self._ready.put(job)

    def _schedule(self) -> None:
        """Move retries whose backoff has passed onto the ready queue."""
        with self._changed:
            while not self._stopping:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready.put(heapq.heappop(self._delayed)[2])
                self._changed.wait(self._delayed[0][0] - now if self._delayed else None)

    def _work(self) -> None:
        while True:
            job = self._ready.get()
            if job is None:
                return
            try:
                if self._stopping:
                    self._abandon(job)
                else:
                    self._attempt(job)
            except Exception:  # noqa: BLE001 - a worker must survive anything
                log.exception("trigger %s: delivery of event %s failed", job.trigger.name, job.event.id)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()

    def _abandon(self, job: _Job) -> None:
        log.warning("router stopping: event %s (%s) for trigger %s not delivered",
                    job.event.id, job.event.type, job.trigger.name)

    def _attempt(self, job: _Job) -> None:
        job.attempts += 1
        headers, body = _encode(job.event, job.delivery.format)
        if job.failure is None:
            headers["Prefer"] = "reply"
        timeout = (job.delivery.timeout * self.time_scale if job.delivery.timeout is not None
                   else DEFAULT_TIMEOUT_S)
        try:
            status, response_headers, response_body = _post(job.url, headers, body, timeout)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out ...
            # Knative reports a failed dispatch as a 500 with the error text as the body.
            text = f"dispatch error: {type(exc).__name__}: {exc}"
            outcome = _Outcome("retry", 500, text.encode(), text)
        else:
            outcome = _judge(status, response_headers, response_body, expect_reply=job.failure is None)

        if outcome.kind == "ok":
            self._succeeded(job, outcome)
        elif outcome.kind == "retry" and job.attempts <= job.delivery.retry:
            delay = job.delivery.backoff(job.attempts) * self.time_scale
            log.info("trigger %s: event %s to %s failed (%s); retry %d/%d in %.3gs", job.trigger.name,
                     job.event.id, job.url, outcome.reason, job.attempts, job.delivery.retry, delay)
            self._submit(job, delay)
        elif job.failure is None:
            self._dead_letter(job, outcome)
        else:
            self._to_file(job.failure, job.event, f"{job.failure.reason}; dead-letter sink {job.url} "
                                                  f"failed too ({outcome.reason})")

    def _succeeded(self, job: _Job, outcome: _Outcome) -> None:
        if job.failure is not None:
            record = dataclasses.replace(job.failure, sink=job.url)
            log.warning("dead letter: trigger %s, event %s (%s) sent to %s: %s", record.trigger,
                        record.event_id, record.event_type, job.url, record.reason)
            with self._changed:
                self._dead_letters.append(record)
            return
        reply_type = outcome.reply[0].type if outcome.reply else None
        with self._changed:
            self._delivered.append(Delivered(job.trigger.name, job.event.id, job.event.type, job.url,
                                             outcome.code, job.attempts, reply_type))
        if outcome.reply is not None:
            reply, _ = outcome.reply
            # A reply goes back into the broker one hop further on (knativebrokerttl).
            self._publish(reply.with_attributes(knativearrivaltime=_now()), job.ttl - 1)

    def _dead_letter(self, job: _Job, outcome: _Outcome) -> None:
        """Send the original event, with the knativeerror* extensions, to the dead-letter sink."""
        extensions = {"knativeerrordest": job.url, "knativeerrorcode": str(outcome.code)}
        if outcome.body:
            extensions["knativeerrordata"] = base64.b64encode(outcome.body[:ERROR_DATA_MAX]).decode("ascii")
        event = job.event.with_attributes(**extensions)
        retried = f" after {job.attempts} attempts" if job.attempts > 1 else ""
        record = DeadLettered(job.trigger.name, job.event.id, job.event.type, job.url, outcome.code,
                              f"{outcome.reason}{retried}", job.attempts, None)
        sink = job.delivery.dead_letter_sink
        url = self._resolve_quietly(sink) if sink is not None else None
        if url is None:
            where = ("no dead-letter sink is configured" if sink is None
                     else "its dead-letter sink is not running here")
            self._to_file(record, event, f"{record.reason}; {where}")
            return
        self._submit(_Job(job.trigger, job.delivery, event, url, job.ttl, failure=record))

    def _to_file(self, record: DeadLettered, event: _Event, reason: str) -> None:
        record = dataclasses.replace(record, reason=reason, sink=None)
        log.error("dead letter: trigger %s, event %s (%s) not delivered: %s", record.trigger,
                  record.event_id, record.event_type, reason)
        with self._changed:
            self._dead_letters.append(record)
        if self.dead_letter_file is None:
            return
        line = json.dumps({"time": _now(), "broker": self.broker, "trigger": record.trigger,
                           "reason": reason, "event": _structured_dict(event)})
        try:
            with self._file_lock:
                self.dead_letter_file.parent.mkdir(parents=True, exist_ok=True)
                with self.dead_letter_file.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
        except OSError:
            log.exception("could not write the dead letter to %s", self.dead_letter_file)


def _judge(status: int, headers: Mapping[str, str], body: bytes, *, expect_reply: bool) -> _Outcome:
    """What a subscriber's answer means (knative.md §5, "What a subscriber's HTTP answer means")."""
    if 200 <= status < 300:
        if status == 202 or not expect_reply:
            return _Outcome("ok", status)  # a 202 body is never a reply
        if _looks_like_cloudevent(headers):
            try:
                return _Outcome("ok", status, reply=_parse_http(headers, body))
            except NotACloudEvent as exc:
                return _Outcome("retry", 502, body, f"{status} with an invalid reply event: {exc}")
        if body:
            # The channel-based broker turns this into a 502: retried, then dead-lettered.
            return _Outcome("retry", 502, body, f"{status} with a body that is not a CloudEvent")
        return _Outcome("ok", status)
    kind = "retry" if status in RETRYABLE or status >= 500 else "fail"
    return _Outcome(kind, status, body, f"HTTP {status}")


def _json(payload: Mapping[str, Any], status: int, *, allow: str | None = None) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    if allow:
        response.headers["Allow"] = allow
    return response


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
