"""1,000 small dataset uploads on the local stack, one at a time: latency from POST to task done.

The real local stack (``python -m shared.cli run``: api, upload function, Broker) runs in a temp
DM_DATA_DIR on three free ports. Each upload is a valid SD-file of about 3 KiB (three V2000
records, each ending with a ``$$$$`` line, with the upload's number in a data item), sent as
``POST /data-manager-api/dataset`` (``dataset_type`` ``chemical/x-mdl-sdfile``, ``unit_id``, then
the ``dataset_file`` part ``mols-NNNN.sdf``) from one client on one keep-alive connection; then
``GET /task/{id}`` every 5 ms until ``done``. The latency runs from the start of the POST to the
poll that sees the task done. A non-201 answer, an exit code other than 0 or a task not done
within 60 s is a failure, counted, and the run goes on. 10 uploads first warm the stack up and are
not counted.

The task's states (PENDING written by the api, STARTED and SUCCESS by the upload function) split
each latency into: the api until the task row (PENDING), the api from there to its 201 (commit,
then the outbox's POST to the Broker), from 201 to STARTED (the Broker's delivery to the upload
function), STARTED to SUCCESS (the upload function's work) and SUCCESS to the poll that sees it.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

import _common as c

COUNT, WARMUP = 1000, 10
POLL_S = 0.005
TASK_TIMEOUT_S = 60.0
TARGET_MEDIAN_MS = 300
MIME = "chemical/x-mdl-sdfile"

# Ethyl acetate-like skeleton with hydrogens: 14 atoms, 13 bonds (coordinates only need the format).
_ATOMS = [("C", -1.2, 0.0), ("C", 0.0, 0.7), ("O", 0.0, 2.1), ("O", 1.2, 0.0), ("C", 2.4, 0.7),
          ("C", 3.6, 0.0), ("H", -1.2, -1.1), ("H", -2.1, 0.5), ("H", -1.2, 0.9), ("H", 2.4, 1.8),
          ("H", 2.4, 0.2), ("H", 3.6, -1.1), ("H", 4.5, 0.5), ("H", 3.6, 0.9)]
_BONDS = [(1, 2, 1), (2, 3, 2), (2, 4, 1), (4, 5, 1), (5, 6, 1), (1, 7, 1), (1, 8, 1), (1, 9, 1),
          (5, 10, 1), (5, 11, 1), (6, 12, 1), (6, 13, 1), (6, 14, 1)]


def sd_record(name: str, n: int) -> str:
    lines = [name, "  bench   3D", "", f"{len(_ATOMS):3d}{len(_BONDS):3d}  0  0  0  0  0  0  0  0999 V2000"]
    for symbol, x, y in _ATOMS:
        lines.append(f"{x + n * 0.0001:10.4f}{y:10.4f}{0.0:10.4f} {symbol:<3} 0  0  0  0  0  0  0  0  0  0  0  0")
    lines += [f"{a:3d}{b:3d}{order:3d}  0" for a, b, order in _BONDS]
    lines += ["M  END", "> <ID>", name, "", "> <SMILES>", "CC(=O)OCC", "", "$$$$"]
    return "\n".join(lines) + "\n"


def sd_file(i: int) -> bytes:
    return "".join(sd_record(f"BENCH-{i:05d}-{r}", r) for r in range(3)).encode()


def multipart(fields: dict[str, str], field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    b = f"bench-{uuid.uuid4().hex}"
    head = "".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
    head += (f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
             f"Content-Type: {MIME}\r\n\r\n")
    return head.encode() + content + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def one(api: c.ApiClient, unit_id: str, i: int) -> dict:
    """One upload until its task is seen done; its times in seconds, or a failure reason."""
    body, content_type = multipart({"dataset_type": MIME, "unit_id": unit_id}, "dataset_file",
                                   f"mols-{i:04d}.sdf", sd_file(i))
    wall0, t0 = time.time(), time.perf_counter()
    try:
        status, data = api.call("POST", "/dataset", body=body, headers={"Content-Type": content_type})
        t_201 = time.perf_counter()
        if status != 201:
            return {"failure": f"POST answered {status}: {data[:200]!r}"}
        t_done, task, polls = api.wait_task(json.loads(data)["task_id"], POLL_S, TASK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - counted as a failure; the run goes on
        api.close()
        return {"failure": f"{type(exc).__name__}: {exc}"[:300]}
    if task.get("exit_code") != 0:
        return {"failure": f"exit code {task.get('exit_code')}: {task.get('states')}"[:300]}
    states = c.task_times(task)
    pending, started, success = states.get("PENDING"), states.get("STARTED"), states.get("SUCCESS")
    t201_wall = wall0 + (t_201 - t0)
    seen_wall = wall0 + (t_done - t0)
    return {
        "total": t_done - t0, "polls": polls, "bytes": len(body),
        "api_to_pending": pending - wall0,
        "pending_to_201": t201_wall - pending,
        "201_to_started": started - t201_wall,
        "started_to_success": success - started,
        "success_to_seen": seen_wall - success,
    }


def main() -> c.Report:
    report = c.Report("small_uploads")
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        with c.Stack(Path(tmp) / "data") as stack:
            ready = stack.wait_ready()
            print(f"local stack on ports {stack.port}-{stack.port + 4}, ready in {ready:.1f} s", flush=True)
            api = c.ApiClient(stack.port, stack.token("alice"))
            unit_id = stack.facts["users"]["alice"]["unit_id"]
            print(f"SD-file of {len(sd_file(0))} bytes ({MIME}); {WARMUP} warm-up uploads, then {COUNT}",
                  flush=True)
            for i in range(WARMUP):
                r = one(api, unit_id, -1 - i)
                if "failure" in r:
                    raise RuntimeError(f"warm-up upload failed: {r['failure']}\n{stack.log()}")
            results, failures = [], []
            started = time.perf_counter()
            for i in range(COUNT):
                r = one(api, unit_id, i)
                (failures if "failure" in r else results).append(r)
                if "failure" in r and len(failures) <= 5:
                    print(f"  upload {i} failed: {r['failure']}", flush=True)
                if (i + 1) % 200 == 0:
                    recent = [x["total"] for x in results[-200:]]
                    print(f"  {i + 1} done, median of the last 200 so far "
                          f"{c.median(recent) * 1000:.0f} ms" if recent else f"  {i + 1} done", flush=True)
            took = time.perf_counter() - started
            api.close()
            code = stack.stop()
            if code != 0:
                print(f"the stack exited with {code} after SIGINT:\n{stack.log()}")

    totals_ms = [r["total"] * 1000 for r in results]
    print("results:")
    report.figure("uploads", COUNT, f"{COUNT} uploads in {took:.1f} s ({COUNT / took:.1f} a second), "
                  f"{len(failures)} failed")
    report.figure("failures", len(failures), f"failures: {len(failures)}")
    if totals_ms:
        med, p90, p99 = (c.percentile(totals_ms, p) for p in (50, 90, 99))
        report.figure("latency_ms", {"median": round(med, 1), "p90": round(p90, 1), "p99": round(p99, 1),
                                     "max": round(max(totals_ms), 1)},
                      f"POST to task seen done: median {med:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, "
                      f"max {max(totals_ms):.0f} ms")
        stages = ("api_to_pending", "pending_to_201", "201_to_started", "started_to_success", "success_to_seen")
        split = {k: {"median": round(c.median([r[k] for r in results]) * 1000, 1),
                     "p90": round(c.percentile([r[k] * 1000 for r in results], 90), 1)} for k in stages}
        report.figure("stages_ms", split, "where the time goes (median / p90, ms): " + ", ".join(
            f"{k} {v['median']:.0f} / {v['p90']:.0f}" for k, v in split.items()))
        report.figure("polls_median", c.median([r["polls"] for r in results]),
                      f"task polls per upload (median): {c.median([r['polls'] for r in results]):.0f}")
    else:
        med = float("inf")
    report.target("median POST to task done", med, "<", TARGET_MEDIAN_MS, " ms")
    report.target("failed uploads", len(failures), "<=", 0)
    return report.save_after_stack(code)


if __name__ == "__main__":
    main()
