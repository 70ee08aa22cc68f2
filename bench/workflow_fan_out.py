"""A workflow fan-out over 100 files on the local stack: how soon all 100 step instances are launched.

The stack, the bench job (``dm-bench-wf`` / ``step``) and the client are those of
workflow_step_latency.py; the test jobs of tests/data/jobs/workflow-manifest.yaml are loaded too. The
Workflow: ``split`` (dm-test-workflow/split) writes PARTS files; ``process`` (the bench job) runs once
for each of them, as replicas the engine launches together when split ends; ``combine``
(dm-test-workflow/combine) waits for them all and concatenates their outputs.

After a warm-up run of 3 parts, ROUNDS runs of PARTS parts, one at a time; each run is polled every
50 ms until done. Figures per round (the machine's one wall clock):

- primary: the start of ``POST /workflow/{id}/run`` → the last of the PARTS ``process`` instances
  launched (each instance's ``launched``, written by pbc in the database when the engine records it);
- split's task SUCCESS (written by pbc in the transaction where the engine records every replica) →
  the first and the last replica launched;
- split's SUCCESS → the first and the last replica's process started (the time each job printed as it
  started, from its task's events): the replicas' pods are started one after another once the
  engine's transaction commits;
- the last replica's exit → combine launched (split: that exit → kew recorded its exit line, → pbc
  wrote its task SUCCESS; the last SUCCESS of any replica → combine launched); ``POST …/run`` → run
  seen done.

Checks: the run ends SUCCESS with PARTS + 2 steps, one instance each.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common as c
import workflow_step_latency as w

PARTS, ROUNDS = 100, 2
POLL_S = 0.05
RUN_TIMEOUT_S = 300.0
TARGET_S = 10.0
WORKFLOW_MANIFEST = c.ROOT / "tests" / "data" / "jobs" / "workflow-manifest.yaml"

FAN_OUT = """\
kind: DataManagerWorkflow
kind-version: '2025.2'
name: bench-fan-out
variables:
  options:
    type: object
    required: [parts]
    properties:
      parts: {title: Parts, type: integer, minimum: 1, maximum: 100}
  outputs:
    type: object
    properties:
      combinedFile:
        title: The combined result
        mime-types: [text/plain]
        creates: '{{ combinedFile }}'
        type: file
steps:
- name: split
  specification: {collection: dm-test-workflow, job: split, version: '1.0.0', variables: {outputFiles: part-*.txt}}
  plumbing:
  - variable: parts
    from-workflow: {variable: parts}
- name: process
  specification: {collection: dm-bench-wf, job: step, version: '1.0.0',
                  variables: {label: process, outputFile: processed.txt}}
  plumbing:
  - variable: inputFile
    from-step: {name: split, variable: outputFiles}
- name: combine
  specification: {collection: dm-test-workflow, job: combine, version: '1.0.0'}
  plumbing:
  - variable: inputFile
    from-step: {name: process, variable: outputFile}
  - variable: dirsGlob
    from-predefined: {variable: instance-link-glob}
  - variable: outputFile
    from-workflow: {variable: combinedFile}
"""


def one(api: c.ApiClient, workflow_id: str, project_id: str, parts: int, i: int) -> dict:
    asked = time.time()
    run_id = w.start_run(api, workflow_id, project_id, f"Fan-out {i}", {"parts": parts, "combinedFile": f"all-{i}.txt"})
    run = w.wait_run(api, run_id, RUN_TIMEOUT_S, POLL_S)
    done = time.time()
    if run.get("status") != "SUCCESS":
        raise RuntimeError(f"run {run_id} ended {run.get('status')}: {run.get('error_msg')}")
    steps = api.json("GET", f"/running-workflow/{run_id}/steps")["running_workflow_steps"]
    by_name: dict[str, list[dict]] = {}
    for s in steps:
        by_name.setdefault(s["name"], []).append(s)
    counts = {name: len(items) for name, items in by_name.items()}
    if counts != {"split": 1, "process": parts, "combine": 1} or len({s["instance_id"] for s in steps}) != len(steps):
        raise RuntimeError(f"steps of run {run_id}: {counts}")
    split_success = c.task_times(api.json("GET", f"/task/{by_name['split'][0]['task_id']}"))["SUCCESS"]
    launched, started, exited, kew, success = [], [], [], [], []
    for s in by_name["process"]:
        launched.append(w.epoch(api.json("GET", f"/instance/{s['instance_id']}")["launched"]))
        task = api.json("GET", f"/task/{s['task_id']}")
        started.append(w.printed(task, "wf-start process")[0])
        exit_time, kew_time = w.printed(task, "wf-exit process")
        exited.append(exit_time)
        kew.append(kew_time)
        success.append(c.task_times(task)["SUCCESS"])
    last = exited.index(max(exited))
    combine_launched = w.epoch(api.json("GET", f"/instance/{by_name['combine'][0]['instance_id']}")["launched"])
    return {
        "post_to_last_launched": max(launched) - asked,
        "split_success_to_first_launched": min(launched) - split_success,
        "split_success_to_last_launched": max(launched) - split_success,
        "split_success_to_first_started": min(started) - split_success,
        "split_success_to_last_started": max(started) - split_success,
        "last_exit_to_combine_launched": combine_launched - max(exited),
        "last_exit_to_kew": kew[last] - exited[last],
        "last_exit_to_its_success": success[last] - exited[last],
        "last_success_to_combine_launched": combine_launched - max(success),
        "post_to_done_seen": done - asked,
    }


def main() -> c.Report:
    report = c.Report("workflow_fan_out")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        with c.Stack(Path(tmp) / "data") as stack:
            ready = stack.wait_ready()
            print(f"local stack on ports {stack.port}-{stack.port + 5}, ready in {ready:.1f} s", flush=True)
            w.load_jobs(stack, Path(tmp) / "jobs", WORKFLOW_MANIFEST)
            api = c.ApiClient(stack.port, stack.token("alice"))
            project_id = w.create_project(api, stack, "Workflow fan-out")
            workflow_id = w.create_workflow(api, "Bench fan-out", FAN_OUT)
            print(f"a warm-up run of 3 parts, then {ROUNDS} runs of {PARTS} parts, one at a time", flush=True)
            try:
                one(api, workflow_id, project_id, 3, -1)
                for i in range(ROUNDS):
                    r = one(api, workflow_id, project_id, PARTS, i)
                    rounds.append(r)
                    print(f"  round {i}: POST …/run → last of {PARTS} launched {r['post_to_last_launched']:.2f} s, "
                          f"split's end → last process started {r['split_success_to_last_started']:.2f} s, "
                          f"run done {r['post_to_done_seen']:.1f} s", flush=True)
            except Exception as exc:  # noqa: BLE001 - reported as a failed target below
                print(f"  the run failed: {exc}\n{stack.log()}", flush=True)
            load = w.load_average()
            api.close()
            code = stack.stop()
            if code != 0:
                print(f"the stack exited with {code} after SIGINT:\n{stack.log()}")

    print("results:")
    report.figure("load_average", load, f"load average (1, 5, 15 min) at the end: {load}")
    report.figure("rounds", rounds, f"{len(rounds)} of {ROUNDS} rounds of {PARTS} parts completed")
    worst = float("inf")
    if rounds:
        labels = {
            "post_to_last_launched": f"POST …/run → last of {PARTS} process instances launched (database)",
            "split_success_to_first_launched": "split's SUCCESS → first replica launched",
            "split_success_to_last_launched": "split's SUCCESS → last replica launched",
            "split_success_to_first_started": "split's SUCCESS → first replica's process started (printed)",
            "split_success_to_last_started": "split's SUCCESS → last replica's process started (printed)",
            "last_exit_to_combine_launched": "last replica's exit → combine launched",
            "last_exit_to_kew": "  of which that exit → kew recorded its exit line",
            "last_exit_to_its_success": "  of which that exit → pbc wrote its task SUCCESS",
            "last_success_to_combine_launched": "  the last replica task SUCCESS → combine launched",
            "post_to_done_seen": "POST …/run → run seen done",
        }
        for key, label in labels.items():
            values = [r[key] for r in rounds]
            report.figure(f"{key}_s", values, f"{label}: " + ", ".join(f"{v:.2f} s" for v in values))
        worst = max(r["post_to_last_launched"] for r in rounds)
    report.target(f"POST …/run to all {PARTS} step instances launched (worst round)", worst, "<", TARGET_S, " s")
    report.target("failed rounds", ROUNDS - len(rounds), "<=", 0)
    return report.save_after_stack(code)


if __name__ == "__main__":
    main()
