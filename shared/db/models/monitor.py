"""The monitor's own state: job leases, dead letters being re-driven, measured storage."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class MonitorLease(Base):
    """One row per monitor job: who runs it until when, so two monitors never run it at once."""

    __tablename__ = "monitor_leases"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires: Mapped[dt.datetime | None]
    last_started: Mapped[dt.datetime | None]
    last_finished: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeadLetter(Base):
    """An event the Broker could not deliver, kept whole and re-driven with backoff for a while."""

    __tablename__ = "dead_letters"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str | None] = mapped_column(String(256))
    datacontenttype: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    error_dest: Mapped[str | None] = mapped_column(String(1024))  # knativeerrordest
    error_code: Mapped[int | None]  # knativeerrorcode
    error_data: Mapped[str | None] = mapped_column(Text)  # knativeerrordata, decoded
    state: Mapped[str] = mapped_column(String(16), index=True)  # REDRIVING, REDRIVEN or FAILED
    received: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt: Mapped[dt.datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


class StorageUsage(Base):
    """The bytes a project or dataset held when last measured, and what was last sent as a charge."""

    __tablename__ = "storage_usage"

    reason: Mapped[str] = mapped_column(String(16), primary_key=True)  # PROJECT or DATASET
    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    measured: Mapped[dt.datetime]
    sent_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sent: Mapped[dt.datetime | None]
