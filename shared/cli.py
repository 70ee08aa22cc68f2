"""The ``dm`` command: run the local stack, migrate a database, run the monitor's jobs by hand."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dm", description="Data Manager command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the local stack in the foreground (Ctrl-C stops it)")
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply every pending migration")
    db_sub.add_parser("current", help="print the schema revision")
    monitor = sub.add_parser("monitor", help="the monitor's jobs")
    monitor_sub = monitor.add_subparsers(dest="monitor_command", required=True)
    monitor_sub.add_parser("list", help="the jobs, their local-stack intervals and their last runs")
    monitor_run = monitor_sub.add_parser("run", help="run one job once, in this process, under its lease")
    monitor_run.add_argument("job")
    job = sub.add_parser("housekeeping", help="the same as `dm monitor run JOB` (an older name)")
    job.add_argument("job")
    events = sub.add_parser("outbox", help="the event outbox")
    events_sub = events.add_subparsers(dest="outbox_command", required=True)
    events_sub.add_parser("redeliver", help="send the events the broker has not accepted yet (K_SINK)")
    sub.add_parser("functions", help="run the local stack's event functions, Broker and schedule ticks, "
                                     "restarting any that dies (`dm run` starts it)")
    broker = sub.add_parser("broker", help="run the local stand-in for the Knative Broker")
    broker.add_argument("--port", type=int, required=True)
    broker.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                        help="where a Knative Service of the Triggers runs locally")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"dm: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    if args.command == "run":
        from shared.stack import run

        return run(settings)
    if args.command == "db":
        from shared.db import migrate

        if args.db_command == "upgrade":
            migrate.upgrade(settings.sqlalchemy_url)
        print(migrate.current(settings.sqlalchemy_url))
        return 0
    if args.command == "outbox":
        from shared.db.session import get_engine
        from shared.events import outbox

        if not settings.broker_url:
            print("dm: K_SINK (the broker URL) is not set", file=sys.stderr)
            return 2
        sent = outbox.redeliver(get_engine(settings.sqlalchemy_url), settings.broker_url, settings.outbox_grace_s)
        print(f"redelivered {sent} event(s); {outbox.pending_count(get_engine(settings.sqlalchemy_url))} still pending")
        return 0
    if args.command == "broker":
        from shared.stack import serve_broker

        services = dict(item.split("=", 1) for item in args.service)
        return serve_broker(args.port, services, settings.data_dir)
    if args.command == "functions":
        from shared.stack import serve_functions

        return serve_functions(settings)
    if args.command == "monitor" and args.monitor_command == "list":
        return _monitor_list(settings)
    if args.command in ("monitor", "housekeeping"):
        return _monitor_run(settings, args.job)
    return 1


def _monitor_run(settings: Settings, name: str) -> int:
    """Run one monitor job here, against the configured database and storage, and say what it did."""
    import time

    from shared.process_services import ProcessServices
    from shared.services import monitor

    if name not in monitor.JOBS:
        print(f"dm: there is no monitor job {name!r}; the jobs are: {', '.join(monitor.JOBS)}", file=sys.stderr)
        return 2
    if not settings.broker_url:
        print("dm: K_SINK (the Broker URL) is not set: events this job makes stay in the outbox",
              file=sys.stderr)
    started = time.monotonic()
    try:
        done = monitor.run_job(ProcessServices(settings), name)
    except Exception as exc:  # noqa: BLE001 - logged and recorded as a service error by run_job
        print(f"dm: monitor job {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if done is None:
        print(f"dm: monitor job {name} did not run: another monitor holds its lease", file=sys.stderr)
        return 1
    print(f"{name}: {done} done in {time.monotonic() - started:.2f} s")
    return 0


def _monitor_list(settings: Settings) -> int:
    """The jobs, how often the local stack ticks them, and their last runs if the database says."""
    from shared.services import monitor
    from shared.stack import tick_intervals

    leases = {}
    try:
        from sqlalchemy import select

        from shared.db.models import MonitorLease
        from shared.db.session import get_engine, transaction

        with transaction(get_engine(settings.sqlalchemy_url), readonly=True) as s:
            leases = {row.job: (row.last_finished, row.last_error) for row in s.scalars(select(MonitorLease))}
    except Exception as exc:  # noqa: BLE001 - the list is useful without the last runs
        print(f"dm: the last runs are not readable: {type(exc).__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
    every = tick_intervals(settings)
    print(f"{'JOB':<22} {'EVERY':>8} {'LEASE':>8}  {'LAST FINISHED':<26} LAST ERROR")
    for name, job in monitor.JOBS.items():
        finished, error = leases.get(name, (None, None))
        last = finished.isoformat(timespec="seconds") if finished else "-"
        error = (error or "-").splitlines()[0][:60]
        print(f"{name:<22} {every[name]:>7g}s {job.lease_s:>7g}s  {last:<26} {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
