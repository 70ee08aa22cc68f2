"""Short job instances on the local stack: from the job process's exit to its task being final.

The real local stack (``python -m shared.cli run``: api, upload function, Broker, kew, pbc,
monitor) runs in a temp DM_DATA_DIR on six free ports. An admin loads a bench-only job manifest written to a
temp folder (``PUT /admin/job-manifest`` with its absolute path): one job, ``dm-bench`` /
``exit-now``, whose command is ``python3 -c`` that, as its very last action, prints one EVENT line
carrying ``repr(time.time())`` (flushed) and then calls ``os._exit(0)``, so the process ends
right after the time it printed. alice creates a
Project and launches instances one at a time (``POST /instance``); each one's task is polled
(``GET /task/{id}``) every 5 ms until ``done``.

The way back: the local launcher sees the process end (``Popen.wait`` with a 0.1 s timeout, which
polls ``waitpid``) and sends the pod's Succeeded event to the Broker; the Broker delivers it to
kew, which reads the rest of the log (so the printed time becomes a task event) and queues a
PodMessage through the outbox; the Broker delivers that to pbc, which writes the task's SUCCESS
state.

Figures, per instance:

- primary, "exit → final": the SUCCESS state's own ``time`` (written by pbc, microseconds) minus
  the time the job printed. No polling is involved. The job still has to leave after the print
  (an ``_exit`` system call), so this can only over-state the time from the process's real end.
- "exit → kew": the ``time`` of the task event kew recorded from that very line; the rest,
  kew → final, is the PodMessage's way through the outbox, the Broker and pbc.
- secondary, "exit → seen": the poll response that first showed ``done`` minus the printed time.
  Its granularity is the gap between that response and the previous (not done) one; its median
  and max are reported.
- context, "launch → final": the SUCCESS time minus the start of ``POST /instance``.

All clocks are the same machine's wall clock (UTC). 3 warm-up instances are not counted; a
non-201 answer, a task not done within 30 s, an exit code other than 0 or a missing exit line is a
failure, counted, and the run goes on. Pod timestamps (whole seconds) are not used.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

import _common as c

COUNT, WARMUP = 100, 3
POLL_S = 0.005
TASK_TIMEOUT_S = 30.0
TARGET_MEDIAN_MS = 200
EXIT_MARK = "bench-exit"

MANIFEST = """\
---
kind: DataManagerManifest
kind-version: '2021.1'
description: The job-latency benchmark's job
job-definition-files:
- bench-jobs.yaml
"""

# The last thing the job does is print the time, flushed; then it leaves at once (os._exit: no
# interpreter shutdown between the time printed and the process's end).
JOBS = """\
---
kind: DataManagerJobDefinition
kind-version: '2021.1'
name: Benchmark jobs
collection: dm-bench
jobs:
  exit-now:
    name: Exit now
    description: Prints the time as an EVENT line as its last action, then exits 0
    version: '1.0.0'
    image:
      name: informaticsmatters/dm-bench
      tag: '1.0.0'
      project-directory: /data
      working-directory: /data
    command: >-
      python3 -c 'import os, sys, time, datetime;
      t = time.time();
      stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).replace(microsecond=0).isoformat();
      print(stamp + " # INFO -EVENT- %s " + sys.argv[1] + " " + repr(t), flush=True);
      os._exit(0)' {{ run }}
    variables:
      options:
        type: object
        required:
        - run
        properties:
          run:
            title: Run number
            type: integer
            minimum: -1000
            maximum: 1000000
""" % EXIT_MARK


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def form(fields: dict) -> tuple[bytes, dict]:
    return urllib.parse.urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def poll_until_done(api: c.ApiClient, task_id: str) -> dict:
    """``GET /task/{id}`` every POLL_S until done: the task, the wall time of the response that
    showed done and of the one before it, and the polls made."""
    deadline = time.perf_counter() + TASK_TIMEOUT_S
    next_poll, polls, before = time.perf_counter(), 0, None
    while True:
        task = api.json("GET", f"/task/{task_id}")
        seen = time.time()
        polls += 1
        if task.get("done"):
            return {"task": task, "seen": seen, "before": before, "polls": polls}
        before = seen
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"task {task_id} not done within {TASK_TIMEOUT_S} s: {task}")
        next_poll += POLL_S
        if next_poll > now:
            time.sleep(next_poll - now)
        else:
            next_poll = now


def one(api: c.ApiClient, project_id: str, i: int) -> dict:
    """One instance until its task is seen done: its times in seconds, or a failure reason."""
    spec = {"collection": "dm-bench", "job": "exit-now", "version": "1.0.0", "variables": {"run": i}}
    body, headers = form({"application_id": "datamanagerjobs.squonk.it", "project_id": project_id,
                          "as_name": f"Bench run {i}", "specification": json.dumps(spec)})
    launched = time.time()
    try:
        status, data = api.call("POST", "/instance", body=body, headers=headers)
        if status != 201:
            return {"failure": f"POST /instance answered {status}: {data[:200]!r}"}
        got = poll_until_done(api, json.loads(data)["task_id"])
    except Exception as exc:  # noqa: BLE001 - counted as a failure; the run goes on
        api.close()
        return {"failure": f"{type(exc).__name__}: {exc}"[:300]}
    task = got["task"]
    if task.get("exit_code") != 0 or task["states"][-1]["state"] != "SUCCESS":
        return {"failure": f"exit code {task.get('exit_code')}: {task.get('states')}"[:300]}
    lines = [e for e in task.get("events", []) if e["message"].startswith(f"{EXIT_MARK} {i} ")]
    if len(lines) != 1:
        return {"failure": f"{len(lines)} exit lines among the task's events: {task.get('events')}"[:300]}
    exited = float(lines[0]["message"].split()[-1])
    final = epoch(task["states"][-1]["time"])
    return {
        "exit_to_final": final - exited,
        "exit_to_kew": epoch(lines[0]["time"]) - exited,
        "kew_to_final": final - epoch(lines[0]["time"]),
        "exit_to_seen": got["seen"] - exited,
        "granularity": got["seen"] - got["before"] if got["before"] is not None else None,
        "launch_to_final": final - launched,
        "launch_to_exit": exited - launched,
        "polls": got["polls"],
    }



def main() -> c.Report:
    report = c.Report("job_latency")
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        jobs_dir = Path(tmp) / "jobs"
        jobs_dir.mkdir()
        (jobs_dir / "manifest.yaml").write_text(MANIFEST)
        (jobs_dir / "bench-jobs.yaml").write_text(JOBS)
        with c.Stack(Path(tmp) / "data") as stack:
            ready = stack.wait_ready()
            print(f"local stack on ports {stack.port}-{stack.port + 4}, ready in {ready:.1f} s",
                  flush=True)
            admin = c.ApiClient(stack.port, stack.token("admin"))
            body, headers = form({"url": str(jobs_dir / "manifest.yaml")})
            loaded = admin.json("PUT", "/admin/job-manifest", body=body, headers=headers)
            admin.close()
            if loaded.get("num_jobs_loaded") != 1:
                raise RuntimeError(f"the bench manifest did not load: {loaded}")
            api = c.ApiClient(stack.port, stack.token("alice"))
            body, headers = form({"name": "Job latency",
                                  "tier_product_id": stack.facts["users"]["alice"]["project_tier_product_id"]})
            project_id = api.json("POST", "/project", expect=201, body=body, headers=headers)["project_id"]
            print(f"{WARMUP} warm-up instances, then {COUNT}, one at a time; task polled every "
                  f"{POLL_S * 1000:.0f} ms", flush=True)
            for i in range(WARMUP):
                r = one(api, project_id, -1 - i)
                if "failure" in r:
                    raise RuntimeError(f"warm-up instance failed: {r['failure']}\n{stack.log()}")
            results, failures = [], []
            started = time.perf_counter()
            for i in range(COUNT):
                r = one(api, project_id, i)
                (failures if "failure" in r else results).append(r)
                if "failure" in r and len(failures) <= 5:
                    print(f"  instance {i} failed: {r['failure']}", flush=True)
                if (i + 1) % 25 == 0 and results:
                    print(f"  {i + 1} done, exit → final median so far "
                          f"{c.median([x['exit_to_final'] for x in results]) * 1000:.0f} ms", flush=True)
            took = time.perf_counter() - started
            api.close()
            code = stack.stop()
            if code != 0:
                print(f"the stack exited with {code} after SIGINT:\n{stack.log()}")

    print("results:")
    report.figure("instances", COUNT, f"{COUNT} instances in {took:.1f} s, {len(failures)} failed")
    report.figure("failures", len(failures), f"failures: {len(failures)}")
    med = float("inf")
    if results:
        labels = {
            "exit_to_final": "job exit → task final (server's SUCCESS time)",
            "exit_to_kew": "  of which job exit → kew recorded the exit line",
            "kew_to_final": "  of which kew → pbc wrote SUCCESS",
            "exit_to_seen": "job exit → poll saw done (client)",
            "launch_to_final": "POST /instance → task final",
            "launch_to_exit": "  of which POST /instance → job exit",
        }
        report.latencies(results, labels)
        gaps = [r["granularity"] for r in results if r["granularity"] is not None]
        if gaps:
            g = c.stats_ms(gaps)
            report.figure("poll_granularity_ms", g, f"poll granularity (gap between the last not-done and the done "
                          f"response): median {g['median']:.1f} ms, max {g['max']:.1f} ms; "
                          f"polls per instance (median) {c.median([r['polls'] for r in results]):.0f}")
        med = report.figures["exit_to_final_ms"]["median"]
    report.target("median job exit to task final", med, "<", TARGET_MEDIAN_MS, " ms")
    report.target("failed instances", len(failures), "<=", 0)
    return report.save_after_stack(code)


if __name__ == "__main__":
    main()
