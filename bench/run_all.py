"""Run every benchmark (each in its own process) and print a summary table (``make bench``).

Each benchmark writes bench/results/<name>.json; this adds bench/results/summary.json.
Targets are reported PASS/FAIL; the exit status is 0 regardless.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import _common as c

BENCHMARKS = ("cold_start", "requests_per_second", "upload", "dataset_upload", "small_uploads", "kew_log_parsing",
              "job_latency", "pbc_throughput", "storage_scan", "charge_dispatch", "workflow_step_latency",
              "workflow_fan_out", "listings", "dataset_types")


def main() -> int:
    rows, failed = [], []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(c.BENCH / f"{name}.py")], cwd=c.ROOT)
        took = time.perf_counter() - started
        result_file = c.RESULTS / f"{name}.json"
        if proc.returncode != 0 or not result_file.exists() or result_file.stat().st_mtime < time.time() - took:
            failed.append(name)
            rows.append((name, "(benchmark did not finish)", "", "", "ERROR"))
            continue
        for t in json.loads(result_file.read_text())["targets"]:
            rows.append((name, t["target"], f"{t['value']:.3g}{t['unit']}", f"{t['op']} {t['limit']:.3g}{t['unit']}",
                         "PASS" if t["pass"] else "FAIL"))

    widths = [max(len(str(r[i])) for r in rows + [("benchmark", "target", "value", "goal", "result")])
              for i in range(5)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print("\n" + line.format("benchmark", "target", "value", "goal", "result"))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    (c.RESULTS / "summary.json").write_text(json.dumps(
        [dict(zip(("benchmark", "target", "value", "goal", "result"), r)) for r in rows], indent=2) + "\n")
    if failed:
        print(f"\nbenchmarks that did not finish: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
