"""The outbox's delivery over real HTTP, on SQLite and PostgreSQL: several connections at once,
each stream of events (one subject) in the order it was queued, failures left for the next run."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from shared.db.models import OutboxEvent
from shared.db.session import get_engine, transaction
from shared.events import outbox
from shared.events.contracts import ProcessingCharge
from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage
from tests.unit.events.broker_kit import Subscriber


def charge(code: int, sqn: int) -> ProcessingCharge:
    return ProcessingCharge(MerchantProcessingChargeMessage(auth_code=code, sqn=sqn, coins="1", user="alice"))


def queue(engine, events) -> list[str]:
    with transaction(engine) as s:
        return outbox.add_all(s, events)


def arrivals(subscriber: Subscriber) -> dict[str, list[int]]:
    by_code: dict[str, list[int]] = defaultdict(list)
    for request in subscriber.received:
        code, sqn = request.headers["ce-subject"].split("/")
        by_code[code].append(int(sqn))
    return by_code


def test_many_connections_keep_each_streams_order(db_url, serve):
    engine = get_engine(db_url)
    subscriber = Subscriber(202)
    url = serve(subscriber)
    ids = queue(engine, [charge(code, sqn) for sqn in range(1, 21) for code in range(1, 9)])

    assert outbox.deliver(engine, url, ids, connections=4) == 160
    by_code = arrivals(subscriber)
    assert sorted(by_code) == [str(code) for code in range(1, 9)]
    assert all(sqns == list(range(1, 21)) for sqns in by_code.values())
    assert len({r.headers["ce-id"] for r in subscriber.received}) == 160
    with transaction(engine, readonly=True) as s:
        assert s.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))).all() == []
    assert outbox.deliver(engine, url, ids, connections=4) == 0  # delivered events are not sent again


def test_a_failing_stream_stops_alone_and_is_sent_later(db_url, serve):
    engine = get_engine(db_url)
    refused = {"7/2"}
    subscriber = Subscriber(lambda got: 500 if got.headers["ce-subject"] in refused else 202)
    url = serve(subscriber)
    ids = queue(engine, [charge(code, sqn) for code in (7, 8) for sqn in (1, 2, 3)])  # 7 and 8: two lanes of two

    assert outbox.deliver(engine, url, ids, connections=2) == 4  # 7/1 and all of 8; 7/3 waits behind 7/2
    with transaction(engine, readonly=True) as s:
        waiting = {row.subject: row for row in s.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None)))}
    assert sorted(waiting) == ["7/2", "7/3"]
    assert waiting["7/2"].attempts == 1 and "500" in waiting["7/2"].last_error
    assert waiting["7/3"].attempts == 0

    refused.clear()
    assert outbox.deliver(engine, url, ids, connections=2) == 2
    assert arrivals(subscriber)["7"] == [1, 2, 2, 3]  # the refused one again, then the rest in order
