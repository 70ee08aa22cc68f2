"""The inbox: the events each consumer has handled, recorded in the same transaction as the effect.

Delivery is at least once, so a consumer claims an event before (or with) its effect: the
claim is one INSERT … ON CONFLICT DO NOTHING, and a second delivery of the same event finds
the row and does nothing. A concurrent duplicate waits on the row (PostgreSQL) or the write
lock (SQLite) until the first transaction ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from shared.errors import PermanentFailure

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# What a service that finishes an event's work in its own transactions is given: record the
# event as handled in this session (``Received.claim``), or nothing at all (``no_claim``).
Claim = Callable[["Session"], Any]


def no_claim(s: "Session") -> None:
    """For work done outside a delivery (tests, benchmarks, reconciliation): nothing to record."""
    return None


def claim(s: "Session", consumer: str, event_id: str, payload_sha256: str) -> bool:
    """Record the event as handled by ``consumer`` in this transaction; False if it already was.

    The same id with different content is a permanent failure (someone reused an id).
    """
    from shared.db.base import utcnow
    from shared.db.models import InboxEvent
    from shared.db.session import insert_new

    table = InboxEvent.__table__
    if insert_new(s, table, dict(consumer=consumer, event_id=event_id, payload_sha256=payload_sha256,
                                 handled_at=utcnow())):
        return True
    check_earlier(s, consumer, event_id, payload_sha256)  # handled before: only then is a look needed
    return False


def check_earlier(s: "Session", consumer: str, event_id: str, payload_sha256: str) -> None:
    """An event handled before (or a concurrent delivery of it that won) must come with the same content."""
    from sqlalchemy import select

    from shared.db.models import InboxEvent

    table = InboxEvent.__table__
    earlier = s.scalar(select(table.c.payload_sha256).where(table.c.consumer == consumer,
                                                           table.c.event_id == event_id))
    if earlier is not None and earlier != payload_sha256:
        raise PermanentFailure(f"Event {event_id} arrived again with different content")
