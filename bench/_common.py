"""Helpers shared by the benchmark scripts.

Function processes (functions-framework as a subprocess), waiting for a 200, the
development OpenID provider in the benchmark process, a migrated and seeded data
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

# The functions-framework script next to the interpreter that runs the benchmark (.venv/bin).
FF = Path(sys.executable).parent / "functions-framework"
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
    """The shell's environment without DM_* variables, one gunicorn worker with 8 threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env.update(WORKERS="1", THREADS="8", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def api_env(data_dir: Path, issuer: str, **extra: str) -> dict[str, str]:
    return function_env(DM_DATA_DIR=str(data_dir), DM_OIDC_ISSUER=issuer, DM_LOG_LEVEL="WARNING", **extra)


class Function:
    """``functions-framework --target T --source S`` on a free port; a context manager.

    ``started`` is the perf_counter reading just before the process was spawned.
    """

    def __init__(self, target: str, source: Path, env: dict[str, str], cwd: Path = ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(FF), "--target", target, "--source", str(source), "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

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
        """psutil processes: the gunicorn master and its workers."""
        import psutil

        master = psutil.Process(self.proc.pid)
        return [master, *master.children(recursive=True)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop (SIGINT can deadlock a gthread worker)
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
    return Function("hello", write_hello(folder), function_env(), cwd=Path(folder))


def api_function(data_dir: Path, issuer: str, **extra: str) -> Function:
    return Function("api", ROOT / "main.py", api_env(data_dir, issuer, **extra))


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
