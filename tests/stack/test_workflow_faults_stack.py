"""Workflow runs on the running local stack while pbc (the engine's host) fails.

- pbc is killed with SIGKILL (its process only: a crash of the engine's host leaves the step pods
  running, as in a cluster) right after a run's START, while a step's process runs, or right after a
  step's process has ended. The stack's supervisor starts pbc again, the Broker redelivers what it
  had not delivered, and the run ends SUCCESS within END_WITHIN_S with every step run exactly once.
- A second pbc process runs beside the stack's, and every START and PodMessage the stack writes to
  its outbox is also posted to it over HTTP as it appears (the Broker delivers the same ones to the
  stack's pbc): each step is still launched once, and the run ends SUCCESS.

"Exactly once" is counted twice: one running_workflow_steps row and one instance per (run, step,
replica), and one line per (step, replica) in the file each step's process appends to as it ends.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil
import pytest
import requests
from squonk2.dm_api import DmApi
from squonk2.enumerations import ScopeEnum

from tests.stack.conftest import ROOT, start
from tests.stack.test_jobs_stack import token_for
from tests.stack.test_supervision_stack import settled

pytest.importorskip("workflow.workflow_engine", reason="the workflow engine needs Python 3.12 or later")
pytestmark = pytest.mark.stack

# The Broker's retries span about 31 s and a restart takes about one; a run of three steps of
# STEP_S each takes a few seconds undisturbed.
END_WITHIN_S = 60.0
STEP_S = 1.0
SEEDS = (1, 2, 3)
WORKFLOW_MANIFEST = ROOT / "tests" / "data" / "jobs" / "workflow-manifest.yaml"  # the fan-out's jobs

MANIFEST = """\
kind: DataManagerManifest
kind-version: '2021.1'
description: The workflow fault tests' job
job-definition-files:
- fault-jobs.yaml
"""
# Sleeps, appends "<label> <instance> <time>" to executions.log in the Project (one line per
# process that ran to its end), copies its input into its output and prints its exit time last.
JOBS = """\
kind: DataManagerJobDefinition
kind-version: '2021.1'
name: Workflow fault jobs
collection: dm-fault
jobs:
  step:
    name: Step
    description: Sleeps, records that it ran, writes its output
    version: '1.0.0'
    image: {name: informaticsmatters/dm-test, tag: '1.0.0', project-directory: /data, working-directory: /data}
    command: >-
      python3 -c 'import os, sys, time; label, pause, out = sys.argv[1], float(sys.argv[2]), sys.argv[3];
      time.sleep(pause);
      data = open(sys.argv[4]).read() if len(sys.argv) > 4 else "";
      f = os.open("../executions.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644);
      os.write(f, (label + " " + os.environ["HOSTNAME"] + " " + repr(time.time()) + "\\n").encode());
      open(out, "w").write(data + label + "\\n");
      t = time.time();
      print("2026-01-01T00:00:00+00:00 # INFO -EVENT- step-exit " + label + " " + repr(t), flush=True);
      os._exit(0)' '{{ label }}' {{ seconds }} '{{ outputFile }}'
      {%- if inputFile is defined %} '{{ inputFile }}'{% endif %}
    variables:
      order:
        options: [label, seconds, outputFile]
      inputs:
        type: object
        properties:
          inputFile: {title: The prior step's output, mime-types: [text/plain], type: file}
      outputs:
        type: object
        properties:
          outputFile: {title: Output, mime-types: [text/plain], creates: '{{ outputFile }}', type: file}
      options:
        type: object
        required: [label, seconds, outputFile]
        properties:
          label: {title: Label, type: string}
          seconds: {title: Seconds to sleep, type: number, minimum: 0, maximum: 60}
          outputFile: {title: Output file, type: string}
"""


def chain_definition(steps: int, seconds: float) -> str:
    """A chain of ``steps`` dm-fault/step steps, each reading the one before; the last one's output is
    the workflow's ``resultFile``."""
    lines = ["kind: DataManagerWorkflow", "kind-version: '2025.2'", "name: fault-chain",
             "variables:", "  outputs:", "    type: object", "    properties:", "      resultFile:",
             "        title: Result", "        mime-types: [text/plain]", "        creates: '{{ resultFile }}'",
             "        type: file", "steps:"]
    for n in range(steps):
        lines += [f"- name: s{n}",
                  "  specification: {collection: dm-fault, job: step, version: '1.0.0', "
                  f"variables: {{label: s{n}, seconds: {seconds}"
                  + ("" if n == steps - 1 else f", outputFile: s{n}.txt") + "}}"]
        plumbing = []
        if n:
            plumbing.append(f"  - variable: inputFile\n    from-step: {{name: s{n - 1}, variable: outputFile}}")
        if n == steps - 1:
            plumbing.append("  - variable: outputFile\n    from-workflow: {variable: resultFile}")
        if plumbing:
            lines += ["  plumbing:", *plumbing]
    return "\n".join(lines) + "\n"


def load_jobs(stack, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_text(MANIFEST)
    (folder / "fault-jobs.yaml").write_text(JOBS)
    rv = DmApi.put_job_manifest(token_for(stack, "admin"), url=str(folder / "manifest.yaml"))
    assert rv.success, rv.msg


@pytest.fixture(scope="module")
def wf_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("workflow-fault-stack")
    running = start(base / "data", base / "logs")
    DmApi.set_api_url(running.api_url)
    load_jobs(running, base / "jobs")
    rv = DmApi.put_job_manifest(token_for(running, "admin"), url=str(WORKFLOW_MANIFEST))
    assert rv.success, rv.msg
    yield running
    assert running.stop() == 0, running.output()


@pytest.fixture(autouse=True)
def _client_on_this_stack(wf_stack):
    DmApi.set_api_url(wf_stack.api_url)


@pytest.fixture(scope="module")
def alice(wf_stack):
    return token_for(wf_stack, "alice")


@pytest.fixture(scope="module")
def chain(wf_stack, alice) -> str:
    rv = DmApi.create_workflow(alice, name="Fault chain", scope=ScopeEnum.GLOBAL,
                               definition=chain_definition(3, STEP_S))
    assert rv.success and rv.msg["validated"], rv.msg
    return rv.msg["id"]


def new_project(stack, token: str) -> str:
    rv = DmApi.create_project(token, project_name=f"Workflow faults {uuid.uuid4().hex[:8]}",
                              as_tier_product_id=stack.user("alice")["project_tier_product_id"])
    assert rv.success, rv.msg
    return rv.msg["project_id"]


def run(stack, token: str, workflow_id: str, project_id: str, variables: dict | None = None) -> str:
    resp = requests.post(f"{stack.api_url}/workflow/{workflow_id}/run", timeout=10,
                         headers={"Authorization": f"Bearer {token}"},
                         data={"project_id": project_id, "as_name": "Fault run",
                               "variables": json.dumps(variables or {"resultFile": "result.txt"})})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def ended(token: str, run_id: str, within: float = END_WITHIN_S) -> dict:
    deadline = time.monotonic() + within
    while True:
        rv = DmApi.get_running_workflow(token, running_workflow_id=run_id)
        assert rv.success, rv.msg
        if rv.msg["done"]:
            return rv.msg
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not end within {within} s: {rv.msg}")
        time.sleep(0.2)


def db(stack) -> sqlite3.Connection:
    return sqlite3.connect(stack.data_dir / "dm.sqlite3", timeout=10)


def executions(stack, project_id: str) -> list[tuple[str, str]]:
    """(label, instance) of each step process that ran to its end in the Project."""
    path = stack.data_dir / "store" / "projects" / project_id / "executions.log"
    if not path.exists():
        return []
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines() if line.strip()]


def check_exactly_once(stack, token: str, run_id: str, project_id: str, names: list[str]) -> None:
    with db(stack) as conn:
        rows = conn.execute("SELECT name, replica, instance_id FROM running_workflow_steps "
                            "WHERE running_workflow_id = ?", (run_id,)).fetchall()
        suffix = f" {run_id[-8:]}.%"
        instances = conn.execute("SELECT name, id FROM instances WHERE project_id = ? AND name LIKE ?",
                                 (project_id, "%" + suffix)).fetchall()
    per_step = Counter((name, replica) for name, replica, _ in rows)
    assert sorted(per_step) == sorted((n, 0) for n in names) and set(per_step.values()) == {1}, rows
    per_instance_name = Counter(name for name, _ in instances)
    assert len(instances) == len(names) and set(per_instance_name.values()) == {1}, instances
    assert {i for _, _, i in rows} == {i for _, i in instances}, (rows, instances)
    ran = executions(stack, project_id)
    assert Counter(label for label, _ in ran) == Counter(names), ran  # each step's process ran once
    assert {i for _, i in ran} == {i for _, _, i in rows}, (ran, rows)
    listed = DmApi.get_running_workflow_steps(token, running_workflow_id=run_id)
    assert listed.success, listed.msg
    assert sorted((s["name"], s["status"]) for s in listed.msg["running_workflow_steps"]) == \
        [(n, "SUCCESS") for n in names]


def kill_pbc(stack) -> int:
    """SIGKILL pbc's own process (not the step processes it started, as in a cluster pods outlive
    it); returns its pid."""
    proc = settled(stack)["dm-pbc"]
    proc.send_signal(signal.SIGKILL)
    return proc.pid


def wait_for(test, limit_s: float, what: str, poll_s: float = 0.01):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = test()
        if found:
            return found
        time.sleep(poll_s)
    raise AssertionError(f"not seen within {limit_s} s: {what}")


def step_instance(stack, run_id: str, name: str) -> str | None:
    with db(stack) as conn:
        row = conn.execute("SELECT instance_id FROM running_workflow_steps WHERE running_workflow_id = ? AND name = ?",
                           (run_id, name)).fetchone()
    return row[0] if row and row[0] else None


def pod_phase(stack, instance_id: str) -> str | None:
    """The phase the local launcher last wrote for a step's pod (beside its log), before it sends it."""
    try:
        return json.loads((stack.data_dir / "pod-logs" / f"{instance_id}.pod.json").read_text())["status"]["phase"]
    except (OSError, ValueError, KeyError):
        return None


def kill_around_a_step(stack, token: str, workflow_id: str, project_id: str, rng: random.Random, moment: str):
    """Start a run of the chain and SIGKILL pbc at ``moment``; (run id, the step it was killed around).

    after-start: pbc is paused (SIGSTOP) before the run is asked for, so the START the Broker sends it is
    in flight, taken by its socket and not handled, when it is killed. while-a-step-runs: the step's
    process is running (its wrapper records its end; reconciliation finds the ended pod and sends it
    through kew, after its 30 s grace). after-a-step-ends: pbc is paused as soon as the launcher (in pbc) has written
    the step's pod Succeeded, then killed: the end is either not sent yet (reconciliation finds the
    ended pod and sends it through kew, after its 30 s grace) or on its way to pbc as a PodMessage (the
    Broker redelivers it to the restarted pbc)."""
    pbc = settled(stack)["dm-pbc"]
    victim = rng.choice(["s0", "s1"])  # s2's end only ends the run
    if moment == "after-start":
        pbc.send_signal(signal.SIGSTOP)
        try:
            run_id = run(stack, token, workflow_id, project_id)
            time.sleep(rng.uniform(0.05, 0.3))
        finally:
            pbc.send_signal(signal.SIGKILL)
        return run_id, "START"
    run_id = run(stack, token, workflow_id, project_id)
    instance = wait_for(lambda: step_instance(stack, run_id, victim), 30, f"{victim} launched")
    if moment == "while-a-step-runs":
        time.sleep(rng.uniform(0.1, STEP_S - 0.2))
        kill_pbc(stack)
    else:
        # paused within a millisecond or so of its pod's end being written, long before that end can
        # come back to it as a PodMessage (through the Broker and kew: tens of ms)
        wait_for(lambda: pod_phase(stack, instance) == "Succeeded", 30, f"{victim}'s pod Succeeded", poll_s=0.001)
        pbc.send_signal(signal.SIGSTOP)
        time.sleep(rng.uniform(0.05, 0.3))
        pbc.send_signal(signal.SIGKILL)
    return run_id, victim


@pytest.mark.parametrize(("seed", "moment"), [
    *((seed, moment) for seed in SEEDS for moment in ("after-start", "after-a-step-ends")),
    (SEEDS[0], "while-a-step-runs")])
def test_a_run_survives_pbc_killed(wf_stack, alice, chain, seed, moment):
    rng = random.Random(f"{seed}-{moment}")
    project_id = new_project(wf_stack, alice)
    begun = time.monotonic()
    run_id, victim = kill_around_a_step(wf_stack, alice, chain, project_id, rng, moment)
    done = ended(alice, run_id)
    took = time.monotonic() - begun
    assert (done["status"], done["success"]) == ("SUCCESS", True), (moment, done)
    check_exactly_once(wf_stack, alice, run_id, project_id, ["s0", "s1", "s2"])
    assert "dm-pbc" in settled(wf_stack)  # started again, and answering
    print(f"{moment} (seed {seed}, around {victim}): SUCCESS in {took:.1f} s")


def test_a_step_lost_with_pbc_ends_the_run_readably(wf_stack, alice, chain):
    """pbc dies while a step's process runs, and the step's processes with it (its wrapper too, as a
    pod is lost with its node): no one records the step's end. The run does not hang; it ends FAILURE
    with a reason within END_WITHIN_S (reconciliation's 30 s grace), the steps before it ran once and
    nothing after it was launched."""
    project_id = new_project(wf_stack, alice)
    run_id = run(wf_stack, alice, chain, project_id)
    victim = random.Random(7).choice(["s0", "s1"])
    instance = wait_for(lambda: step_instance(wf_stack, run_id, victim), 30, f"{victim} launched")
    record = wf_stack.data_dir / "pod-logs" / f"{instance}.run.json"
    started = wait_for(lambda: _read_json(record).get("child") and _read_json(record), 30, f"{victim} running")
    kill_pbc(wf_stack)
    for group in (started["pid"], started["child"]):  # the wrapper, then the step's command
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done = ended(alice, run_id)
    assert (done["status"], done["success"]) == ("FAILURE", False), done
    assert "disappeared" in done["error_msg"], done
    with db(wf_stack) as conn:
        rows = conn.execute("SELECT name, status FROM running_workflow_steps WHERE running_workflow_id = ?",
                            (run_id,)).fetchall()
    upto = ["s0", "s1"][:["s0", "s1"].index(victim) + 1]
    assert sorted(name for name, _ in rows) == upto, rows  # each once, none after the lost one
    assert dict(rows)[victim] == "FAILURE", rows
    assert Counter(label for label, _ in executions(wf_stack, project_id)) == Counter(upto[:-1])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --- two pbc processes at once ---------------------------------------------------------------------


class SecondPbc:
    """Another pbc function process on the stack's database and Broker, with the stack's own
    environment, and a thread that posts every START and PodMessage the stack puts in its outbox to it
    as soon as it is committed (the Broker delivers the same ones to the stack's pbc)."""

    TYPES = ("dm.workflow.v1", "dm.pod.message.v1")

    def __init__(self, stack, log_path: Path):
        from tests.stack.conftest import free_port

        stacks_pbc = settled(stack)["dm-pbc"]
        env = dict(stacks_pbc.environ())
        self.port = free_port(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.stack", "--target", "pbc", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._answers, 30, "the second pbc answering")
        self.stack = stack
        self.posted: list[tuple[str, str, int]] = []
        self.launched: set[str] = set()  # instances whose process the second pbc started
        self.stop_event = threading.Event()
        with db(stack) as conn:
            self.seen = {row[0] for row in conn.execute("SELECT id FROM outbox")}
        self.thread = threading.Thread(target=self._tee, daemon=True)
        self.thread.start()

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the second pbc exited with {self.proc.returncode}")
        try:
            return requests.get(self.url + "/", timeout=2).status_code == 405
        except requests.RequestException:
            return False

    def _tee(self) -> None:
        from sqlalchemy import create_engine, select
        from sqlalchemy.orm import Session

        from shared.db.models import OutboxEvent
        from shared.events import outbox, wire

        engine = create_engine(f"sqlite:///{self.stack.data_dir / 'dm.sqlite3'}")
        me = psutil.Process(self.proc.pid)
        while not self.stop_event.wait(0.005):
            for child in me.children():
                try:
                    self.launched.add(child.environ().get("HOSTNAME", ""))
                except psutil.Error:
                    pass
            with Session(engine) as s:
                rows = [r for r in s.scalars(select(OutboxEvent).where(OutboxEvent.type.in_(self.TYPES))
                                             .order_by(OutboxEvent.created)) if r.id not in self.seen]
                events = [(r.id, r.type, outbox.wire_event(r)) for r in rows]
            for event_id, event_type, event in events:
                self.seen.add(event_id)
                headers, body = wire.to_http(event)
                status = 0
                for _ in range(20):  # as the Broker would: retried until taken
                    try:
                        status = requests.post(self.url + "/", data=body, headers=headers, timeout=30).status_code
                    except requests.RequestException:
                        status = 0
                    if status == 202:
                        break
                    time.sleep(0.1)
                self.posted.append((event_id, event_type, status))
        engine.dispose()

    def stop(self) -> str:
        self.stop_event.set()
        self.thread.join(10)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return Path(self._log.name).read_text(errors="replace")


@pytest.mark.parametrize("seed", SEEDS)
def test_two_pbc_processes_on_the_same_run(wf_stack, alice, chain, tmp_path, seed):
    project_id = new_project(wf_stack, alice)
    second = SecondPbc(wf_stack, tmp_path / "second-pbc.log")
    try:
        if seed == 2:  # a fan-out too: replicas ending together, seen by both
            workflow_id, names = fan_out(alice), None
            variables = {"parts": FAN_OUT_PARTS, "combinedFile": "combined.txt"}
        else:
            workflow_id, names, variables = chain, ["s0", "s1", "s2"], None
        run_id = run(wf_stack, alice, workflow_id, project_id, variables)
        done = ended(alice, run_id)
        time.sleep(0.5)  # the copies still on their way reach the second pbc
    finally:
        log = second.stop()
    assert (done["status"], done["success"]) == ("SUCCESS", True), (done, log[-3000:])
    mine = list(second.posted)
    assert any(t == "dm.workflow.v1" for _, t, _ in mine), mine  # the START went to both
    assert sum(t == "dm.pod.message.v1" for _, t, _ in mine) >= 3, mine
    assert all(status == 202 for _, _, status in mine), mine
    if names is not None:
        check_exactly_once(wf_stack, alice, run_id, project_id, names)
    else:
        check_fan_out_once(wf_stack, run_id, project_id)
    with db(wf_stack) as conn:
        steps = {r[0] for r in conn.execute("SELECT instance_id FROM running_workflow_steps "
                                            "WHERE running_workflow_id = ?", (run_id,))}
    print(f"seed {seed}: {len(steps & second.launched)} of {len(steps)} steps launched by the second pbc")


FAN_OUT_PARTS = 4


def fan_out(token: str) -> str:
    text = (ROOT / "tests" / "data" / "workflows" / "fan-out-and-combine.yaml").read_text()
    rv = DmApi.create_workflow(token, name=f"Fan {uuid.uuid4().hex[:6]}", scope=ScopeEnum.GLOBAL, definition=text)
    assert rv.success and rv.msg["validated"], rv.msg
    return rv.msg["id"]


def check_fan_out_once(stack, run_id: str, project_id: str) -> None:
    with db(stack) as conn:
        rows = conn.execute("SELECT name, replica, instance_id FROM running_workflow_steps "
                            "WHERE running_workflow_id = ?", (run_id,)).fetchall()
        count = conn.execute("SELECT COUNT(*) FROM instances WHERE project_id = ?", (project_id,)).fetchone()[0]
    per = Counter((name, replica) for name, replica, _ in rows)
    assert set(per.values()) == {1}, rows
    assert Counter(name for name, _ in per) == {"split": 1, "process": FAN_OUT_PARTS, "combine": 1}, rows
    assert count == len(rows) == FAN_OUT_PARTS + 2, (count, rows)
