"""The local pod's wrapper, and what `LocalLauncher.pod` reports once the launching process is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.launchers.base import INSTANCE_LABEL
from shared.launchers.local import WRAPPER
from tests.unit.launchers.test_launcher_pod import other_process_view, wait_for
from tests.unit.launchers.test_local_launcher import (  # noqa: F401
    events, launcher, make_spec, no_leftover_threads, python, run)

ROOT = Path(__file__).resolve().parents[3]


def wrap(tmp_path, command, grace="0", unset="", **popen):
    record = tmp_path / "pod.run.json"
    proc = subprocess.Popen([sys.executable, "-I", "-S", WRAPPER, str(record), "-", grace, unset, "--", *command],
                            cwd=tmp_path, stdout=open(tmp_path / "pod.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, **popen)
    return proc, record


def read(record: Path) -> dict:
    return json.loads(record.read_text())


def started(record: Path) -> dict:
    assert wait_for(lambda: record.exists() and read(record).get("child"))
    return read(record)


# --- the wrapper alone ---------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [
    ("open('out.txt', 'w').write('here'); print('done')", 0),
    ("raise SystemExit(3)", 3),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 143),
])
def test_the_wrapper_records_the_exit_code(tmp_path, code, expected):
    proc, record = wrap(tmp_path, python(code))
    assert proc.wait(10) == expected
    kept = read(record)
    assert kept["exit_code"] == expected and kept["pid"] == proc.pid
    assert kept["child"] and kept["child"] != proc.pid
    assert kept["started_at"] <= kept["finished_at"] and kept["finished_at"].endswith("Z")
    assert not (tmp_path / "pod.run.json.tmp").exists()
    if expected == 0:
        assert (tmp_path / "out.txt").read_text() == "here"  # in the wrapper's folder
        assert (tmp_path / "pod.log").read_bytes() == b"done\n"  # its output is the log


def test_a_command_that_cannot_start(tmp_path):
    proc, record = wrap(tmp_path, [str(tmp_path / "no-such-program")])
    assert proc.wait(10) == 127
    kept = read(record)
    assert (kept["exit_code"], kept["reason"], kept["child"]) == (127, "StartError", None)
    assert "no-such-program" in kept["message"] and b"No such file or directory" in (tmp_path / "pod.log").read_bytes()


def test_sigterm_to_the_wrapper_reaches_the_command_and_its_children(tmp_path):
    proc, record = wrap(tmp_path, python("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open("grandchild.pid", "w").write(str(child.pid))
        time.sleep(60)
    """))
    started(record)
    assert wait_for(lambda: (tmp_path / "grandchild.pid").exists() and (tmp_path / "grandchild.pid").read_text())
    os.kill(proc.pid, signal.SIGTERM)  # the wrapper alone: it passes it on
    assert proc.wait(10) == 143
    assert read(record)["exit_code"] == 143
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert wait_for(lambda: _gone(grandchild), 5)


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    proc, record = wrap(tmp_path, python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stubborn", flush=True)
        time.sleep(60)
    """), grace="0.5")
    started(record)
    assert wait_for(lambda: b"stubborn" in (tmp_path / "pod.log").read_bytes())
    begun = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 137
    assert time.monotonic() - begun >= 0.45
    assert read(record)["exit_code"] == 137


def test_what_the_interpreter_adds_to_the_environment_is_taken_out(tmp_path):
    env = {"PATH": os.environ["PATH"], "DM_JOB_TOKEN": "abc"}  # no locale: Python coerces LC_CTYPE
    proc, _ = wrap(tmp_path, ["env"], unset="LC_CTYPE", env=env)  # not Python: it would coerce again itself
    assert proc.wait(10) == 0
    assert sorted((tmp_path / "pod.log").read_text().splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


def test_the_wrapper_starts_quickly(tmp_path):
    begun = time.monotonic()
    proc, _ = wrap(tmp_path, ["true"])
    assert proc.wait(10) == 0
    assert time.monotonic() - begun < 1.0  # about a bare interpreter's start: nothing of the project is imported


# --- pod() after the launching process died --------------------------------------------------

LAUNCHING = """
import sys, time
from pathlib import Path
from shared.launchers.base import LaunchSpec
from shared.launchers.local import LocalLauncher

root, instance_id, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
launcher = LocalLauncher(root / "projects", root / "logs", None, "data-manager", on_event=lambda e: None)
launcher.launch(LaunchSpec(instance_id=instance_id, task_id="task-1", project_id="project-1", owner="alice",
                           image="informaticsmatters/jote:stable", command=command))
while (launcher.pod(instance_id) or {}).get("status", {}).get("phase") != "Running":
    time.sleep(0.01)
print("running", flush=True)
time.sleep(60)
"""


def launched_by_a_process_that_dies(tmp_path, code: str) -> tuple[str, int]:
    """An instance started by a launcher in another process, which is then SIGKILLed while the
    instance runs (waiting for a file named go); (instance id, the wrapper's pid)."""
    instance_id = f"instance-{os.urandom(4).hex()}"
    script = f"import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.02)\n{textwrap.dedent(code)}"
    launching = subprocess.Popen([sys.executable, "-c", LAUNCHING, str(tmp_path), instance_id,
                                  sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert launching.stdout.readline() == b"running\n"
    finally:
        launching.kill()
        launching.wait()
        launching.stdout.close()
    pod = other_process_view(tmp_path).pod(instance_id)
    assert pod["status"]["phase"] == "Running"
    return instance_id, int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])


def ended(view, instance_id: str) -> dict:
    assert wait_for(lambda: (view.pod(instance_id) or {}).get("status", {}).get("phase") in ("Succeeded", "Failed"))
    return view.pod(instance_id)


@pytest.mark.parametrize(("code", "phase", "exit_code", "reason"), [
    ("print('fine')", "Succeeded", 0, "Completed"),
    ("print('bad input'); raise SystemExit(3)", "Failed", 3, "Error"),
    ("import os, signal; print('killed', flush=True); os.kill(os.getpid(), signal.SIGKILL)", "Failed", 137, "Error"),
])
def test_a_pod_reports_its_end_after_its_launcher_died(tmp_path, code, phase, exit_code, reason):
    instance_id, wrapper = launched_by_a_process_that_dies(tmp_path, code)
    (tmp_path / "projects" / "project-1" / "go").touch()
    view = other_process_view(tmp_path)  # as the monitor sees it: a launcher with no runs of its own
    pod = ended(view, instance_id)
    assert wait_for(lambda: _gone(wrapper), 5)
    assert pod["status"]["phase"] == phase
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (exit_code, reason)
    assert terminated["startedAt"] <= terminated["finishedAt"]
    assert pod["metadata"]["labels"][INSTANCE_LABEL] == instance_id  # what kew and reconciliation go by
    assert pod["metadata"]["name"] == instance_id and "deletionTimestamp" not in pod["metadata"]
    if exit_code:
        assert terminated["message"] in ("bad input", "killed")  # the end of the log, as the watcher sends
    found = view.pods([instance_id, "instance-unknown"])
    assert list(found) == [instance_id] and found[instance_id]["status"]["phase"] == phase


def test_a_pod_stopped_through_its_wrapper_after_its_launcher_died(tmp_path):
    instance_id, wrapper = launched_by_a_process_that_dies(tmp_path, "import time; time.sleep(60)")
    os.killpg(wrapper, signal.SIGTERM)  # what stop() sends: the wrapper passes it on to the command
    pod = ended(other_process_view(tmp_path), instance_id)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["exitCode"]) == ("Failed", 143)


def test_a_wrapper_killed_with_its_launcher_loses_the_pod(tmp_path):
    instance_id, wrapper = launched_by_a_process_that_dies(tmp_path, "pass")
    child = read(tmp_path / "logs" / f"{instance_id}.run.json")["child"]
    os.killpg(wrapper, signal.SIGKILL)
    os.killpg(child, signal.SIGKILL)
    assert wait_for(lambda: other_process_view(tmp_path).pod(instance_id) is None)


def test_a_pod_still_pending_in_its_state_is_running_by_the_record(tmp_path):
    """The launcher died between starting the wrapper and writing Running: the record tells."""
    instance_id, wrapper = launched_by_a_process_that_dies(tmp_path, "pass")
    state = tmp_path / "logs" / f"{instance_id}.pod.json"
    pod = json.loads(state.read_text())
    pod["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
    state.write_text(json.dumps(pod))
    seen = other_process_view(tmp_path).pod(instance_id)
    assert seen["status"]["phase"] == "Running"
    assert seen["status"]["containerStatuses"][0]["containerID"] == f"local://{wrapper}"
    (tmp_path / "projects" / "project-1" / "go").touch()
    assert ended(other_process_view(tmp_path), instance_id)["status"]["phase"] == "Succeeded"


# --- with the launcher alive: the watcher reports, from the wrapper's record -----------------


def test_the_watcher_reports_the_recorded_end_once(launcher, events, tmp_path):  # noqa: F811
    spec = make_spec(python("raise SystemExit(5)"))
    run(launcher, spec)
    ends = [e for e in events if e.data["status"]["phase"] == "Failed" and e["type"].endswith(".update")]
    assert len(ends) == 1
    assert ends[0].data["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 5
    record = read(tmp_path / "logs" / f"{spec.instance_id}.run.json")
    assert record["exit_code"] == 5
    assert other_process_view(tmp_path).pod(spec.instance_id)["status"]["phase"] == "Failed"


def test_stop_goes_through_the_wrapper(launcher, events, tmp_path):  # noqa: F811
    spec = make_spec(python("import time; print('sleeping', flush=True); time.sleep(60)"))
    launcher.launch(spec)
    log = tmp_path / "logs" / f"{spec.instance_id}.log"
    assert wait_for(lambda: log.exists() and b"sleeping" in log.read_bytes())
    child = read(tmp_path / "logs" / f"{spec.instance_id}.run.json")["child"]
    launcher.stop(spec.instance_id)
    assert launcher.wait(spec.instance_id, 20)
    assert read(tmp_path / "logs" / f"{spec.instance_id}.run.json")["exit_code"] == 143
    assert events[2].data["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    assert _gone(child)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
