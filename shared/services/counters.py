"""Change counters: a reader can tell that nothing changed since it last looked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from shared.db.models import ChangeCounter

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

PROJECTS = "projects"  # Projects, their membership, privacy, names and sizes


def bump(s: "Session", name: str) -> None:
    """Count one more change, in the transaction that makes it."""
    if s.execute(update(ChangeCounter).where(ChangeCounter.name == name)
                 .values(value=ChangeCounter.value + 1)).rowcount:
        return
    try:
        with s.begin_nested():
            s.add(ChangeCounter(name=name, value=1))
    except IntegrityError:  # a concurrent first change made the row
        s.execute(update(ChangeCounter).where(ChangeCounter.name == name).values(value=ChangeCounter.value + 1))


def read(s: "Session", name: str) -> int | None:
    """The counter's value, or None while it has no row (then nothing may be cached)."""
    return s.scalar(_READ, {"name": name})


def read_now(engine: "Engine", name: str) -> int | None:
    """``read`` as one statement of its own, straight on a pooled driver connection: what a cached
    answer is checked against before anything else is built, on every request of a hot listing
    (SQLAlchemy's statement machinery would cost more than the query)."""
    table = ChangeCounter.__table__
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    connection = engine.raw_connection()  # back to the pool on close, rolled back there
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(f"SELECT {table.c.value.name} FROM {table.name} WHERE {table.c.name.name} = {marker}",
                           (name,))
            row = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        connection.close()
    return None if row is None else int(row[0])


_READ = select(ChangeCounter.value).where(ChangeCounter.name == bindparam("name"))
