"""Job manifests, job definitions, instances and what kew reads from instance logs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

TERMINAL_PHASES = ("COMPLETED", "SUCCEEDED", "FAILED")


class JobManifest(Base):
    """A manifest an admin registered: a URL (or local path) listing job-definition files."""

    __tablename__ = "job_manifests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    header: Mapped[str | None] = mapped_column(Text)  # JSON object text
    params: Mapped[str | None] = mapped_column(Text)  # JSON object text
    created: Mapped[dt.datetime]
    creator: Mapped[str | None] = mapped_column(String(80))
    job_definition_files_loaded: Mapped[int | None]
    job_definitions_loaded: Mapped[int | None]
    last_successful_load_time: Mapped[dt.datetime | None]
    last_load_time: Mapped[dt.datetime | None]
    last_load_status: Mapped[str] = mapped_column(Text, default="NOT LOADED")


class Job(Base):
    """One version of one job of a collection, as its definition file describes it."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("collection", "job", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(80))
    job: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(24))
    manifest_id: Mapped[int | None] = mapped_column(ForeignKey("job_manifests.id", ondelete="SET NULL"),
                                                    index=True)
    definition_file: Mapped[str] = mapped_column(String(2048))  # where it was read from
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(80))
    keywords: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    doc_url: Mapped[str | None] = mapped_column(String(2048))
    image_name: Mapped[str] = mapped_column(String(120))
    image_tag: Mapped[str] = mapped_column(String(24))
    image_type: Mapped[str] = mapped_column(String(16), default="SIMPLE")
    image_project_directory: Mapped[str] = mapped_column(String(260))
    image_working_directory: Mapped[str] = mapped_column(String(260))
    command: Mapped[str] = mapped_column(Text)
    command_encoding: Mapped[str] = mapped_column(String(16), default="JINJA2_3_0")
    definition: Mapped[str] = mapped_column(Text)  # the job's whole definition, JSON
    required_assets: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    replaces: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of {collection, job}
    created: Mapped[dt.datetime]
    updated: Mapped[dt.datetime]


class JobExchangeRate(Base):
    """A job's exchange rate history; the newest row is the current rate."""

    __tablename__ = "job_exchange_rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    rate: Mapped[str] = mapped_column(String(40))  # decimal text
    comment: Mapped[str | None] = mapped_column(String(80))
    user: Mapped[str] = mapped_column(String(80))
    created: Mapped[dt.datetime]


class Instance(Base):
    """A running (or finished) job or application in a project."""

    __tablename__ = "instances"
    # a project's instances, and the "one running instance of a name" check at launch
    __table_args__ = (Index("ix_instances_project_id_name", "project_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    project_id: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(80), index=True)
    application_id: Mapped[str] = mapped_column(String(80))
    application_version: Mapped[str] = mapped_column(String(24))
    application_type: Mapped[str] = mapped_column(String(16))  # JOB or APPLICATION
    specification: Mapped[str | None] = mapped_column(Text)  # JSON text, as sent
    job_id: Mapped[int | None]
    job_collection: Mapped[str | None] = mapped_column(String(80))
    job_job: Mapped[str | None] = mapped_column(String(80))
    job_version: Mapped[str | None] = mapped_column(String(24))
    job_name: Mapped[str | None] = mapped_column(String(80))
    job_image_type: Mapped[str | None] = mapped_column(String(16))
    image: Mapped[str | None] = mapped_column(String(256))
    command: Mapped[str | None] = mapped_column(Text)  # rendered
    outputs: Mapped[str] = mapped_column(Text, default="{}")  # JSON: output variable -> rendered file name
    phase: Mapped[str] = mapped_column(String(24), default="PENDING")
    launched: Mapped[dt.datetime]
    started: Mapped[dt.datetime | None]
    stopped: Mapped[dt.datetime | None]
    archived: Mapped[bool] = mapped_column(default=False)
    task_id: Mapped[str] = mapped_column(String(64))  # the CREATE task
    delete_task_id: Mapped[str | None] = mapped_column(String(64))
    debug: Mapped[bool] = mapped_column(default=False)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    callback_context: Mapped[str | None] = mapped_column(String(256))
    callback_token: Mapped[str | None] = mapped_column(String(22))
    launch_exchange_rate: Mapped[str | None] = mapped_column(String(40))
    cost: Mapped[str] = mapped_column(String(40), default="0")  # running total, decimal text
    coins: Mapped[str] = mapped_column(String(40), default="0")
    exit_code: Mapped[int | None]
    url: Mapped[str | None] = mapped_column(String(2048))
    error_message: Mapped[str | None] = mapped_column(Text)
    authorisation_code: Mapped[int | None]
    deleted: Mapped[bool] = mapped_column(default=False, index=True)
    charged_until: Mapped[dt.datetime | None]  # an application's running time charged up to here
    charges_closed: Mapped[bool] = mapped_column(default=False)  # its last charge (eoc) has been sent


class InstanceLog(Base):
    """How far kew has read an instance's log, so a re-read never handles a line twice."""

    __tablename__ = "instance_logs"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    # where the next read starts, as the launcher gave it (opaque here): past the whole lines handled
    position: Mapped[str] = mapped_column(String(128), default="")
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    last_phase: Mapped[str | None] = mapped_column(String(24))  # the last phase sent on as a PodMessage


class InstanceCharge(Base):
    """One COST line of an instance, once: the charge it makes in coins (sent to the AS later)."""

    __tablename__ = "instance_charges"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    sqn: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cost: Mapped[str] = mapped_column(String(40))  # as written, "+" for incremental
    total: Mapped[str] = mapped_column(String(40))  # the running cost after this line
    coins: Mapped[str] = mapped_column(String(40))  # the coins this line adds
    timestamp: Mapped[str] = mapped_column(String(40))  # the line's own time, as written
    recorded: Mapped[dt.datetime]
    sent: Mapped[dt.datetime | None]  # accepted by the Account Server
