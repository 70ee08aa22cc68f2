"""Datasets end to end on the running local stack: api → outbox → Broker → upload function."""

from __future__ import annotations

import signal
import time

import pytest
from squonk2.auth import Auth
from squonk2.dm_api import DmApi

pytestmark = pytest.mark.stack

SDF = (
    "ethanol\n  RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
    "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n$$$$\n"
)


def wait_done(token: str, task_id: str, limit_s: float = 20) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rv = DmApi.get_task(token, task_id=task_id)
        assert rv.success, rv.msg
        if rv.msg["done"]:
            return rv.msg
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not done after {limit_s} s: {rv.msg}")


@pytest.fixture(autouse=True)
def _client_on_the_session_stack(stack):
    """The client's URL is process-wide: point it back at the session stack for every test."""
    DmApi.set_api_url(stack.api_url)


@pytest.fixture(scope="module")
def alice(stack):
    token = Auth.get_access_token(keycloak_url=stack.facts["keycloak_url"], keycloak_realm="squonk2",
                                  keycloak_client_id="data-manager-api", username="alice", password="alice")
    assert token
    return token


def test_upload_a_real_sdf_and_download_the_same_bytes(stack, alice, tmp_path):
    source = tmp_path / "ethanol.sdf"
    source.write_text(SDF * 50)
    rv = DmApi.upload_dataset(alice, dataset_file=str(source), dataset_type="chemical/x-mdl-sdfile",
                              unit_id=stack.user("alice")["unit_id"])
    assert rv.success and rv.http_status_code == 201, rv.msg
    task = wait_done(alice, rv.msg["task_id"])
    assert task["exit_code"] == 0, task
    versions = DmApi.get_dataset_versions(alice, dataset_id=rv.msg["dataset_id"])
    assert versions.success and versions.msg["versions"][0]["size"] == source.stat().st_size
    out = tmp_path / "back.sdf"
    got = DmApi.get_dataset(alice, dataset_id=rv.msg["dataset_id"], dataset_version=1, local_file=str(out))
    assert got.success and out.read_bytes() == source.read_bytes()


def test_a_bad_file_fails_its_task_with_a_reason(stack, alice, tmp_path):
    source = tmp_path / "fake.sdf"
    source.write_text("this is not an SD-file\n")
    rv = DmApi.upload_dataset(alice, dataset_file=str(source), dataset_type="chemical/x-mdl-sdfile",
                              unit_id=stack.user("alice")["unit_id"])
    assert rv.success, rv.msg
    task = wait_done(alice, rv.msg["task_id"])
    assert task["exit_code"] != 0 and task["states"][-1]["state"] == "FAILURE"
    assert task["states"][-1]["message"]
    assert DmApi.get_dataset_versions(alice, dataset_id=rv.msg["dataset_id"]).msg["count"] == 0


def test_broker_down_when_the_api_emits_then_up(start_stack, tmp_path):
    """Events written while the Broker is down are delivered by the re-delivery timer once it is back.

    The stack restarts a Broker that exits, so its supervisor (``dm functions``) is paused (SIGSTOP)
    while the Broker is down, as if the platform had not brought it back yet; resumed, it does."""
    import psutil

    from shared.services import housekeeping  # noqa: F401  (the timer runs it in the stack)

    stack = start_stack(tmp_path / "data")
    DmApi.set_api_url(stack.api_url)
    token = Auth.get_access_token(keycloak_url=stack.facts["keycloak_url"], keycloak_realm="squonk2",
                                  keycloak_client_id="data-manager-api", username="alice", password="alice")
    processes = psutil.Process(stack.process.pid).children(recursive=True)
    broker = [p for p in processes if "broker" in " ".join(p.cmdline())]
    assert len(broker) == 1, [p.cmdline() for p in processes]
    supervisor = [p for p in processes if p.cmdline()[1:4] == ["-m", "shared.cli", "functions"]]
    assert len(supervisor) == 1, [p.cmdline() for p in processes]
    supervisor[0].suspend()
    try:
        broker[0].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while broker[0].is_running() and broker[0].status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the Broker did not stop"
            time.sleep(0.05)
        source = tmp_path / "late.sdf"
        source.write_text(SDF)
        rv = DmApi.upload_dataset(token, dataset_file=str(source), dataset_type="chemical/x-mdl-sdfile",
                                  unit_id=stack.user("alice")["unit_id"])
        assert rv.success, rv.msg
        time.sleep(1)
        assert DmApi.get_task(token, task_id=rv.msg["task_id"]).msg["done"] is False
    finally:
        supervisor[0].resume()  # it notices the Broker has gone and starts it again
    task = wait_done(token, rv.msg["task_id"], limit_s=60)
    assert task["exit_code"] == 0, task
