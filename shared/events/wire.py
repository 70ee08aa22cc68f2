"""CloudEvents on HTTP: the one place events are built from and turned into HTTP messages.

The outbox, the consumers, the local Broker and the local launcher all go through here,
and this module through the CloudEvents SDK (1.x; binary and structured content modes).
Event data always stays raw bytes: protobuf payloads arrive byte for byte, and only a
consumer's event contract decides what the bytes mean.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from cloudevents import exceptions as ce_exceptions
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent, from_http as sdk_from_http

_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]+$")  # CloudEvents attribute names
REQUIRED = ("id", "source", "type", "specversion")


class NotACloudEvent(ValueError):
    """A request or response that does not hold a valid CloudEvent."""


@dataclass(frozen=True)
class WireEvent:
    """A CloudEvent as it travels: string attributes, data as raw bytes (or None)."""

    attributes: Mapping[str, str]
    data: bytes | None

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")

    @property
    def type(self) -> str:
        return self.attributes.get("type", "")

    @property
    def source(self) -> str:
        return self.attributes.get("source", "")

    @property
    def subject(self) -> str | None:
        return self.attributes.get("subject")

    @property
    def content_type(self) -> str:
        """The data's media type without parameters ("" when none is given)."""
        return (self.attributes.get("datacontenttype") or "").split(";", 1)[0].strip().lower()

    def with_attributes(self, **extra: str) -> "WireEvent":
        return WireEvent({**self.attributes, **extra}, self.data)

    def without(self, *names: str) -> "WireEvent":
        return WireEvent({k: v for k, v in self.attributes.items() if k not in names}, self.data)

    def cloudevent(self) -> CloudEvent:
        event = CloudEvent(dict(self.attributes), self.data)
        if "time" not in self.attributes:
            del event["time"]  # the SDK fills one in; nothing here invents attributes
        return event


def new_event(type_: str, source: str, data: bytes | None, *, content_type: str | None = None,
              subject: str | None = None, id_: str | None = None, time: dt.datetime | None = None,
              **extensions: str) -> WireEvent:
    """A new event with a fresh id (unless given) and the time it happened."""
    when = (time or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    attributes = {"specversion": "1.0", "id": id_ or str(uuid.uuid4()), "type": type_, "source": source,
                  "time": when.isoformat().replace("+00:00", "Z"), **extensions}
    if content_type:
        attributes["datacontenttype"] = content_type
    if subject:
        attributes["subject"] = subject
    return from_attributes(attributes, data)


def event_of(contract: Any, *, id_: str | None = None, time: dt.datetime | None = None,
             **extensions: str) -> WireEvent:
    """The CloudEvent for an event contract (``shared.events.contracts``): its type, source,
    content type, subject and data."""
    return new_event(contract.type, contract.SOURCE, contract.to_bytes(), content_type=contract.CONTENT_TYPE,
                     subject=contract.subject, id_=id_, time=time, **extensions)


def from_attributes(attributes: Mapping[str, Any], data: Any) -> WireEvent:
    """An event from attribute values of any type (as the SDK holds them); checks names and
    the required attributes."""
    attrs = {name: value if type(value) is str else attribute_text(value)
             for name, value in attributes.items() if value is not None}
    for name in attrs:
        if not _ATTRIBUTE_NAME.match(name) or name == "data":
            raise NotACloudEvent(f"bad attribute name {name!r}: lowercase letters and digits only")
    for name in REQUIRED:
        if not attrs.get(name):
            raise NotACloudEvent(f"the required attribute {name!r} is missing or empty")
    return WireEvent(attrs, _data_bytes(data))


def from_http(headers: Mapping[str, str], body: bytes) -> WireEvent:
    """The CloudEvent in an HTTP message, binary or structured mode; data kept as raw bytes."""
    lowered = {k.lower(): v for k, v in headers.items()}
    binary = "ce-specversion" in lowered
    if binary and lowered["ce-specversion"] == "1.0" and all(lowered.get(f"ce-{name}") for name in REQUIRED):
        fast = _from_binary(lowered, body)
        if fast is not None:
            return fast
    try:
        event = sdk_from_http(lowered, body, data_unmarshaller=lambda b: b)
        envelope = None if binary else json.loads(body)
    except (ce_exceptions.GenericException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotACloudEvent(str(exc) or type(exc).__name__) from None
    attributes = dict(event.get_attributes())
    data = event.data
    if binary:
        if "ce-time" not in lowered:
            attributes.pop("time", None)  # the SDK invents one
    else:
        if "time" not in envelope:
            attributes.pop("time", None)
        raw = envelope.get("data")
        if "data_base64" in envelope:
            pass  # the SDK has decoded the base64: raw bytes
        elif raw is None:
            data = None
        elif isinstance(raw, str) and not is_json_type(attributes.get("datacontenttype")):
            data = raw  # text data in a JSON envelope is the string itself, not its JSON form
        elif "datacontenttype" not in attributes:
            attributes["datacontenttype"] = "application/json"  # so binary delivery says what it is
    return from_attributes(attributes, data)


def _from_binary(lowered: Mapping[str, str], body: bytes) -> WireEvent | None:
    """A 1.0 binary-mode event read straight from its headers, as the SDK reads it (every event
    a function receives comes this way, so the SDK's general machinery is skipped); None leaves
    anything unusual (a ``ce-data`` or ``ce-extensions`` header) to the SDK."""
    attributes = {}
    for name, value in lowered.items():
        if name.startswith("ce-"):
            attributes[name[3:]] = value
        elif name == "content-type":
            attributes["datacontenttype"] = value
    if "data" in attributes or "extensions" in attributes:
        return None
    return from_attributes(attributes, body or None)


def to_http(event: WireEvent, mode: str = "binary") -> tuple[dict[str, str], bytes]:
    """Headers and body: binary mode unless ``mode`` is "structured" (or Knative's "json");
    structured keeps bytes as data_base64. An attribute an HTTP header cannot carry sends the
    event structured."""
    if mode == "binary":  # built here: the SDK's marshaller costs more than the rest of a send
        headers = {("content-type" if name == "datacontenttype" else f"ce-{name}"): value
                   for name, value in event.attributes.items()}
        try:
            for value in headers.values():
                value.encode("latin-1")
        except UnicodeEncodeError:
            pass
        else:
            return headers, event.data or b""
    elif mode not in ("structured", "json"):
        raise ValueError(f"unknown content mode {mode!r}")
    headers, body = to_structured(event.cloudevent())
    return dict(headers), body


def to_structured_dict(event: WireEvent) -> dict[str, Any]:
    """The event as structured mode's JSON object (data as data_base64), e.g. for a file."""
    return json.loads(to_structured(event.cloudevent())[1])


def looks_like_cloudevent(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP message (lower-cased header names) claims to carry a CloudEvent."""
    content_type = headers.get("content-type", "").lower()
    return "ce-specversion" in headers or content_type.startswith("application/cloudevents")


def is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return True  # structured mode's default
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def attribute_text(value: Any) -> str:
    """An attribute value as the text it has on the wire (what Trigger filters compare)."""
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
