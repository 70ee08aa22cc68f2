"""The stack's processes: the monitor on DM_PORT+5 and its schedule ticks through the Broker; the
api process, a function process, the Broker or the supervisor of them all, killed with SIGKILL, is
started again on its port within seconds, and the stack still stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import sqlite3
import time

import psutil
import pytest
import requests

from tests.stack.conftest import start

pytestmark = pytest.mark.stack

FUNCTIONS = {"dm-upload": ("upload", 1), "dm-kew": ("kew", 3), "dm-pbc": ("pbc", 4), "dm-monitor": ("monitor", 5)}
BROKER_OFFSET = 2
RESTART_WITHIN_S = 10.0


def finished_jobs(stack) -> dict[str, str]:
    """``monitor_leases``: job name -> when it last finished (jobs that never finished left out)."""
    with sqlite3.connect(stack.data_dir / "dm.sqlite3", timeout=10) as db:
        rows = db.execute("SELECT job, last_finished FROM monitor_leases WHERE last_finished IS NOT NULL")
        return dict(rows.fetchall())


def send_tick(stack, job: str) -> None:
    """A schedule tick as a PingSource sends it, to the stack's Broker."""
    from shared.events import outbox, wire
    from shared.events.contracts import ScheduleTick

    outbox.post(stack.facts["broker_url"], wire.event_of(ScheduleTick(job=job)))


def processes(stack) -> dict[str, psutil.Process]:
    """The stack's supervised processes by name: "api" (the api, /auth and the ledger), "dm functions",
    each function (``python -m shared.stack --target <t>``, one process each) and "broker"."""
    found: dict[str, psutil.Process] = {}
    for proc in psutil.Process(stack.process.pid).children(recursive=True):
        try:
            command = proc.cmdline()
            parent = proc.parent()
            parent_command = parent.cmdline() if parent else []
        except psutil.NoSuchProcess:
            continue
        if command[1:4] == ["-m", "shared.cli", "functions"]:
            found["dm functions"] = proc
        elif command[1:4] == ["-m", "shared.cli", "broker"]:
            found["broker"] = proc
        elif command[1:4] == ["-m", "shared.stack", "--local-stack"]:
            found["api"] = proc
        elif command[1:3] == ["-m", "shared.stack"] and parent_command[1:4] == ["-m", "shared.cli", "functions"]:
            target = command[command.index("--target") + 1]
            found.update((name, proc) for name, (t, _) in FUNCTIONS.items() if t == target)
    return found


def answers(stack, name: str) -> bool:
    """Whether the function (or the Broker) answers on its port."""
    try:
        if name == "api":
            return requests.get(f"{stack.api_url}/version", timeout=2).ok
        if name == "broker":
            return requests.get(f"http://127.0.0.1:{stack.port + BROKER_OFFSET}/healthz", timeout=2).ok
        return requests.get(f"http://127.0.0.1:{stack.port + FUNCTIONS[name][1]}/", timeout=2).status_code == 405
    except requests.RequestException:
        return False


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead; its parent has not collected it yet
    except psutil.NoSuchProcess:
        return True


def wait_for(condition, timeout: float, what: str, stack):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s\n{stack.output()[-8000:]}")
        time.sleep(0.1)


def settled(stack) -> dict[str, psutil.Process]:
    """The stack's processes once all are there and every function and the Broker answers (an
    earlier test may have left one restarting)."""
    names = {*FUNCTIONS, "broker", "dm functions", "api"}
    wait_for(lambda: set(processes(stack)) == names and all(answers(stack, n) for n in names - {"dm functions"}),
             2 * RESTART_WITHIN_S, "every process running and answering", stack)
    return processes(stack)


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory):
    """A stack whose timer ticks once an hour, so every tick its monitor sees is one a test sent."""
    base = tmp_path_factory.mktemp("quiet-stack")
    running = start(base / "data", base / "logs", DM_HOUSEKEEPING_EVERY_S="3600")
    yield running
    code = running.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{running.output()}"


# --- the monitor ---------------------------------------------------------------------------------


def test_the_monitor_listens_on_the_fifth_port_after_the_api(stack):
    assert stack.facts["monitor_url"] == f"http://127.0.0.1:{stack.port + 5}"
    resp = requests.get(stack.facts["monitor_url"], timeout=10)
    assert resp.status_code == 405, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]


def test_the_timer_runs_every_job_through_the_broker(stack):
    """DM_HOUSEKEEPING_EVERY_S=1: each job's tick comes every second and its run is recorded."""
    from shared.services.monitor import JOBS

    wait_for(lambda: set(JOBS) <= set(finished_jobs(stack)), 15, "every monitor job finished", stack)


def test_a_tick_through_the_broker_runs_its_job(quiet_stack):
    assert "purge-projects" not in finished_jobs(quiet_stack)  # the timer has not ticked it
    send_tick(quiet_stack, "purge-projects")
    wait_for(lambda: "purge-projects" in finished_jobs(quiet_stack), 10, "purge-projects finished", quiet_stack)


# --- supervision -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", *FUNCTIONS, "broker"])
def test_a_killed_process_is_restarted_on_its_port(quiet_stack, name):
    before = settled(quiet_stack)
    killed = before[name].pid
    before[name].send_signal(signal.SIGKILL)

    wait_for(lambda: (p := processes(quiet_stack).get(name)) is not None and p.pid != killed,
             RESTART_WITHIN_S, f"{name} started again", quiet_stack)
    wait_for(lambda: answers(quiet_stack, name), RESTART_WITHIN_S, f"{name} answering again", quiet_stack)
    log = quiet_stack.stderr
    assert f"{name} (pid {killed}, port " in log and "exit code -9 (SIGKILL)" in log, log[-4000:]
    assert quiet_stack.process.poll() is None  # `dm run` goes on
    assert processes(quiet_stack)["dm functions"].pid == before["dm functions"].pid
    if name != "api":
        assert processes(quiet_stack)["api"].pid == before["api"].pid


def test_ticks_reach_the_monitor_after_the_restarts(quiet_stack):
    """The restarted Broker routes a tick to the restarted monitor."""
    settled(quiet_stack)
    previous = finished_jobs(quiet_stack).get("remove-stale-uploads")
    send_tick(quiet_stack, "remove-stale-uploads")
    wait_for(lambda: finished_jobs(quiet_stack).get("remove-stale-uploads", previous) != previous, 10,
             "remove-stale-uploads finished", quiet_stack)


def test_a_killed_supervisor_is_restarted_with_all_its_functions(quiet_stack):
    before = settled(quiet_stack)
    before["dm functions"].send_signal(signal.SIGKILL)

    restarted = set(before) - {"api"}  # the api is not under `dm functions`

    def all_new():
        now = processes(quiet_stack)
        return set(now) == set(before) and all(now[n].pid != before[n].pid for n in restarted)

    wait_for(all_new, RESTART_WITHIN_S, "dm functions and every function started again", quiet_stack)
    for name in [*FUNCTIONS, "broker"]:
        wait_for(lambda: answers(quiet_stack, name), RESTART_WITHIN_S, f"{name} answering again", quiet_stack)
        assert gone(before[name])  # killed with its supervisor, not left holding its port
    assert f"dm functions (pid {before['dm functions'].pid}, ports " in quiet_stack.stderr
    assert quiet_stack.process.poll() is None
    assert processes(quiet_stack)["api"].pid == before["api"].pid


def test_a_function_that_keeps_dying_does_not_stop_ctrl_c(start_stack, tmp_path):
    """Kill kew as soon as it is back, three times over: each restart waits longer (0.5, 1, 2 s), and
    Ctrl-C during the last pause still stops everything, with exit code 0."""
    stack = start_stack(tmp_path / "data", DM_HOUSEKEEPING_EVERY_S="3600")
    settled(stack)
    killed = None
    for _ in range(3):
        proc = wait_for(lambda: (p := processes(stack).get("dm-kew")) is not None and p.pid != killed and p,
                        RESTART_WITHIN_S, "dm-kew back", stack)
        killed = proc.pid
        proc.send_signal(signal.SIGKILL)
        wait_for(lambda: gone(proc), 5, "dm-kew gone", stack)
    wait_for(lambda: "dm-kew" in stack.stderr.rpartition("restarting it in 2.0 s")[0].rpartition("\n")[2],
             5, "dm-kew's third restart waits 2 s", stack)
    everything = [psutil.Process(stack.process.pid), *processes(stack).values()]
    code = stack.stop()
    assert code == 0, f"the stack exited with code {code} after SIGINT\n{stack.output()}"
    wait_for(lambda: all(gone(p) for p in everything), 10, "every process of the stack gone", stack)


def test_nothing_is_left_running_when_dm_run_itself_is_killed(start_stack, tmp_path):
    """SIGKILL gives `dm run` no time to stop anything: the api process and `dm functions` notice
    their parent has gone and stop, `dm functions` stopping the functions and the Broker."""
    from shared.stack import check_ports_free, stack_ports

    stack = start_stack(tmp_path / "data", DM_HOUSEKEEPING_EVERY_S="3600")
    assert set(settled(stack)) == {"api", "dm functions", *FUNCTIONS, "broker"}
    everything = psutil.Process(stack.process.pid).children(recursive=True)
    assert len(everything) == 7  # the api, dm functions, each function and the Broker: nothing else
    stack.process.kill()
    stack.process.wait(5)
    wait_for(lambda: all(gone(p) for p in everything), 15, "every process of the stack gone", stack)
    check_ports_free(stack_ports(stack.port))
