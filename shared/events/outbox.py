"""The outbox: events written with the change that causes them, delivered after commit.

Nothing is lost: a row stays undelivered until the broker accepts it, and
`redeliver` (the monitor's job; a timer in the local stack) sends what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
import http.client
import uuid
import zlib
from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit

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


def _row(event: "Contract", created: dt.datetime) -> dict:
    return dict(id=str(uuid.uuid4()), type=event.type, source=event.SOURCE, subject=event.subject,
                datacontenttype=event.CONTENT_TYPE, data=event.to_bytes(), created=created, attempts=0)


def add(s: "Session", event: "Contract") -> OutboxEvent:
    """Queue one event (a contract from ``shared.events.contracts``) in the caller's transaction."""
    row = OutboxEvent(**_row(event, utcnow()))
    s.add(row)
    return row


def add_all(s: "Session", events: Iterable["Contract"]) -> list[str]:
    """Queue many events in the caller's transaction with one statement; returns their ids."""
    from sqlalchemy import insert

    now = utcnow()  # a microsecond apart, so the times keep the order they were queued in
    rows = [_row(event, now + dt.timedelta(microseconds=n)) for n, event in enumerate(events)]
    if rows:
        s.execute(insert(OutboxEvent.__table__), rows)
    return [row["id"] for row in rows]


def wire_event(row: OutboxEvent) -> WireEvent:
    """The stored event as it goes on the wire, with the id and time it was written with."""
    return new_event(row.type, row.source, row.data, content_type=row.datacontenttype, subject=row.subject,
                     id_=row.id, time=row.created)


def send(broker_url: str, row: OutboxEvent) -> None:
    """POST one stored event in binary mode; raises on anything but a 2xx."""
    post(broker_url, wire_event(row))


def post(broker_url: str, event: WireEvent) -> None:
    """POST one event to the broker in binary mode; raises OSError on anything but a 2xx."""
    with BrokerConnection(broker_url) as broker:
        broker.post(event)


class BrokerConnection:
    """One keep-alive HTTP connection to the broker for a run of events (a new connection per
    event would cost more than the event). A connection the broker closed while idle is opened
    again once; an event it may have received twice is fine: consumers de-duplicate by id."""

    def __init__(self, broker_url: str):
        parts = urlsplit(broker_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OSError(f"not a broker URL: {broker_url!r}")
        self.parts = parts
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connection: http.client.HTTPConnection | None = None

    def post(self, event: WireEvent) -> None:
        from shared.events import signing

        headers, body = to_http(signing.sign(event, signing.process_key()))
        for attempt in (1, 2):
            reused = self.connection is not None
            if self.connection is None:
                cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
                self.connection = cls(self.parts.hostname, self.parts.port, timeout=SEND_TIMEOUT_S)
            try:
                self.connection.request("POST", self.target, body=body, headers=headers)
                response = self.connection.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if reused and attempt == 1:
                    continue  # the broker closed the idle connection: once more on a new one
                raise
            if response.will_close:
                self.close()
            if not 200 <= response.status < 300:
                raise OSError(f"the broker answered {response.status}")
            return

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def __enter__(self) -> "BrokerConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deliver(engine: "Engine", broker_url: str, event_ids: Iterable[str], connections: int = 1) -> int:
    """Send these events now (right after their commit), in order per lane over up to
    ``connections`` connections; returns how many were accepted."""
    ids = list(event_ids)
    if not ids or not broker_url:
        return 0
    from sqlalchemy import select

    with transaction(engine, readonly=True) as s:
        events = list(s.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids),
                                                          OutboxEvent.delivered_at.is_(None))))
    order = {event_id: n for n, event_id in enumerate(ids)}
    events.sort(key=lambda event: order[event.id])  # as queued (the IN list does not order them)
    return _send_all(engine, broker_url, events, connections)


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


def _lane(event: OutboxEvent) -> str:
    """Events of one stream (their subject up to its first "/": an instance, an authorisation code,
    a payer) keep their order: they share a lane."""
    return (event.subject or "").split("/", 1)[0]


def _send_all(engine: "Engine", broker_url: str, events: list[OutboxEvent], connections: int = 1) -> int:
    """Send over up to ``connections`` connections at once, each lane in order over one of them;
    a lane stops at its first failure (the rest waits for the next run). The accepted events are
    marked delivered together (a crash before that re-sends them later with the same ids, which
    consumers de-duplicate)."""
    from sqlalchemy import update

    lanes: dict[int, list[OutboxEvent]] = {}
    for event in events:
        lanes.setdefault(zlib.crc32(_lane(event).encode()) % max(1, connections), []).append(event)
    accepted: list[str] = []
    failed: list[tuple[str, str]] = []

    def send_lane(lane: list[OutboxEvent]) -> None:
        with BrokerConnection(broker_url) as broker:
            for event in lane:
                try:
                    broker.post(wire_event(event))
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("Event %s (%s) not delivered: %s", event.id, event.type, exc)
                    failed.append((event.id, str(exc)[:1000]))
                    return
                accepted.append(event.id)

    try:
        if len(lanes) <= 1:
            for lane in lanes.values():
                send_lane(lane)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(lanes), thread_name_prefix="outbox") as pool:
                list(pool.map(send_lane, lanes.values()))
    finally:
        with transaction(engine) as s:
            if accepted:
                s.execute(update(OutboxEvent.__table__).where(OutboxEvent.id.in_(accepted)).values(
                    delivered_at=utcnow(), attempts=OutboxEvent.attempts + 1, last_error=None))
            for event_id, error in failed:
                s.execute(update(OutboxEvent.__table__).where(OutboxEvent.id == event_id).values(
                    attempts=OutboxEvent.attempts + 1, last_error=error))
    return len(accepted)


def pending_count(engine: "Engine") -> int:
    from sqlalchemy import func, select

    with transaction(engine, readonly=True) as s:
        return s.scalar(select(func.count()).where(OutboxEvent.delivered_at.is_(None)))
