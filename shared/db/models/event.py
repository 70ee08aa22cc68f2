from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class OutboxEvent(Base):
    """A complete CloudEvent written in the same transaction as the change that causes it.

    Its id is fixed when written, so every re-send carries the same id and consumers'
    de-duplication holds.
    """

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(256))
    subject: Mapped[str | None] = mapped_column(String(256))
    datacontenttype: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class InboxEvent(Base):
    """An event a consumer has handled; inserted in the same transaction as the effect."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    handled_at: Mapped[dt.datetime]
