"""Workflows end to end on the running local stack, through the real Python client:
api (START in the outbox) → Broker → pbc (the engine launches a step: a local process) → pod events
→ kew → PodMessage → pbc (the engine launches the next step) … → the run ends.

The client's ``run_workflow`` sends no Project or variables, so the run itself is asked for over
HTTP as dm-api §3.16 describes; everything else goes through the client."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from squonk2.dm_api import DmApi
from squonk2.enumerations import ScopeEnum

from tests.stack.test_jobs_stack import token_for

pytest.importorskip("workflow.workflow_engine", reason="the workflow engine needs Python 3.12 or later")
pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "tests" / "data" / "jobs" / "workflow-manifest.yaml"
CHAIN = (ROOT / "tests" / "data" / "workflows" / "two-step-chain.yaml").read_text()
SLEEPING = """
kind: DataManagerWorkflow
kind-version: '2025.2'
name: sleeping
steps:
- name: nap
  specification: {collection: dm-test, job: sleep, version: '1.0.0', variables: {seconds: 60}}
- name: after
  specification: {collection: dm-test, job: event-and-cost, version: '1.0.0',
                  variables: {outputFile: after.txt, count: 1, cost: '1'}}
"""


@pytest.fixture(autouse=True)
def _client_on_the_session_stack(stack):
    DmApi.set_api_url(stack.api_url)


@pytest.fixture(scope="module")
def alice(stack):
    DmApi.set_api_url(stack.api_url)
    admin = token_for(stack, "admin")
    rv = DmApi.put_job_manifest(admin, url=str(MANIFEST))
    assert rv.success, rv.msg
    return token_for(stack, "alice")


def start(stack, token: str, definition: str, variables: dict) -> tuple[str, str]:
    rv = DmApi.create_project(token, project_name=f"Workflows {uuid.uuid4().hex[:8]}",
                              as_tier_product_id=stack.user("alice")["project_tier_product_id"])
    assert rv.success, rv.msg
    project_id = rv.msg["project_id"]
    rv = DmApi.create_workflow(token, name=f"W {uuid.uuid4().hex[:6]}", scope=ScopeEnum.GLOBAL, definition=definition)
    assert rv.success and rv.msg["validated"], rv.msg
    resp = requests.post(f"{stack.api_url}/workflow/{rv.msg['id']}/run", timeout=10,
                         headers={"Authorization": f"Bearer {token}"},
                         data={"project_id": project_id, "as_name": "Stack run", "variables": json.dumps(variables)})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], project_id


def wait(token: str, run_id: str, test, limit_s: float = 60) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        rv = DmApi.get_running_workflow(token, running_workflow_id=run_id)
        assert rv.success, rv.msg
        if test(rv.msg) or time.monotonic() > deadline:
            return rv.msg
        time.sleep(0.3)


def steps(token: str, run_id: str) -> list[dict]:
    rv = DmApi.get_running_workflow_steps(token, running_workflow_id=run_id)
    assert rv.success, rv.msg
    return rv.msg["running_workflow_steps"]


def test_a_two_step_chain_runs_to_success(stack, alice, tmp_path):
    run_id, project_id = start(stack, alice, CHAIN, {"resultFile": "result.txt"})
    done = wait(alice, run_id, lambda r: r["done"])
    assert (done["status"], done["success"]) == ("SUCCESS", True), done
    assert [(s["name"], s["status"]) for s in steps(alice, run_id)] == [("first", "SUCCESS"), ("second", "SUCCESS")]
    rv = DmApi.get_unmanaged_project_file(alice, project_id=project_id, project_path="/", project_file="result.txt",
                                          local_file=str(tmp_path / "result.txt"))
    assert rv.success, rv.msg
    assert (tmp_path / "result.txt").read_text() == "done 7\n"
    rv = DmApi.delete_running_workflow(alice, running_workflow_id=run_id)
    assert rv.success, rv.msg
    assert not DmApi.get_running_workflow(alice, running_workflow_id=run_id).success


def first_step(token: str, run_id: str, limit_s: float = 30) -> dict:
    """The run's one step, once it is listed."""
    deadline = time.monotonic() + limit_s
    while not (listed := steps(token, run_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    [step] = listed
    return step


def instance_gone(token: str, instance_id: str, limit_s: float = 30) -> bool:
    deadline = time.monotonic() + limit_s
    while DmApi.get_instance(token, instance_id=instance_id).success and time.monotonic() < deadline:
        time.sleep(0.3)
    return not DmApi.get_instance(token, instance_id=instance_id).success


def test_stopping_a_run_stops_its_step(stack, alice):
    run_id, _ = start(stack, alice, SLEEPING, {})
    running = wait(alice, run_id, lambda r: False, limit_s=0)
    assert running["status"] == "RUNNING"
    nap = first_step(alice, run_id)
    rv = DmApi.stop_running_workflow(alice, running_workflow_id=run_id)
    assert rv.success, rv.msg
    done = wait(alice, run_id, lambda r: r["done"])
    assert (done["status"], done["stopping_user"]) == ("USER_STOPPED", "alice"), done
    [nap] = steps(alice, run_id)
    assert (nap["status"], nap["error_msg"]) == ("FAILURE", "Stopped by alice")
    assert instance_gone(alice, nap["instance_id"])  # stopped through the delete path


def test_deleting_a_running_run_stops_it_first(stack, alice):
    run_id, project_id = start(stack, alice, SLEEPING, {})
    nap = first_step(alice, run_id)
    rv = DmApi.delete_running_workflow(alice, running_workflow_id=run_id)
    assert rv.success, rv.msg
    assert not DmApi.get_running_workflow(alice, running_workflow_id=run_id).success  # gone at once
    assert instance_gone(alice, nap["instance_id"])  # its step was stopped through the delete path
    rv = DmApi.get_running_workflows(alice)
    assert rv.success and run_id not in [r["id"] for r in rv.msg["running_workflows"]]
    time.sleep(2)  # the step after it never starts
    rv = DmApi.get_project_instances(alice, project_id=project_id)
    assert rv.success and rv.msg["instances"] == [], rv.msg
