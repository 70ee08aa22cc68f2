"""Users as the Data Manager knows them: recorded on first sight, with their account flags."""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from shared.db.base import iso, utcnow
from shared.db.models import User
from shared.db.session import transaction
from shared.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal

# username -> date last recorded; a visit is written at most once a day per process,
# so authenticated reads do not turn into writes.
_seen: dict[str, dt.date] = {}
_seen_lock = threading.Lock()
F_UID_BASE = 10000


def record_visit(engine: "Engine", principal: "Principal") -> None:
    """Create the caller's user row on first sight and keep ``last_seen`` to the day."""
    today = utcnow().date()
    if _seen.get(principal.username) == today:
        return
    with transaction(engine) as s:
        user = s.get(User, principal.username)
        now = utcnow()
        if user is None:
            s.add(User(username=principal.username, f_uid=_free_uid(s, principal.username),
                       first_seen=now, last_seen=now))
        else:
            user.last_seen = now
    with _seen_lock:
        _seen[principal.username] = today


def _free_uid(s: "Session", username: str) -> int:
    # Stable where possible (the same name gets the same uid on every install).
    uid = F_UID_BASE + zlib.crc32(username.encode()) % 1_000_000
    while s.scalar(select(func.count()).where(User.f_uid == uid)):
        uid += 1
    return uid


def forget_visits() -> None:
    """Drop the in-process visit cache (tests that reset the database use this)."""
    with _seen_lock:
        _seen.clear()


def get_user(s: "Session", username: str) -> User:
    user = s.get(User, username)
    assert user is not None, "record_visit runs before every authenticated route"
    return user


def sees_everything(s: "Session", principal: "Principal") -> bool:
    """Admins in admin mode see every object on reads (dm-api §1.2)."""
    if not principal.is_admin:
        return False
    user = s.get(User, principal.username)
    return bool(user and user.become_admin)


def list_users(s: "Session") -> list[dict]:
    rows = s.scalars(select(User).where(User.private.is_(False)).order_by(User.username))
    return [{"username": u.username} for u in rows]


def account(s: "Session", principal: "Principal") -> dict:
    user = get_user(s, principal.username)
    return {
        "user": {
            "username": user.username,
            "f_uid": user.f_uid,
            "first_seen": iso(user.first_seen),
            "last_seen_date": user.last_seen.date().isoformat(),
            "private": user.private,
            "become_admin": user.become_admin,
            "suspended": False,
        },
        "caller_has_admin_privilege": principal.is_admin,
        "data_manager_roles": sorted(r for r in principal.roles if r.startswith("data-manager")),
    }


def patch_account(
    s: "Session", principal: "Principal", *, private: bool | None, become_admin: bool | None
) -> None:
    user = get_user(s, principal.username)
    if become_admin is not None:
        if become_admin and not principal.is_admin:
            raise Forbidden("Only administrators can enter admin mode")
        user.become_admin = become_admin
    if private is not None:
        user.private = private


def check_username(username: str) -> str:
    """Usernames as the API accepts them (dm-api §1.5)."""
    import re

    if not (3 <= len(username) <= 80) or not re.fullmatch(r"\w(?:\w*(?:[@.-]\w+)?)*", username):
        raise BadRequest(f"'{username[:80]}' is not a valid user name")
    return username
