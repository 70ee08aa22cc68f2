"""Engines and transactions. The code that owns an operation opens the transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session

_engines: dict[str, "Engine"] = {}
_lock = threading.Lock()


def make_engine(url: str) -> "Engine":
    from sqlalchemy import create_engine, event

    # As many kept connections as the server has threads: with fewer, the busiest moments open and
    # close a connection per request (a PostgreSQL connection costs tens of milliseconds to open);
    # a few more for the process's own background work
    pool = {"pool_size": max(5, int(os.environ.get("THREADS", "16"))), "max_overflow": 4}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False,
                                                  "factory": _sqlite_connection_class()}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # The sqlite3 driver's own transaction handling breaks SAVEPOINT and
            # delays BEGIN; take it over (SQLAlchemy's "pysqlite" recipe).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the write lock up front (no deadlock-prone lock upgrades);
            # readers stay concurrent under WAL.
            readonly = conn.get_execution_options().get("dm_readonly", False)
            # straight to the driver: this runs for every transaction, and needs no result
            conn.connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "reset")
        def _sqlite_reset(dbapi_conn, _record, _state):
            # Every way back to the pool passes here, after a commit, a rollback or an exception:
            # leave no statement running and no transaction open (see _sqlite_connection_class).
            dbapi_conn.dm_close_cursors()
            if dbapi_conn.in_transaction:
                dbapi_conn.rollback()

        # This process's writers queue here, woken as soon as the writer before them commits,
        # rather than in SQLite's busy handler, which polls with sleeps of up to 100 ms.
        engine.dm_write_lock = threading.RLock()
        return engine
    engine = create_engine(url, pool_pre_ping=True, **pool)
    if url.startswith("postgresql+pg8000"):
        def _commit_simply(dbapi_conn) -> None:
            # pg8000 commits with a parameterised statement: three round trips. Every transaction
            # ends here, so it goes as a simple query, one round trip.
            dbapi_conn.execute_simple("COMMIT")

        engine.dialect.do_commit = _commit_simply
        @event.listens_for(engine, "connect")
        def _pg8000_timestamps(dbapi_conn, _record):
            # pg8000 reads each timestamptz through strptime, most of the time of long listings
            from pg8000.converters import TIMESTAMPTZ

            dbapi_conn.register_in_adapter(TIMESTAMPTZ, _timestamptz_in)
    return engine


def _timestamptz_in(text: str):
    """A timestamptz as PostgreSQL sends it ('2024-01-01 00:00:00.5+00'), as pg8000 reads it, only faster."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:  # infinity, BC dates, years past 9999: pg8000's own reading
        from pg8000.converters import timestamptz_in

        return timestamptz_in(text)


_sqlite_class = None


def _sqlite_connection_class():
    """A sqlite3 connection that remembers its cursors, so the pool can close those left open.

    A cursor whose rows were not all read keeps its statement running, and with it the
    connection's read snapshot, through ROLLBACK (Python 3.11 no longer resets statements
    there). A result still referenced after its transaction ended, by an exception's traceback
    for instance, thus pinned an old snapshot on a pooled connection; once another connection
    wrote, each BEGIN IMMEDIATE on that one failed with "database is locked" until a restart.
    """
    global _sqlite_class
    if _sqlite_class is None:
        import sqlite3
        import weakref

        class TrackedConnection(sqlite3.Connection):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.dm_cursors: weakref.WeakSet = weakref.WeakSet()

            def cursor(self, *args, **kwargs):
                cursor = super().cursor(*args, **kwargs)
                self.dm_cursors.add(cursor)
                return cursor

            def dm_close_cursors(self) -> None:
                cursors, self.dm_cursors = list(self.dm_cursors), weakref.WeakSet()
                for cursor in cursors:
                    cursor.close()  # resets its statement; closing a closed cursor is a no-op

        _sqlite_class = TrackedConnection
    return _sqlite_class


def get_engine(url: str) -> "Engine":
    """One engine per URL per process."""
    engine = _engines.get(url)
    if engine is None:
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextlib.contextmanager
def _write_turn(engine: "Engine", readonly: bool) -> Iterator[None]:
    lock = None if readonly else getattr(engine, "dm_write_lock", None)
    # bounded as SQLite's own wait: past it, BEGIN IMMEDIATE waits its 30 s and fails as before
    queued = lock is not None and lock.acquire(timeout=30)
    try:
        yield
    finally:
        if queued:
            lock.release()


def readonly_engine(engine: "Engine") -> "Engine":
    """The engine whose transactions are read-only (SQLite: no write lock), made once per engine."""
    found = getattr(engine, "dm_readonly_engine", None)
    if found is None:
        found = engine.dm_readonly_engine = engine.execution_options(dm_readonly=True)
    return found


@contextlib.contextmanager
def transaction(engine: "Engine", *, readonly: bool = False) -> Iterator["Session"]:
    """A Session in one transaction: commit on exit, roll back on raise.

    ``readonly`` transactions do not take SQLite's write lock, so reads run side by side.
    """
    from sqlalchemy.orm import Session

    bind = readonly_engine(engine) if readonly else engine
    with _write_turn(engine, readonly), Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@contextlib.contextmanager
def core_transaction(engine: "Engine") -> Iterator["Connection"]:
    """A Core connection in one write transaction, for hot paths that map no objects (the
    ledger's receiver): the locking of ``transaction`` without the ORM's bookkeeping."""
    with _write_turn(engine, False), engine.begin() as connection:
        yield connection


_insert_new: dict[tuple, tuple] = {}


def insert_new(s: "Session | Connection", table, values: dict) -> bool:
    """INSERT … ON CONFLICT DO NOTHING of one row in the caller's transaction; True when it was new.

    The hot write of every event consumer (its inbox claim) and of the ledger: compiled once per
    table, dialect and set of columns, then run on the transaction's driver connection with the
    columns' own bind processing, which costs a third of SQLAlchemy's statement machinery."""
    if hasattr(s, "dialect"):  # a Connection
        connection = s
        if not connection.in_transaction():
            connection.begin()
    else:  # a Session: what it holds goes first, as its own statements would
        s.flush()
        connection = s.connection()
    dialect = connection.dialect
    key = (dialect.name, table.name, tuple(values))
    prepared = _insert_new.get(key)
    if prepared is None:
        prepared = _insert_new[key] = _prepare_insert_new(dialect, table, tuple(values))
    statement, sql, names, processors = prepared
    if sql is None:  # a column default to compute: SQLAlchemy's way
        return bool(connection.execute(statement, values).rowcount)
    params = tuple(values[name] if process is None else process(values[name])
                   for name, process in zip(names, processors))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.rowcount > 0
    except dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy raises it, so callers tell faults apart
        from sqlalchemy.exc import DBAPIError

        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    finally:
        cursor.close()


def _prepare_insert_new(dialect, table, columns: tuple[str, ...]) -> tuple:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).on_conflict_do_nothing()
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    names = tuple(compiled.positiontup or ())
    if not dialect.positional or set(names) != set(columns):
        return statement, None, (), ()
    processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    return statement, compiled.string, names, processors
