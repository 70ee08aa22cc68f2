"""Child processes kept running, as a cluster keeps its Services' pods running (the local stack).

A `Supervisor` starts each `Child`, waits until it listens on its ports, and then, while it is
watched, notices one that dies, logs its name and exit code, and starts it again on the same
ports: after half a second the first time, twice as long after each further death that came
soon after its start, never more than `MAX_BACKOFF_S`; a child that ran `STEADY_S` before it died
starts again after the first pause. `stop` ends them all: SIGTERM, then SIGKILL once the time
given is up.

With ``own_groups`` each child leads a process group of its own, so everything it started (a
gunicorn master's workers, a supervisor's children) is killed with it when it dies or hangs, and
a terminal's Ctrl-C reaches the supervising process alone, which then stops the children itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

log = logging.getLogger("dm.supervisor")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
STEADY_S = 10.0  # a child that ran this long before it died is not counted as dying at once
POLL_S = 0.2  # how often the children are looked at


class StartFailed(SystemExit):
    """A child exited, or did not listen in time, while the supervisor started: nothing runs."""


def backoff(quick_deaths: int) -> float:
    """The pause before a restart after ``quick_deaths`` deaths in a row, each soon after a start."""
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** max(0, quick_deaths - 1))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "an exit code nobody saw"
    if code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code} (signal {-code})"
    return f"exit code {code}"


@dataclass(eq=False)
class Child:
    """One supervised process: its name, what runs it and the ports it listens on."""

    name: str
    command: Sequence[str]
    ports: tuple[int, ...]
    process: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None  # set while it waits out its backoff
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    """Start, watch, restart and stop a set of child processes.

    ``exit_codes`` is False where something else may reap the children first (a gunicorn master
    reaps every child of its process): a death whose code was taken is reported without it.
    """

    def __init__(self, children: Sequence[Child], *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, own_groups: bool = False, exit_codes: bool = True):
        self.children = list(children)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.own_groups = own_groups
        self.exit_codes = exit_codes
        self._lock = threading.Lock()  # spawning and stopping never overlap
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- starting ------------------------------------------------------------------------

    def start(self) -> "Supervisor":
        for child in self.children:
            self._spawn(child)
        return self

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(list(child.command), env=self.env, cwd=self.cwd,
                                         process_group=0 if self.own_groups else None)
        child.started = time.monotonic()

    def wait_listening(self, timeout: float = 30.0, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Return once every child listens on its ports; raise `StartFailed` if one exits first, or
        if one does not listen within ``timeout``."""
        deadline = time.monotonic() + timeout
        for child in self.children:
            for port in child.ports:
                while not cancelled():
                    code = child.process.poll()
                    if code is not None:
                        raise StartFailed(f"{child.name} (port {port}) exited with {describe_exit(code)} "
                                          "during start-up")
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                            break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise StartFailed(f"{child.name}: nothing listens on port {port} after "
                                              f"{timeout:.0f} s") from None
                        time.sleep(0.05)

    # --- watching ------------------------------------------------------------------------

    def check(self, now: float | None = None) -> None:
        """Look at every child once: notice the dead, restart those whose pause is over."""
        with self._lock:
            if self._stopping.is_set():
                return
            now = time.monotonic() if now is None else now
            for child in self.children:
                if child.restart_at is None:
                    self._notice(child, now)
                elif now >= child.restart_at:
                    self._restart(child, now)

    def _notice(self, child: Child, now: float) -> None:
        code = child.process.poll()
        if code is None:
            return
        self._kill_group(child)  # whatever it started dies with it (a gunicorn worker holds its port)
        ran = now - child.started
        child.quick_deaths = child.quick_deaths + 1 if ran < STEADY_S else 1
        pause = backoff(child.quick_deaths)
        child.restart_at = now + pause
        # Popen reports 0 for a child another waitpid() took: then the code is not known
        how = f"with {describe_exit(code)}" if self.exit_codes or code else "(its exit code was reaped elsewhere)"
        log.error("%s (pid %s, port%s %s) exited %s after %.1f s; restarting it in %.1f s", child.name, child.pid,
                  "s" if len(child.ports) > 1 else "", ", ".join(map(str, child.ports)), how, ran, pause)

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        try:
            self._spawn(child)
        except OSError as exc:
            child.started = now
            child.quick_deaths += 1
            child.restart_at = now + backoff(child.quick_deaths)
            log.error("%s could not be started again: %s", child.name, exc)
            return
        child.restarts += 1
        log.warning("%s restarted (pid %s, restart %d)", child.name, child.pid, child.restarts)

    def watch(self, stop: threading.Event | None = None) -> None:
        """Check the children every `POLL_S` until ``stop`` (or `stop()`) is set."""
        while not self._stopping.is_set() and not (stop is not None and stop.is_set()):
            self.check()
            (stop or self._stopping).wait(POLL_S)

    def watch_in_background(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.watch, name="dm-supervisor", daemon=True)
        self._thread.start()
        return self._thread

    # --- stopping ------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every child, wait up to ``timeout`` for them all, SIGKILL whatever is left."""
        with self._lock:
            self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) did not stop within %.0f s: killed", child.name, child.pid, timeout)
                self._kill_group(child)
                child.process.kill()
                child.process.wait(5)

    def _signal(self, child: Child, sig: int) -> None:
        try:
            child.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def _kill_group(self, child: Child) -> None:
        # A dead leader's group lives on while a member does, so its id is not reused meanwhile.
        if self.own_groups and child.pid is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
