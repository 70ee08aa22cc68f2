"""The SQLite engine: no way back to the pool leaves a statement running or a transaction open."""

import sqlite3

import pytest
from sqlalchemy import text

from shared.db.session import make_engine, transaction


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with transaction(engine) as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        s.execute(text("INSERT INTO t (v) VALUES (1), (2), (3)"))
    yield engine
    engine.dispose()


def other_writer(engine) -> None:
    """Another process's write: it moves the database past any snapshot this engine still holds."""
    conn = sqlite3.connect(engine.url.database, timeout=1, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (v) VALUES (9)")
    conn.execute("COMMIT")
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    conn.close()
    return busy


@pytest.mark.parametrize("readonly", [True, False])
def test_a_result_left_open_by_a_failed_transaction_pins_nothing(engine, readonly):
    kept = []  # a traceback, a log record or a cache can keep a result alive past its transaction
    with pytest.raises(OverflowError):
        with transaction(engine, readonly=readonly) as s:
            kept.append(s.execute(text("SELECT v FROM t")))  # one row read, the statement still running
            s.execute(text("SELECT v FROM t WHERE v > :v"), {"v": 2**64})
    # no reader holds an old snapshot: a full checkpoint completes, and this engine writes again
    assert other_writer(engine) == 0
    with transaction(engine) as s:
        s.execute(text("INSERT INTO t (v) VALUES (10)"))
    with transaction(engine, readonly=True) as s:
        assert s.scalar(text("SELECT count(*) FROM t")) == 5
    with pytest.raises(Exception, match="closed"):
        kept[0].all()  # the result went with its transaction


def test_a_result_kept_after_a_commit_pins_nothing(engine):
    with transaction(engine, readonly=True) as s:
        kept = s.execute(text("SELECT v FROM t"))
    assert other_writer(engine) == 0
    with transaction(engine) as s:
        s.execute(text("INSERT INTO t (v) VALUES (10)"))
    del kept


def test_pooled_connections_come_back_outside_a_transaction(engine):
    with pytest.raises(ZeroDivisionError):
        with transaction(engine) as s:
            s.execute(text("INSERT INTO t (v) VALUES (4)"))
            1 / 0
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.in_transaction is False
    with transaction(engine, readonly=True) as s:
        assert s.scalar(text("SELECT count(*) FROM t")) == 3  # the failed insert was rolled back
