"""Workflows (YAML definitions), their runs in Projects and the steps of a run (dm-api §2.13, §2.14).

The api writes Workflows and Running Workflows; the workflow engine, hosted by pbc, reads them
and records each step it launches (one row per replica of a step) through its adapter.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

RUN_STATUSES = ("RUNNING", "SUCCESS", "FAILURE", "USER_STOPPED")
STEP_STATUSES = ("RUNNING", "SUCCESS", "FAILURE")


class Workflow(Base):
    """A Workflow definition as its creator gave it, with the validator's CREATE-level verdict."""

    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    creator: Mapped[str] = mapped_column(String(80), index=True)
    created: Mapped[dt.datetime] = mapped_column(index=True)
    scope: Mapped[str] = mapped_column(String(16))  # GLOBAL, AS_ORGANISATION, AS_UNIT
    scope_id: Mapped[str | None] = mapped_column(String(64), index=True)
    definition: Mapped[str] = mapped_column(Text)  # the YAML text, as given
    workflow_name: Mapped[str | None] = mapped_column(Text)  # from inside the definition
    workflow_description: Mapped[str | None] = mapped_column(Text)
    validation_error_num: Mapped[int] = mapped_column(default=0)
    validation_error_msg: Mapped[str | None] = mapped_column(Text)  # JSON list of strings
    version: Mapped[str | None] = mapped_column(String(80))  # set on versioned copies only
    source_id: Mapped[str | None] = mapped_column(ForeignKey("workflows.id"), index=True)

    @property
    def validated(self) -> bool:
        return self.validation_error_num == 0


class RunningWorkflow(Base):
    """One run of a Workflow in a Project; the engine sets its end (done, success, error)."""

    __tablename__ = "running_workflows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))  # as_name
    # no foreign key: a finished run outlives its Workflow, and says what it ran
    workflow_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow_name: Mapped[str] = mapped_column(String(80))
    workflow_version: Mapped[str] = mapped_column(String(80))  # "Unversioned" for a Workflow without one
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    running_user: Mapped[str] = mapped_column(String(80), index=True)
    stopping_user: Mapped[str | None] = mapped_column(String(80))
    variables: Mapped[str] = mapped_column(Text, default="{}")  # JSON object, as given to run
    debug: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    done: Mapped[bool] = mapped_column(default=False)
    success: Mapped[bool] = mapped_column(default=False)
    error_num: Mapped[int] = mapped_column(default=0)
    error_msg: Mapped[str | None] = mapped_column(Text)
    started: Mapped[dt.datetime]
    stopped: Mapped[dt.datetime | None]
    # deleted while it ran: hidden at once, the row removed once its STOP has ended it
    deleting: Mapped[bool] = mapped_column(default=False, server_default=false())


class RunningWorkflowStep(Base):
    """One launch of one step of a run: replica ``replica`` of ``replicas`` (a step fanned out over
    a prior step's files has several). The engine's launcher inserts the row before it launches,
    and the unique (run, name, replica) makes a repeated launch find the row it made before."""

    __tablename__ = "running_workflow_steps"
    __table_args__ = (UniqueConstraint("running_workflow_id", "name", "replica"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    running_workflow_id: Mapped[str] = mapped_column(
        ForeignKey("running_workflows.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))  # the step's name in the definition
    replica: Mapped[int] = mapped_column(default=0)  # 0 .. replicas - 1
    replicas: Mapped[int] = mapped_column(default=1)
    prior_step_id: Mapped[str | None] = mapped_column(String(64))  # the step this one follows
    variables: Mapped[str] = mapped_column(Text, default="{}")  # JSON object the step was launched with
    # set once the instance is recorded (the instance row lives on after the run is deleted)
    instance_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    # JSON {"project": [files it leaves in the Project], "values": {output variable: [paths]}}: the
    # first set at launch, both once it has ended well (the files its job's outputs matched)
    outputs: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    done: Mapped[bool] = mapped_column(default=False)
    success: Mapped[bool] = mapped_column(default=False)
    error_num: Mapped[int] = mapped_column(default=0)
    error_msg: Mapped[str | None] = mapped_column(Text)
    started: Mapped[dt.datetime]
    stopped: Mapped[dt.datetime | None]
    # the pod to start (JSON), from the engine's launch until it has started: a host that died in
    # between leaves it here, and reconciliation starts it once ``start_by`` has passed
    pod_to_start: Mapped[str | None] = mapped_column(Text)
    start_by: Mapped[dt.datetime | None]
