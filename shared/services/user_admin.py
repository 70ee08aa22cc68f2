"""User accounts as admins manage them: list, prepare, suspend or restore, delete (dm-api §3.2).

Every function needs the DM admin role. A suspended user is refused on every authenticated
call (`users.check_not_suspended`); the route forgets this process's cached copy after a change.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import delete as sql_delete, select

from shared.db.base import utcnow
from shared.db.models import Dataset, DatasetEditor, DatasetVersion, User
from shared.db.models.dataset import HIDDEN_STAGES
from shared.errors import BadRequest, NotFound
from shared.services import datasets, users

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal

MAX_DAYS = 36500  # a hundred years: the date arithmetic of larger values overflows


def check_days(name: str, days: int | None) -> int | None:
    if days is not None and days > MAX_DAYS:
        raise BadRequest(f"The '{name}' parameter must be at most {MAX_DAYS}")
    return days


def list_users(s: "Session", principal: "Principal", *, idle_days: int | None = None,
               active_days: int | None = None, now: dt.datetime | None = None) -> list[dict]:
    """Every user but the caller, by name. Days count whole UTC days, today included:
    ``active_days=N`` keeps users seen on one of the last N days, ``idle_days=N`` those
    seen on none of them."""
    users.require_admin(principal)
    today = (now or utcnow()).date()

    def start_of(days: int) -> dt.datetime:
        return dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time.min, tzinfo=dt.timezone.utc)

    query = select(User).where(User.username != principal.username)
    if check_days("idle_days", idle_days) is not None:
        query = query.where(User.last_seen < start_of(idle_days))
    if check_days("active_days", active_days) is not None:
        query = query.where(User.last_seen >= start_of(active_days))
    return [users.detail(u) for u in s.scalars(query.order_by(User.username))]


def prepare(s: "Session", principal: "Principal", username: str) -> dict:
    """Make the user's account now (as their first call would); a ``UserAccountDetail``."""
    users.require_admin(principal)
    users.check_username(username)
    user = users.get_user(s, username)
    return {"user": users.detail(user), "caller_has_admin_privilege": principal.is_admin}


def _existing(s: "Session", username: str) -> User:
    user = s.get(User, username) if len(username) <= 80 else None
    if user is None:
        raise NotFound(f"There is no user {username[:80]}")
    return user


def set_suspension(s: "Session", principal: "Principal", username: str, message: str | None) -> None:
    """Suspend the account with ``message``, or lift the suspension with ``/restore``."""
    users.require_admin(principal)
    if not message:
        raise BadRequest(f"'suspend_message' is required: a message suspends the account, "
                         f"{users.RESTORE} restores it")
    if len(message) > users.SUSPENSION_MESSAGE_MAX:
        raise BadRequest(f"'suspend_message' is at most {users.SUSPENSION_MESSAGE_MAX} characters")
    user = _existing(s, username)
    if message == users.RESTORE:
        user.suspended, user.suspension_message = False, None
        return
    if username == principal.username:
        raise BadRequest("You cannot suspend your own account")
    user.suspended, user.suspension_message = True, message


def delete_user(s: "Session", principal: "Principal", username: str) -> list[str]:
    """Delete the account and every Dataset it owns; returns the removal events to deliver.

    Each usable version is deleted as `DELETE /dataset/{id}/{version}` would (a task removes
    its content); the user's Dataset editorships go too. Project memberships stay: Projects
    belong to their teams. Refused while one of the user's uploads is still in progress.
    """
    users.require_admin(principal)
    if username == principal.username:
        raise BadRequest("You cannot delete your own account")
    user = _existing(s, username)
    owned = select(Dataset.id).where(Dataset.owner == username)
    live = list(s.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id.in_(owned),
                                                       DatasetVersion.deleted.is_(None))
                          .order_by(DatasetVersion.dataset_id, DatasetVersion.version)))
    uploading = [v for v in live if v.processing_stage in HIDDEN_STAGES and v.processing_stage != "FAILED"]
    if uploading:
        v = uploading[0]
        raise BadRequest(f"{username} has uploads in progress (version {v.version} of {v.dataset_id}); "
                         "delete the account once they have finished")
    events = []
    for version in live:
        if version.processing_stage == "FAILED":
            continue  # never visible and holds no content
        found = datasets.delete_version(s, version, principal.username)
        if found is not None:
            events.append(found[1])
    s.execute(sql_delete(DatasetEditor).where(DatasetEditor.username == username))
    s.delete(user)
    return events
