"""Service errors: faults of every role that an operator should see (dm-api §2.10).

Dead letters, unexpected exceptions and charges that could not be sent are recorded here;
admins list, acknowledge and delete them (`/admin/service-error`).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from sqlalchemy import delete as sql_delete, select

from shared.db import integers
from shared.db.base import iso, utcnow
from shared.db.models import ServiceError
from shared.db.session import transaction
from shared.errors import NotFound

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.service_errors")
SEVERITIES = ("CRITICAL", "ERROR", "WARNING")
SUMMARY_MAX = 4000


def record(s: "Session", *, origin: str, summary: str, severity: str = "ERROR", error_code: int | None = None,
           stack_trace: str = "") -> ServiceError:
    """Record one fault in the caller's transaction."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    error = ServiceError(created=utcnow(), summary=_text(summary)[:SUMMARY_MAX], severity=severity,
                         hostname=socket.gethostname()[:255], origin=origin[:32], error_code=error_code,
                         stack_trace=_text(stack_trace), acknowledged=False)
    s.add(error)
    s.flush()
    return error


def _text(value: str) -> str:
    # PostgreSQL text holds no NUL, and a fault's text may quote one from its input
    return value.replace("\x00", "\\x00")


def record_fault(engine: "Engine", *, origin: str, summary: str, stack_trace: str = "",
                 error_code: int | None = None) -> int | None:
    """Record a fault in its own transaction; never raises (a fault must not become two).

    Returns the new error's id, or None when it could not be recorded (that is logged).
    """
    try:
        with transaction(engine) as s:
            return record(s, origin=origin, summary=summary, error_code=error_code, stack_trace=stack_trace).id
    except Exception:  # noqa: BLE001 - the database may be what failed
        log.exception("Could not record a service error from %s: %s", origin, summary[:200])
        return None


def summary(error: ServiceError) -> dict:
    out = {"id": error.id, "created": iso(error.created), "summary": error.summary, "severity": error.severity,
           "hostname": error.hostname, "stack_trace": error.stack_trace, "acknowledged": error.acknowledged}
    if error.error_code is not None:
        out["error_code"] = error.error_code
    if error.acknowledged_at is not None:
        out["acknowledged_at"] = iso(error.acknowledged_at)
    if error.acknowledging_user:
        out["acknowledging_user"] = error.acknowledging_user
    return out


def list_errors(s: "Session", *, include_acknowledged: bool = False) -> list[dict]:
    query = select(ServiceError).order_by(ServiceError.created, ServiceError.id)
    if not include_acknowledged:
        query = query.where(ServiceError.acknowledged.is_(False))
    return [summary(e) for e in s.scalars(query)]


def _load(s: "Session", error_id: int) -> ServiceError:
    error = s.get(ServiceError, error_id) if integers.fits(error_id, 1) else None
    if error is None:
        raise NotFound(f"There is no service error {error_id}")
    return error


def acknowledge(s: "Session", error_id: int, username: str) -> None:
    error = _load(s, error_id)
    if not error.acknowledged:
        error.acknowledged, error.acknowledged_at, error.acknowledging_user = True, utcnow(), username


def delete(s: "Session", error_id: int) -> None:
    _load(s, error_id)
    s.execute(sql_delete(ServiceError).where(ServiceError.id == error_id))
