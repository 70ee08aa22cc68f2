"""Instances as local processes, reported as the pod events a cluster would send.

Each instance runs its argv (no shell) in its project folder, in a process group of its own;
stdout and stderr go to ``<logs_root>/<instance-id>.log``, which stands for the pod log. The
launcher then reports the "pod" exactly as an ApiServerSource in Resource mode reports a real
one (knative.md §3), as ``PodChange`` events (``shared.events.contracts``): added (Pending),
updated (Running, then Succeeded or Failed) and deleted (once it has ended, unless
debugging), each carrying the whole Pod as JSON, built by `shared.launchers.pods`.

The command runs under `shared.launchers.local_wrapper`, which records the pod's start and end
itself (``<instance-id>.run.json`` beside the log), so that a pod outlives the process that
launched it as it would a crashed controller: `pod` then still reports its real end, read
from that record. While the launcher lives, its watcher reports each pod as it goes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable

from shared.storage import paths

from . import pods
from .base import LaunchError, LogRead
from .local_pods import DEFAULT_SOURCE, log_tail, pod_event, read_record, recorded_pod

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from .base import LaunchSpec

log = logging.getLogger("dm.launcher.local")

INHERITED_VARIABLES = ("PATH", "HOME", "LANG")
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
POLL_S = 0.1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The sender retries on these answers, as Knative senders do (knative.md §1.4).
_RETRIED_STATUSES = {404, 408, 409, 429}
WRAPPER = str(Path(__file__).with_name("local_wrapper.py"))
# Past the wrapper's own SIGKILL (at the grace's end), the launcher kills what is left.
STOP_BACKSTOP_S = 2.0


def _check_name(what: str, value: str) -> str:
    if not _SAFE_NAME.match(value or ""):
        raise LaunchError(f"The {what} {value!r} cannot name a local folder or file")
    return value


def _exit_code(returncode: int) -> int:
    """A container's exit code: 128 + the signal for a process killed by one (SIGTERM: 143)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(eq=False)
class _Run:
    spec: "LaunchSpec"
    uid: str
    created: str
    log_path: Path
    proc: subprocess.Popen | None = None  # the wrapper, leader of its own session
    report_fd: int | None = None  # the wrapper's word on the start
    child: int | None = None  # the command's pid, leader of its own process group
    started_at: str | None = None
    start_error: tuple[int, str] | None = None  # (exit code, text) when the command could not start
    last_pod: dict[str, Any] | None = None
    stop_requested: bool = False
    kill_at: float | None = None  # monotonic time after which the group gets SIGKILL
    ended: bool = False
    deleted: bool = False
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalLauncher:
    """`Launcher` running each instance as a local process in its project folder.

    Pod events go to ``sink_url`` (the Broker) in CloudEvents binary mode, with a few retries
    and then dropped, as the ApiServerSource does; every event is also handed to ``on_event``
    when one is given (for tests, or when there is no sink).
    """

    def __init__(self, projects_root: Path, logs_root: Path, sink_url: str | None, namespace: str = "data-manager",
                 *, on_event: Callable[["CloudEvent"], None] | None = None, stop_grace_s: float = 10.0,
                 source: str = DEFAULT_SOURCE, send_retries: int = 5, send_backoff_s: float = 0.05,
                 send_timeout_s: float = 5.0) -> None:
        self.projects_root = Path(projects_root)
        self.logs_root = Path(logs_root)
        self.sink_url = sink_url or None
        self.namespace = namespace
        self.on_event = on_event
        self.stop_grace_s = stop_grace_s
        self.source = source
        self.send_retries = send_retries
        self.send_backoff_s = send_backoff_s
        self.send_timeout_s = send_timeout_s
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # --- the Launcher protocol ---------------------------------------------------------

    def launch(self, spec: "LaunchSpec") -> None:
        """Start the process; the pod events follow from a watcher thread.

        Launching an instance that is still known does nothing (like a 409 from the API
        server). A command that cannot start is not an error here: its pod fails with exit
        code 127 (126 when it is not executable) and the reason in its log.
        """
        instance_id = _check_name("instance id", spec.instance_id)
        project_dir = self.projects_root / _check_name("project id", spec.project_id)
        if not spec.command:
            raise LaunchError(f"Instance {instance_id} has no command to run")
        with self._lock:
            self._forget_finished()
            if instance_id in self._runs and not self._runs[instance_id].deleted:
                return
            self._confine(spec, project_dir)
            if not spec.is_job:  # many applications share this host: each gets a port of its own
                spec = dataclasses.replace(spec, port=_free_port())
            self.logs_root.mkdir(parents=True, exist_ok=True)
            (project_dir / pods.instance_directory(instance_id)).mkdir(parents=True, exist_ok=True)
            run = _Run(spec=spec, uid=str(uuid.uuid4()), created=pods.timestamp(),
                       log_path=self.logs_root / f"{instance_id}.log")
            _remove(self._record_path(instance_id))  # an earlier pod's record is not this one's
            self._pod(run, "Pending")  # kept before anything runs: whoever looks later finds the pod
            self._start(run, project_dir)
            self._runs[instance_id] = run
            self._spawn(run, self._watch)

    def stop(self, instance_id: str) -> None:
        """SIGTERM to the process group, SIGKILL after ``stop_grace_s``; returns at once.

        The pod then ends Failed (exit code 143, or 137 once killed; Succeeded only if the
        process handles SIGTERM and exits 0) and is deleted, debug or not. An ended debug pod
        is deleted; an unknown instance is left alone.
        """
        with self._lock:
            run = self._runs.get(instance_id)
        if run is None:
            return
        with run.lock:
            if run.stop_requested or run.deleted:
                return
            run.stop_requested = True
            if not run.ended:
                if run.proc is not None:
                    run.kill_at = time.monotonic() + self.stop_grace_s + STOP_BACKSTOP_S
                    _signal_group(run.proc, signal.SIGTERM)  # the wrapper passes it on, then kills
                return  # the watcher reports the end and the deletion
            run.deleted = True
        self._spawn(run, self._delete)  # a kept (debug) pod that has already ended

    def read_log(self, instance_id: str, offset: int = 0) -> bytes:
        """The log file from byte ``offset`` on; b"" when there is none (yet)."""
        if not _SAFE_NAME.match(instance_id or ""):
            return b""
        try:
            with open(self.logs_root / f"{instance_id}.log", "rb") as f:
                f.seek(max(offset, 0))
                return f.read()
        except FileNotFoundError:
            return b""

    def read_log_since(self, instance_id: str, position: str = "") -> LogRead:
        """The log file past ``position``, a byte offset: a file can seek, so only new bytes are read."""
        offset = int(position or 0)
        data = self.read_log(instance_id, offset)
        return LogRead(data, str(offset + data.rfind(b"\n") + 1))

    def pod(self, instance_id: str) -> dict[str, Any] | None:
        """The pod as last reported; after a restart of the process that launched it, from the
        state file it keeps beside the log, brought up to date by the wrapper's record: a pod
        that ended meanwhile is reported ended, with its exit code. A pod not yet ended whose
        processes are gone unrecorded (the wrapper itself was killed) was lost: None."""
        with self._lock:
            run = self._runs.get(instance_id)
        if run is not None and run.last_pod is not None:
            return run.last_pod
        if not _SAFE_NAME.match(instance_id or ""):
            return None
        try:
            pod = json.loads((self.logs_root / f"{instance_id}.pod.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if (pod.get("status") or {}).get("phase") in pods.TERMINAL_PHASES:
            return pod
        record = read_record(self._record_path(instance_id))
        if record is not None:
            if record.get("exit_code") is not None:
                return recorded_pod(pod, record, self.logs_root / f"{instance_id}.log")
            pids = [pid for pid in (record.get("pid"), record.get("child")) if isinstance(pid, int)]
            if not any(_alive(pid) for pid in pids):
                return None
            if record.get("child") is not None and (pod.get("status") or {}).get("phase") == "Pending":
                return recorded_pod(pod, record, None)  # running: its launcher died before saying so
            return pod
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        container_id = statuses[0].get("containerID") or ""
        pid = int(container_id[len("local://"):]) if container_id[len("local://"):].isdigit() else None
        return pod if pid is not None and _alive(pid) else None

    def pods(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        found = {instance_id: self.pod(instance_id) for instance_id in instance_ids}  # no API server: each is cheap
        return {instance_id: pod for instance_id, pod in found.items() if pod is not None}

    # --- for the local stack and tests -----------------------------------------------

    def wait(self, instance_id: str, timeout: float | None = None) -> bool:
        """Wait until the instance's events so far have all been sent; False on timeout."""
        with self._lock:
            run = self._runs.get(instance_id)
        if run is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(run.threads):
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                return False
        return True

    def running(self) -> list[str]:
        """The instances whose process has not ended."""
        with self._lock:
            return [i for i, run in self._runs.items() if not run.ended]

    def close(self, timeout: float = 30.0) -> None:
        """Stop every instance and wait for their last events (the local stack's shutdown)."""
        with self._lock:
            ids = list(self._runs)
        for instance_id in ids:
            self.stop(instance_id)
        deadline = time.monotonic() + timeout
        for instance_id in ids:
            self.wait(instance_id, max(deadline - time.monotonic(), 0))

    # --- the process ---------------------------------------------------------------

    def _environment(self, spec: "LaunchSpec") -> dict[str, str]:
        env = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
        env["HOSTNAME"] = spec.instance_id  # as in a pod
        env.update(pods.environment(spec))
        return env

    def _working_directory(self, spec: "LaunchSpec", project_dir: Path) -> Path:
        """The container's workingDir mapped into the project folder (the folder itself if outside)."""
        working, mount = PurePosixPath(spec.working_directory or "/"), PurePosixPath(spec.project_directory or "/")
        try:
            relative = working.relative_to(mount)
        except ValueError:
            return project_dir
        if ".." in relative.parts:
            return project_dir
        return project_dir.joinpath(*relative.parts)

    def _confine(self, spec: "LaunchSpec", project_dir: Path) -> None:
        """The process works on the host: its folders and the paths it is given must not lead out
        of the project folder, through '..' or a symbolic link (checked at launch, looked at again)."""
        cwd = self._working_directory(spec, project_dir)
        named = {"working directory": cwd,
                 "instance directory": project_dir / pods.instance_directory(spec.instance_id)}
        for relative in spec.paths:
            try:
                clean = paths.project_relative(relative, f"The path {relative!r}")
            except paths.PathRefused as exc:
                raise LaunchError(exc.message) from None
            named[f"path {relative!r}"] = cwd / clean if clean else cwd
        for what, path in named.items():
            if not paths.inside(project_dir, path):
                raise LaunchError(f"The {what} of {spec.instance_id} leads outside its project folder")

    def _record_path(self, instance_id: str) -> Path:
        return self.logs_root / f"{instance_id}.run.json"

    def _start(self, run: _Run, project_dir: Path) -> None:
        spec = run.spec
        with open(run.log_path, "wb") as log_file:  # a new pod starts a new log
            try:
                cwd = self._working_directory(spec, project_dir)
                cwd.mkdir(parents=True, exist_ok=True)
                env = self._environment(spec)
                # -I -S: a quick start, and nothing of the job's environment steers the wrapper
                wrapper = [sys.executable, "-I", "-S", WRAPPER, str(self._record_path(spec.instance_id))]
                unset = "" if "LC_CTYPE" in env else "LC_CTYPE"  # what the C locale coercion adds
                read_fd, write_fd = os.pipe()
                try:
                    run.proc = subprocess.Popen(
                        [*wrapper, str(write_fd), repr(self.stop_grace_s), unset, "--", *pods.command(spec)],
                        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                        start_new_session=True, close_fds=True, pass_fds=(write_fd,))
                except BaseException:
                    os.close(read_fd)
                    raise
                finally:
                    os.close(write_fd)
                run.report_fd = read_fd
                run.started_at = pods.timestamp()
            except OSError as exc:
                code = EXIT_CANNOT_EXECUTE if isinstance(exc, PermissionError) else EXIT_NOT_FOUND
                text = f"cannot run {spec.command[0]!r}: {exc.strerror or exc}"
                log_file.write(text.encode() + b"\n")
                run.start_error = (code, text)

    def _wait_for_start(self, run: _Run) -> dict[str, Any] | None:
        """The wrapper's start record, as soon as it has one; None if it died first."""
        assert run.report_fd is not None
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = os.read(run.report_fd, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(run.report_fd)
            run.report_fd = None
        try:
            record = json.loads(data)
        except ValueError:
            return None
        run.child = record.get("child")
        return record

    def _wait_for_exit(self, run: _Run) -> int:
        assert run.proc is not None
        while True:
            try:
                return run.proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if run.kill_at is not None and time.monotonic() >= run.kill_at:
                    run.kill_at = None
                    _kill_group(run.child)
                    _signal_group(run.proc, signal.SIGKILL)

    def _watch(self, run: _Run) -> None:
        """The pod's life: add, Running, the end, and the deletion (a thread per instance)."""
        self._emit(run, "add", run.last_pod or self._pod(run, "Pending"))
        start = self._wait_for_start(run) if run.start_error is None else None
        if run.start_error is not None:
            exit_code, text = run.start_error
            end: dict[str, Any] = dict(exit_code=exit_code, reason="StartError", message=text,
                                       started_at=run.created, finished_at=pods.timestamp())
        elif start is not None and start.get("child") is None and start.get("exit_code") is not None:
            self._wait_for_exit(run)  # the command never ran (it could not start, or was stopped first)
            exit_code = start["exit_code"]
            end = dict(exit_code=exit_code, reason=start.get("reason"), message=start.get("message"),
                       started_at=run.created, finished_at=start.get("finished_at") or pods.timestamp())
            if exit_code != 0 and not end["message"]:
                end["message"] = log_tail(run.log_path)
        else:
            self._emit(run, "update", self._pod(run, "Running"))
            returncode = self._wait_for_exit(run)
            record = read_record(self._record_path(run.spec.instance_id)) or {}
            if record.get("exit_code") is not None and record.get("pid") == run.proc.pid:
                exit_code, finished = int(record["exit_code"]), record.get("finished_at") or pods.timestamp()
            else:  # the wrapper itself was killed: so is what it ran, as a container's end takes it all along
                _kill_group(run.child)
                exit_code, finished = _exit_code(returncode), pods.timestamp()
            _signal_group(run.proc, signal.SIGKILL)
            end = dict(exit_code=exit_code, started_at=run.started_at, finished_at=finished)
            if exit_code != 0:
                end["message"] = log_tail(run.log_path)
        # As the kubelet does for restartPolicy Never: the exit code decides, even after a stop
        # (a process killed by SIGTERM exits 143, so a stopped job normally ends Failed).
        phase = "Succeeded" if exit_code == 0 else "Failed"
        self._emit(run, "update", self._pod(run, phase, **end))
        with run.lock:
            run.ended = True
            delete = not run.spec.debug or run.stop_requested
            if delete:
                run.deleted = True
        if delete:
            self._delete(run)

    def _delete(self, run: _Run) -> None:
        pod = dict(run.last_pod or self._pod(run, "Pending"))
        pod["metadata"] = dict(pod["metadata"], resourceVersion=pods.next_resource_version(),
                               deletionTimestamp=pods.timestamp(), deletionGracePeriodSeconds=0)
        self._emit(run, "delete", pod)

    def _forget_finished(self) -> None:
        """Drop deleted pods whose events are all sent (called with ``_lock`` held)."""
        for instance_id, run in list(self._runs.items()):
            if run.deleted and not any(t.is_alive() for t in run.threads):
                del self._runs[instance_id]

    def _spawn(self, run: _Run, target: Callable[[_Run], None]) -> None:
        thread = threading.Thread(target=target, args=(run,), name=f"dm-local-pod-{run.spec.instance_id}",
                                  daemon=True)
        run.threads.append(thread)
        thread.start()

    # --- the events ------------------------------------------------------------------

    def _pod(self, run: _Run, phase: str, **status: Any) -> dict[str, Any]:
        if phase != "Pending" and "started_at" not in status:
            status["started_at"] = run.started_at
        pid = run.proc.pid if run.proc is not None else None
        pod = pods.pod_object(run.spec, phase, namespace=self.namespace, uid=run.uid, created=run.created,
                              node_name="localhost", host_ip="127.0.0.1" if phase != "Pending" else None,
                              container_id=f"local://{pid}" if pid and phase != "Pending" else None, **status)
        run.last_pod = pod
        self._keep(run.spec.instance_id, pod)
        return pod

    def _keep(self, instance_id: str, pod: dict[str, Any]) -> None:
        """The pod's last state beside its log, for whoever looks after this process is gone."""
        path = self.logs_root / f"{instance_id}.pod.json"
        try:
            self.logs_root.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(json.dumps(pod))
            os.replace(temporary, path)
        except OSError:
            log.warning("Could not keep the state of pod %s", instance_id, exc_info=True)

    def _emit(self, run: _Run, action: str, pod: dict[str, Any]) -> None:
        event = pod_event(action, pod, self.source)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - an observer must not stop the pod's reporting
                log.exception("The pod event observer failed on %s", event["type"])
        if self.sink_url:
            self._send(event)
        elif self.on_event is None:
            log.warning("No sink for %s of pod %s: dropped", event["type"], run.spec.instance_id)

    def _send(self, event: "CloudEvent") -> None:
        """POST in binary mode; a few quick retries, then log and drop (as ApiServerSource does)."""
        from shared.events import wire

        headers, body = wire.to_http(wire.from_attributes(event.get_attributes(), event.data))
        assert self.sink_url is not None
        problem = "not sent"
        for attempt in range(self.send_retries + 1):
            if attempt:
                time.sleep(self.send_backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.sink_url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.send_timeout_s) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                exc.close()
                problem = f"HTTP {exc.code}"
                if exc.code not in _RETRIED_STATUSES and exc.code < 500:
                    break
            except (OSError, urllib.error.URLError) as exc:
                problem = str(exc)
        log.error("Could not send %s for %s to %s (%s): dropped", event["type"], event["subject"], self.sink_url,
                  problem)


def _free_port() -> int:
    """A port free now on the loopback interface (the application binds it soon after)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _kill_group(pgid: int | None) -> None:
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, sig)  # the session leader's pid is the group id
    except (ProcessLookupError, PermissionError):
        pass
