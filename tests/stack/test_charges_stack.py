"""Charges end to end on the running local stack: a job's COST lines become the Account Server's
processing charges (monitor ticks → outbox → Broker → the ledger's receiver), read back through
the real ``AsApi`` client; a project's storage becomes its storage charge."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from squonk2.as_api import AsApi
from squonk2.dm_api import DmApi

from tests.stack.conftest import run_cli, stack_env
from tests.stack.test_jobs_stack import alice, jobs_loaded, project, start, wait_stopped  # noqa: F401

pytestmark = pytest.mark.stack
CHARGES_WITHIN_S = 30  # the processing-charges job ticks every 10 s locally


def product_charges(stack, token):
    AsApi.set_api_url(stack.facts["as_api_url"])
    rv = AsApi.get_product_charges(token, product_id=stack.user("alice")["project_tier_product_id"])
    assert rv.success, rv.msg
    return rv.msg


def test_a_jobs_charges_reach_the_account_server(stack, alice, jobs_loaded, project):  # noqa: F811
    instance_id, _ = start(alice, project, "event-and-cost", "Billed", outputFile="results/out.txt", count=3,
                           cost="+1.5")
    instance = wait_stopped(alice, instance_id)
    assert instance["phase"] == "COMPLETED" and Decimal(instance["cost"]) == Decimal("4.5")
    deadline, seen = time.monotonic() + CHARGES_WITHIN_S, None
    while time.monotonic() < deadline:
        mine = [c for c in product_charges(stack, alice)["processing_charges"]
                if c["charge"].get("additional_data", {}).get("instance_id") == instance_id]
        if mine and mine[0]["final"]:
            seen = mine[0]
            break
        time.sleep(0.5)
    assert seen is not None, f"no final processing charge for {instance_id} within {CHARGES_WITHIN_S} s"
    assert Decimal(seen["charge"]["coins"]) == Decimal(instance["coins"])
    # three COST lines; a fourth message with no coins closes them when the job ended after they went
    assert seen["charge"]["sqn"] in (3, 4) and seen["post_final_charges"] is False


def test_a_projects_storage_is_charged_with_its_bytes(stack, alice, project, tmp_path):  # noqa: F811
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x01" * 54321)
    rv = DmApi.put_unmanaged_project_files(alice, project_id=project, project_files=str(data), project_path="/")
    assert rv.success, rv.msg
    env = stack_env(DM_DATA_DIR=str(stack.data_dir), DM_PORT=str(stack.port), K_SINK=stack.facts["broker_url"])
    for _ in range(20):  # the stack's own monitor may hold the job's lease for a moment
        done = run_cli(["monitor", "run", "storage-charges"], env, timeout=60)
        if "holds its lease" not in done.stderr:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = product_charges(stack, alice)["storage_charges"]["items"]
        if items and items[-1]["additional_data"]["peak_bytes"] >= 54321:
            break
        time.sleep(0.2)
    assert items and items[-1]["additional_data"]["peak_bytes"] >= 54321, items


def test_every_monitor_job_twice_by_two_monitors_at_once_changes_no_total(stack, alice, jobs_loaded,  # noqa: F811
                                                                         project):  # noqa: F811
    """Beside the stack's own monitor, two more run every job at the same moment, twice: leases and
    idempotent charges leave the ledger's totals as they were."""
    import subprocess
    import sys

    from shared.services.monitor import JOBS
    from tests.stack.conftest import ROOT

    instance_id, _ = start(alice, project, "event-and-cost", "Twice", outputFile="out.txt", count=2, cost="+3")
    assert wait_stopped(alice, instance_id)["phase"] == "COMPLETED"
    env = stack_env(DM_DATA_DIR=str(stack.data_dir), DM_PORT=str(stack.port), K_SINK=stack.facts["broker_url"])

    def totals() -> tuple:
        charges = product_charges(stack, alice)
        mine = sorted((c["charge"]["sqn"], c["charge"]["coins"], c["final"]) for c in charges["processing_charges"])
        return mine, charges["coins"], [(i["date"], i["additional_data"]["peak_bytes"])
                                       for i in charges["storage_charges"]["items"]]

    deadline = time.monotonic() + CHARGES_WITHIN_S  # the stack's own monitor (every job each second) sends them
    while not any(final for _, _, final in totals()[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # and has measured the project's storage since the job wrote its output
    before = totals()
    assert any(final for _, _, final in before[0]), before  # the job's charges were all in
    for _ in range(2):
        for job in JOBS:
            both = [subprocess.Popen([sys.executable, "-m", "shared.cli", "monitor", "run", job], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
            for proc in both:
                out, err = proc.communicate(timeout=60)
                # the one that finds the job's lease taken says so and does nothing
                assert proc.returncode == 0 or "holds its lease" in err, (job, out, err)
    time.sleep(2)  # what they sent has been through the Broker
    assert totals() == before
