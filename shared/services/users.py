"""Users as the Data Manager knows them: recorded on first sight, with their account flags."""

from __future__ import annotations

import datetime as dt
import threading
import time
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
SUSPENSION_MESSAGE_MAX = 512  # the column's size
RESTORE = "/restore"  # the suspend_message that lifts a suspension (dm-api §3.2)
# How long a process trusts its copy of the suspended users. Every authenticated request asks,
# so it is read at most this often, not per request (the GET /project benchmark); a change made
# in this process applies at once (`forget_suspensions`), one made in another within this time.
SUSPENSIONS_TTL_S = 2.0


def record_visit(engine: "Engine", principal: "Principal") -> None:
    """Create the caller's user row on first sight and keep ``last_seen`` to the day."""
    today = utcnow().date()
    if _seen.get(principal.username) == today:
        return
    with transaction(engine) as s:
        user = s.get(User, principal.username)
        now = utcnow()
        if user is None:
            _create(s, principal.username, now)
        else:
            user.last_seen = now
    with _seen_lock:
        _seen[principal.username] = today


def _create(s: "Session", username: str, now: dt.datetime) -> User:
    user = User(username=username, f_uid=_free_uid(s, username), first_seen=now, last_seen=now)
    s.add(user)
    s.flush()
    return user


def _free_uid(s: "Session", username: str) -> int:
    # Stable where possible (the same name gets the same uid on every install).
    uid = F_UID_BASE + zlib.crc32(username.encode()) % 1_000_000
    while s.scalar(select(func.count()).where(User.f_uid == uid)):
        uid += 1
    return uid


def forget_visits(username: str | None = None) -> None:
    """Drop the in-process visit cache, for one user or all (tests that reset the database use this)."""
    with _seen_lock:
        if username is None:
            _seen.clear()
        else:
            _seen.pop(username, None)
    forget_suspensions()


# --- suspension ---------------------------------------------------------------------------

_suspended: dict[str, tuple[float, dict[str, str]]] = {}  # engine url -> (read at, username -> message)
_suspended_lock = threading.Lock()
_forgotten = [0]  # how often the copy was dropped: a read that began before a drop is not kept


def suspension(engine: "Engine", username: str) -> str | None:
    """The user's suspension message when their account is suspended, else None.

    Answered from a per-process copy of every suspended account, read again when older
    than SUSPENSIONS_TTL_S: one small query every few seconds instead of one per request.
    """
    key = str(engine.url)
    now = time.monotonic()
    held = _suspended.get(key)
    if held is None or now - held[0] > SUSPENSIONS_TTL_S:
        generation = _forgotten[0]
        with transaction(engine, readonly=True) as s:
            rows = s.execute(select(User.username, User.suspension_message).where(User.suspended.is_(True)))
            held = (now, {name: message or "" for name, message in rows})
        with _suspended_lock:
            if _forgotten[0] == generation:
                _suspended[key] = held
    return held[1].get(username)


def check_not_suspended(engine: "Engine", principal: "Principal") -> None:
    """Forbidden, with the suspension message, for a suspended account."""
    message = suspension(engine, principal.username)
    if message is not None:
        raise Forbidden(f"Your account is suspended: {message}" if message else "Your account is suspended")


def forget_suspensions() -> None:
    """Read the suspended accounts afresh on the next request (after a suspension changed here)."""
    with _suspended_lock:
        _suspended.clear()
        _forgotten[0] += 1


def get_user(s: "Session", username: str) -> User:
    """The user's row, made if missing: an admin prepares accounts this way, and an account
    deleted since this process last recorded its user's visit comes back as on first sight."""
    user = s.get(User, username)
    if user is None:
        user = _create(s, username, utcnow())
    return user


def require_admin(principal: "Principal") -> None:
    """Admin operations need the DM admin role (`become_admin` mode is not needed)."""
    if not principal.is_admin:
        raise Forbidden("Only administrators can do this")


def sees_everything(s: "Session", principal: "Principal") -> bool:
    """Admins in admin mode see every object on reads (dm-api §1.2)."""
    if not principal.is_admin:
        return False
    user = s.get(User, principal.username)
    return bool(user and user.become_admin)


def list_users(s: "Session") -> list[dict]:
    rows = s.scalars(select(User).where(User.private.is_(False)).order_by(User.username))
    return [{"username": u.username} for u in rows]


def detail(user: User) -> dict:
    """A ``UserDetail`` (dm-api §2.9)."""
    out = {
        "username": user.username,
        "f_uid": user.f_uid,
        "first_seen": iso(user.first_seen),
        "last_seen_date": user.last_seen.date().isoformat(),
        "private": user.private,
        "become_admin": user.become_admin,
        "suspended": user.suspended,
    }
    if user.suspended:
        out["suspension_message"] = user.suspension_message or ""
    return out


def account(s: "Session", principal: "Principal") -> dict:
    user = get_user(s, principal.username)
    return {
        "user": detail(user),
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
