"""Cold start: process start to the first real answer, each DM function vs a bare hello-world function.

Each round starts, in turn, as fresh processes: hello (GET /, 200), api (GET
/data-manager-api/version, 200), api (authenticated GET /data-manager-api/project, 200), and each
event function, upload, kew, pbc and monitor, with its first real CloudEvent (202; see
``_cold_events``: an event of a type it handles, with data it must process in the prepared
database). Requests are tried every 5 ms from the spawn. The DM functions run as the product serves
them, ``python -m shared.stack --target <role>`` (the project's waitress-based server); hello is the
reference, a bare hello-world under functions-framework's CLI (its gunicorn). Medians of N rounds,
each as a ratio to hello with its target. Then ``-X importtime`` of ``import main`` and of what the
first requests load.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import _cold_events as ev
import _common as c

N = int(os.environ.get("BENCH_COLD_ROUNDS", "7"))  # rounds after the warm-up round
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


FIRST_REAL = ("api_project", *ev.EVENT_FUNCTIONS)  # each first real request or event: <= 1.5x hello
LABELS = {"hello": "hello", "api_version": "api /version", "api_project": "api /project",
          **{role: f"{role} event" for role in ev.EVENT_FUNCTIONS}}


def main() -> c.Report:
    report = c.Report("cold_start")
    times = {key: [] for key in LABELS}
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "hello").mkdir()
        identity = c.Identity(tmp)
        facts = c.prepare_data_dir(tmp / "data", identity.issuer)
        token = identity.token("alice")
        auth = {"Authorization": f"Bearer {token}"}
        sink = ev.Sink()  # where the monitor sends the charges (the Broker's stand-in)

        # Ten projects so the first /project is not empty; the event functions' data, a round's worth each.
        with c.api_function(tmp / "data", identity.issuer) as api:
            api.wait_200(c.API_VERSION)
            c.create_projects(api.url, token, facts["users"]["alice"]["project_tier_product_id"], 10)
            world = ev.EventWorld(tmp / "data", facts, api.url + "/data-manager-api", token, N + 1)
        from shared.db.session import dispose_engines

        dispose_engines()  # no connection of this process stays open on the database the functions use

        print(f"cold start, {N} rounds (round 0 is a discarded warm-up) ...", flush=True)
        for i in range(N + 1):
            got = {}
            with c.hello_function(tmp / "hello") as f:
                got["hello"] = f.wait_200("/")
            with c.api_function(tmp / "data", identity.issuer) as f:
                got["api_version"] = f.wait_200(c.API_VERSION)
            with c.api_function(tmp / "data", identity.issuer) as f:
                got["api_project"] = f.wait_200(c.API_PROJECTS, auth)
            for role in ev.EVENT_FUNCTIONS:
                headers, body, _ = world.next(role)
                with c.Function(role, c.api_env(tmp / "data", identity.issuer, K_SINK=sink.url)) as f:
                    got[role] = ev.post_until_202(f, headers, body)
            if i:
                for key, value in got.items():
                    times[key].append(value)
            print(f"  round {i}: " + ", ".join(f"{LABELS[k]} {v * 1000:.0f} ms" for k, v in got.items())
                  + ("" if i else " (warm-up)"), flush=True)
        problems = world.check(sink, N + 1)
        report.figures["event_effects"] = world.stats
        print(f"  effects of the events: {world.stats}")
        if problems:
            print("  PROBLEMS: " + "; ".join(problems))
        report.figures["event_problems"] = problems
        sink.stop()

        medians = {key: c.median(values) for key, values in times.items()}
        hello = medians["hello"]
        print("medians:")
        report.figure("hello_ms", hello * 1000, f"hello-world function: {hello * 1000:.0f} ms")
        report.figure("api_version_ms", medians["api_version"] * 1000,
                      f"api GET /version: {medians['api_version'] * 1000:.0f} ms "
                      f"({medians['api_version'] / hello:.2f}x hello)")
        for key in FIRST_REAL:
            what = "api authenticated GET /project" if key == "api_project" else f"{key} first real event (202)"
            report.figure(f"{key}_ms", medians[key] * 1000,
                          f"{what}: {medians[key] * 1000:.0f} ms ({medians[key] / hello:.2f}x hello)")
            report.figure(f"{key}_ratio", medians[key] / hello, f"{LABELS[key]} / hello: {medians[key] / hello:.2f}x")
        report.figures["samples_ms"] = {k: [round(v * 1000, 1) for v in vs] for k, vs in times.items()}
        report.target("api /version cold start vs hello", medians["api_version"] / hello, "<=", TARGET_RATIO, "x")
        for key in FIRST_REAL:
            report.target(f"{LABELS[key]} cold start vs hello", medians[key] / hello, "<=", TARGET_RATIO, "x")
        report.target("event functions' work checked", len(problems), "<=", 0)

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
