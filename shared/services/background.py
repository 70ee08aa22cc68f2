"""Run a housekeeping job in this process after the current response, at most one at a time."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("dm.background")
_lock = threading.Lock()
_running: set[str] = set()
_again: set[str] = set()


def after_response(services, job: str) -> threading.Thread | None:
    """Start ``job`` in a thread; if it is already running, run it once more when it ends."""
    with _lock:
        if job in _running:
            _again.add(job)
            return None
        _running.add(job)
    thread = threading.Thread(target=_loop, args=(services, job), name=f"dm-{job}", daemon=True)
    thread.start()
    return thread


def _loop(services, job: str) -> None:
    from shared.services import housekeeping

    while True:
        try:
            housekeeping.run(job, services.engine, services.storage, services.settings)
        except Exception:  # the timer or the monitor will try again
            log.exception("Background job %s failed", job)
        with _lock:
            if job not in _again:
                _running.discard(job)
                return
            _again.discard(job)


def wait_idle(timeout: float = 10.0) -> bool:
    """For tests: wait until no background job runs."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _lock:
            if not _running:
                return True
        time.sleep(0.01)
    return False
