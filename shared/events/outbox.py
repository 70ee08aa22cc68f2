"""The outbox: events written with the change that causes them, delivered after commit.

Nothing is lost: a row stays undelivered until the broker accepts it, and
`redeliver` (the monitor's job; a timer in the local stack) sends what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Iterable

from shared.db.base import utcnow
from shared.db.models import OutboxEvent
from shared.db.session import transaction
from shared.events.wire import WireEvent, new_event, to_http

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.events.contracts import Contract

log = logging.getLogger("dm.outbox")
SEND_TIMEOUT_S = 5
BATCH = 100


def add(s: "Session", event: "Contract") -> OutboxEvent:
    """Queue one event (a contract from ``shared.events.contracts``) in the caller's transaction."""
    row = OutboxEvent(id=str(uuid.uuid4()), type=event.type, source=event.SOURCE, subject=event.subject,
                      datacontenttype=event.CONTENT_TYPE, data=event.to_bytes(), created=utcnow(), attempts=0)
    s.add(row)
    return row


def wire_event(row: OutboxEvent) -> WireEvent:
    """The stored event as it goes on the wire, with the id and time it was written with."""
    return new_event(row.type, row.source, row.data, content_type=row.datacontenttype, subject=row.subject,
                     id_=row.id, time=row.created)


def send(broker_url: str, row: OutboxEvent) -> None:
    """POST one stored event in binary mode; raises on anything but a 2xx."""
    post(broker_url, wire_event(row))


def post(broker_url: str, event: WireEvent) -> None:
    """POST one event to the broker in binary mode; raises OSError on anything but a 2xx."""
    headers, body = to_http(event)
    req = urllib.request.Request(broker_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=SEND_TIMEOUT_S) as resp:
            if not 200 <= resp.status < 300:
                raise OSError(f"the broker answered {resp.status}")
    except urllib.error.HTTPError as exc:
        exc.close()
        raise OSError(f"the broker answered {exc.code}") from None


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
