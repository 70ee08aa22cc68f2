from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

FINAL_STATES = ("SUCCESS", "FAILURE")


class Task(Base):
    """Long work a user follows. A finished task stays readable after its object is gone."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    purpose_id: Mapped[str] = mapped_column(String(64), index=True)
    purpose_version: Mapped[int | None]
    owner: Mapped[str] = mapped_column(String(80), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created: Mapped[dt.datetime]
    removal: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), default="PENDING")
    done: Mapped[bool] = mapped_column(default=False, index=True)
    exit_code: Mapped[int | None]
    processing_stage: Mapped[str | None] = mapped_column(String(16))
    image: Mapped[str | None] = mapped_column(String(256))
    instance_specification: Mapped[str | None] = mapped_column(Text)


class TaskState(Base):
    __tablename__ = "task_states"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    time: Mapped[dt.datetime]


class TaskEvent(Base):
    __tablename__ = "task_events"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    ordinal: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    time: Mapped[dt.datetime]
