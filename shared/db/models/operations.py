"""What operators and users look back on: the API log and the service errors of every role."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class ApiLogEntry(Base):
    """One state-changing API call (GETs are not logged, dm-api §2.9)."""

    __tablename__ = "api_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    username: Mapped[str] = mapped_column(String(80), index=True)
    began: Mapped[dt.datetime] = mapped_column(index=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    status_code: Mapped[int]
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[str | None] = mapped_column(Text)
    impersonator: Mapped[str | None] = mapped_column(String(80))


class ServiceError(Base):
    """A fault an operator should see: a dead letter, an unexpected exception, a charge not sent."""

    __tablename__ = "service_errors"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    created: Mapped[dt.datetime] = mapped_column(index=True)
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))  # CRITICAL, ERROR or WARNING
    hostname: Mapped[str] = mapped_column(String(255))
    origin: Mapped[str] = mapped_column(String(32))  # the role that met it: api, upload, kew, pbc, monitor
    error_code: Mapped[int | None]
    stack_trace: Mapped[str] = mapped_column(Text)
    acknowledged: Mapped[bool] = mapped_column(default=False)
    acknowledged_at: Mapped[dt.datetime | None]
    acknowledging_user: Mapped[str | None] = mapped_column(String(80))
