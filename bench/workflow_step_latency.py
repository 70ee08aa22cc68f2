"""Workflow step to step on the local stack: from a step's job exiting to the next step's instance
being launched.

The real local stack (``python -m shared.cli run``) runs in a temp DM_DATA_DIR on six free ports, as
for job_latency.py. An admin loads a bench-only manifest (``PUT /admin/job-manifest``): one job,
``dm-bench-wf`` / ``step``, whose ``python3 -c`` prints an EVENT line carrying ``repr(time.time())``
as it starts, copies its input (if any) into its output file and, as its very last action, prints
another EVENT line with ``repr(time.time())`` (flushed) and calls ``os._exit(0)``. alice creates a
Project and a two-step Workflow (``second`` reads ``first``'s output through the engine's plumbing,
so its directory is linked in before it starts), then runs it CHAINS times, one run at a time
(``POST /workflow/{id}/run``), polling ``GET /running-workflow/{id}`` every 10 ms until done.

The way from one step to the next: the local launcher (in pbc, which started the step) sees the
process end and sends the pod's Succeeded event to the Broker; kew reads the rest of the log and
queues the PodMessage; the Broker delivers it to pbc, which applies it (the task's SUCCESS), claims
the step's end and runs the engine, which records the next step's instance (its ``launched`` time,
in the same transaction); after the commit its inputs are linked and its process started.

Figures, per chain (all on the machine's one wall clock):

- primary, "exit → next launched": the second step's instance ``launched`` (``GET /instance/{id}``,
  written by pbc in the database) minus the exit time the first step's job printed (its task event,
  ``GET /task/{id}``);
- split: exit → kew recorded the exit line (the task event's ``time``), kew → the first step's task
  SUCCESS (written by pbc in the same transaction as the engine's move), SUCCESS → next launched;
- "exit → next process started": the start time the second step's job printed;
- context: ``POST …/run`` → first step launched, and ``POST …/run`` → the run done (as polled).

A chain that does not end SUCCESS within 30 s, or whose times are missing, is a failure, counted,
and the run goes on. 2 warm-up chains are not counted.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

import _common as c

CHAINS, WARMUP = 25, 2
POLL_S = 0.01
RUN_TIMEOUT_S = 30.0
TARGET_MEDIAN_MS = 200

MANIFEST = """\
---
kind: DataManagerManifest
kind-version: '2021.1'
description: The workflow benchmarks' job
job-definition-files:
- bench-workflow-jobs.yaml
"""

JOBS = """\
---
kind: DataManagerJobDefinition
kind-version: '2021.1'
name: Workflow benchmark jobs
collection: dm-bench-wf
jobs:
  step:
    name: Step
    description: Prints its start time, copies its input into its output, prints its exit time last and exits 0
    version: '1.0.0'
    image:
      name: informaticsmatters/dm-bench
      tag: '1.0.0'
      project-directory: /data
      working-directory: /data
    command: >-
      python3 -c 'import os, sys, time, datetime;
      stamp = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).replace(microsecond=0).isoformat();
      t0 = time.time(); label, out = sys.argv[1], sys.argv[2];
      print(stamp(t0) + " # INFO -EVENT- wf-start " + label + " " + repr(t0), flush=True);
      data = open(sys.argv[3]).read() if len(sys.argv) > 3 else "";
      open(out, "w").write(data + label + "\\n");
      t = time.time();
      print(stamp(t) + " # INFO -EVENT- wf-exit " + label + " " + repr(t), flush=True);
      os._exit(0)' '{{ label }}' '{{ outputFile }}'{% if inputFile is defined %} '{{ inputFile }}'{% endif %}
    variables:
      order:
        options:
        - label
        - outputFile
      inputs:
        type: object
        properties:
          inputFile:
            title: Input
            mime-types:
            - text/plain
            type: file
      outputs:
        type: object
        properties:
          outputFile:
            title: Output
            mime-types:
            - text/plain
            creates: '{{ outputFile }}'
            type: file
      options:
        type: object
        required:
        - label
        - outputFile
        properties:
          label:
            title: Label
            type: string
          outputFile:
            title: Output file
            type: string
"""

CHAIN = """\
kind: DataManagerWorkflow
kind-version: '2025.2'
name: bench-chain
variables:
  outputs:
    type: object
    properties:
      resultFile:
        title: Result
        mime-types: [text/plain]
        creates: '{{ resultFile }}'
        type: file
steps:
- name: first
  specification: {collection: dm-bench-wf, job: step, version: '1.0.0',
                  variables: {label: first, outputFile: first.txt}}
- name: second
  specification: {collection: dm-bench-wf, job: step, version: '1.0.0', variables: {label: second}}
  plumbing:
  - variable: inputFile
    from-step: {name: first, variable: outputFile}
  - variable: outputFile
    from-workflow: {variable: resultFile}
"""


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def form(fields: dict) -> tuple[bytes, dict]:
    return urllib.parse.urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def load_jobs(stack: c.Stack, folder: Path, *more_manifests: Path) -> None:
    """The bench job (and any more manifests) loaded by admin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.yaml").write_text(MANIFEST)
    (folder / "bench-workflow-jobs.yaml").write_text(JOBS)
    admin = c.ApiClient(stack.port, stack.token("admin"))
    for manifest in (folder / "manifest.yaml", *more_manifests):
        body, headers = form({"url": str(manifest)})
        loaded = admin.json("PUT", "/admin/job-manifest", body=body, headers=headers)
        if not loaded.get("num_jobs_loaded"):
            raise RuntimeError(f"the manifest {manifest.name} did not load: {loaded}")
    admin.close()


def create_workflow(api: c.ApiClient, name: str, definition: str) -> str:
    body, headers = form({"name": name, "scope": "GLOBAL", "definition": definition})
    created = api.json("POST", "/workflow", expect=201, body=body, headers=headers)
    if not created.get("validated"):
        raise RuntimeError(f"the workflow {name} is not valid: {created}")
    return created["id"]


def create_project(api: c.ApiClient, stack: c.Stack, name: str) -> str:
    body, headers = form({"name": name, "tier_product_id": stack.facts["users"]["alice"]["project_tier_product_id"]})
    return api.json("POST", "/project", expect=201, body=body, headers=headers)["project_id"]


def start_run(api: c.ApiClient, workflow_id: str, project_id: str, name: str, variables: dict) -> str:
    body, headers = form({"project_id": project_id, "as_name": name, "variables": json.dumps(variables)})
    return api.json("POST", f"/workflow/{workflow_id}/run", expect=201, body=body, headers=headers)["id"]


def wait_run(api: c.ApiClient, run_id: str, timeout: float = RUN_TIMEOUT_S, poll_s: float = POLL_S) -> dict:
    deadline = time.perf_counter() + timeout
    while True:
        run = api.json("GET", f"/running-workflow/{run_id}")
        if run.get("done"):
            return run
        if time.perf_counter() > deadline:
            raise TimeoutError(f"run {run_id} not done within {timeout} s: {run}")
        time.sleep(poll_s)


def printed(task: dict, mark: str) -> tuple[float, float]:
    """(the time the job printed on its ``mark`` line, the task event's own time, kew's record of it)."""
    lines = [e for e in task.get("events", []) if e["message"].startswith(mark + " ")]
    if len(lines) != 1:
        raise RuntimeError(f"{len(lines)} {mark!r} lines among the task's events: {task.get('events')}"[:300])
    return float(lines[0]["message"].split()[-1]), epoch(lines[0]["time"])


def one(api: c.ApiClient, workflow_id: str, project_id: str, i: int) -> dict:
    asked = time.time()
    try:
        run_id = start_run(api, workflow_id, project_id, f"Chain {i}", {"resultFile": f"result-{i}.txt"})
        run = wait_run(api, run_id)
        done = time.time()
        if run.get("status") != "SUCCESS":
            return {"failure": f"run {run_id} ended {run.get('status')}: {run.get('error_msg')}"}
        steps = {s["name"]: s for s in api.json("GET", f"/running-workflow/{run_id}/steps")["running_workflow_steps"]}
        first_task = api.json("GET", f"/task/{steps['first']['task_id']}")
        second_task = api.json("GET", f"/task/{steps['second']['task_id']}")
        first = api.json("GET", f"/instance/{steps['first']['instance_id']}")
        second = api.json("GET", f"/instance/{steps['second']['instance_id']}")
        exited, kew = printed(first_task, "wf-exit first")
        started_next, _ = printed(second_task, "wf-start second")
    except Exception as exc:  # noqa: BLE001 - counted as a failure; the run goes on
        api.close()
        return {"failure": f"{type(exc).__name__}: {exc}"[:300]}
    success = c.task_times(first_task)["SUCCESS"]
    launched_next = epoch(second["launched"])
    return {
        "exit_to_next_launched": launched_next - exited,
        "exit_to_kew": kew - exited,
        "kew_to_success": success - kew,
        "success_to_next_launched": launched_next - success,
        "exit_to_next_started": started_next - exited,
        "post_to_first_launched": epoch(first["launched"]) - asked,
        "post_to_done_seen": done - asked,
    }



def load_average() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> c.Report:
    report = c.Report("workflow_step_latency")
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        with c.Stack(Path(tmp) / "data") as stack:
            ready = stack.wait_ready()
            print(f"local stack on ports {stack.port}-{stack.port + 5}, ready in {ready:.1f} s", flush=True)
            load_jobs(stack, Path(tmp) / "jobs")
            api = c.ApiClient(stack.port, stack.token("alice"))
            project_id = create_project(api, stack, "Workflow latency")
            workflow_id = create_workflow(api, "Bench chain", CHAIN)
            print(f"{WARMUP} warm-up chains, then {CHAINS}, one at a time; runs polled every "
                  f"{POLL_S * 1000:.0f} ms", flush=True)
            for i in range(WARMUP):
                r = one(api, workflow_id, project_id, -1 - i)
                if "failure" in r:
                    raise RuntimeError(f"warm-up chain failed: {r['failure']}\n{stack.log()}")
            results, failures = [], []
            started = time.perf_counter()
            for i in range(CHAINS):
                r = one(api, workflow_id, project_id, i)
                (failures if "failure" in r else results).append(r)
                if "failure" in r and len(failures) <= 5:
                    print(f"  chain {i} failed: {r['failure']}", flush=True)
            took = time.perf_counter() - started
            load = load_average()
            api.close()
            code = stack.stop()
            if code != 0:
                print(f"the stack exited with {code} after SIGINT:\n{stack.log()}")

    print("results:")
    report.figure("chains", CHAINS, f"{CHAINS} two-step chains in {took:.1f} s, {len(failures)} failed")
    report.figure("failures", len(failures), f"failures: {len(failures)}")
    report.figure("load_average", load, f"load average (1, 5, 15 min) at the end: {load}")
    med = float("inf")
    if results:
        labels = {
            "exit_to_next_launched": "step job exit → next step's instance launched (database)",
            "exit_to_kew": "  of which exit → kew recorded the exit line",
            "kew_to_success": "  of which kew → pbc wrote the step's task SUCCESS",
            "success_to_next_launched": "  of which SUCCESS → the engine launched the next step",
            "exit_to_next_started": "step job exit → next step's process started (printed)",
            "post_to_first_launched": "POST …/run → first step launched",
            "post_to_done_seen": "POST …/run → run seen done (two steps)",
        }
        report.latencies(results, labels)
        med = report.figures["exit_to_next_launched_ms"]["median"]
    report.target("median step exit to next step launched", med, "<", TARGET_MEDIAN_MS, " ms")
    report.target("failed chains", len(failures), "<=", 0)
    return report.save_after_stack(code)


if __name__ == "__main__":
    main()
