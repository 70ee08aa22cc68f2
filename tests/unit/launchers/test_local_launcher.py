"""LocalLauncher: real processes in the project folder, reported as ApiServerSource pod events."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cloudevents.http import from_http

from shared.launchers import create_launcher
from shared.launchers.base import INSTANCE_LABEL, PURPOSE_LABEL, TASK_LABEL, LaunchError, LaunchSpec
from shared.launchers.local import DEFAULT_SOURCE, LocalLauncher

NAMESPACE = "data-manager"
PREFIX = "dev.knative.apiserver.resource."


def make_spec(command: list[str], **overrides) -> LaunchSpec:
    values = dict(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}",
                  project_id=f"project-{uuid.uuid4()}", owner="alice", image="informaticsmatters/jote:stable",
                  command=command, environment={"DM_JOB_TOKEN": "abc=1"})
    values.update(overrides)
    return LaunchSpec(**values)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left:
            break
        time.sleep(0.02)
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def events():
    return []


@pytest.fixture
def launcher(tmp_path, events, no_leftover_threads):
    launcher = create_launcher("local", projects_root=tmp_path / "projects", logs_root=tmp_path / "logs",
                               sink_url=None, namespace=NAMESPACE, on_event=events.append)
    launcher.stop_grace_s = 1.0
    yield launcher
    launcher.close(timeout=10)
    assert launcher.running() == []


def run(launcher: LocalLauncher, spec: LaunchSpec, timeout: float = 20) -> None:
    launcher.launch(spec)
    assert launcher.wait(spec.instance_id, timeout), "the pod's events did not all come"


def kinds(events) -> list[tuple[str, str]]:
    return [(e["type"][len(PREFIX):], e.data["status"]["phase"]) for e in events]


def terminated(event) -> dict:
    return event.data["status"]["containerStatuses"][0]["state"]["terminated"]


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie waiting for a reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# --- a job's life -----------------------------------------------------------------------


JOB = """
    import os, sys
    print("2026-11-23T10:55:58+00:00 # INFO -EVENT- Reading reference", flush=True)
    print("2026-11-23T10:55:59+00:00 # INFO -COST- 5.7 1", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    with open("output.txt", "w") as f:
        f.write(os.environ["DM_JOB_TOKEN"])
    with open(os.path.join(os.environ["DM_INSTANCE_DIRECTORY"], "work.txt"), "w") as f:
        f.write("scratch")
"""


def test_a_job_runs_in_its_project_and_reports_its_life(launcher, events, tmp_path):
    spec = make_spec(python(JOB))
    run(launcher, spec)

    assert kinds(events) == [("add", "Pending"), ("update", "Running"), ("update", "Succeeded"),
                             ("delete", "Succeeded")]
    project = tmp_path / "projects" / spec.project_id
    assert (project / "output.txt").read_text() == "abc=1"
    assert (project / f".{spec.instance_id}" / "work.txt").read_text() == "scratch"
    log = launcher.read_log(spec.instance_id)
    assert b"# INFO -EVENT- Reading reference\n" in log and b"# INFO -COST- 5.7 1\n" in log
    assert b"to stderr\n" in log

    pod_ids = {(e.data["metadata"]["name"], e.data["metadata"]["uid"]) for e in events}
    assert len(pod_ids) == 1 and next(iter(pod_ids))[0] == spec.instance_id
    versions = [int(e.data["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 4
    for event in events:
        pod = event.data
        assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
        assert pod["metadata"]["namespace"] == NAMESPACE and pod["metadata"]["creationTimestamp"]
        assert pod["metadata"]["labels"][PURPOSE_LABEL] == "INSTANCE"
        assert pod["metadata"]["labels"][INSTANCE_LABEL] == spec.instance_id
        assert pod["metadata"]["labels"][TASK_LABEL] == spec.task_id
        assert pod["spec"]["containers"][0]["command"] == spec.command
        assert pod["spec"]["restartPolicy"] == "Never"
        json.dumps(pod)  # plain JSON all through

    running = events[1].data["status"]
    assert running["startTime"] and running["containerStatuses"][0]["state"]["running"]["startedAt"]
    end = terminated(events[2])
    assert end["exitCode"] == 0 and end["reason"] == "Completed"
    assert end["startedAt"] <= end["finishedAt"]
    assert "deletionTimestamp" not in events[2].data["metadata"]
    assert events[3].data["metadata"]["deletionTimestamp"]
    assert launcher.running() == []


def test_the_events_are_those_of_an_apiserversource(launcher, events):
    spec = make_spec(python("pass"))
    run(launcher, spec)

    for event, action in zip(events, ["add", "update", "update", "delete"]):
        assert event["type"] == PREFIX + action
        assert event["source"] == DEFAULT_SOURCE
        assert event["subject"] == f"/apis/v1/namespaces/{NAMESPACE}/pods/{spec.instance_id}"
        assert event["specversion"] == "1.0" and event["id"] and event["time"]
        assert event["datacontenttype"] == "application/json"
        assert (event["kind"], event["name"], event["namespace"], event["apiversion"]) == (
            "Pod", spec.instance_id, NAMESPACE, "v1")
    assert len({e["id"] for e in events}) == 4


def test_the_log_reads_incrementally(launcher, tmp_path):
    spec = make_spec(python("""
        import os, time
        print("line one", flush=True)
        while not os.path.exists("go"):
            time.sleep(0.02)
        print("line two", flush=True)
    """))
    launcher.launch(spec)
    deadline = time.monotonic() + 20
    while launcher.read_log(spec.instance_id) != b"line one\n":
        assert time.monotonic() < deadline, launcher.read_log(spec.instance_id)
        time.sleep(0.02)
    offset = len(b"line one\n")
    assert launcher.read_log(spec.instance_id, offset) == b""

    (tmp_path / "projects" / spec.project_id / "go").touch()
    assert launcher.wait(spec.instance_id, 20)

    assert launcher.read_log(spec.instance_id, offset) == b"line two\n"
    assert launcher.read_log(spec.instance_id, 5) == b"one\nline two\n"
    assert launcher.read_log(spec.instance_id, 1000) == b""
    assert launcher.read_log("instance-unknown") == b""
    assert launcher.read_log("../escape") == b""


def test_a_failing_command(launcher, events):
    spec = make_spec(python("import sys; print('bad input'); sys.exit(3)"))
    run(launcher, spec)

    assert kinds(events) == [("add", "Pending"), ("update", "Running"), ("update", "Failed"), ("delete", "Failed")]
    end = terminated(events[2])
    assert end["exitCode"] == 3 and end["reason"] == "Error"
    assert end["message"] == "bad input"  # FallbackToLogsOnError: the end of the log


def test_a_missing_executable_fails_the_pod_with_127(launcher, events, tmp_path):
    spec = make_spec([str(tmp_path / "no-such-program"), "--flag"])
    run(launcher, spec)  # no exception from launch

    assert kinds(events) == [("add", "Pending"), ("update", "Failed"), ("delete", "Failed")]
    end = terminated(events[1])
    assert end["exitCode"] == 127 and end["reason"] == "StartError"
    assert "no-such-program" in end["message"]
    log = launcher.read_log(spec.instance_id)
    assert b"no-such-program" in log and b"No such file or directory" in log


def test_stopping_a_sleeping_job(launcher, events):
    spec = make_spec(python("import time; print('sleeping', flush=True); time.sleep(60)"))
    launcher.launch(spec)
    _wait_for_log(launcher, spec, b"sleeping\n")
    pid = events[1].data["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1]

    launcher.stop(spec.instance_id)
    assert launcher.wait(spec.instance_id, 20)

    assert kinds(events) == [("add", "Pending"), ("update", "Running"), ("update", "Failed"), ("delete", "Failed")]
    assert terminated(events[2])["exitCode"] == 143  # 128 + SIGTERM
    assert gone(int(pid))


def test_a_job_ignoring_sigterm_is_killed(launcher, events):
    spec = make_spec(python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stubborn", flush=True)
        time.sleep(60)
    """))
    launcher.launch(spec)
    _wait_for_log(launcher, spec, b"stubborn\n")
    started = time.monotonic()

    launcher.stop(spec.instance_id)
    launcher.stop(spec.instance_id)  # a second stop changes nothing
    assert launcher.wait(spec.instance_id, 20)

    assert time.monotonic() - started >= launcher.stop_grace_s * 0.9
    assert [e["type"][len(PREFIX):] for e in events] == ["add", "update", "update", "delete"]
    assert terminated(events[2])["exitCode"] == 137  # 128 + SIGKILL
    assert events[2].data["status"]["phase"] == "Failed"


def test_stopping_an_unknown_instance_does_nothing(launcher, events):
    launcher.stop("instance-unknown")
    assert events == []


def test_what_a_job_leaves_running_is_ended_with_it(launcher, tmp_path):
    spec = make_spec(python("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open("child.pid", "w").write(str(child.pid))
    """))
    run(launcher, spec)

    pid = int((tmp_path / "projects" / spec.project_id / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while not gone(pid):
        assert time.monotonic() < deadline, "the job's child survived it"
        time.sleep(0.02)


def test_a_debug_pod_is_kept_until_stopped(launcher, events):
    spec = make_spec(python("pass"), debug=True)
    run(launcher, spec)
    assert kinds(events) == [("add", "Pending"), ("update", "Running"), ("update", "Succeeded")]
    assert events[0].data["metadata"]["labels"]["debug"] == "yes"

    launcher.stop(spec.instance_id)
    assert launcher.wait(spec.instance_id, 10)
    assert kinds(events)[-1] == ("delete", "Succeeded")
    launcher.stop(spec.instance_id)
    assert len(events) == 4


def test_a_repeated_launch_starts_nothing_new(launcher, events, tmp_path):
    spec = make_spec(python("""
        import os, time
        with open("runs.txt", "a") as f:
            f.write("run\\n")
        while not os.path.exists("go"):
            time.sleep(0.02)
    """))
    launcher.launch(spec)
    launcher.launch(spec)
    project = tmp_path / "projects" / spec.project_id
    deadline = time.monotonic() + 20
    while not (project / "runs.txt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (project / "go").touch()
    assert launcher.wait(spec.instance_id, 20)
    assert (project / "runs.txt").read_text() == "run\n"
    assert [e["type"] for e in events].count(PREFIX + "add") == 1


def test_the_environment_is_minimal(launcher, monkeypatch, tmp_path):
    monkeypatch.setenv("DM_SECRET_OF_THE_STACK", "do not leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    spec = make_spec(python("""
        import json, os
        json.dump(dict(os.environ), open("env.json", "w"))
    """), environment={"DM_JOB_TOKEN": "abc", "DM_INSTANCE_DIRECTORY": "overridden"})
    run(launcher, spec)

    env = json.loads((tmp_path / "projects" / spec.project_id / "env.json").read_text())
    assert "DM_SECRET_OF_THE_STACK" not in env
    assert env["DM_JOB_TOKEN"] == "abc" and env["DM_INSTANCE_DIRECTORY"] == "overridden"
    assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"
    assert env["HOSTNAME"] == spec.instance_id


def test_the_working_directory_maps_into_the_project(launcher, tmp_path):
    spec = make_spec(python("import os; open('where.txt', 'w').write(os.getcwd())"),
                     working_directory="/data/sub/dir", project_directory="/data")
    run(launcher, spec)
    where = tmp_path / "projects" / spec.project_id / "sub" / "dir"
    assert (where / "where.txt").read_text() == str(where)


@pytest.mark.parametrize("field, value", [("project_id", "../elsewhere"), ("instance_id", "a/b"),
                                          ("command", [])])
def test_unusable_specs_are_refused(launcher, field, value):
    with pytest.raises(LaunchError):
        launcher.launch(make_spec(**{"command": python("pass"), field: value}))


# --- over HTTP, to a sink -----------------------------------------------------------------


class _Receiver:
    """A tiny CloudEvents sink: keeps what it is sent, fails the first ``failures`` posts with 503."""

    def __init__(self, failures: int = 0):
        self.received: list[tuple[dict, bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the base class's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(503)
                else:
                    receiver.received.append((dict(self.headers), body))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver(no_leftover_threads):
    receiver = _Receiver(failures=1)
    yield receiver
    receiver.close()


def test_events_are_posted_to_the_sink(tmp_path, receiver):
    launcher = LocalLauncher(tmp_path / "projects", tmp_path / "logs", receiver.url, NAMESPACE,
                             send_backoff_s=0.01)
    spec = make_spec(python("print('hello')"))
    try:
        run(launcher, spec)
    finally:
        launcher.close()

    assert len(receiver.received) == 4  # the first attempt got a 503 and was retried
    actions = []
    for headers, body in receiver.received:
        lower = {k.lower(): v for k, v in headers.items()}
        assert lower["ce-source"] == DEFAULT_SOURCE
        assert lower["ce-subject"] == f"/apis/v1/namespaces/{NAMESPACE}/pods/{spec.instance_id}"
        assert lower["ce-specversion"] == "1.0"
        assert (lower["ce-kind"], lower["ce-name"], lower["ce-namespace"], lower["ce-apiversion"]) == (
            "Pod", spec.instance_id, NAMESPACE, "v1")
        assert lower["content-type"] == "application/json"
        event = from_http(headers, body)
        assert event.data["metadata"]["name"] == spec.instance_id
        actions.append((lower["ce-type"], event.data["status"]["phase"]))
    assert actions == [(PREFIX + "add", "Pending"), (PREFIX + "update", "Running"),
                       (PREFIX + "update", "Succeeded"), (PREFIX + "delete", "Succeeded")]


def test_an_unreachable_sink_does_not_stop_the_job(tmp_path, no_leftover_threads):
    launcher = LocalLauncher(tmp_path / "projects", tmp_path / "logs", "http://127.0.0.1:9/", NAMESPACE,
                             send_retries=1, send_backoff_s=0.01)
    spec = make_spec(python("print('still ran')"))
    try:
        run(launcher, spec)
    finally:
        launcher.close()
    assert launcher.read_log(spec.instance_id) == b"still ran\n"


def _wait_for_log(launcher: LocalLauncher, spec: LaunchSpec, expected: bytes) -> None:
    deadline = time.monotonic() + 20
    while expected not in launcher.read_log(spec.instance_id):
        assert time.monotonic() < deadline, launcher.read_log(spec.instance_id)
        time.sleep(0.02)
