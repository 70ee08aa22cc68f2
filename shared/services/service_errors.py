"""Service errors: faults of every role that an operator should see (dm-api §2.10).

Dead letters, unexpected exceptions and charges that could not be sent are recorded here;
admins list, acknowledge and delete them (`/admin/service-error`).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from sqlalchemy import delete as sql_delete, select

from shared.db.base import iso, utcnow
from shared.db.models import ServiceError
from shared.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SEVERITIES = ("CRITICAL", "ERROR", "WARNING")
SUMMARY_MAX = 4000


def record(s: "Session", *, origin: str, summary: str, severity: str = "ERROR", error_code: int | None = None,
           stack_trace: str = "") -> ServiceError:
    """Record one fault in the caller's transaction."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    error = ServiceError(created=utcnow(), summary=summary[:SUMMARY_MAX], severity=severity,
                         hostname=socket.gethostname()[:255], origin=origin[:32], error_code=error_code,
                         stack_trace=stack_trace, acknowledged=False)
    s.add(error)
    s.flush()
    return error


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
    if not 0 < error_id < 2**31:
        raise BadRequest("A service error id is a positive integer")
    error = s.get(ServiceError, error_id)
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
