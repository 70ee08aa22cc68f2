"""``dm monitor run|list`` and ``dm housekeeping`` in this process (`shared.cli.main`) on a SQLite
database, and what the local stack gives the Broker and the timer."""

from __future__ import annotations

import http.server
import sqlite3
import threading

import pytest

from shared.cli import main


@pytest.fixture
def dm_home(tmp_path, monkeypatch):
    """A migrated SQLite database and a store under a fresh DM_DATA_DIR; events are re-sent at once."""
    from shared.config import Settings
    from shared.db import migrate

    monkeypatch.setenv("DM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DM_OUTBOX_GRACE_S", "0")
    monkeypatch.delenv("K_SINK", raising=False)
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True)
    migrate.upgrade(settings.sqlalchemy_url)
    return settings


@pytest.fixture
def broker(monkeypatch):
    """A stand-in Broker on a free port taking every event (K_SINK points at it); returns what it got."""
    received: list[dict[str, str]] = []

    class Take(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Take)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("K_SINK", f"http://127.0.0.1:{server.server_address[1]}")
    yield received
    server.shutdown()
    server.server_close()


def queue_event(settings) -> str:
    from shared.db.session import get_engine, transaction
    from shared.events import outbox
    from shared.events.contracts import ScheduleTick

    with transaction(get_engine(settings.sqlalchemy_url)) as s:
        return outbox.add(s, ScheduleTick(job="purge-projects")).id


def lease(settings, job: str):
    with sqlite3.connect(settings.data_dir / "dm.sqlite3") as db:
        return db.execute("SELECT last_finished, last_error, holder FROM monitor_leases WHERE job = ?",
                          (job,)).fetchone()


def test_monitor_run_redeliver_events_sends_what_the_outbox_holds(dm_home, broker, capsys):
    event_id = queue_event(dm_home)
    assert main(["monitor", "run", "redeliver-events"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("redeliver-events: 1 done in "), out
    assert [h.get("ce-id") for h in broker] == [event_id]
    finished, error, holder = lease(dm_home, "redeliver-events")
    assert finished is not None and error is None and holder is None  # ran under its lease, released

    assert main(["monitor", "run", "redeliver-events"]) == 0  # nothing left to send
    assert capsys.readouterr().out.startswith("redeliver-events: 0 done")
    assert len(broker) == 1


def test_without_a_broker_the_events_stay_in_the_outbox(dm_home, capsys):
    queue_event(dm_home)
    assert main(["monitor", "run", "redeliver-events"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("redeliver-events: 0 done")
    assert "K_SINK" in captured.err


def test_an_unknown_job_exits_non_zero_with_the_list_of_jobs(dm_home, capsys):
    from shared.services.monitor import JOBS

    assert main(["monitor", "run", "tidy-the-attic"]) != 0
    err = capsys.readouterr().err
    assert "tidy-the-attic" in err
    assert all(name in err for name in JOBS), err
    assert lease(dm_home, "tidy-the-attic") is None


def test_housekeeping_is_another_name_for_monitor_run(dm_home, broker, capsys):
    queue_event(dm_home)
    assert main(["housekeeping", "redeliver-events"]) == 0
    assert capsys.readouterr().out.startswith("redeliver-events: 1 done")
    assert main(["housekeeping", "no-such-job"]) != 0


def test_a_job_whose_lease_is_held_elsewhere_does_not_run(dm_home, capsys):
    from shared.db.session import get_engine
    from shared.services.monitor import JOBS, take_lease

    assert take_lease(get_engine(dm_home.sqlalchemy_url), JOBS["purge-projects"], "another-monitor:1")
    assert main(["monitor", "run", "purge-projects"]) == 1
    assert "another monitor holds its lease" in capsys.readouterr().err


def test_monitor_list_names_every_job_with_its_interval_and_last_run(dm_home, capsys, monkeypatch):
    from shared.services.monitor import JOBS

    assert main(["monitor", "run", "purge-projects"]) == 0
    capsys.readouterr()
    assert main(["monitor", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(JOBS)
    assert rows["purge-projects"][1] == f"{JOBS['purge-projects'].every_s:g}s"
    assert rows["purge-projects"][3] != "-"  # it has run
    assert rows["remove-stale-uploads"][3] == "-"

    monkeypatch.setenv("DM_HOUSEKEEPING_EVERY_S", "2")
    assert main(["monitor", "list"]) == 0
    assert all(line.split()[1] == "2s" for line in capsys.readouterr().out.splitlines()[1:])


# --- what the stack gives the Broker and the timer ---------------------------------------------


def test_the_brokers_account_server_is_the_api_port_with_the_triggers_uri():
    from shared.events.triggers import load_routing, service_resolver
    from shared.stack import ROOT, broker_services

    resolve = service_resolver(broker_services(8080))
    routing = load_routing(sorted((ROOT / "knative").glob("*.yaml")))
    charges = [t for t in routing.triggers if t.subscriber.get("ref", {}).get("name") == "account-server"]
    assert charges, "no Trigger sends charges to account-server"
    for trigger in charges:
        assert resolve(trigger.subscriber) == "http://127.0.0.1:8080/account-server-api/event"
    ticks = [t for t in routing.triggers if t.subscriber.get("ref", {}).get("name") == "dm-monitor"]
    assert [resolve(t.subscriber) for t in ticks] == ["http://127.0.0.1:8085"]


def test_tick_intervals_are_the_jobs_own_unless_overridden():
    from shared.config import Settings
    from shared.services.monitor import JOBS
    from shared.stack import stack_ports, tick_intervals

    assert tick_intervals(Settings()) == {name: job.every_s for name, job in JOBS.items()}
    assert set(tick_intervals(Settings(housekeeping_every_s=3)).values()) == {3.0}
    assert stack_ports(8080) == [8080, 8081, 8083, 8084, 8085, 8082]
