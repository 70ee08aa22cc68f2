"""The local pod's own keeper: runs an instance's command and records its end itself.

The local launcher starts every instance through this script, so that the pod's end is
written down even when the process that launched it has died meanwhile (a crash of the api
or of pbc leaves its instances running, as pods outlive a node's controllers):

    python -I -S local_wrapper.py RECORD REPORT_FD GRACE_S UNSET -- COMMAND...

It starts COMMAND (searched on PATH) in its own working directory, with its own output (the
pod's log) and in a process group of its own, then writes RECORD (JSON, replaced atomically):
``pid`` (this process), ``child`` and ``started_at`` once the command runs, then ``exit_code``
(128 + the signal for a command killed by one) and ``finished_at`` when it has ended, with
``reason`` and ``message`` when it could not start (exit code 127, or 126 when not
executable). The start record is also written to the pipe REPORT_FD ("-" for none), so that
a launcher still alive learns at once whether the command runs. SIGTERM and SIGINT go on to
the command's group, and GRACE_S seconds after the first one the group gets SIGKILL (0: no
escalation here). UNSET names variables (comma-separated) this interpreter may have added to
its environment (the C locale coercion sets LC_CTYPE) that the command must not get.

Only the standard library, and little of it: this runs for every instance.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
USAGE = "usage: local_wrapper.py RECORD REPORT_FD GRACE_S UNSET -- COMMAND..."


def timestamp() -> str:
    """As the API server writes times (and `pods.timestamp`): UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_record(path: str, record: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(record, f)
    os.replace(temporary, path)


def report(fd: int | None, record: dict) -> None:
    """Tell the launcher (if it still listens) how the start went; once."""
    if fd is None:
        return
    try:
        os.write(fd, json.dumps(record).encode() + b"\n")
    except OSError:
        pass  # the launcher is gone: the record is what counts
    finally:
        os.close(fd)


def _group_signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    path, report_arg, grace_arg, unset = argv[:4]
    command = argv[5:]
    report_fd = None if report_arg == "-" else int(report_arg)
    if report_fd is not None:
        os.set_inheritable(report_fd, False)  # the command must not hold the launcher's pipe open
    grace = float(grace_arg)
    env = {k: v for k, v in os.environ.items() if k not in set(filter(None, unset.split(",")))}

    state: dict = {"child": None, "pending": None, "escalating": False}

    def forward(signum, frame):
        child = state["child"]
        if child is None:
            state["pending"] = signum  # not started yet: it will not be
            return
        _group_signal(child, signum)
        if grace > 0 and not state["escalating"]:
            state["escalating"] = True
            signal.setitimer(signal.ITIMER_REAL, grace)

    def escalate(signum, frame):
        if state["child"] is not None:
            _group_signal(state["child"], signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGALRM, escalate)

    record: dict = {"pid": os.getpid(), "child": None, "started_at": timestamp()}
    if state["pending"] is not None:  # stopped before it started
        record.update(exit_code=128 + state["pending"], finished_at=timestamp())
        write_record(path, record)
        report(report_fd, record)
        return record["exit_code"]
    try:
        # a group of its own, signals that Python ignores back to their defaults (as subprocess does)
        child = os.posix_spawnp(command[0], command, env, setpgroup=0,
                                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT))
    except OSError as exc:
        code = EXIT_CANNOT_EXECUTE if isinstance(exc, PermissionError) else EXIT_NOT_FOUND
        text = f"cannot run {command[0]!r}: {exc.strerror or exc}"
        print(text, flush=True)
        record.update(exit_code=code, finished_at=timestamp(), reason="StartError", message=text)
        write_record(path, record)
        report(report_fd, record)
        return code
    state["child"] = record["child"] = child
    write_record(path, record)
    report(report_fd, record)
    if state["pending"] is not None:
        forward(state["pending"], None)

    _, status = os.waitpid(child, 0)  # retried after a signal's handler has run (PEP 475)
    finished = timestamp()
    signal.setitimer(signal.ITIMER_REAL, 0)
    # A container's end takes everything in it along: leave no stray children behind.
    _group_signal(child, signal.SIGKILL)
    returncode = os.waitstatus_to_exitcode(status)
    record.update(exit_code=128 - returncode if returncode < 0 else returncode, finished_at=finished)
    write_record(path, record)
    return record["exit_code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
