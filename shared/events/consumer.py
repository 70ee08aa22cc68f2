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
    """Parse a binary or structured CloudEvent, keeping the data as raw bytes."""
    from cloudevents.http import from_http

    event = from_http(dict(request.headers), request.get_data(), data_unmarshaller=lambda b: b)
    raw = event.data if isinstance(event.data, (bytes, bytearray)) else (
        b"" if event.data is None else str(event.data).encode())
    content_type = (event.get("datacontenttype") or "").split(";")[0].strip()
    data: Any = bytes(raw)
    if content_type.endswith("json"):
        data = json.loads(raw or b"null")
    return EventView(event["id"], event["type"], event["source"], event.get("subject"), data, bytes(raw))


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
    from sqlalchemy.exc import IntegrityError

    from shared.db.base import utcnow
    from shared.db.models import InboxEvent

    existing = s.get(InboxEvent, (consumer, event.id))
    if existing is not None:
        if existing.payload_sha256 != event.sha256:
            raise PermanentFailure(f"Event {event.id} arrived again with different content")
        return False
    try:
        with s.begin_nested():
            s.add(InboxEvent(consumer=consumer, event_id=event.id, payload_sha256=event.sha256,
                             handled_at=utcnow()))
    except IntegrityError:  # a concurrent delivery of the same event won
        return False
    return True
