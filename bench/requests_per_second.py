"""Requests per second on ONE process: authenticated GET /data-manager-api/project (100 projects)
vs a bare hello-world function, each with 8 worker threads. The api runs as the product serves it,
``python -m shared.stack --target api`` (the project's waitress-based server, THREADS=8); the
hello-world reference under functions-framework's CLI (its gunicorn, WORKERS=1, THREADS=8).

The load comes from bench/_loadgen.py in a separate process: 8 keep-alive connections,
2 s warm-up, then 10 s measured. Every api response's status is counted and every 25th
body of each connection is checked for ``count == 100``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as c

PROJECTS = 100
CONNECTIONS, WARMUP_S, DURATION_S = 8, 2.0, 10.0
TARGET_RATIO = 0.5  # at least half the hello world's requests per second


def load(url: str, headers: list[str] = (), expect_count: int | None = None) -> dict:
    cmd = [sys.executable, str(c.BENCH / "_loadgen.py"), url, "--connections", str(CONNECTIONS),
           "--warmup", str(WARMUP_S), "--duration", str(DURATION_S)]
    for h in headers:
        cmd += ["--header", h]
    if expect_count is not None:
        cmd += ["--expect-count", str(expect_count)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def describe(name: str, r: dict) -> str:
    lat = r["latency_ms"]
    return (f"{name}: {r['rps']:.0f} req/s ({r['requests']} in {r['seconds']:.0f} s; statuses {r['statuses']}; "
            f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms)")


def main() -> c.Report:
    report = c.Report("requests_per_second")
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "hello").mkdir()
        identity = c.Identity(tmp)
        facts = c.prepare_data_dir(tmp / "data", identity.issuer)
        token = identity.token("alice")

        print(f"{CONNECTIONS} connections, {WARMUP_S:g} s warm-up, {DURATION_S:g} s measured; api: "
              f"shared.stack THREADS={c.THREADS}; hello: functions-framework WORKERS=1 THREADS={c.THREADS} ...",
              flush=True)
        with c.hello_function(tmp / "hello") as hello_fn:
            hello_fn.wait_200("/")
            hello = load(hello_fn.url + "/")
        report.figure("hello", hello, describe("hello-world GET /", hello))

        with c.api_function(tmp / "data", identity.issuer) as api_fn:
            api_fn.wait_200(c.API_VERSION)
            c.create_projects(api_fn.url, token, facts["users"]["alice"]["project_tier_product_id"], PROJECTS)
            api = load(api_fn.url + c.API_PROJECTS, [f"Authorization: Bearer {token}"], PROJECTS)
        report.figure("api", api, describe(f"api GET /project ({PROJECTS} projects)", api))
        identity.stop()

    non_200 = sum(v for k, v in api["statuses"].items() if k != "200")
    report.figure("api_checks", {"non_200": non_200, "checked": api["checked"], "wrong": api["check_failures"]},
                  f"api responses: {non_200} not 200; {api['checked']} sampled bodies, "
                  f"{api['check_failures']} without count == {PROJECTS}")
    for name, r in (("hello", hello), ("api", api)):
        if r["errors"]:
            print(f"  {name} load generator errors: {r['errors']}")
    ratio = api["rps"] / hello["rps"] if hello["rps"] else 0.0
    report.figure("ratio", ratio, f"api / hello: {ratio:.3f}")
    report.target("api req/s vs hello", ratio, ">=", TARGET_RATIO, "x")
    report.target("api responses correct (200, count == 100)", float(non_200 + api["check_failures"]), "<=", 0)
    report.save()
    return report


if __name__ == "__main__":
    main()
