"""``Launcher.pod``: what reconciliation sees of a pod, also from a process that did not launch it."""

import os
import signal
import time

from shared.launchers import create_launcher
from tests.unit.launchers.test_local_launcher import NAMESPACE, events, launcher, make_spec, no_leftover_threads, python, run  # noqa: F401


def other_process_view(tmp_path):
    """A launcher as another process (the monitor) would make it: same folders, no runs of its own."""
    return create_launcher("local", projects_root=tmp_path / "projects", logs_root=tmp_path / "logs",
                           sink_url=None, namespace=NAMESPACE, on_event=lambda e: None)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_an_ended_pod_is_seen_by_another_process(launcher, tmp_path):  # noqa: F811
    spec = make_spec(python("raise SystemExit(3)"))
    run(launcher, spec)
    assert launcher.pod(spec.instance_id)["status"]["phase"] == "Failed"
    seen = other_process_view(tmp_path).pod(spec.instance_id)
    assert seen["status"]["phase"] == "Failed"
    assert seen["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert other_process_view(tmp_path).pod("instance-unknown") is None
    assert other_process_view(tmp_path).pod("../etc") is None


def test_a_running_pod_whose_process_dies_unseen_is_lost(launcher, tmp_path):  # noqa: F811
    spec = make_spec(python("import time; time.sleep(60)"))
    launcher.launch(spec)
    assert wait_for(lambda: (launcher.pod(spec.instance_id) or {}).get("status", {}).get("phase") == "Running")
    view = other_process_view(tmp_path)
    running = view.pod(spec.instance_id)
    assert running["status"]["phase"] == "Running"
    # the launching process's watcher is gone (as after a crash): only the state file is left
    state = tmp_path / "logs" / f"{spec.instance_id}.pod.json"
    kept = state.read_text()
    pid = int(running["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    os.killpg(pid, signal.SIGKILL)
    assert launcher.wait(spec.instance_id, 10)
    state.write_text(kept)  # as the crashed launcher left it: Running
    assert wait_for(lambda: view.pod(spec.instance_id) is None)
