"""The outbox: events written with the change that causes them, delivered after commit.

Nothing is lost: a row stays undelivered until the broker accepts it, and
`redeliver` (the monitor's job; a timer in the local stack) sends what is left.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Iterable

from shared.db.base import utcnow
from shared.db.models import OutboxEvent
from shared.db.session import transaction

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.outbox")
SOURCE = "/data-manager"
SEND_TIMEOUT_S = 5
BATCH = 100


def add(s: "Session", type_: str, data: dict | bytes, *, subject: str | None = None,
        content_type: str | None = None) -> OutboxEvent:
    """Queue one CloudEvent in the caller's transaction (JSON for a dict, raw bytes otherwise)."""
    if isinstance(data, dict):
        body, content_type = json.dumps(data, separators=(",", ":")).encode(), content_type or "application/json"
    else:
        body, content_type = bytes(data), content_type or "application/protobuf"
    event = OutboxEvent(id=str(uuid.uuid4()), type=type_, source=SOURCE, subject=subject,
                        datacontenttype=content_type, data=body, created=utcnow(), attempts=0)
    s.add(event)
    return event


def binary_request(event: OutboxEvent) -> tuple[dict[str, str], bytes]:
    """The event in CloudEvents' binary HTTP mode: attributes as ce- headers, data as the body."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event.id,
        "ce-type": event.type,
        "ce-source": event.source,
        "ce-time": event.created.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "Content-Type": event.datacontenttype,
    }
    if event.subject:
        headers["ce-subject"] = event.subject
    return headers, event.data


def send(broker_url: str, event: OutboxEvent) -> None:
    """POST one event; raises on anything but a 2xx."""
    headers, body = binary_request(event)
    req = urllib.request.Request(broker_url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=SEND_TIMEOUT_S) as resp:
        if not 200 <= resp.status < 300:
            raise OSError(f"the broker answered {resp.status}")


def deliver(engine: "Engine", broker_url: str, event_ids: Iterable[str]) -> int:
    """Send these events now (right after their commit); returns how many were accepted."""
    ids = list(event_ids)
    if not ids or not broker_url:
        return 0
    from sqlalchemy import select

    with transaction(engine, readonly=True) as s:
        events = list(s.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids),
                                                          OutboxEvent.delivered_at.is_(None))))
    return _send_all(engine, broker_url, events)


def redeliver(engine: "Engine", broker_url: str, grace_s: float = 30, now: dt.datetime | None = None) -> int:
    """Send every event still undelivered ``grace_s`` after it was written."""
    from sqlalchemy import select

    if not broker_url:
        return 0
    cutoff = (now or utcnow()) - dt.timedelta(seconds=grace_s)
    sent = 0
    while True:
        with transaction(engine, readonly=True) as s:
            events = list(s.scalars(select(OutboxEvent).where(
                OutboxEvent.delivered_at.is_(None), OutboxEvent.created <= cutoff)
                .order_by(OutboxEvent.created).limit(BATCH)))
        if not events:
            return sent
        accepted = _send_all(engine, broker_url, events)
        sent += accepted
        if accepted < len(events):  # the broker is failing: try again next time
            return sent


def _send_all(engine: "Engine", broker_url: str, events: list[OutboxEvent]) -> int:
    from sqlalchemy import update

    accepted = 0
    for event in events:
        try:
            send(broker_url, event)
        except (OSError, urllib.error.URLError) as exc:
            log.warning("Event %s (%s) not delivered: %s", event.id, event.type, exc)
            with transaction(engine) as s:
                s.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(
                    attempts=OutboxEvent.attempts + 1, last_error=str(exc)[:1000]))
            break  # keep the order; the rest waits for the next run
        with transaction(engine) as s:
            s.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(
                delivered_at=utcnow(), attempts=OutboxEvent.attempts + 1, last_error=None))
        accepted += 1
    return accepted


def pending_count(engine: "Engine") -> int:
    from sqlalchemy import func, select

    with transaction(engine, readonly=True) as s:
        return s.scalar(select(func.count()).where(OutboxEvent.delivered_at.is_(None)))
