"""A cold start under load: the moment the api port accepts, many clients sign in and call the API.

The api verifies tokens with the keys of the provider in its own process; none of these valid
tokens may be refused (401), nor wait on keys that cannot be had (503).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from tests.stack.conftest import API_PREFIX, ROOT, Stack, _running, free_port, stack_env

pytestmark = pytest.mark.stack

CLIENTS = 50
USERS = ("alice", "bob", "carol", "admin")
ACCEPT_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    user: str
    token_status: int = 0
    status: int = 0
    body: str = ""
    retry_after: str | None = None
    answered_at: float = 0.0  # the sign-in's answer, seconds after the port first accepted
    sent_at: float = 0.0  # the GET, likewise
    error: str = ""


def launch(tmp_path) -> Stack:
    """``dm run`` on a fresh data folder, not waited for: the caller watches the port itself."""
    port = free_port()
    data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
    data_dir.mkdir()
    (log_dir / "runtime").mkdir(parents=True)
    env = stack_env(DM_PORT=str(port), DM_DATA_DIR=str(data_dir), XDG_RUNTIME_DIR=str(log_dir / "runtime"))
    with open(log_dir / "stdout.txt", "wb") as out, open(log_dir / "stderr.txt", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "shared.cli", "run"], cwd=ROOT, env=env,
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    stack = Stack(process, port, data_dir, log_dir, base_url=f"http://127.0.0.1:{port}")
    _running.append(stack)  # its output is attached to a failure's report
    return stack


def wait_accepting(stack: Stack) -> float:
    """The monotonic time at which the api port first accepted a connection."""
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            pytest.fail(f"the stack exited with code {stack.process.returncode}\n{stack.output()}")
        try:
            with socket.create_connection(("127.0.0.1", stack.port), timeout=0.5):
                return time.monotonic()
        except OSError:
            time.sleep(0.005)
    pytest.fail(f"the api port did not accept within {ACCEPT_TIMEOUT_S} s\n{stack.output()}")


def client(stack: Stack, outcome: Outcome, go: threading.Event, opened: list[float]) -> None:
    go.wait()
    issuer = f"{stack.base_url}/auth/realms/squonk2"
    try:
        token = requests.post(f"{issuer}/protocol/openid-connect/token", timeout=60, data={
            "client_id": "data-manager-api", "grant_type": "password",
            "username": outcome.user, "password": outcome.user})
        outcome.answered_at = time.monotonic() - opened[0]
        outcome.token_status = token.status_code
        if token.status_code != 200:
            outcome.body = token.text[:300]
            return
        outcome.sent_at = time.monotonic() - opened[0]
        resp = requests.get(stack.base_url + API_PREFIX + "/project", timeout=60,
                            headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        outcome.status, outcome.body = resp.status_code, resp.text[:300]
        outcome.retry_after = resp.headers.get("Retry-After")
    except requests.RequestException as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"


def test_valid_tokens_are_accepted_from_the_first_moment(tmp_path):
    stack = launch(tmp_path)
    go, opened = threading.Event(), [0.0]
    try:
        outcomes = [Outcome(USERS[n % len(USERS)]) for n in range(CLIENTS)]
        threads = [threading.Thread(target=client, args=(stack, o, go, opened), daemon=True) for o in outcomes]
        for thread in threads:
            thread.start()
        opened[0] = wait_accepting(stack)
        go.set()
        for thread in threads:
            thread.join(90)
        assert not any(thread.is_alive() for thread in threads), "a client did not finish"

        report = "\n".join(f"{o.user}: token {o.token_status} after {o.answered_at:.2f} s, "
                           f"GET /project {o.status} sent after {o.sent_at:.2f} s "
                           f"{o.error or o.body[:120]}" for o in outcomes)
        assert [o.error for o in outcomes if o.error] == [], report
        assert all(o.token_status == 200 for o in outcomes), report
        refused = [o for o in outcomes if o.status == 401]
        assert refused == [], f"{len(refused)} valid tokens refused\n{report}"
        unavailable = [o for o in outcomes if o.status == 503]
        assert all(o.retry_after for o in unavailable), report  # a 503 always says when to retry...
        assert unavailable == [], report  # ...but the keys are in this process: there is none
        assert all(o.status == 200 for o in outcomes), report
        for o in outcomes:
            assert o.body.startswith("{") and '"projects"' in o.body, o.body
        # The calls came together, within a second of the stack's first answer (the sign-ins, served
        # while the api's first requests were still loading code, take about that long themselves).
        first_answer = min(o.answered_at for o in outcomes)
        assert sorted(o.sent_at for o in outcomes)[CLIENTS // 2] < first_answer + 1.0, report
    finally:
        go.set()  # releases the clients should the stack never have accepted
        code = stack.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{stack.output()}"
