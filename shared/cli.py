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
    job.add_argument("job", choices=["purge-projects", "remove-stale-uploads"])
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
    if args.command == "housekeeping":
        from shared.db.session import get_engine
        from shared.services import housekeeping
        from shared.storage import create_storage

        done = housekeeping.run(args.job, get_engine(settings.sqlalchemy_url),
                                create_storage(settings.storage_url, settings.s3_endpoint_url))
        print(f"{args.job}: {done} done")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
