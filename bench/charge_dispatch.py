"""Charge dispatch: stored processing charges into the local ledger, per second.

5,000 charges (100 ended job instances with 50 COST-line charges each) are stored in a fresh
SQLite database (the local stack's), as kew leaves them. The monitor's processing-charges job
(``charges.send_processing_charges``) then queues one ``MerchantProcessingChargeMessage`` per
charge through the outbox, the last of each instance flagged ``eoc``, and delivers each as a
binary-mode CloudEvent over HTTP (four keep-alive connections, as the monitor sends) to the ledger's receiver
(``/account-server-api/event``, served in a process of its own by the api process's HTTP
server), which stores it once per (auth_code, sqn). The Broker hop is left out: it is measured by the event benchmarks.

Timed: the whole job, from the stored rows to the last charge stored by the ledger. Checked:
the ledger holds 5,000 charges, 100 of them final, and a second run sends nothing.

Target: at least 1,000 charges per second.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

INSTANCES = 100
PER_INSTANCE = 50
TARGET_PER_S = 1000


def seed(engine, product_id: str, unit_id: str) -> None:
    from shared.db.base import utcnow
    from shared.db.models import Instance, InstanceCharge, Project
    from shared.db.session import transaction

    now = utcnow()
    with transaction(engine) as s:
        s.add(Project(id="project-bench", name="Bench", name_key="bench", creator="alice", created=now,
                      private=False, product_id=product_id, unit_id=unit_id))
        s.flush()
        for i in range(INSTANCES):
            s.add(Instance(id=f"instance-{i:04d}", name=f"run {i}", project_id="project-bench", owner="alice",
                           application_id="datamanagerjobs.squonk.it", application_version="v3",
                           application_type="JOB", task_id=f"task-{i:04d}", phase="COMPLETED", launched=now,
                           started=now, stopped=now, authorisation_code=1000 + i, launch_exchange_rate="1000",
                           job_collection="bench", job_job="cost", job_version="1.0.0"))
        s.flush()
        for i in range(INSTANCES):
            for sqn in range(1, PER_INSTANCE + 1):
                s.add(InstanceCharge(instance_id=f"instance-{i:04d}", sqn=sqn, cost="0.01", total="0", coins="0.01",
                                     timestamp="2026-12-05T10:00:00Z", recorded=now))


def main() -> c.Report:
    from sqlalchemy import func, select

    from shared.account_server.ledger import LedgerAccountServer
    from shared.config import Settings
    from shared.db import migrate
    from shared.db.models import LedgerProcessingCharge
    from shared.db.session import get_engine, transaction
    from shared.services import charges

    report = c.Report("charge_dispatch")
    with tempfile.TemporaryDirectory(prefix="dm-bench-charges-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        migrate.upgrade(settings.sqlalchemy_url)
        engine = get_engine(settings.sqlalchemy_url)
        ledger = LedgerAccountServer(settings, engine)
        with transaction(engine) as s:
            unit = ledger.ensure_personal_unit(s, "alice")
        seed(engine, unit["project_tier_product_id"], unit["unit_id"])
        port = c.free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", tmp, str(port)])
        url = f"http://127.0.0.1:{port}/account-server-api/event"
        try:
            wait_listening(port, server)
            t0 = time.perf_counter()
            sent = charges.send_processing_charges(engine, url)
            took = time.perf_counter() - t0
            again = charges.send_processing_charges(engine, url)
        finally:
            server.terminate()
            server.wait(10)
        with transaction(engine, readonly=True) as s:
            stored = s.scalar(select(func.count()).select_from(LedgerProcessingCharge))
            final = s.scalar(select(func.count()).select_from(LedgerProcessingCharge)
                             .where(LedgerProcessingCharge.eoc.is_(True)))
    total = INSTANCES * PER_INSTANCE
    if (sent, again, stored, final) != (total, 0, total, INSTANCES):
        raise SystemExit(f"sent {sent}, then {again}; the ledger holds {stored}, {final} final "
                         f"(expected {total}, 0, {total}, {INSTANCES})")
    report.figure("charges", total, f"{total:,} charges of {INSTANCES} instances: all stored once, "
                                    f"{INSTANCES} flagged eoc; a second run sent nothing")
    report.figure("seconds", took, f"stored rows → ledger: {took:.2f} s, {total / took:,.0f} charges/s")
    report.target("processing charges per second into the ledger", total / took, ">=", TARGET_PER_S, "/s")
    report.save()
    return report


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit("the ledger process exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the ledger did not start") from None
            time.sleep(0.05)


def serve(data_dir: str, port: int) -> None:
    """The ledger's Account Server API alone, in the api process's HTTP server (keep-alive)."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.wrappers import Response

    from shared.account_server.rest import create_account_server_app
    from shared.config import Settings
    from shared.stack import api_server

    ledger = create_account_server_app(Settings(data_dir=Path(data_dir)))
    api_server(port, lambda: DispatcherMiddleware(Response("", 404), {"/account-server-api": ledger}),
               access_log=False).run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
