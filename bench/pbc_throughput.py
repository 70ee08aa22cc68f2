"""pbc on PostgreSQL: PodMessage CloudEvents per second over HTTP, checked in the database.

PostgreSQL must answer on 127.0.0.1:5432 (``DM_TEST_POSTGRES_URL`` if set, else user postgres,
then root, database ``test``, trust auth), as for the test suite's PostgreSQL tests. A fresh
database ``dm_bench_<hex>`` is created for the run and dropped (``WITH (FORCE)``) at the end.
If no server answers, the benchmark says so loudly and exits with an error.

Seeding, straight through the services on that database (real rows, as the api writes them):
``shared.stack.prepare`` migrates it (``shared.db.migrate.upgrade``) and seeds the built-in
ledger; alice gets a Project on her project-tier product; the test job manifest
(tests/data/jobs/manifest.yaml) is read and recorded (``jobs.put_manifest`` + ``record_load``);
then instances of ``dm-test`` / ``event-and-cost`` are recorded with their tasks by
``instances.record``, 250 to a transaction, each batch after one ``instances.check_launch`` (its
checked launch is given each instance's own id and name). Nothing is launched.

The pbc function runs as a real process, as the product serves it: ``python -m shared.stack
--target pbc`` (the project's waitress-based server, ``shared/http_server.py``, one process) with
``DM_DATABASE_URL`` on the bench database and ``THREADS=8``; the server's settings are printed
(threads, connection limit, deadlines, body limit and the size above which a body is spooled to a
temporary file). 8 client threads, one keep-alive ``http.client`` connection each, POST binary-mode CloudEvents
(``ce-type`` of ``PodMessageEvent``, ``Content-Type: application/protobuf``, the body a serialized
``PodMessage``): for each instance a Running message, then a Succeeded one with exit code 0. The
instances are dealt out to the threads in turn. Every answer must be 202. Messages and their
bodies are built before the clock starts.

Rounds: one warm-up round of 200 instances, then 3 timed rounds of 1,000 fresh instances (2,000
messages) each; the figure is the median rate. While a round runs, the CPU time of the pbc
process, of the PostgreSQL backends serving the bench database and of this process (the clients)
is measured, per message, and how busy the pbc process was.

Afterwards the database must show, for every instance sent: phase COMPLETED with ``started`` and
``stopped``; its task done, state SUCCESS, exit code 0, with exactly one STARTED and exactly one
SUCCESS state; and one pbc inbox row per message. Anything else fails the run.

Then, to see where a message's time goes, 200 more instances are fed through pbc's claim and
``pod_messages.apply_pod_message`` in this process (no HTTP), one message at a time, as pbc's handler
calls them, with a counter on SQL statements (SQLAlchemy's, and the prepared statements run on the
pg8000 connection) and commits and on the connection pool's checkouts (each checkout is a pre-ping
round trip), and the CPU time of the calling thread.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import _common as c
import _system as system

INSTANCES, ROUNDS, WARMUP_INSTANCES = 1000, 3, 200
PROFILE_INSTANCES = 200
CLIENTS = 8
BATCH = 250
TARGET_MESSAGES_S = 500
TEST_MANIFEST = c.ROOT / "tests" / "data" / "jobs" / "manifest.yaml"


# --- the database ------------------------------------------------------------------------------


class Seeder:
    """alice's Project and the test jobs on the bench database; `instances` records more."""

    def __init__(self, url: str, data_dir: Path):
        from shared.auth.verify import Principal
        from shared.config import Settings
        from shared.db.session import get_engine, transaction
        from shared.jobs import definitions
        from shared.services import jobs, projects
        from shared.stack import prepare
        from shared.storage import create_routed_storage
        from shared.account_server.ledger import LedgerAccountServer

        self.settings = Settings(data_dir=data_dir, database_url=url)
        facts = prepare(self.settings)  # migrates (shared.db.migrate.upgrade) and seeds the ledger
        self.engine = get_engine(url)
        self.storage = create_routed_storage(str(self.settings.project_volume_path),
                                             self.settings.dataset_store_url)
        self.alice = Principal("alice", frozenset(), False, "")
        admin = Principal("admin", frozenset(), True, "")
        grant = LedgerAccountServer(self.settings, self.engine).authorise_project_tier(
            self.alice, facts["users"]["alice"]["project_tier_product_id"])
        with transaction(self.engine) as s:
            self.project_id = projects.create(s, self.alice, name="pbc throughput", private=False, grant=grant).id
        self.storage.make_dirs(f"projects/{self.project_id}")
        location = definitions.check_location(str(TEST_MANIFEST))
        with transaction(self.engine) as s:
            manifest_id = jobs.put_manifest(s, admin, location, "", "").id
        report = definitions.read_manifest(location, {}, {})
        with transaction(self.engine) as s:
            loaded = jobs.record_load(s, manifest_id, report)
        if loaded < 1:
            raise RuntimeError(f"the test manifest loaded no jobs: {report.status_text()}")
        self.made = 0

    def instances(self, count: int) -> list[tuple[str, str]]:
        """``count`` recorded (not launched) instances with their tasks: (instance id, task id)."""
        import dataclasses
        import json

        from shared.db.base import new_id
        from shared.db.session import transaction
        from shared.services import instances

        spec = {"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
                "variables": {"outputFile": "out/result.txt", "count": 1, "cost": "1"}}
        form = {"application_id": "datamanagerjobs.squonk.it", "project_id": self.project_id,
                "as_name": "Run", "specification": json.dumps(spec)}
        out = []
        while len(out) < count:
            with transaction(self.engine) as s:
                checked = instances.check_launch(s, self.alice, self.storage, form)
                for _ in range(min(BATCH, count - len(out))):
                    self.made += 1
                    launch = dataclasses.replace(checked, instance_id=new_id("instance"), name=f"Run {self.made}")
                    row, task = instances.record(s, self.alice, launch)
                    out.append((row.id, task.id))
        return out


# --- the messages ------------------------------------------------------------------------------


def pod_message(instance_id: str, task_id: str, phase: str) -> bytes:
    from shared.db.base import utcnow
    from shared.messages.pod_message_pb2 import PodMessage

    now = utcnow().isoformat().replace("+00:00", "Z")
    message = PodMessage(timestamp=now, pod_name=instance_id, task=task_id, phase=phase, instance=instance_id,
                         start_timestamp=now)
    if phase == "Succeeded":
        message.finish_timestamp = now
        message.has_exit_code, message.exit_code = True, 0
    return message.SerializeToString()


def headers() -> dict[str, str]:
    from shared.events.contracts import PodMessageEvent

    return {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": PodMessageEvent.TYPE,
            "ce-source": PodMessageEvent.SOURCE, "Content-Type": PodMessageEvent.CONTENT_TYPE}


def plan(pairs: list[tuple[str, str]]) -> list[list[tuple[bytes, dict, str]]]:
    """Per client thread, its messages in order: each instance's Running, then its Succeeded."""
    per_client: list[list] = [[] for _ in range(CLIENTS)]
    for n, (instance_id, task_id) in enumerate(pairs):
        for phase in ("Running", "Succeeded"):
            per_client[n % CLIENTS].append((pod_message(instance_id, task_id, phase), headers(), instance_id))
    return per_client


def send_all(port: int, per_client: list[list]) -> tuple[float, list[str]]:
    """Every client thread sends its messages on one keep-alive connection: (seconds, problems)."""
    problems: list[str] = []
    start = threading.Barrier(CLIENTS + 1)

    def client(messages):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        start.wait()
        try:
            for body, hdrs, instance_id in messages:
                conn.request("POST", "/", body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 202:
                    problems.append(f"{instance_id}: {resp.status} {data[:200]!r}")
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported, and the round fails
            problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(m,)) for m in per_client]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, problems


# --- the pbc process --------------------------------------------------------------------------


def function_env(url: str, data_dir: Path) -> dict[str, str]:
    return c.function_env(DM_DATABASE_URL=url, DM_DATA_DIR=str(data_dir), DM_LOG_LEVEL="WARNING")


def server_settings(env: dict[str, str]) -> dict:
    """The settings ``python -m shared.stack --target pbc`` gives its server under ``env`` (as the child
    sees it): `shared.stack.http_limits` with THREADS, and shared.http_server's constants."""
    code = ("import json, os, dataclasses, importlib.metadata as md; from shared.config import Settings; "
            "from shared import http_server as h; from shared.stack import http_limits; "
            "l = http_limits(Settings.from_env(), int(os.environ.get('THREADS', '16'))); "
            "print(json.dumps({'server': 'shared.http_server (waitress ' + md.version('waitress') + ')', "
            "'processes': 1, **dataclasses.asdict(l), 'spool_body_above_bytes': h.SPOOL_IN_MEMORY, "
            "'recv_bytes': h.RECV_BYTES, 'cpu_count': os.cpu_count()}))")
    import json

    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=c.ROOT, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return {"error": out.stderr[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


class Pbc:
    def __init__(self, env: dict[str, str]):
        self.port = c.free_port()
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            c.dm_command("pbc", self.port), cwd=c.ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.perf_counter() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pbc exited with {self.proc.returncode}:\n{self.log()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
                return  # any answer (405 for a GET) means it serves
            except (OSError, http.client.HTTPException):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"pbc did not answer within {timeout} s\n{self.log()}") from None
                time.sleep(0.05)
            finally:
                conn.close()

    def process(self):
        """The one process that serves pbc (the server starts no children)."""
        import psutil

        proc = psutil.Process(self.proc.pid)
        children = proc.children(recursive=True)
        if children:
            raise RuntimeError(f"expected the pbc server to be one process, found {len(children)} children")
        return proc

    def log(self, tail: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the server's loop stops with SystemExit
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


# --- CPU accounting ----------------------------------------------------------------------------


def cpu_by_pid(procs) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except Exception:  # noqa: BLE001 - a process that just ended
            pass
    return out


def backends_of(database: str):
    """The PostgreSQL server processes serving ``database`` (their title names it)."""
    import psutil

    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if (p.info["name"] or "").startswith("postgres") and f" {database} " in title:
            out.append(p)
    return out


class CpuMeter:
    """CPU seconds used between `start` and `stop` by the pbc process, the PostgreSQL backends
    serving the bench database and this process (the clients). A process that appears meanwhile
    counts in full; one that ends meanwhile is lost (the pool keeps its connections)."""

    def __init__(self, server, database: str):
        import psutil

        self.groups = {"pbc process": lambda: [server], "postgres backends": lambda: backends_of(database),
                       "clients (this process)": lambda: [psutil.Process()]}

    def start(self):
        self.before = {k: cpu_by_pid(f()) for k, f in self.groups.items()}

    def stop(self) -> dict[str, float]:
        out = {}
        for k, f in self.groups.items():
            now = cpu_by_pid(f())
            out[k] = sum(v - self.before[k].get(pid, 0.0) for pid, v in now.items())
        return out


# --- checks ------------------------------------------------------------------------------------


def verify(engine, instance_ids: list[str], messages: int) -> list[str]:
    """What is wrong in the database about these instances (empty when all is well)."""
    from sqlalchemy import text

    problems = []
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE bench_ids (id varchar(64) PRIMARY KEY)")
        conn.execute(text("INSERT INTO bench_ids (id) VALUES (:id)"), [{"id": i} for i in instance_ids])
        q = lambda sql: conn.exec_driver_sql(sql).all()  # noqa: E731
        bad = q("SELECT i.id, i.phase, i.started IS NULL, i.stopped IS NULL, i.exit_code FROM instances i "
                "JOIN bench_ids b ON b.id = i.id WHERE i.phase <> 'COMPLETED' OR i.started IS NULL "
                "OR i.stopped IS NULL OR i.exit_code IS DISTINCT FROM 0")
        if bad:
            problems.append(f"{len(bad)} instances not COMPLETED (exit 0, started, stopped), e.g. {bad[:3]}")
        found = q("SELECT count(*) FROM instances i JOIN bench_ids b ON b.id = i.id")[0][0]
        if found != len(instance_ids):
            problems.append(f"{found} of {len(instance_ids)} instances found")
        bad = q("SELECT t.id, t.state, t.done, t.exit_code FROM tasks t JOIN instances i ON i.task_id = t.id "
                "JOIN bench_ids b ON b.id = i.id WHERE t.state <> 'SUCCESS' OR NOT t.done "
                "OR t.exit_code IS DISTINCT FROM 0")
        if bad:
            problems.append(f"{len(bad)} tasks not done SUCCESS with exit code 0, e.g. {bad[:3]}")
        bad = q("SELECT t.id, sum(CASE WHEN s.state = 'STARTED' THEN 1 ELSE 0 END), "
                "sum(CASE WHEN s.state = 'SUCCESS' THEN 1 ELSE 0 END), count(s.id) "
                "FROM tasks t JOIN instances i ON i.task_id = t.id JOIN bench_ids b ON b.id = i.id "
                "LEFT JOIN task_states s ON s.task_id = t.id GROUP BY t.id "
                "HAVING sum(CASE WHEN s.state = 'STARTED' THEN 1 ELSE 0 END) <> 1 "
                "OR sum(CASE WHEN s.state = 'SUCCESS' THEN 1 ELSE 0 END) <> 1")
        if bad:
            problems.append(f"{len(bad)} tasks without exactly one STARTED and one SUCCESS state, e.g. {bad[:3]}")
        inbox = q("SELECT count(*) FROM inbox WHERE consumer = 'pbc'")[0][0]
        if inbox != messages:
            problems.append(f"{inbox} pbc inbox rows for {messages} messages sent")
        conn.exec_driver_sql("DROP TABLE bench_ids")
        conn.commit()
    return problems


# --- where a message's time goes ---------------------------------------------------------------


def _label(sql: str) -> str:
    """A statement in a few words: its verb and its table (a CTE: the tables it writes, and its verb)."""
    import re

    words = sql.split()
    verb = words[0].upper() if words else "?"
    if verb == "WITH":
        return "WITH writing " + "+".join(re.findall(r"\b(?:INSERT INTO|UPDATE)\s+(\w+)", sql, re.I))
    m = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", sql, re.I)
    if verb == "SELECT" and re.match(r"SELECT\s+max\(", sql, re.I):
        verb = "SELECT max"
    return f"{verb} {m.group(1)}" if m and verb not in ("SAVEPOINT", "RELEASE", "ROLLBACK") else verb


def profile_in_process(engine, pairs: list[tuple[str, str]]) -> dict:
    """Each message through pbc's claim and ``pod_messages.apply_pod_message`` here, one at a time, as
    pbc's handler calls them: wall and CPU time, SQL statements (those through SQLAlchemy and the
    prepared ones run on the driver), commits and pool checkouts (each checkout is one pre-ping round
    trip) per message."""
    import pg8000.legacy
    from sqlalchemy import event

    from shared.db.session import core_transaction
    from shared.events import wire
    from shared.events.consumer import Received
    from shared.events.contracts import PodMessageEvent
    from shared.services import pod_messages

    counts = {"statements": 0, "commits": 0, "checkouts": 0}
    seen: list[str] = []

    def on_statement(_conn, _cursor, statement, *_a, **_k):
        counts["statements"] += 1
        seen.append(statement)

    def on_commit(*_a, **_k):
        counts["commits"] += 1

    def on_checkout(*_a, **_k):
        counts["checkouts"] += 1

    prepared_run = pg8000.legacy.PreparedStatement.run

    def counted_run(self, **vals):
        on_statement(None, None, self.operation)
        return prepared_run(self, **vals)

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    event.listen(engine.pool, "checkout", on_checkout)
    pg8000.legacy.PreparedStatement.run = counted_run
    per_phase: dict[str, dict] = {}
    try:
        for phase in ("Running", "Succeeded"):
            before = dict(counts)
            seen.clear()
            t0, c0 = time.perf_counter(), time.thread_time()
            for instance_id, task_id in pairs:
                raw = pod_message(instance_id, task_id, phase)
                received = Received("pbc", wire.new_event(PodMessageEvent.TYPE, PodMessageEvent.SOURCE, raw,
                                                          content_type=PodMessageEvent.CONTENT_TYPE))
                claim = pod_messages.Claim(received.consumer, received.id, received.sha256)
                with core_transaction(engine) as connection:
                    pod_messages.apply_pod_message(connection, PodMessageEvent.from_bytes(
                        raw, PodMessageEvent.TYPE).message, claim=claim)
            took, cpu = time.perf_counter() - t0, time.thread_time() - c0
            n = len(pairs)
            per_message = (counts["statements"] - before["statements"]) // n
            per_phase[phase] = {"ms_per_message": round(took / n * 1000, 3),
                                "cpu_ms_per_message": round(cpu / n * 1000, 3),
                                **{k: round((counts[k] - before[k]) / n, 2) for k in counts},
                                "statement_list": [_label(x) for x in seen[:per_message]]}
    finally:
        pg8000.legacy.PreparedStatement.run = prepared_run
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        event.remove(engine.pool, "checkout", on_checkout)
    return per_phase


def ping_ms(engine, n: int = 500) -> float:
    """One round trip to PostgreSQL (``SELECT 1`` on a held connection), median in ms."""
    times = []
    with engine.connect() as conn:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.exec_driver_sql("SELECT 1").all()
            times.append(time.perf_counter() - t0)
    return c.median(times) * 1000


# --- the benchmark ------------------------------------------------------------------------------


def main() -> c.Report:
    report = c.Report("pbc_throughput")
    url, reasons = system.postgres_admin_url()
    if url is None:
        print("!" * 78 + "\n!!! PostgreSQL does not answer: pbc_throughput CANNOT RUN\n"
              + "".join(f"!!!   {r}\n" for r in reasons) + "!" * 78, flush=True)
        raise SystemExit(2)
    import sqlalchemy as sa

    name = f"dm_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    bench_url = url.rsplit("/", 1)[0] + f"/{name}"
    print(f"PostgreSQL at {url.split('@')[-1]}; bench database {name}", flush=True)
    pbc = None
    try:
        with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
            data_dir = Path(tmp) / "data"
            t0 = time.perf_counter()
            seeder = Seeder(bench_url, data_dir)
            print(f"migrated and seeded in {time.perf_counter() - t0:.1f} s", flush=True)
            env = function_env(bench_url, data_dir)
            settings = server_settings(env)
            report.figure("server", settings, "pbc served by python -m shared.stack --target pbc: " + ", ".join(
                f"{k} {v}" for k, v in settings.items()))
            pbc = Pbc(env)
            pbc.wait_ready()
            meter = CpuMeter(pbc.process(), name)

            rates, cpu, busy, sent_ids, sent_messages, all_problems = [], [], [], [], 0, []
            for r in range(ROUNDS + 1):
                n = INSTANCES if r else WARMUP_INSTANCES
                t0 = time.perf_counter()
                pairs = seeder.instances(n)
                seeded = time.perf_counter() - t0
                per_client = plan(pairs)
                meter.start()
                took, problems = send_all(pbc.port, per_client)
                used = meter.stop()
                sent_ids += [i for i, _ in pairs]
                sent_messages += 2 * n
                all_problems += problems
                rate = 2 * n / took
                label = f"round {r}" if r else "warm-up"
                print(f"  {label}: {n} instances recorded in {seeded:.1f} s; {2 * n} messages in {took:.2f} s = "
                      f"{rate:.0f}/s, {len(problems)} not 202; CPU per message: "
                      + ", ".join(f"{k} {v / (2 * n) * 1000:.2f} ms" for k, v in used.items()), flush=True)
                for p in problems[:3]:
                    print(f"    {p}", flush=True)
                if r:
                    rates.append(rate)
                    cpu.append({k: v / (2 * n) * 1000 for k, v in used.items()})
                    busy.append(used["pbc process"] / took)

            code = pbc.stop()
            print(f"pbc stopped (exit code {code})", flush=True)
            db_problems = verify(seeder.engine, sent_ids, sent_messages)
            print(f"checked {len(sent_ids)} instances and {sent_messages} messages in the database: "
                  + ("all COMPLETED, each task SUCCESS exactly once" if not db_problems else "PROBLEMS"), flush=True)
            for p in db_problems:
                print(f"  {p}", flush=True)

            profile = profile_in_process(seeder.engine, seeder.instances(PROFILE_INSTANCES))
            rtt = ping_ms(seeder.engine)
            from shared.db.session import dispose_engines

            dispose_engines()
    finally:
        if pbc is not None and pbc.proc.poll() is None:
            pbc.stop()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        print(f"dropped {name}", flush=True)

    med = c.median(rates)
    print("results:")
    report.figure("messages_per_s", {"median": round(med, 1), "rounds": [round(x, 1) for x in rates]},
                  f"PodMessages per second over HTTP ({CLIENTS} clients, {2 * INSTANCES} messages a round): "
                  f"median {med:.0f} (rounds: {', '.join(f'{x:.0f}' for x in rates)})")
    per_msg = {k: round(c.median([x[k] for x in cpu]), 3) for k in cpu[0]}
    report.figure("cpu_ms_per_message", per_msg, "CPU per message (median of rounds): "
                  + ", ".join(f"{k} {v:.2f} ms" for k, v in per_msg.items())
                  + f"; wall per message {1000 / med:.2f} ms")
    report.figure("in_process_per_message", profile, "pbc's claim and apply_pod_message in this process, one message at a time: "
                  + "; ".join(f"{phase}: {p['ms_per_message']:.2f} ms ({p['cpu_ms_per_message']:.2f} ms CPU), "
                              f"{p['statements']:.0f} SQL statements, {p['commits']:.0f} commit, "
                              f"{p['checkouts']:.0f} pool checkout with its pre-ping"
                              for phase, p in profile.items()))
    for phase, p in profile.items():
        print(f"    {phase}: " + ", ".join(p["statement_list"]), flush=True)
    apply_cpu = c.median([p["cpu_ms_per_message"] for p in profile.values()])
    pbc_cpu = per_msg["pbc process"]
    report.figure("worker_ceiling_per_s", round(1000 / pbc_cpu, 1),
                  f"the pbc process used {c.median(busy) * 100:.0f}% of one core while the rounds ran; at "
                  f"{pbc_cpu:.2f} ms of its CPU a message, one process can do at most {1000 / pbc_cpu:.0f} "
                  f"messages/s. Of that CPU, claim and apply_pod_message (SQLAlchemy + pg8000) "
                  f"~{apply_cpu:.2f} ms, the HTTP request and CloudEvent (waitress, Flask, functions-framework, "
                  f"cloudevents) ~{max(pbc_cpu - apply_cpu, 0):.2f} ms")
    report.figure("postgres_round_trip_ms", round(rtt, 3), f"one SELECT 1 round trip (pg8000): {rtt:.3f} ms")
    report.figure("not_202", len(all_problems), f"answers other than 202: {len(all_problems)}")
    report.figure("database_problems", db_problems, f"database check problems: {len(db_problems)}")
    report.target("median PodMessages per second", med, ">=", TARGET_MESSAGES_S, "/s")
    report.target("answers other than 202 + database check problems", len(all_problems) + len(db_problems), "<=", 0)
    report.save()
    return report


if __name__ == "__main__":
    main()
