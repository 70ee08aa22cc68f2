"""The plumbing every event role shares: read the CloudEvent, answer the broker as it expects.

202 with an empty body when done; a 4xx the broker will not retry (400, 422) for an
event that can never be handled; an exception (500) for a passing fault, which the
broker retries (knative.md §1, §5).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from flask import Request
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.consumer")


class PermanentFailure(Exception):
    """An event that can never be handled: dead-letter it (422)."""


@dataclass(frozen=True)
class EventView:
    id: str
    type: str
    source: str
    subject: str | None
    data: Any  # decoded JSON, or raw bytes for binary payloads
    raw: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def read_event(request: "Request") -> EventView:
    """Parse a binary or structured CloudEvent, keeping the data as raw bytes.

    Binary mode (what brokers and sources send) is read straight from the ce- headers; any
    other form goes through the CloudEvents SDK.
    """
    headers = request.headers
    if headers.get("ce-specversion") == "1.0" and all(headers.get(h) for h in ("ce-id", "ce-type", "ce-source")):
        raw = request.get_data()
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        return EventView(headers["ce-id"], headers["ce-type"], headers["ce-source"], headers.get("ce-subject"),
                         _decode(raw, content_type), raw)
    from cloudevents.http import from_http

    event = from_http(dict(headers), request.get_data(), data_unmarshaller=lambda b: b)
    raw = event.data if isinstance(event.data, (bytes, bytearray)) else (
        b"" if event.data is None else str(event.data).encode())
    content_type = (event.get("datacontenttype") or "").split(";")[0].strip()
    return EventView(event["id"], event["type"], event["source"], event.get("subject"),
                     _decode(bytes(raw), content_type), bytes(raw))


def _decode(raw: bytes, content_type: str) -> Any:
    """JSON data decoded; anything else (protobuf) kept as bytes."""
    return json.loads(raw or b"null") if content_type.endswith("json") else raw


def handle(request: "Request", handlers: dict[str, Callable[[EventView], None]]):
    """Dispatch one delivery to the handler for its type; answer as the broker expects."""
    if request.method != "POST":
        return ({"error": "POST a CloudEvent here"}, 405)
    try:
        event = read_event(request)
    except Exception as exc:  # noqa: BLE001 - not a CloudEvent, or data that is not JSON
        return ({"error": f"Not a readable CloudEvent: {exc}"}, 400)
    handler = handlers.get(event.type)
    if handler is None:
        return ({"error": f"This function does not handle events of type {event.type!r}"}, 400)
    try:
        handler(event)
    except PermanentFailure as exc:
        log.error("Event %s (%s) can never be handled: %s", event.id, event.type, exc)
        return ({"error": str(exc)}, 422)
    return ("", 202)


def claim(s: "Session", consumer: str, event: EventView) -> bool:
    """Record ``event`` as handled by ``consumer`` in this transaction; False if it already was.

    A duplicate with different content is a permanent failure (someone reused an id).
    """
    from sqlalchemy import select

    from shared.db.base import utcnow
    from shared.db.models import InboxEvent

    # One statement on the common path: the row goes in unless the event was handled before
    # (or a concurrent delivery of it won), which only then needs a look.
    table = InboxEvent.__table__
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    added = s.execute(insert(table).values(consumer=consumer, event_id=event.id, payload_sha256=event.sha256,
                                           handled_at=utcnow()).on_conflict_do_nothing()).rowcount
    if added:
        return True
    earlier = s.scalar(select(table.c.payload_sha256).where(table.c.consumer == consumer,
                                                           table.c.event_id == event.id))
    if earlier is not None and earlier != event.sha256:
        raise PermanentFailure(f"Event {event.id} arrived again with different content")
    return False
