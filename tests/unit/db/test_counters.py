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
