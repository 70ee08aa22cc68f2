"""The local stack as a user starts it: ``python -m shared.cli run`` in a real subprocess.

`stack` (session) is one running stack on a free port with its own data folder;
`start_stack` starts further stacks for tests that need their own (restarts).
The output of every stack a failed test used is attached to the test's report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent.parent
API_PREFIX = "/data-manager-api"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

_running: list["Stack"] = []  # stacks started and not yet stopped, for failure reports


STACK_PORTS = 6  # api, upload, broker, kew, pbc, monitor: DM_PORT and the five after it


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel hands out to outgoing connections (and to ``bind(0)``)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(count: int = STACK_PORTS) -> int:
    """A base port such that it and the ``count - 1`` after it are free: a stack listens on all of them.

    Picked below the ephemeral range: a port in it may be taken at any moment as the local end of
    some process's outgoing connection (or its TIME_WAIT), between this check and the stack's bind
    or between a stack's stop and its restart on the same port, and busy test runs make thousands.
    """
    import random

    low, high = _ephemeral_ports()
    first, last = (10000, low - count) if low - count > 10000 else (high + 1, 65536 - count)
    pick = random.Random()
    for _ in range(200):
        base = pick.randrange(first, last)
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no block of free ports found")


def stack_env(**dm: str) -> dict[str, str]:
    """The outer environment without any DM_* variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(dm)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 20.0) -> subprocess.CompletedProcess:
    """``python -m shared.cli <args>`` to completion (for start-ups expected to fail)."""
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Stack:
    """One running local stack."""

    process: subprocess.Popen
    port: int
    data_dir: Path
    log_dir: Path
    base_url: str = ""
    facts: dict = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def stdout(self) -> str:
        return (self.log_dir / "stdout.txt").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.log_dir / "stderr.txt").read_text(errors="replace")

    def output(self) -> str:
        return f"--- stack stdout ---\n{self.stdout}\n--- stack stderr ---\n{self.stderr}"

    def user(self, name: str) -> dict:
        return self.facts["users"][name]

    def stop(self) -> int:
        """Ctrl-C, then wait; returns the exit code (killed and failed if it hangs)."""
        if self in _running:
            _running.remove(self)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
                pytest.fail(f"the stack did not stop within {STOP_TIMEOUT_S} s of SIGINT\n{self.output()}")
        return self.process.returncode


def start(data_dir: Path, log_dir: Path, port: int | None = None, **more_env: str) -> Stack:
    """Start a stack and wait until it answers ``GET /version``; ``more_env`` adds or replaces variables."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    # gunicorn's control socket defaults to one per user ($XDG_RUNTIME_DIR or ~/.gunicorn):
    # give each stack its own so stacks (and a developer's `make run`) do not share it.
    runtime_dir = log_dir / "runtime"
    runtime_dir.mkdir(exist_ok=True)
    env = stack_env(DM_PORT=str(port), DM_DATA_DIR=str(data_dir), XDG_RUNTIME_DIR=str(runtime_dir),
                    DM_OUTBOX_GRACE_S="1", DM_HOUSEKEEPING_EVERY_S="1")
    env.update(more_env)
    with open(log_dir / "stdout.txt", "wb") as out, open(log_dir / "stderr.txt", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], cwd=ROOT, env=env,
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    stack = Stack(process, port, data_dir, log_dir, base_url=f"http://127.0.0.1:{port}")
    _running.append(stack)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            _running.remove(stack)
            pytest.fail(f"the stack exited with code {process.returncode} during start-up\n{stack.output()}")
        try:
            if requests.get(stack.api_url + "/version", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=5)
            _running.remove(stack)
            pytest.fail(f"the stack did not answer within {START_TIMEOUT_S} s\n{stack.output()}")
        time.sleep(0.2)
    stack.facts = json.loads((data_dir / "local-stack.json").read_text())
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The session's local stack; it must stop cleanly (exit 0) on Ctrl-C."""
    base = tmp_path_factory.mktemp("stack")
    running = start(base / "data", base / "logs")
    yield running
    code = running.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{running.output()}"


@pytest.fixture
def start_stack(tmp_path):
    """``start_stack(data_dir)`` starts another stack; any still running are stopped at the end."""
    started: list[Stack] = []

    def make(data_dir: Path, port: int | None = None, **more_env: str) -> Stack:
        running = start(data_dir, tmp_path / f"logs-{len(started)}", port, **more_env)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _running:
        for n, running in enumerate(_running):
            tail = running.output()[-20000:]
            report.sections.append((f"local stack {n} on port {running.port}", tail))
