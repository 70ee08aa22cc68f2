from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

HIDDEN_STAGES = ("COPYING", "FORMATTING", "FAILED")  # a version is usable once past these


class Dataset(Base):
    """A versioned, shared store of one kind of file, paid for by an Account Server unit."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(80), index=True)
    unit_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime]
    name: Mapped[str] = mapped_column(String(260))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of label annotations
    last_updated: Mapped[dt.datetime]


class DatasetEditor(Base):
    __tablename__ = "dataset_editors"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    owner: Mapped[str] = mapped_column(String(80))
    file_name: Mapped[str] = mapped_column(String(260))
    source_ref: Mapped[str] = mapped_column(String(1024))
    mime_type: Mapped[str] = mapped_column(String(64))
    format_extra_variables: Mapped[str | None] = mapped_column(Text)
    processing_stage: Mapped[str] = mapped_column(String(16), default="COPYING")
    size: Mapped[int | None] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(64), index=True)
    records: Mapped[int | None] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(1024))
    task_id: Mapped[str] = mapped_column(String(64))
    authorisation_code: Mapped[int | None]
    created: Mapped[dt.datetime]
    published: Mapped[dt.datetime | None]
    description: Mapped[str] = mapped_column(Text, default="")
    annotations: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    last_updated: Mapped[dt.datetime]
    deleted: Mapped[dt.datetime | None]
    deleting_user: Mapped[str | None] = mapped_column(String(80))


class ProjectFile(Base):
    """A managed file: a dataset version placed in a project, read-only there by default."""

    __tablename__ = "project_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(260))  # without slashes at the ends; "" is the root
    name: Mapped[str] = mapped_column(String(260))
    dataset_id: Mapped[str] = mapped_column(String(64), index=True)
    dataset_version: Mapped[int]
    mime_type: Mapped[str] = mapped_column(String(64))
    compressed: Mapped[bool] = mapped_column(default=True)
    immutable: Mapped[bool] = mapped_column(default=True)
    owner: Mapped[str] = mapped_column(String(80))
    processing_stage: Mapped[str] = mapped_column(String(16), default="COPYING")
    size: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime]
