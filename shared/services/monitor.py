"""The monitor's jobs: what keeps the platform running unattended, each idempotent.

A job catches up on everything due when it runs, so a missed tick loses nothing. A job runs
under a database lease (one guarded UPDATE of its ``monitor_leases`` row), so two monitor
instances never run the same job at once; the lease expires on its own if its holder dies.
Schedules: PingSources in a cluster (``knative/monitor.yaml``), timers in the local stack,
``dm monitor run <job>`` by hand; all three send or run the same job by name.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import or_, update

from shared.db.base import utcnow
from shared.db.models import MonitorLease
from shared.db.session import transaction
from shared.errors import NotFound
from shared.services import api_log, charges, dead_letters, housekeeping, reconcile, service_errors

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger("dm.monitor")


@dataclass(frozen=True)
class MonitorJob:
    name: str
    run: Callable[[Any], int]  # (services: .engine, .storage, .settings, .launcher) -> how much it did
    every_s: float  # the local stack's default interval; the PingSource schedules say the same
    # how long a run holds the job without renewing it: short, so a monitor killed mid-run delays the
    # job by seconds, not minutes; a run renews it every third of that while it goes on
    lease_s: float = 30.0


def _housekeeping(name: str) -> Callable[[Any], int]:
    return lambda services: housekeeping.run(name, services.engine, services.storage, services.settings)


JOBS: dict[str, MonitorJob] = {job.name: job for job in (
    MonitorJob("processing-charges", lambda sv: charges.send_processing_charges(sv.engine, sv.settings.broker_url),
               every_s=10),
    MonitorJob("storage-charges", lambda sv: charges.send_storage_charges(sv.engine, sv.storage,
                                                                          sv.settings.broker_url), every_s=3600),
    MonitorJob("reconcile-instances", reconcile.reconcile, every_s=30),
    MonitorJob("dead-letters", lambda sv: dead_letters.redrive(sv.engine, sv.settings.broker_url), every_s=10),
    MonitorJob("redeliver-events", _housekeeping("redeliver-events"), every_s=10),
    MonitorJob("purge-projects", _housekeeping("purge-projects"), every_s=60),
    MonitorJob("remove-stale-uploads", _housekeeping("remove-stale-uploads"), every_s=3600),
    MonitorJob("prune-api-log", lambda sv: api_log.prune_api_log(sv.engine, sv.settings), every_s=86400),
)}


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def take_lease(engine: "Engine", job: MonitorJob, holder: str, now: dt.datetime | None = None) -> bool:
    """Hold ``job`` until its lease runs out, unless another holder does; True when taken."""
    from sqlalchemy.exc import IntegrityError

    now = now or utcnow()
    with transaction(engine) as s:
        if s.get(MonitorLease, job.name) is None:
            try:
                with s.begin_nested():
                    s.add(MonitorLease(job=job.name))
            except IntegrityError:
                pass  # another monitor made the row first
        taken = s.execute(update(MonitorLease).where(
            MonitorLease.job == job.name, or_(MonitorLease.expires.is_(None), MonitorLease.expires < now))
            .values(holder=holder, expires=now + dt.timedelta(seconds=job.lease_s), last_started=now)).rowcount
    return bool(taken)


def renew_lease(engine: "Engine", job: MonitorJob, holder: str) -> bool:
    """Extend a lease this holder still holds; False when it has lost it."""
    with transaction(engine) as s:
        return bool(s.execute(update(MonitorLease).where(MonitorLease.job == job.name, MonitorLease.holder == holder)
                              .values(expires=utcnow() + dt.timedelta(seconds=job.lease_s))).rowcount)


def _keep_lease(engine: "Engine", job: MonitorJob, holder: str) -> Callable[[], None]:
    """Renew the lease in the background while the job runs; returns what stops that."""
    import threading

    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(job.lease_s / 3):
            try:
                if not renew_lease(engine, job, holder):
                    log.warning("Monitor job %s lost its lease while running", job.name)
                    return
            except Exception:  # noqa: BLE001 - the database is away: the next try may work
                log.warning("Could not renew the lease of monitor job %s", job.name, exc_info=True)

    thread = threading.Thread(target=renew, name=f"dm-lease-{job.name}", daemon=True)
    thread.start()

    def done() -> None:
        stop.set()
        thread.join()

    return done


def release_lease(engine: "Engine", job: MonitorJob, holder: str, error: str | None) -> None:
    with transaction(engine) as s:
        s.execute(update(MonitorLease).where(MonitorLease.job == job.name, MonitorLease.holder == holder)
                  .values(holder=None, expires=None, last_finished=utcnow(), last_error=error))


def run_job(services: Any, name: str, holder: str | None = None) -> int | None:
    """Run one job under its lease; None when another monitor holds it. A failure is logged,
    recorded as a service error and raised (the tick is retried)."""
    job = JOBS.get(name)
    if job is None:
        raise NotFound(f"There is no monitor job {name!r}; the jobs are {', '.join(JOBS)}")
    holder = holder or holder_name()
    if not take_lease(services.engine, job, holder):
        log.info("Monitor job %s is running elsewhere", name)
        return None
    stop_renewing = _keep_lease(services.engine, job, holder)
    try:
        done = job.run(services)
    except Exception as exc:
        stop_renewing()
        trace = traceback.format_exc()
        release_lease(services.engine, job, holder, f"{type(exc).__name__}: {exc}"[:2000])
        log.exception("Monitor job %s failed", name)
        with transaction(services.engine) as s:
            service_errors.record(s, origin="monitor", summary=f"Monitor job {name} failed: {exc}",
                                  stack_trace=trace)
        raise
    stop_renewing()
    release_lease(services.engine, job, holder, None)
    return done
