"""Idempotent jobs that finish deferred work; each catches up on everything pending.

The api starts them right after a response; the monitor (or the local stack's timer)
runs them again so work interrupted by a crash is finished later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.db.session import transaction

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.config import Settings
    from shared.storage.base import Storage

log = logging.getLogger("dm.housekeeping")


def purge_deleted_projects(engine: "Engine", storage: "Storage", settings: "Settings | None" = None) -> int:
    """Remove the storage of deleted Projects, then forget them; returns how many."""
    from shared.db.models import Task
    from shared.services import projects, tasks
    from sqlalchemy import select

    with transaction(engine) as s:
        pending = projects.pending_purges(s)
    for project_id in pending:
        with transaction(engine) as s:
            for task_id in s.scalars(select(Task.id).where(
                    Task.purpose == "PROJECT", Task.purpose_id == project_id,
                    Task.removal.is_(True), Task.state == "PENDING")):
                tasks.set_state(s, task_id, "STARTED")
        # Storage first, rows second: a crash in between leaves the row, so the
        # next run removes the (already empty) tree again and then the row.
        storage.delete_tree(f"projects/{project_id}")
        with transaction(engine) as s:
            projects.purge(s, project_id)
        log.info("Purged project %s", project_id)
    return len(pending)


STAGING = "uploads"
STALE_AFTER_S = 6 * 3600


def remove_stale_uploads(engine: "Engine", storage: "Storage", settings: "Settings | None" = None,
                         max_age_s: float = STALE_AFTER_S) -> int:
    """Delete staged uploads a crashed request left behind, and the partial writes of processes
    killed while writing (the storage's own staging files or unfinished uploads); returns how many."""
    import datetime as dt

    from shared.db.base import utcnow

    cutoff = utcnow() - dt.timedelta(seconds=max_age_s)
    removed = storage.remove_unfinished(cutoff)
    if removed:
        log.info("Removed %s partial writes older than %s", removed, cutoff)
    try:
        listing = storage.list_dir(STAGING)
    except FileNotFoundError:
        return removed
    for info in listing.files:
        if info.modified < cutoff:  # younger ones may belong to an upload still running
            try:
                storage.delete(f"{STAGING}/{info.name}")
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def redeliver_events(engine: "Engine", storage: "Storage", settings: "Settings | None" = None) -> int:
    """Send the outbox's events the broker has not accepted yet (it was down, or we crashed)."""
    from shared.events import outbox

    if settings is None or not settings.broker_url:
        return 0
    return outbox.redeliver(engine, settings.broker_url, settings.outbox_grace_s)


JOBS = {
    "purge-projects": purge_deleted_projects,
    "remove-stale-uploads": remove_stale_uploads,
    "redeliver-events": redeliver_events,
}


def run(name: str, engine: "Engine", storage: "Storage", settings: "Settings | None" = None) -> int:
    return JOBS[name](engine, storage, settings)
