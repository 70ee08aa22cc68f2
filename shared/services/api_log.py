"""The API log: every state-changing call a user makes (dm-api §2.9, `GET /user/api-log`).

GETs are not logged. The api function writes one row per DELETE, PATCH, POST or PUT after
its response has gone (`record` in a response close hook), so the log costs the caller no
time; the monitor prunes rows older than ``DM_API_LOG_DAYS`` (`prune_api_log`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import delete, select

from shared.db.base import iso, utcnow
from shared.db.models import ApiLogEntry
from shared.db.session import transaction
from shared.errors import BadRequest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.config import Settings

PATH_MAX = 1024  # the column's size
USERNAME_MAX = 80


def params_text(pairs: Iterable[tuple[str, list[str]]]) -> str | None:
    """Query parameters as JSON text: a repeated name keeps all its values; None for none."""
    found = {name: values[0] if len(values) == 1 else values for name, values in pairs}
    return json.dumps(found, separators=(",", ":"), sort_keys=True) if found else None


def record(engine: "Engine", *, username: str, began: dt.datetime, method: str, path: str, status_code: int,
           duration_ns: int, params: str | None = None, impersonator: str | None = None) -> None:
    """Write one entry in its own short transaction."""
    with transaction(engine) as s:
        s.add(ApiLogEntry(username=username[:USERNAME_MAX], began=began, method=method, path=path[:PATH_MAX],
                          status_code=status_code, duration_ns=max(0, duration_ns), params=params,
                          impersonator=impersonator))


def parse_instant(name: str, text: str | None) -> dt.datetime | None:
    """An ISO-8601 date or date-time from a query parameter, as UTC (no zone: UTC)."""
    if text is None or text == "":
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        raise BadRequest(f"'{name}' must be an ISO-8601 date or date-time (e.g. 2024-05-01T12:00:00Z), "
                         f"not {text[:80]!r}") from None


def entry_out(entry: ApiLogEntry) -> dict:
    """An ``ApiLogDetail``: duration humanised with thousands separators, params as JSON text."""
    out = {"method": entry.method, "path": entry.path, "began": iso(entry.began),
           "duration_ns": f"{entry.duration_ns:,}", "status_code": entry.status_code}
    if entry.params is not None:
        out["params"] = entry.params
    if entry.impersonator:
        out["impersonator"] = entry.impersonator
    return out


def entries(s: "Session", username: str, *, since: dt.datetime | None = None,
            until: dt.datetime | None = None) -> list[dict]:
    """The user's entries, oldest first: ``since`` inclusive, ``until`` exclusive."""
    if since is not None and until is not None and until < since:
        raise BadRequest("'until' must not be before 'from'")
    query = select(ApiLogEntry).where(ApiLogEntry.username == username)
    if since is not None:
        query = query.where(ApiLogEntry.began >= since)
    if until is not None:
        query = query.where(ApiLogEntry.began < until)
    return [entry_out(e) for e in s.scalars(query.order_by(ApiLogEntry.began, ApiLogEntry.id))]


def prune_api_log(engine: "Engine", settings: "Settings", *, now: dt.datetime | None = None) -> int:
    """Delete the entries older than ``settings.api_log_days`` days; returns how many went."""
    cutoff = (now or utcnow()) - dt.timedelta(days=settings.api_log_days)
    with transaction(engine) as s:
        return s.execute(delete(ApiLogEntry).where(ApiLogEntry.began < cutoff)).rowcount or 0
