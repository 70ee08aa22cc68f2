"""The ``dm`` command: run the local stack, migrate a database, run housekeeping jobs."""

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
    job = sub.add_parser("housekeeping", help="run a housekeeping job once")
    job.add_argument("job", choices=["purge-projects", "remove-stale-uploads", "redeliver-events"])
    events = sub.add_parser("outbox", help="the event outbox")
    events_sub = events.add_subparsers(dest="outbox_command", required=True)
    events_sub.add_parser("redeliver", help="send the events the broker has not accepted yet (K_SINK)")
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
    if args.command == "housekeeping":
        from shared.db.session import get_engine
        from shared.services import housekeeping
        from shared.storage import create_storage

        done = housekeeping.run(args.job, get_engine(settings.sqlalchemy_url),
                                create_storage(settings.storage_url, settings.s3_endpoint_url), settings)
        print(f"{args.job}: {done} done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
