"""Faults on the running local stack: a function killed with SIGKILL while work is in flight.

For several seeds, the upload function is killed at a random moment just after dataset uploads
are accepted, kew or pbc just after jobs start, and the monitor while a finished job's charges
go to the ledger. The supervisor starts it again, the Broker
retries (or the monitor re-drives what it dead-lettered, or reconciles), and every task ends:
SUCCESS, or FAILURE with a reason, within END_WITHIN_S. Nothing is charged twice and no staged
upload is left behind.
"""

from __future__ import annotations

import random
import signal
import time
from decimal import Decimal

import psutil
import pytest
from squonk2.auth import Auth
from squonk2.dm_api import DmApi

from tests.stack.conftest import start
from tests.stack.test_datasets_stack import SDF
from tests.stack.test_jobs_stack import TEST_MANIFEST
from tests.stack.test_supervision_stack import settled

pytestmark = pytest.mark.stack
END_WITHIN_S = 60.0  # the Broker's five retries span about 31 s; a restart takes about one
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("fault-stack")
    running = start(base / "data", base / "logs")
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(scope="module")
def alice(fault_stack):
    DmApi.set_api_url(fault_stack.api_url)
    admin = Auth.get_access_token(keycloak_url=fault_stack.facts["keycloak_url"], keycloak_realm="squonk2",
                                  keycloak_client_id="data-manager-api", username="admin", password="admin")
    assert DmApi.put_job_manifest(admin, url=str(TEST_MANIFEST)).success
    return Auth.get_access_token(keycloak_url=fault_stack.facts["keycloak_url"], keycloak_realm="squonk2",
                                 keycloak_client_id="data-manager-api", username="alice", password="alice")


@pytest.fixture(autouse=True)
def _client_on_this_stack(fault_stack):
    DmApi.set_api_url(fault_stack.api_url)


def kill(stack, name: str) -> None:
    """SIGKILL the function's process and its worker, as a crash would take both."""
    proc = settled(stack)[name]
    family = [proc, *proc.children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def ended(token: str, task_id: str) -> dict:
    deadline = time.monotonic() + END_WITHIN_S
    while time.monotonic() < deadline:
        task = DmApi.get_task(token, task_id=task_id).msg
        if task.get("done"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end within {END_WITHIN_S} s: {task}")


def readable_end(task: dict) -> bool:
    last = task["states"][-1]
    return last["state"] == "SUCCESS" or (last["state"] == "FAILURE" and bool(last.get("message")))


@pytest.mark.parametrize("seed", SEEDS)
def test_uploads_survive_the_upload_function_dying(fault_stack, alice, tmp_path, seed):
    rng = random.Random(seed)
    source = tmp_path / "ethanol.sdf"
    source.write_text(SDF * 20)
    tasks = []
    for n in range(3):
        rv = DmApi.upload_dataset(alice, dataset_file=str(source), dataset_type="chemical/x-mdl-sdfile",
                                  unit_id=fault_stack.user("alice")["unit_id"])
        assert rv.success, rv.msg
        tasks.append(rv.msg["task_id"])
        if n == rng.randrange(3):
            time.sleep(rng.uniform(0, 0.05))
            kill(fault_stack, "dm-upload")
    for task_id in tasks:
        task = ended(alice, task_id)
        assert readable_end(task), task
    staged = fault_stack.data_dir / "store" / "uploads"
    assert not staged.is_dir() or not any(staged.iterdir())


@pytest.mark.parametrize("seed", SEEDS)
def test_jobs_survive_kew_or_pbc_dying(fault_stack, alice, seed):
    rng = random.Random(seed)
    project = DmApi.create_project(alice, project_name=f"Faults {seed}",
                                   as_tier_product_id=fault_stack.user("alice")["project_tier_product_id"])
    assert project.success, project.msg
    victim = rng.choice(["dm-kew", "dm-pbc"])
    spec = {"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
            "variables": {"outputFile": "out.txt", "count": 3, "cost": "+2"}}
    rv = DmApi.start_job_instance(alice, project_id=project.msg["project_id"], name="Survivor", specification=spec)
    assert rv.success, rv.msg
    time.sleep(rng.uniform(0, 0.2))
    kill(fault_stack, victim)
    task = ended(alice, rv.msg["task_id"])
    assert readable_end(task), (victim, task)
    instance = DmApi.get_instance(alice, instance_id=rv.msg["instance_id"]).msg
    if task["states"][-1]["state"] == "SUCCESS":
        assert Decimal(instance["cost"]) == Decimal(6)  # each COST line once, after the restart too
    assert victim in settled(fault_stack)  # started again, and answering


@pytest.mark.parametrize("seed", SEEDS)
def test_charges_survive_the_monitor_dying(fault_stack, alice, seed):
    """The monitor is killed (twice) while a finished job's charges are on their way to the ledger:
    once it is back, the ledger holds them all, closed once, and nothing was charged twice."""
    from squonk2.as_api import AsApi

    rng = random.Random(seed)
    product = fault_stack.user("alice")["project_tier_product_id"]
    project = DmApi.create_project(alice, project_name=f"Billing {seed}", as_tier_product_id=product)
    assert project.success, project.msg
    spec = {"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
            "variables": {"outputFile": "out.txt", "count": 3, "cost": "+2"}}
    rv = DmApi.start_job_instance(alice, project_id=project.msg["project_id"], name="Billed", specification=spec)
    assert rv.success, rv.msg
    assert ended(alice, rv.msg["task_id"])["states"][-1]["state"] == "SUCCESS"
    for _ in range(2):
        time.sleep(rng.uniform(0, 0.6))
        kill(fault_stack, "dm-monitor")
    instance = DmApi.get_instance(alice, instance_id=rv.msg["instance_id"]).msg
    AsApi.set_api_url(fault_stack.facts["as_api_url"])
    deadline, mine = time.monotonic() + END_WITHIN_S, []
    while time.monotonic() < deadline:
        charges = AsApi.get_product_charges(alice, product_id=product)
        assert charges.success, charges.msg
        mine = [c for c in charges.msg["processing_charges"]
                if c["charge"].get("additional_data", {}).get("instance_id") == instance["id"]]
        if mine and mine[0]["final"]:
            break
        time.sleep(0.3)
    assert len(mine) == 1 and mine[0]["final"], mine
    assert Decimal(mine[0]["charge"]["coins"]) == Decimal(instance["coins"])  # each charge once
    assert mine[0]["post_final_charges"] is False
    assert "dm-monitor" in settled(fault_stack)  # started again, and answering
