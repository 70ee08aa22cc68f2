"""Cold start: process start to first HTTP 200, the api function vs a bare hello-world function.

Each round starts, in turn, hello (GET /), api (GET /data-manager-api/version) and api
(authenticated GET /data-manager-api/project) as fresh processes and polls every 5 ms. The api
runs as the product serves it, ``python -m shared.stack --target api`` (the project's
waitress-based server); hello is the reference, a bare hello-world under functions-framework's
CLI (its gunicorn). Medians of N rounds. Then ``-X importtime`` of ``import main`` and of what
the first requests load.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as c

N = 7
TARGET_RATIO = 1.5

# What ``python -m shared.stack --target api`` imports and builds before it serves (serve_function),
# then what the first requests load.
FIRST_REQUEST_SCRIPT = """
import os, sys
import functions_framework
from shared.http_server import create_server, json_errors
from shared.stack import api_allowed_methods, http_limits, refuse_without_token
import waitress.server
app = functions_framework.create_app(target="api", source="main.py", signature_type="http")
json_errors(app, api_allowed_methods)
from shared.config import get_settings
http_limits(get_settings(), 8)
client = app.test_client()
sys.stderr.write("@@ get_api\\n"); sys.stderr.flush()
import main
from functions.api.app import get_api
get_api()
sys.stderr.write("@@ first authenticated GET /project\\n"); sys.stderr.flush()
resp = client.get("/data-manager-api/project", headers={"Authorization": "Bearer " + os.environ["BENCH_TOKEN"]})
assert resp.status_code == 200, resp.get_data()
"""

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(code: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=c.ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return proc.stderr


def parse(lines):
    """(self_us, cumulative_us, depth, module) per importtime line."""
    for line in lines:
        m = LINE.match(line)
        if m:
            yield int(m[1]), int(m[2]), len(m[3]) // 2, m[4]


def top_packages(lines, n=10):
    """Self time per top-level package, largest first (ms)."""
    per = collections.Counter()
    for self_us, _, _, module in parse(lines):
        per[module.split(".")[0]] += self_us
    return [(pkg, us / 1000) for pkg, us in per.most_common(n)], sum(per.values()) / 1000


def main() -> c.Report:
    report = c.Report("cold_start")
    times = {"hello": [], "api_version": [], "api_project": []}
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "hello").mkdir()
        identity = c.Identity(tmp)
        facts = c.prepare_data_dir(tmp / "data", identity.issuer)
        token = identity.token("alice")
        auth = {"Authorization": f"Bearer {token}"}

        # Create a few projects so the first /project is not empty.
        with c.api_function(tmp / "data", identity.issuer) as api:
            api.wait_200(c.API_VERSION)
            c.create_projects(api.url, token, facts["users"]["alice"]["project_tier_product_id"], 10)

        print(f"cold start, {N} rounds (round 0 is a discarded warm-up) ...", flush=True)
        for i in range(N + 1):
            with c.hello_function(tmp / "hello") as f:
                t_hello = f.wait_200("/")
            with c.api_function(tmp / "data", identity.issuer) as f:
                t_version = f.wait_200(c.API_VERSION)
            with c.api_function(tmp / "data", identity.issuer) as f:
                t_project = f.wait_200(c.API_PROJECTS, auth)
            if i:
                times["hello"].append(t_hello)
                times["api_version"].append(t_version)
                times["api_project"].append(t_project)
            print(f"  round {i}: hello {t_hello * 1000:.0f} ms, api /version {t_version * 1000:.0f} ms, "
                  f"api /project {t_project * 1000:.0f} ms{'' if i else ' (warm-up)'}", flush=True)

        hello, version, project = (c.median(times[k]) for k in ("hello", "api_version", "api_project"))
        print("medians:")
        report.figure("hello_ms", hello * 1000, f"hello-world function: {hello * 1000:.0f} ms")
        report.figure("api_version_ms", version * 1000, f"api GET /version: {version * 1000:.0f} ms")
        report.figure("api_project_ms", project * 1000,
                      f"api authenticated GET /project: {project * 1000:.0f} ms ({project / hello:.2f}x hello)")
        report.figure("api_project_ratio", project / hello, f"api /project / hello: {project / hello:.2f}x")
        report.figures["samples_ms"] = {k: [round(v * 1000, 1) for v in vs] for k, vs in times.items()}
        report.target("api /version cold start vs hello", version / hello, "<=", TARGET_RATIO, "x")

        # Import times.
        lines = importtime("import main").splitlines()
        main_cum = next(cum for _, cum, _, mod in parse(lines) if mod == "main") / 1000
        total = sum(s for s, _, _, _ in parse(lines)) / 1000
        report.figure("import_main_ms", main_cum, f"-X importtime 'import main': main {main_cum:.1f} ms cumulative, "
                      f"{total:.1f} ms all imports (interpreter start-up included)")

        out = importtime(FIRST_REQUEST_SCRIPT, c.api_env(tmp / "data", identity.issuer, BENCH_TOKEN=token))
        sections = re.split(r"^@@ (.*)$", out, flags=re.M)  # [before, name1, body1, name2, body2]
        for name, body in zip(sections[1::2], sections[2::2]):
            top, total = top_packages(body.splitlines())
            key = "imports_" + re.sub(r"\W+", "_", name).strip("_").lower()
            report.figure(key + "_ms", total, f"imports loaded by {name}: {total:.0f} ms; top 10 packages (self time):")
            report.figures[key + "_top"] = {pkg: round(ms, 1) for pkg, ms in top}
            for pkg, ms in top:
                print(f"      {ms:7.1f} ms  {pkg}")
        identity.stop()
    report.save()
    return report


if __name__ == "__main__":
    main()
