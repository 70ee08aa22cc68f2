"""Jobs end to end on the running local stack, through the real Python client:
api → local launcher (a process) → pod events → Broker → kew → outbox → Broker → pbc."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from squonk2.auth import Auth
from squonk2.dm_api import DmApi

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
TEST_MANIFEST = ROOT / "tests" / "data" / "jobs" / "manifest.yaml"
REAL_JOBS = ROOT.parent / "shared" / "data" / "jobs"


def token_for(stack, user: str) -> str:
    token = Auth.get_access_token(keycloak_url=stack.facts["keycloak_url"], keycloak_realm="squonk2",
                                  keycloak_client_id="data-manager-api", username=user, password=user)
    assert token
    return token


@pytest.fixture(autouse=True)
def _client_on_the_session_stack(stack):
    DmApi.set_api_url(stack.api_url)


@pytest.fixture(scope="module")
def alice(stack):
    return token_for(stack, "alice")


@pytest.fixture(scope="module")
def jobs_loaded(stack):
    DmApi.set_api_url(stack.api_url)  # module fixtures run before the per-test one
    admin = token_for(stack, "admin")
    rv = DmApi.put_job_manifest(admin, url=str(TEST_MANIFEST))
    assert rv.success and rv.msg["num_jobs_loaded"] == 3, rv.msg
    if REAL_JOBS.is_dir():  # the real definitions load beside ours
        rv = DmApi.put_job_manifest(admin, url=str(REAL_JOBS / "virtual-screening" / "manifest-dmpk.yaml"))
        assert rv.success and rv.msg["num_jobs_loaded"] == 1, rv.msg


@pytest.fixture
def project(stack, alice):
    rv = DmApi.create_project(alice, project_name=f"Jobs {uuid.uuid4().hex[:8]}",
                              as_tier_product_id=stack.user("alice")["project_tier_product_id"])
    assert rv.success, rv.msg
    return rv.msg["project_id"]


def wait_stopped(token: str, instance_id: str, limit_s: float = 30) -> dict:
    """As the client's job_chain example waits: until `stopped` is present and the phase is not RUNNING."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rv = DmApi.get_instance(token, instance_id=instance_id)
        assert rv.success, rv.msg
        if "stopped" in rv.msg and rv.msg["phase"] != "RUNNING":
            return rv.msg
        time.sleep(0.05)
    raise AssertionError(f"instance {instance_id} not stopped after {limit_s} s: {rv.msg}")


def task_of(token: str, task_id: str, limit_s: float = 10) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rv = DmApi.get_task(token, task_id=task_id)
        if rv.msg.get("done"):
            return rv.msg
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not done: {rv.msg}")


def start(token, project_id, job, name, **variables):
    spec = {"collection": "dm-test", "job": job, "version": "1.0.0", "variables": variables}
    rv = DmApi.start_job_instance(token, project_id=project_id, name=name, specification=spec)
    assert rv.success and rv.http_status_code == 201, rv.msg
    return rv.msg["instance_id"], rv.msg["task_id"]


def test_a_job_runs_to_success_with_its_events_charges_and_output(stack, alice, jobs_loaded, project, tmp_path):
    source = tmp_path / "mols.sdf"
    source.write_text("ethanol\n$$$$\n")
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project, project_files=str(source), project_path="/in")
    assert rv.success, rv.msg
    instance_id, task_id = start(alice, project, "event-and-cost", "Costs", outputFile="results/out.txt", count=4,
                                 cost="+1.25", inputFile="in/mols.sdf")
    instance = wait_stopped(alice, instance_id)
    assert instance["phase"] == "COMPLETED" and "started" in instance, instance
    task = task_of(alice, task_id)
    assert task["exit_code"] == 0 and [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"]
    messages = [e["message"] for e in task["events"]]
    assert messages.count("Starting 4 steps") == 1 and messages.count("Finished") == 1
    assert {e["level"] for e in task["events"] if e["message"] == "Finished"} == {"WARNING"}
    assert Decimal(instance["cost"]) == Decimal("5")  # four incremental lines of 1.25, each once
    listing = DmApi.list_project_files(alice, project_id=project, project_path="/results")
    assert listing.success and [f["file_name"] for f in listing.msg["files"]] == ["out.txt"]
    out = tmp_path / "out.txt"
    got = DmApi.get_unmanaged_project_file(alice, project_id=project, project_path="/results", project_file="out.txt",
                                           local_file=str(out))
    assert got.success and out.read_text() == f"done {len(source.read_text())}\n"
    listed = DmApi.get_project_instances(alice, project_id=project)
    assert instance_id in [i["id"] for i in listed.msg["instances"]]


def test_a_failing_job_ends_failed_with_its_exit_code(stack, alice, jobs_loaded, project):
    instance_id, task_id = start(alice, project, "fail", "Failing", code=7)
    instance = wait_stopped(alice, instance_id)
    assert instance["phase"] == "FAILED"
    task = task_of(alice, task_id)
    assert task["exit_code"] == 7 and task["states"][-1]["state"] == "FAILURE"
    assert any("exit code 7" in e["message"] for e in task["events"])
    assert any(e["message"] == "Giving up" and e["level"] == "ERROR" for e in task["events"])


def test_deleting_a_running_instance_stops_it(stack, alice, jobs_loaded, project):
    instance_id, task_id = start(alice, project, "sleep", "Sleeper", seconds=600)
    deadline = time.monotonic() + 20
    while DmApi.get_instance(alice, instance_id=instance_id).msg.get("phase") != "RUNNING":
        assert time.monotonic() < deadline, "the instance never ran"
        time.sleep(0.05)
    rv = DmApi.delete_instance(alice, instance_id=instance_id)
    assert rv.success and rv.http_status_code == 200, rv.msg
    removal = task_of(alice, rv.msg["task_id"])
    assert removal["exit_code"] == 0
    task = task_of(alice, task_id)  # the job's own task ends: its process was stopped
    assert task["states"][-1]["state"] == "FAILURE" and task["exit_code"] in (143, 137)
    assert DmApi.get_instance(alice, instance_id=instance_id).http_status_code == 404


def test_a_dry_run_shows_the_command_and_launches_nothing(stack, alice, jobs_loaded, project):
    spec = {"collection": "dm-test", "job": "fail", "version": "1.0.0", "variables": {"code": 2}}
    rv = DmApi.dry_run_job_instance(alice, project_id=project, name="Dry", specification=spec)
    assert rv.success and rv.http_status_code == 201, rv.msg
    assert rv.msg["command"].startswith("python3 -c ") and rv.msg["command"].endswith(" 2")
    assert DmApi.get_project_instances(alice, project_id=project).msg["count"] == 0


def test_an_application_runs_until_it_is_deleted(stack, alice, project):
    """An application's task is STARTED while it runs, and ends SUCCESS when it is deleted."""
    import requests

    token_header = {"Authorization": f"Bearer {alice}"}
    resp = requests.post(stack.api_url + "/instance", headers=token_header, data={
        "application_id": "jupyternotebooks.squonk.it", "project_id": project, "as_name": "Notebook"}, timeout=10)
    assert resp.status_code == 201, resp.text
    instance_id, task_id = resp.json()["instance_id"], resp.json()["task_id"]
    assert "command" not in resp.json()
    deadline = time.monotonic() + 20
    while DmApi.get_instance(alice, instance_id=instance_id).msg.get("phase") != "RUNNING":
        assert time.monotonic() < deadline, "the application never ran"
        time.sleep(0.05)
    task = DmApi.get_task(alice, task_id=task_id).msg
    assert task["done"] is False and task["states"][-1]["state"] == "STARTED"
    instance = DmApi.get_instance(alice, instance_id=instance_id).msg
    assert instance["application_type"] == "APPLICATION" and "started" in instance and "stopped" not in instance
    rv = DmApi.delete_instance(alice, instance_id=instance_id)
    assert rv.success, rv.msg
    task = task_of(alice, task_id)
    assert task["exit_code"] == 0 and task["states"][-1]["state"] == "SUCCESS"
