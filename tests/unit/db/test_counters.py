"""Change counters on SQLite and PostgreSQL: the hot path's ``read_now`` (straight on a pooled driver
connection) answers what ``read`` answers, sees changes committed elsewhere at once, and leaves its
connection clean in the pool."""

from __future__ import annotations

from shared.db import migrate
from shared.db.session import get_engine, make_engine, transaction
from shared.services import counters


def test_read_now_follows_every_committed_change(db_url):
    migrate.upgrade(db_url)
    engine = get_engine(db_url)
    assert counters.read_now(engine, "nothing-yet") is None
    with transaction(engine, readonly=True) as s:
        before = counters.read(s, counters.PROJECTS)
    assert counters.read_now(engine, counters.PROJECTS) == before
    with transaction(engine) as s:
        counters.bump(s, counters.PROJECTS)
    expected = 1 if before is None else before + 1
    assert counters.read_now(engine, counters.PROJECTS) == expected
    other = make_engine(db_url)  # another process's pool
    try:
        with transaction(other) as s:  # its change is seen by the next read here
            counters.bump(s, counters.PROJECTS)
            counters.bump(s, counters.PROJECTS)
    finally:
        other.dispose()
    assert counters.read_now(engine, counters.PROJECTS) == expected + 2
    for _ in range(20):  # every connection goes back to the pool clean
        counters.read_now(engine, counters.PROJECTS)
    with transaction(engine) as s:  # a writer still gets its turn: no read left a transaction open
        counters.bump(s, counters.PROJECTS)
    assert counters.read_now(engine, counters.PROJECTS) == expected + 3


def test_insert_new_keeps_one_row_and_raises_as_sqlalchemy_does(db_url):
    """The inbox's insert, on the driver connection: new once, then not; in a Session or on a Core
    connection; a constraint it breaks raises SQLAlchemy's exception for the driver's (pg8000 calls a
    NOT NULL violation a ProgrammingError), and the transaction is undone."""
    import pytest
    from sqlalchemy import func, select
    from sqlalchemy.exc import DBAPIError

    from shared.db.base import utcnow
    from shared.db.models import InboxEvent
    from shared.db.session import core_transaction, insert_new

    migrate.upgrade(db_url)
    engine = get_engine(db_url)
    table = InboxEvent.__table__
    row = {"consumer": "test-insert-new", "event_id": "e-1", "payload_sha256": "-", "handled_at": utcnow()}
    with core_transaction(engine) as connection:
        assert insert_new(connection, table, row) is True
        assert insert_new(connection, table, row) is False
    with transaction(engine) as s:
        assert insert_new(s, table, row) is False
        assert insert_new(s, table, {**row, "event_id": "e-2"}) is True
        stored = s.execute(select(table.c.handled_at).where(table.c.event_id == "e-1",
                                                            table.c.consumer == row["consumer"])).scalar_one()
    assert stored == row["handled_at"]
    with pytest.raises(DBAPIError):
        with core_transaction(engine) as connection:
            insert_new(connection, table, {**row, "event_id": "e-3"})
            insert_new(connection, table, {**row, "event_id": "e-4", "payload_sha256": None})
    with transaction(engine, readonly=True) as s:
        count = s.scalar(select(func.count()).select_from(table).where(table.c.consumer == row["consumer"]))
    assert count == 2  # e-3 went with its transaction
    with transaction(engine) as s:
        s.execute(table.delete().where(table.c.consumer == row["consumer"]))
