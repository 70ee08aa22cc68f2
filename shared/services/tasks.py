"""Tasks: long work with states and events that users follow (dm-api §1.7, §2.8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, insert, literal, or_, select, update

from shared.db.base import iso, new_id, utcnow
from shared.db.models import ProjectMember, Task, TaskEvent, TaskState
from shared.db.models.task import FINAL_STATES
from shared.errors import BadRequest, Forbidden, NotFound
from shared.services import users

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal

PURPOSES = ("DATASET", "FILE", "INSTANCE", "PROJECT")
STATES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE")
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
DEFAULT_EVENT_LIMIT = 500


def create(
    s: "Session",
    *,
    purpose: str,
    purpose_id: str,
    owner: str,
    project_id: str | None = None,
    purpose_version: int | None = None,
    removal: bool = False,
    message: str | None = None,
) -> Task:
    """A new PENDING task (and its first event) in the caller's transaction."""
    assert purpose in PURPOSES
    now = utcnow()
    task = Task(id=new_id("task"), purpose=purpose, purpose_id=purpose_id, owner=owner,
                project_id=project_id, purpose_version=purpose_version, created=now,
                removal=removal, state="PENDING", done=False)
    s.add(task)
    s.flush()
    s.add(TaskState(task_id=task.id, state="PENDING", time=now))
    if message:
        s.add(TaskEvent(task_id=task.id, ordinal=1, level="INFO", message=message, time=now))
    return task


def add_event(s: "Session", task_id: str, message: str, level: str = "INFO") -> None:
    """Append an event; ordinals start at 1 and only grow (one statement: the next ordinal is computed in it)."""
    assert level in LEVELS
    _flush(s)  # events added through the session before this one come first
    events = TaskEvent.__table__
    following = select(literal(task_id), func.coalesce(func.max(events.c.ordinal), 0) + 1, literal(level),
                       literal(message), literal(utcnow(), events.c.time.type)).where(events.c.task_id == task_id)
    s.execute(insert(events).from_select(["task_id", "ordinal", "level", "message", "time"], following))


def set_state(
    s: "Session", task_id: str, state: str, message: str | None = None, *, exit_code: int | None = None
) -> bool:
    """Move a task to ``state`` unless it is already final; returns whether it moved.

    The guard sits in the UPDATE itself so a late or repeated transition never
    moves a finished task, even from a concurrent transaction.
    """
    assert state in STATES
    final = state in FINAL_STATES
    values: dict = {"state": state}
    if final:
        values.update(done=True, exit_code=exit_code if exit_code is not None else (0 if state == "SUCCESS" else 1))
    moved = _update_task(s, task_id, values, done=False)
    if moved:
        _flush(s)  # states added through the session first keep their order
        s.execute(insert(TaskState.__table__).values(task_id=task_id, state=state, message=message, time=utcnow()))
        if message:
            add_event(s, task_id, message, "ERROR" if state == "FAILURE" else "INFO")
    return bool(moved)


def state_of(s: "Session", task_id: str) -> str | None:
    return s.scalar(select(Task.state).where(Task.id == task_id))


def mark_started(s: "Session", task_id: str) -> bool:
    """PENDING → STARTED, once (a task already started or finished is left alone)."""
    moved = _update_task(s, task_id, {"state": "STARTED"}, done=False, state="PENDING")
    if moved:
        _flush(s)
        s.execute(insert(TaskState.__table__).values(task_id=task_id, state="STARTED", message=None, time=utcnow()))
    return bool(moved)


def _update_task(s: "Session", task_id: str, values: dict, **guards) -> int:
    """A guarded UPDATE of one task, as plain SQL (hot in pbc); a loaded Task object follows it."""
    table = Task.__table__
    moved = s.execute(update(table).where(table.c.id == task_id, *(table.c[k] == v for k, v in guards.items()))
                      .values(**values)).rowcount
    if moved:
        sync_loaded(s, task_id, values)
    return moved


def sync_loaded(s: "Session | Connection", task_id: str, values: dict) -> None:
    """A Task object the session has loaded takes the values a statement just wrote."""
    if not hasattr(s, "identity_map"):
        return  # a Core connection (pbc's hot path) loads no objects
    loaded = s.identity_map.get(s.identity_key(Task, task_id))
    if loaded is not None:
        from sqlalchemy.orm.attributes import set_committed_value

        for name, value in values.items():
            set_committed_value(loaded, name, value)  # what the database now holds, not a change to flush


def _flush(s: "Session | Connection") -> None:
    """A Session's pending objects go first; the guarded changes here also run on a Core connection."""
    if hasattr(s, "flush"):
        s.flush()


def _visible(s: "Session", principal: "Principal"):
    """Tasks the caller owns, or of Projects the caller is a member of."""
    if users.sees_everything(s, principal):
        return select(Task)
    member_projects = select(ProjectMember.project_id).where(ProjectMember.username == principal.username)
    return select(Task).where(or_(Task.owner == principal.username, Task.project_id.in_(member_projects)))


def summary(task: Task) -> dict:
    out = {
        "id": task.id,
        "created": iso(task.created),
        "done": task.done,
        "removal": task.removal,
        "purpose": task.purpose,
        "purpose_id": task.purpose_id,
    }
    if task.purpose_version is not None:
        out["purpose_version"] = task.purpose_version
    if task.exit_code is not None:
        out["exit_code"] = task.exit_code
    if task.processing_stage:
        out["processing_stage"] = task.processing_stage
    if task.image:
        out["image"] = task.image
    return out


def list_tasks(
    s: "Session",
    principal: "Principal",
    *,
    purpose: str | None = None,
    exclude_done: bool = False,
    exclude_removal: bool = False,
    exclude_purpose: str | None = None,
    project_id: str | None = None,
) -> list[dict]:
    query = _visible(s, principal)
    if purpose:
        if purpose not in PURPOSES:
            raise BadRequest(f"Unknown purpose {purpose!r}; use one of {', '.join(PURPOSES)}")
        query = query.where(Task.purpose == purpose)
    if exclude_purpose:
        # dot-separated in the reference; commas are accepted too (clients disagree)
        excluded = [p for p in exclude_purpose.replace(",", ".").split(".") if p]
        unknown = [p for p in excluded if p not in PURPOSES]
        if unknown:
            raise BadRequest(f"Unknown purpose {unknown[0]!r} in exclude_purpose")
        query = query.where(Task.purpose.not_in(excluded))
    if exclude_done:
        query = query.where(Task.done.is_(False))
    if exclude_removal:
        query = query.where(Task.removal.is_(False))
    if project_id:
        query = query.where(Task.project_id == project_id)
    query = query.with_only_columns(*_SUMMARY_COLUMNS)  # plain rows: no entities for a long listing
    return [summary(t) for t in s.execute(query.order_by(Task.created, Task.id))]


_SUMMARY_COLUMNS = (Task.id, Task.created, Task.done, Task.removal, Task.purpose, Task.purpose_id,
                    Task.purpose_version, Task.exit_code, Task.processing_stage, Task.image)


def get_visible(s: "Session", principal: "Principal", task_id: str) -> Task:
    task = s.scalar(_visible(s, principal).where(Task.id == task_id))
    if task is None:
        raise NotFound(f"Task {task_id} does not exist")
    return task


def detail(s: "Session", task: Task, *, prior_ordinal: int = 0, limit: int | None = None) -> dict:
    states = s.scalars(select(TaskState).where(TaskState.task_id == task.id).order_by(TaskState.id))
    events = s.scalars(
        select(TaskEvent)
        .where(TaskEvent.task_id == task.id, TaskEvent.ordinal > prior_ordinal)
        .order_by(TaskEvent.ordinal)
        .limit(limit or DEFAULT_EVENT_LIMIT)
    )
    out = summary(task)
    del out["id"]  # TaskGetResponse has no id of its own (dm-api §2.8)
    out["states"] = [
        {"state": st.state, "time": iso(st.time), **({"message": st.message} if st.message else {})}
        for st in states
    ]
    out["events"] = [
        {"ordinal": e.ordinal, "level": e.level, "message": e.message, "time": iso(e.time)} for e in events
    ]
    if task.instance_specification:
        out["instance_specification"] = task.instance_specification
    return out


def _object_owner(s: "Session", task: Task) -> str | None:
    """Who owns the object the task is about (None once it is gone)."""
    from shared.db.models import Dataset, Instance, Project, ProjectFile

    found = {"DATASET": (Dataset, Dataset.owner), "FILE": (ProjectFile, ProjectFile.owner),
             "INSTANCE": (Instance, Instance.owner), "PROJECT": (Project, Project.creator)}.get(task.purpose)
    if found is None:  # a purpose with no object of its own
        return None
    model, column = found
    return s.scalar(select(column).where(model.id == task.purpose_id))


def delete(s: "Session", principal: "Principal", task_id: str) -> None:
    """The task's owner, or the owner of its object, deletes a finished task (dm-api §3.13).

    Admin mode lets an administrator see every task, not delete it: it widens GET calls only (§1.2).
    """
    task = get_visible(s, principal, task_id)
    if principal.username not in (task.owner, _object_owner(s, task)):
        raise Forbidden("Only the owner of a task or of its object can delete it")
    if not task.done:
        raise Forbidden("The task has not finished yet")
    s.delete(task)
