"""Per-user inventory of an Account Server Unit or Organisation (dm-api §2.15, `GET /inventory/user`).

The users listed are those the Data Manager knows (they have an account) who belong to the
Unit (or to a Unit of the Organisation) or hold Projects or Datasets there. Membership comes
from the built-in ledger, which keeps its Units in this database; with an external Account
Server the Data Manager cannot ask who belongs to a Unit, so only DM admins may read
inventories then. The ledger keeps no Organisation members: Organisation inventories are for
DM admins.

Activity is counted in whole UTC days. A day is active when the user made a state-changing
call that day (the API log, kept ``DM_API_LOG_DAYS`` days), or it is their first or last day
seen; GETs leave no daily trace, so a user who only reads counts as active on the days
`last_seen` recorded.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from sqlalchemy import select

from shared.account_server.base import check_unit_id
from shared.db.base import iso, utcnow
from shared.db.models import (
    ApiLogEntry,
    Dataset,
    DatasetEditor,
    DatasetVersion,
    LedgerUnit,
    LedgerUnitMember,
    Project,
    ProjectMember,
    User,
)
from shared.db.models.dataset import HIDDEN_STAGES
from shared.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.config import Settings

ORG_ID = re.compile(r"org-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
USERNAMES = re.compile(r"(\w(?:\w*(?:[@.-]\w+)?)*(,){0,1}){1,}")


def check_org_id(org_id: str) -> str:
    if not ORG_ID.fullmatch(org_id):
        raise BadRequest(f"'{org_id[:80]}' is not an organisation id (org-<uuid>)")
    return org_id


def parse_usernames(text: str | None) -> list[str] | None:
    """The ``usernames`` filter: comma-separated names (a trailing comma is allowed)."""
    if text is None or text == "":
        return None
    if len(text) < 3 or len(text) > 4000 or not USERNAMES.fullmatch(text):
        raise BadRequest("'usernames' must be user names separated by commas (at least 3 characters)")
    return [name for name in text.split(",") if name]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def _activity(user: User, logged: set[dt.date], today: dt.date, window_days: int) -> dict:
    first = user.first_seen.date()
    active = {d for d in logged | {first, user.last_seen.date()} if first <= d <= today}
    total = (today - first).days + 1
    start = max(first, today - dt.timedelta(days=window_days - 1))
    days = (today - start).days + 1
    recent = sorted((d for d in active if d >= start), reverse=True)
    period = {"monitoring_period": f"{start.isoformat()}/{today.isoformat()}", "active_days": len(recent),
              "inactive_days": days - len(recent), "activity": _percent(len(recent), days)}
    if len(recent) < days:
        period["active_dates"] = [d.isoformat() for d in recent]
    return {"total_days_since_first_seen": total, "total_days_active": len(active),
            "total_days_inactive": total - len(active), "total_activity": _percent(len(active), total),
            "period_a": period}


def _scope(s: "Session", principal: "Principal", settings: "Settings", unit_id: str | None,
           org_id: str | None) -> tuple[set[str], set[str]]:
    """The Units in scope and their ledger members, after checking the caller may look."""
    ledger = not settings.account_server_url
    if unit_id is not None:
        members = set(s.scalars(select(LedgerUnitMember.username).where(LedgerUnitMember.unit_id == unit_id))) \
            if ledger else set()
        if not (principal.is_admin or principal.username in members):
            raise Forbidden(f"You are not a member of unit {unit_id}" if ledger else
                            "Only administrators can read inventories with an external Account Server")
        return {unit_id}, members
    if not principal.is_admin:
        raise Forbidden("Only administrators can read an organisation's inventory")
    units = set(s.scalars(select(Project.unit_id).where(Project.organisation_id == org_id)))
    if ledger:
        units |= set(s.scalars(select(LedgerUnit.id).where(LedgerUnit.organisation_id == org_id)))
    members = set(s.scalars(select(LedgerUnitMember.username).where(LedgerUnitMember.unit_id.in_(units))))
    return units, members


def user_inventory(s: "Session", principal: "Principal", settings: "Settings", *, unit_id: str | None,
                   org_id: str | None, usernames: list[str] | None = None,
                   now: dt.datetime | None = None) -> dict:
    """An ``InventoryUserGetResponse``."""
    if (unit_id is None) == (org_id is None):
        raise BadRequest("Give exactly one of 'unit_id' and 'org_id'")
    if unit_id is not None:
        check_unit_id(unit_id)
    else:
        check_org_id(org_id)
    units, members = _scope(s, principal, settings, unit_id, org_id)
    projects = s.execute(select(ProjectMember.username, ProjectMember.role, Project.id, Project.name, Project.unit_id)
                         .join(Project, Project.id == ProjectMember.project_id)
                         .where(Project.unit_id.in_(units), Project.deleted.is_(None))
                         .order_by(Project.created, Project.id)).all()
    usable = (select(DatasetVersion.dataset_id, DatasetVersion.version, DatasetVersion.file_name, Dataset.unit_id,
                     Dataset.owner)
              .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
              .where(Dataset.unit_id.in_(units), DatasetVersion.deleted.is_(None),
                     DatasetVersion.processing_stage.not_in(HIDDEN_STAGES))
              .order_by(DatasetVersion.dataset_id, DatasetVersion.version))
    versions = s.execute(usable).all()
    editors = s.execute(select(DatasetEditor.dataset_id, DatasetEditor.username)
                        .join(Dataset, Dataset.id == DatasetEditor.dataset_id)
                        .where(Dataset.unit_id.in_(units))).all()
    names = members | {p.username for p in projects} | {v.owner for v in versions} | {e.username for e in editors}
    if usernames is not None:
        names &= set(usernames)
    people = list(s.scalars(select(User).where(User.username.in_(names)).order_by(User.username))) if names else []
    today = (now or utcnow()).date()
    window = settings.api_log_days
    logged: dict[str, set[dt.date]] = {}
    if people:
        since = dt.datetime.combine(today - dt.timedelta(days=window - 1), dt.time.min, tzinfo=dt.timezone.utc)
        for name, began in s.execute(select(ApiLogEntry.username, ApiLogEntry.began).where(
                ApiLogEntry.username.in_([u.username for u in people]), ApiLogEntry.began >= since)):
            logged.setdefault(name, set()).add(began.date())
    editing: dict[str, set[str]] = {}
    for dataset_id, name in editors:
        editing.setdefault(name, set()).add(dataset_id)
    out = []
    for user in people:
        held = {"administrator": [], "editor": [], "observer": []}
        for p in projects:
            if p.username == user.username and p.role in held:
                held[p.role].append({"id": p.id, "name": p.name, "unit_id": p.unit_id})

        def listed(rows):
            return [{"id": v.dataset_id, "version": v.version, "filename": v.file_name, "unit_id": v.unit_id}
                    for v in rows]

        mine = editing.get(user.username, set())
        out.append({
            "username": user.username, "f_uid": user.f_uid, "first_seen": iso(user.first_seen),
            "last_seen_date": user.last_seen.date().isoformat(), "projects": held,
            "datasets": {"owner": listed(v for v in versions if v.owner == user.username),
                         "editor": listed(v for v in versions if v.dataset_id in mine)},
            "activity": _activity(user, logged.get(user.username, set()), today, window),
        })
    return {"today": today.isoformat(), "users": out}

