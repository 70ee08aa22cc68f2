"""What pods report (PodMessages, through pbc): an instance's phase and its task's state.

Delivery is at least once and in no particular order, so every change is guarded: a finished
instance keeps its phase, a finished task never moves, a start is recorded once. This runs for
every pod's every change. On PostgreSQL a message costs two statements, each one round trip: the
inbox claim with the read of the instance, then the instance's change with its task's (one
data-modifying CTE), both prepared once per connection. SQLite has no DML in CTEs: there the same
changes are the plain guarded statements of ``tasks``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import bindparam, func, select, update

from shared.db.base import UTCDateTime, utcnow
from shared.db.models import Instance, RunningWorkflowStep
from shared.db.models.job import TERMINAL_PHASES
from shared.errors import PermanentFailure
from shared.services import tasks

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

ENDED_WELL = ("Succeeded", "Completed")
ENDED = ENDED_WELL + ("Failed",)
TROUBLED = {"CrashLoopBackOff": "CRASH_LOOP_BACKOFF", "ImagePullBackOff": "IMAGE_PULL_BACKOFF", "Unknown": "UNKNOWN"}


class Claim(NamedTuple):
    """The inbox row that records a delivery as handled (``shared.events.inbox``)."""

    consumer: str
    event_id: str
    payload_sha256: str


class Found(NamedTuple):
    """The instance as the message found it; ``step``: it runs a workflow step."""

    phase: str
    started: dt.datetime | None
    application_type: str
    delete_task_id: str | None
    step: bool


def _pod_time(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def apply_pod_message(s: "Session | Connection", message, *, reason: str | None = None,  # noqa: ANN001
                      claim: Claim | None = None) -> Found | None:
    """A pod's phase and exit become the instance's phase and its task's state.

    ``claim``: record the delivery in the inbox first (in the same statement as the read, on
    PostgreSQL); None comes back when it was handled before, and nothing changes. Otherwise the
    instance as found. ``reason`` says why, when an end that went wrong has a better explanation
    than the pod's (reconciliation).
    """
    pg = _dialect(s) == "postgresql"
    if pg and claim:
        row = _run(s, "claim_and_read", instance=message.instance, now=utcnow(), **claim._asdict())[0]
        if not row[5]:  # handled before (or a concurrent delivery won): its content must be the same
            from shared.events import inbox

            inbox.check_earlier(s, claim.consumer, claim.event_id, claim.payload_sha256)
            return None
    else:
        if claim and not _claim(s, claim):
            return None
        row = s.execute(_READ, {"instance": message.instance}).first()
    if row is None or row[0] is None:
        raise PermanentFailure(f"There is no instance {message.instance}")
    found = Found(*row[:4], bool(row[4]))
    if found.phase in TERMINAL_PHASES:
        return found  # finished before: a late or repeated message changes nothing
    started = _pod_time(message.start_timestamp)
    if message.phase == "Running":
        _start(s, pg, message, found, started)
    elif message.phase in ENDED:
        _end(s, pg, message, found, started, reason)
    else:
        phase = TROUBLED.get(message.phase)
        if phase and phase != found.phase:  # a troubled pod: shown, but not final
            s.execute(_TROUBLED, {"instance": message.instance, "phase": phase})
    return found


def _start(s, pg: bool, message, found: Found, started: dt.datetime | None) -> None:  # noqa: ANN001
    """Running: the instance's start, recorded once, and its task PENDING → STARTED, once."""
    move = found.phase == "PENDING" or found.started is None
    values = {"instance": message.instance, "started": started or utcnow()}
    if pg:
        if move:
            moved = _run(s, "start", **values, task=message.task, now=utcnow())
        else:
            moved = _run(s, "task_started", task=message.task, now=utcnow())
        if moved:
            tasks.sync_loaded(s, message.task, {"state": "STARTED"})
        return
    if move:
        s.execute(_START, values)
    tasks.mark_started(s, message.task)


def _end(s, pg: bool, message, found: Found, started: dt.datetime | None, reason: str | None) -> None:  # noqa: ANN001
    """The pod's end: the instance COMPLETED or FAILED, then (unless a concurrent message finished
    it first) its task STARTED if it never was, then SUCCESS or FAILURE."""
    code = message.exit_code if message.has_exit_code else None
    good = message.phase in ENDED_WELL and code in (0, None)
    if found.application_type == "APPLICATION" and found.delete_task_id:
        good = True  # an application's life ends when it is deleted: that is its success
    if good:
        reason = None
    elif reason is None:
        if found.delete_task_id:
            reason = "The instance was stopped (deleted) before it finished"
        elif code is not None:
            reason = f"The job failed with exit code {code}"
        else:
            reason = "The pod ended before its job could finish"
    values = {"instance": message.instance, "phase": "COMPLETED" if good else "FAILED",
              "stopped": _pod_time(message.finish_timestamp) or utcnow(), "code": code, "reason": reason,
              "started": started}
    state, said, task_code = ("SUCCESS", "The instance finished", 0) if good else ("FAILURE", reason, code or 1)
    if pg:
        if _run(s, "end", **values, task=message.task, state=state, message=said, task_code=task_code,
                level="INFO" if good else "ERROR", now=utcnow()):
            tasks.sync_loaded(s, message.task, {"state": state, "done": True, "exit_code": task_code})
        return
    if not s.execute(_END, values).rowcount:
        return  # a concurrent message finished it first
    tasks.mark_started(s, message.task)  # ended before its start was seen: STARTED comes first
    tasks.set_state(s, message.task, state, said, exit_code=task_code)


def _dialect(s) -> str:  # noqa: ANN001 - a Session or a Connection
    return (s.dialect if hasattr(s, "dialect") else s.get_bind().dialect).name


def _claim(s, claim: Claim) -> bool:  # noqa: ANN001
    from shared.events import inbox

    return inbox.claim(s, claim.consumer, claim.event_id, claim.payload_sha256)


# --- the statements, built once --------------------------------------------------------------

_I, _STEPS = Instance.__table__, RunningWorkflowStep.__table__
_NOT_FINISHED = _I.c.phase.not_in(TERMINAL_PHASES)
_FINISHED_SQL = ", ".join(f"'{p}'" for p in TERMINAL_PHASES)
_READ = (select(_I.c.phase, _I.c.started, _I.c.application_type, _I.c.delete_task_id,
                select(_STEPS.c.id).where(_STEPS.c.instance_id == _I.c.id).exists().label("step"))
         .where(_I.c.id == bindparam("instance")))
_THIS = update(_I).where(_I.c.id == bindparam("instance"), _NOT_FINISHED)
_TROUBLED = _THIS.values(phase=bindparam("phase"))
# the start's condition sits in the guard, so it holds for the row as it is now
_START = _THIS.where((_I.c.phase == "PENDING") | _I.c.started.is_(None)).values(
    phase="RUNNING", started=func.coalesce(_I.c.started, bindparam("started", type_=UTCDateTime)))
_END = _THIS.values(phase=bindparam("phase"), stopped=bindparam("stopped"), exit_code=bindparam("code"),
                    error_message=bindparam("reason"),
                    started=func.coalesce(_I.c.started, bindparam("started", type_=UTCDateTime)))


def _run(s, name: str, **params) -> tuple:  # noqa: ANN001, ANN003
    """One of ``_PG``'s statements in the transaction of ``s``: its rows. Each is prepared once per
    database connection (its plan kept in the connection's ``info``, which goes with the connection),
    so a run is one round trip; pg8000's cursor takes three, and parses the SQL text each time."""
    if hasattr(s, "identity_map"):  # a Session: what it holds goes first, as its own statements would
        s.flush()
        s = s.connection()
    pooled = s.connection
    prepared = pooled.info.setdefault("dm_pod_messages", {})
    statement = prepared.get(name)
    if statement is None:
        statement = prepared[name] = pooled.driver_connection.prepare(_PG[name])
    return statement.run(**params)


_FOUND = """i.phase, i.started, i.application_type, i.delete_task_id,
    EXISTS (SELECT FROM running_workflow_steps WHERE instance_id = :instance)"""
# The task PENDING → STARTED once, and its STARTED state (tasks.mark_started in one statement).
_TASK_STARTED = """task AS (
    UPDATE tasks SET state = 'STARTED' WHERE id = :task AND NOT done AND state = 'PENDING' RETURNING id)
INSERT INTO task_states (task_id, state, message, time)
SELECT id, 'STARTED', NULL, CAST(:now AS timestamptz) FROM task RETURNING 1"""
_PG = {
    # The claim and the read in one: the instance comes back only when the claim is new (a repeated
    # delivery waits here for the first one's transaction to end, then finds its inbox row).
    "claim_and_read": """WITH claim AS (
    INSERT INTO inbox (consumer, event_id, payload_sha256, handled_at)
    VALUES (:consumer, :event_id, :payload_sha256, :now) ON CONFLICT DO NOTHING RETURNING 1)
SELECT """ + _FOUND + """, EXISTS (SELECT FROM claim)
FROM (VALUES (1)) AS one LEFT JOIN instances AS i ON i.id = :instance AND EXISTS (SELECT FROM claim)""",
    "task_started": "WITH " + _TASK_STARTED,
    # the start's condition sits in the guard, so it holds for the row as it is now
    "start": """WITH start AS (
    UPDATE instances SET phase = 'RUNNING', started = coalesce(started, :started)
    WHERE id = :instance AND phase NOT IN ({FINISHED}) AND (phase = 'PENDING' OR started IS NULL)),
""" + _TASK_STARTED,
    # The end: the instance, then only if it moved its task (locked first, so a concurrent start is
    # seen), a STARTED state if it never started and the final one in that order, and the final
    # state's event (tasks.mark_started + set_state + add_event). A row comes back if the task moved.
    "end": """WITH ended AS (
    UPDATE instances SET phase = :phase, stopped = :stopped, exit_code = :code, error_message = :reason,
        started = coalesce(started, :started)
    WHERE id = :instance AND phase NOT IN ({FINISHED}) RETURNING id),
before AS (
    SELECT id, state FROM tasks WHERE id = :task AND NOT done AND EXISTS (SELECT FROM ended) FOR UPDATE),
task AS (
    UPDATE tasks SET state = :state, done = true, exit_code = :task_code FROM before WHERE tasks.id = before.id
    RETURNING tasks.id, before.state AS was),
states AS (
    INSERT INTO task_states (task_id, state, message, time)
    SELECT task.id, s.state, s.message, CAST(:now AS timestamptz)
    FROM task, (VALUES (1, 'STARTED', NULL), (2, :state, CAST(:message AS text))) AS s (n, state, message)
    WHERE s.n = 2 OR task.was = 'PENDING' ORDER BY s.n)
INSERT INTO task_events (task_id, ordinal, level, message, time)
SELECT id, coalesce((SELECT max(ordinal) FROM task_events WHERE task_id = :task), 0) + 1, CAST(:level AS text),
    CAST(:message AS text), CAST(:now AS timestamptz)
FROM task RETURNING 1""",
}
_PG = {name: sql.replace("{FINISHED}", _FINISHED_SQL) for name, sql in _PG.items()}
