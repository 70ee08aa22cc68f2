"""Helpers shared by the benchmark scripts.

Function processes (a DM function in the project's own server, ``python -m shared.stack
--target T``; the bare hello-world reference under functions-framework's CLI), waiting for a
200, the development OpenID provider in the benchmark process, a migrated and seeded data
folder, and PASS/FAIL targets with a JSON record under bench/results/.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The functions-framework script next to the interpreter that runs the benchmark (.venv/bin): it serves
# only the bare hello-world reference function (its own gunicorn).
FF = Path(sys.executable).parent / "functions-framework"
THREADS = "8"  # worker threads of every function server the benchmarks start
API_VERSION = "/data-manager-api/version"
API_PROJECTS = "/data-manager-api/project"
HELLO_SOURCE = 'def hello(request):\n    return "ok"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(values):
    return statistics.median(values)


def write_hello(folder: Path) -> Path:
    path = Path(folder) / "hello.py"
    path.write_text(HELLO_SOURCE)
    return path


def function_env(**extra: str) -> dict[str, str]:
    """The shell's environment without DM_* variables, with ``THREADS=8``: the worker threads of
    ``shared.stack``'s server, and of the hello-world's gunicorn worker (`hello_function` adds
    ``WORKERS=1``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_") and k != "WORKERS"}
    env.update(THREADS=THREADS, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX="2")  # as the image and `dm run` set it
    env.update(extra)
    return env


def api_env(data_dir: Path, issuer: str, **extra: str) -> dict[str, str]:
    return function_env(DM_DATA_DIR=str(data_dir), DM_OIDC_ISSUER=issuer, DM_LOG_LEVEL="WARNING", **extra)


def dm_command(target: str, port: int) -> list[str]:
    """A DM function as the product serves it: ``python -m shared.stack --target T`` (the project's
    waitress-based server, ``shared/http_server.py``, with ``THREADS`` worker threads)."""
    return [sys.executable, "-m", "shared.stack", "--target", target, "--host", "127.0.0.1", "--port", str(port)]


def ff_command(target: str, source: Path, port: int) -> list[str]:
    """``functions-framework --target T --source S``: functions-framework's own gunicorn."""
    return [str(FF), "--target", target, "--source", str(source), "--host", "127.0.0.1", "--port", str(port)]


class Function:
    """One function process on a free port; a context manager.

    Without ``source``, the DM function ``target`` of main.py in the project's server (`dm_command`):
    one process, stopped by SIGTERM (which raises SystemExit in it). With ``source``, functions-framework's
    CLI (`ff_command`): a gunicorn master and worker, stopped by SIGTERM (gunicorn's graceful stop; SIGINT
    can leave a gthread worker deadlocked). ``started`` is the perf_counter reading just before the
    process was spawned.
    """

    def __init__(self, target: str, env: dict[str, str], cwd: Path = ROOT, source: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        command = dm_command(target, self.port) if source is None else ff_command(target, source, self.port)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def wait_200(self, path: str, headers: dict | None = None, interval: float = 0.005, timeout: float = 60.0) -> float:
        """Poll ``GET path`` every ``interval`` s until 200; seconds since the process was spawned."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"function exited with {self.proc.returncode}:\n{self.log()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                conn.request("GET", path, headers=headers or {})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    return time.perf_counter() - self.started
                raise RuntimeError(f"GET {path} answered {resp.status}: {body[:300]!r}\n{self.log()}")
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                time.sleep(interval)
            finally:
                conn.close()
        raise TimeoutError(f"no 200 from {path} within {timeout} s\n{self.log()}")

    def process_tree(self):
        """psutil processes: the function's process and its children. A DM function's server is one
        process with no children; the hello-world's gunicorn is a master and its worker."""
        import psutil

        proc = psutil.Process(self.proc.pid)
        return [proc, *proc.children(recursive=True)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)  # shared.stack: SystemExit; gunicorn: graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for p in reversed(self.process_tree()):
                    p.kill()
                self.proc.wait(10)
            if time.perf_counter() - t0 > 2:
                print(f"  (note: stopping pid {self.proc.pid} took {time.perf_counter() - t0:.1f} s)\n{self.log()}")
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def hello_function(folder: Path) -> Function:
    """The reference: a bare hello-world under functions-framework's CLI, one gunicorn worker, 8 threads."""
    return Function("hello", function_env(WORKERS="1"), cwd=Path(folder), source=write_hello(folder))


def api_function(data_dir: Path, issuer: str, **extra: str) -> Function:
    """The api as the product serves it: ``python -m shared.stack --target api``, 8 threads."""
    return Function("api", api_env(data_dir, issuer, **extra))


# --- identity -------------------------------------------------------------------


class Identity:
    """The development OpenID provider under /auth on a threaded werkzeug server in this process."""

    def __init__(self, data_dir: Path):
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Response

        from shared.auth.keys import load_or_create_signing_key
        from shared.auth.provider import create_provider_app
        from shared.auth.users import load_users
        from shared.config import Settings

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log lines
        holder = {}
        root = DispatcherMiddleware(Response("not here", 404), {"/auth": lambda e, s: holder["app"](e, s)})
        self.server = make_server("127.0.0.1", 0, root, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        settings = Settings(public_url=self.url, data_dir=Path(data_dir))
        key = load_or_create_signing_key(Path(data_dir) / "key.pem")
        holder["app"] = create_provider_app(settings, load_users(settings), key)
        self.issuer = settings.issuer
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, username: str) -> str:
        import requests

        resp = requests.post(
            f"{self.issuer}/protocol/openid-connect/token",
            data={"client_id": "data-manager-api", "grant_type": "password",
                  "username": username, "password": username},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()["access_token"]

    def stop(self) -> None:
        self.server.shutdown()


def prepare_data_dir(data_dir: Path, issuer: str) -> dict:
    """A migrated SQLite database with the ledger seeded for the development users; the stack facts."""
    from shared.config import Settings
    from shared.stack import prepare

    return prepare(Settings(data_dir=Path(data_dir), oidc_issuer=issuer))


def create_projects(api_url: str, token: str, product_id: str, count: int, prefix: str = "Bench") -> list[str]:
    """``count`` projects through ``POST /project``; their ids."""
    import requests

    ids = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {token}"
        for i in range(count):
            resp = http.post(f"{api_url}/data-manager-api/project",
                             data={"name": f"{prefix} {i:03d}", "tier_product_id": product_id}, timeout=30)
            if resp.status_code != 201:
                raise RuntimeError(f"create project: {resp.status_code} {resp.text}")
            ids.append(resp.json()["project_id"])
    return ids


# --- the local stack ----------------------------------------------------------------


def free_port_block(count: int = 3) -> int:
    """A base port such that base .. base+count-1 are all free on 127.0.0.1."""
    for _ in range(200):
        base = free_port()
        if base + count - 1 > 65535:
            continue
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError(f"no block of {count} free ports found")


def stack_env(**extra: str) -> dict[str, str]:
    """The shell's environment without DM_* variables, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Stack:
    """``python -m shared.cli run`` in a subprocess: api on ``port``, upload function on port+1,
    Broker on port+2, kew +3, pbc +4, monitor +5, state in ``data_dir``. A context manager; `stop` sends SIGINT (Ctrl-C)
    and returns the exit code.
    """

    def __init__(self, data_dir: Path, **extra_env: str):
        self.port = free_port_block(6)  # api, upload, broker, kew, pbc, monitor
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.facts: dict = {}
        self.exit_code: int | None = None
        self._log = tempfile.TemporaryFile()
        env = stack_env(DM_PORT=str(self.port), DM_DATA_DIR=str(self.data_dir), DM_OUTBOX_GRACE_S="1",
                        **extra_env)  # the monitor's jobs at their own intervals, as users run them
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._pids: list[int] = []

    @property
    def api_url(self) -> str:
        return self.facts.get("api_url") or self.base_url + "/data-manager-api"

    def log(self, tail: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for ``GET /version`` (api) and ``GET /healthz`` (Broker); seconds since the spawn."""
        deadline = self.started + timeout
        for port, path in ((self.port, API_VERSION), (self.port + 2, "/healthz")):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the stack exited with {self.proc.returncode}:\n{self.log()}")
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"the stack did not answer {path} within {timeout} s\n{self.log()}")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                finally:
                    conn.close()
                time.sleep(0.05)
        self.facts = json.loads((self.data_dir / "local-stack.json").read_text())
        self._pids = [p.pid for p in self.processes().values()]
        return time.perf_counter() - self.started

    def processes(self) -> dict[str, "psutil.Process"]:  # noqa: F821
        """The stack's process tree by role: ``dm run`` (the supervisor this class starts); its
        children ``api`` (``python -m shared.stack --local-stack``: the api, /auth and the ledger in one
        server process) and ``functions supervisor`` (``dm functions``); under that, each event function
        by its target (``python -m shared.stack --target T``, one process each) and ``broker``. Any
        other process is listed as ``<parent role> child``."""
        import psutil

        root = psutil.Process(self.proc.pid)
        out = {"dm run": root}

        def put(label, proc):
            n, name = 2, label
            while name in out:
                name, n = f"{label} {n}", n + 1
            out[name] = proc
            return name

        def role(proc) -> str | None:
            cmd = proc.cmdline()[1:]
            if cmd[:2] == ["-m", "shared.stack"]:
                if "--local-stack" in cmd:
                    return "api"
                return cmd[cmd.index("--target") + 1] if "--target" in cmd else "function"
            if cmd[:3] == ["-m", "shared.cli", "functions"]:
                return "functions supervisor"
            if cmd[:3] == ["-m", "shared.cli", "broker"]:
                return "broker"
            return None

        def walk(parent, parent_label):
            for child in parent.children():
                label = put(role(child) or f"{parent_label} child", child)
                walk(child, label)

        walk(root, "dm run")
        return out

    def token(self, username: str = "alice") -> str:
        import requests

        resp = requests.post(
            f"{self.facts['keycloak_url']}/realms/{self.facts.get('keycloak_realm', 'squonk2')}"
            "/protocol/openid-connect/token",
            data={"client_id": self.facts.get("keycloak_client_id", "data-manager-api"),
                  "grant_type": "password", "username": username, "password": username},
            timeout=10)
        resp.raise_for_status()
        return resp.json()["access_token"]

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (Ctrl-C) and wait; the exit code. Killed (and -9) if it hangs; processes of the
        tree still alive afterwards are killed and reported."""
        import psutil

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  the stack did not stop within {timeout} s of SIGINT; killing it\n{self.log()}")
                for pid in reversed(self._pids):
                    try:
                        psutil.Process(pid).kill()
                    except psutil.Error:
                        pass
                self.proc.wait(10)
        left = []
        for pid in self._pids[1:]:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
                    p.kill()
            except psutil.Error:
                pass
        if left:
            print(f"  processes of the stack still running after it exited (killed): {left}")
        self.exit_code = self.proc.returncode if not left else (self.proc.returncode or 1)
        return self.exit_code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ApiClient:
    """One keep-alive connection to the api (http.client, no per-request overhead of requests).

    A connection idle for more than a second is replaced before use (well inside the server's idle
    timeout, ``DM_HTTP_IDLE_TIMEOUT_S``), so a POST is never sent on a connection the server may just
    have closed. GETs are retried once on a dropped connection; POSTs never are.
    """

    IDLE_S = 1.0

    def __init__(self, port: int, token: str, prefix: str = "/data-manager-api", blocksize: int = 1024**2):
        self.port, self.token, self.prefix, self.blocksize = port, token, prefix, blocksize
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.perf_counter() - self._used > self.IDLE_S:
            self.close()
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600, blocksize=self.blocksize)
        return self._conn

    def call(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; ``path`` is below the api prefix."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body,
                             headers={"Authorization": f"Bearer {self.token}", **(headers or {})})
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or method != "GET":
                    raise
                continue
            self._used = time.perf_counter()
            if resp.will_close:
                self.close()
            return resp.status, data
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, expect: int = 200, **kw) -> dict:
        status, data = self.call(method, path, **kw)
        if status != expect:
            raise RuntimeError(f"{method} {path} answered {status}: {data[:300]!r}")
        return json.loads(data) if data else {}

    def wait_task(self, task_id: str, interval: float, timeout: float = 600.0) -> tuple[float, dict, int]:
        """Poll ``GET /task/{id}`` every ``interval`` s until ``done``: (perf_counter when seen
        done, the task, polls made)."""
        deadline = time.perf_counter() + timeout
        next_poll, polls = time.perf_counter(), 0
        while True:
            task = self.json("GET", f"/task/{task_id}")
            polls += 1
            if task.get("done"):
                return time.perf_counter(), task, polls
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"task {task_id} not done within {timeout} s: {task}")
            next_poll += interval
            if next_poll > now:
                time.sleep(next_poll - now)
            else:
                next_poll = now  # a slow poll: start the next one at once, then keep the step

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def task_times(task: dict) -> dict[str, float]:
    """Epoch seconds of each state a task went through (PENDING, STARTED, SUCCESS ...)."""
    import datetime as dt

    return {st["state"]: dt.datetime.fromisoformat(st["time"].replace("Z", "+00:00")).timestamp()
            for st in task.get("states", [])}


def percentile(values, p: float) -> float:
    """The p-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def stats_ms(values: list[float]) -> dict:
    """Median, p90, max (ms) and count of durations in seconds."""
    ms = [v * 1000 for v in values]
    return {"median": round(median(ms), 1), "p90": round(percentile(ms, 90), 1), "max": round(max(ms), 1),
            "count": len(ms)}


# --- reporting --------------------------------------------------------------------


class Report:
    """Figures and PASS/FAIL targets of one benchmark, printed and saved as JSON."""

    def __init__(self, name: str):
        self.name = name
        self.figures: dict[str, object] = {}
        self.targets: list[dict] = []
        self.busy_check()

    def busy_check(self, seconds: float = 1.0) -> None:
        """Other work on the machine skews every figure: measure the CPU in use before starting."""
        import psutil

        busy = psutil.cpu_percent(interval=seconds)
        self.figures["cpu_busy_before_percent"] = busy
        if busy > 15:
            print(f"  WARNING: the machine is {busy:.0f}% busy before the benchmark starts; "
                  "figures will be skewed", flush=True)

    def figure(self, key: str, value, text: str) -> None:
        self.figures[key] = value
        print(f"  {text}", flush=True)

    def target(self, label: str, value: float, op: str, limit: float, unit: str = "") -> bool:
        ok = value <= limit if op == "<=" else value >= limit if op == ">=" else value < limit
        self.targets.append({"target": label, "value": value, "op": op, "limit": limit, "unit": unit, "pass": ok})
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}: {value:.3g}{unit} (target {op} {limit:.3g}{unit})", flush=True)
        return ok

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        record = {"benchmark": self.name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "python": sys.version.split()[0], "cpus": os.cpu_count(),
                  "figures": self.figures, "targets": self.targets}
        path.write_text(json.dumps(record, indent=2) + "\n")
        return path

    def latencies(self, results: list[dict], labels: dict[str, str]) -> None:
        """One figure per measured stretch: ``results`` hold seconds under each key of ``labels``."""
        for key, label in labels.items():
            s = stats_ms([r[key] for r in results])
            self.figure(f"{key}_ms", s, f"{label}: median {s['median']:.0f} ms, p90 {s['p90']:.0f} ms, "
                        f"max {s['max']:.0f} ms (n={s['count']})")

    def save_after_stack(self, code: int) -> "Report":
        """For a benchmark of the running stack: its exit code after SIGINT is a figure, and once the
        figures are saved, a stack that did not stop cleanly fails the run (``run_all`` shows ERROR)."""
        self.figure("stack_exit_code", code, f"stack exit code after SIGINT: {code}")
        self.save()
        if code != 0:
            raise SystemExit(f"the stack exited with {code} after SIGINT")
        return self
