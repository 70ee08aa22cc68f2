"""`shared.supervisor` with real child processes and a stopped clock: deaths noticed and logged,
restarts after growing pauses, a steady run forgiven, stop() ending what ignores SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import time

import psutil
import pytest

from shared.supervisor import (FIRST_BACKOFF_S, MAX_BACKOFF_S, STEADY_S, Child, StartFailed, Supervisor, backoff,
                               describe_exit)

DIES_AT_ONCE = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPS = [sys.executable, "-c", "import time; time.sleep(60)"]
# ignores SIGTERM and starts a grandchild that sleeps (as a gunicorn master starts its worker)
STUBBORN = [sys.executable, "-c",
            "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"]


def test_backoff_doubles_from_half_a_second_up_to_five():
    assert [backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff(1) == FIRST_BACKOFF_S and backoff(50) == MAX_BACKOFF_S


def test_exit_codes_are_described_with_their_signal():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "exit code -9 (SIGKILL)"
    assert describe_exit(None) == "an exit code nobody saw"


def dead(child: Child) -> None:
    child.process.wait(10)


def test_a_child_that_dies_at_once_is_restarted_after_growing_pauses(caplog):
    caplog.set_level(logging.INFO, logger="dm.supervisor")
    child = Child("quitter", DIES_AT_ONCE, ())
    supervisor = Supervisor([child]).start()
    try:
        pauses = []
        for _ in range(5):
            first = child.process
            dead(child)
            now = child.started + 0.1
            supervisor.check(now)  # noticed
            assert child.restart_at is not None and child.process is first
            pauses.append(round(child.restart_at - now, 3))
            supervisor.check(child.restart_at - 0.01)  # too early
            assert child.process is first
            supervisor.check(child.restart_at)  # restarted
            assert child.process is not first and child.restart_at is None
        assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0]
        assert child.restarts == 5
        assert "quitter (pid" in caplog.text and "exited with exit code 3" in caplog.text
        assert "restarting it in 0.5 s" in caplog.text and "quitter restarted" in caplog.text
    finally:
        supervisor.stop(timeout=2)


def test_a_child_that_ran_steadily_is_restarted_after_the_first_pause_again():
    child = Child("quitter", DIES_AT_ONCE, ())
    supervisor = Supervisor([child]).start()
    try:
        child.quick_deaths = 4  # it died at once four times before
        dead(child)
        now = child.started + STEADY_S + 1  # but this time it ran a while
        supervisor.check(now)
        assert child.restart_at == pytest.approx(now + FIRST_BACKOFF_S)
    finally:
        supervisor.stop(timeout=2)


def test_a_death_at_start_up_stops_the_start():
    supervisor = Supervisor([Child("quitter", DIES_AT_ONCE, (1,))]).start()
    with pytest.raises(StartFailed, match="quitter .* exited with exit code 3 during start-up"):
        supervisor.wait_listening(timeout=10)
    assert isinstance(StartFailed("x"), SystemExit)  # `dm run` exits with the message


def test_watching_in_the_background_restarts_a_killed_child():
    child = Child("sleeper", SLEEPS, ())
    supervisor = Supervisor([child]).start()
    supervisor.watch_in_background()
    try:
        first = child.process.pid
        child.process.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while child.process.pid == first or child.process.poll() is not None:
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.05)
    finally:
        supervisor.stop(timeout=2)
    assert child.process.poll() is not None


def test_stop_kills_what_ignores_sigterm_and_with_own_groups_what_it_started():
    child = Child("stubborn", STUBBORN, ())
    supervisor = Supervisor([child], own_groups=True).start()
    deadline = time.monotonic() + 10
    while not psutil.Process(child.pid).children():
        assert time.monotonic() < deadline, "the grandchild did not start"
        time.sleep(0.05)
    grandchild = psutil.Process(child.pid).children()[0]
    started = time.monotonic()
    supervisor.stop(timeout=0.5)
    assert time.monotonic() - started < 5
    assert child.process.returncode == -signal.SIGKILL
    grandchild.wait(5)  # killed with its group (it would sleep for a minute)


def test_no_restart_once_stopping():
    child = Child("quitter", DIES_AT_ONCE, ())
    supervisor = Supervisor([child]).start()
    dead(child)
    supervisor.stop(timeout=1)
    first = child.process
    supervisor.check(child.started + 100)
    assert child.process is first and child.restart_at is None


def test_a_child_that_cannot_be_started_again_is_tried_later(caplog, tmp_path):
    child = Child("vanishing", DIES_AT_ONCE, ())
    supervisor = Supervisor([child]).start()
    try:
        dead(child)
        supervisor.check(child.started + 0.1)
        child.command = [str(tmp_path / "no-such-program")]
        supervisor.check(child.restart_at)
        assert child.restart_at is not None  # a later try is due
        assert "vanishing could not be started again" in caplog.text
    finally:
        supervisor.stop(timeout=1)


def test_started_children_inherit_the_environment_given(tmp_path):
    out = tmp_path / "seen"
    child = Child("env", [sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(os.environ['X_SEEN'])"], ())
    supervisor = Supervisor([child], env={"X_SEEN": "yes", "PATH": "/usr/bin:/bin"}, cwd=str(tmp_path)).start()
    try:
        assert child.process.wait(10) == 0
        assert out.read_text() == "yes"
    finally:
        supervisor.stop(timeout=1)


def test_a_child_on_a_port_is_waited_for(tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = [sys.executable, "-c", "import socket, time; s = socket.socket(); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); time.sleep(0.3); "
              f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"]
    supervisor = Supervisor([Child("server", server, (port,))]).start()
    try:
        supervisor.wait_listening(timeout=10)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        supervisor.stop(timeout=1)
