"""Change counters: a reader can tell that nothing changed since it last looked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.db.models import ChangeCounter

if TYPE_CHECKING:
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
    return s.scalar(select(ChangeCounter.value).where(ChangeCounter.name == name))
