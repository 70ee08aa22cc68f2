"""What the benchmarks find on the machine: a PostgreSQL server to use, and the memory a function's
processes hold while a benchmark runs."""

from __future__ import annotations

import os
import threading

POSTGRES_ADMIN_URLS = ("postgresql+pg8000://postgres@127.0.0.1:5432/test",
                       "postgresql+pg8000://root@127.0.0.1:5432/test")


def postgres_admin_url() -> tuple[str | None, list[str]]:
    """The first PostgreSQL admin URL that answers (``DM_TEST_POSTGRES_URL`` if set, as for the test
    suite), and why the others did not."""
    import sqlalchemy as sa

    candidates = ([os.environ["DM_TEST_POSTGRES_URL"]] if os.environ.get("DM_TEST_POSTGRES_URL")
                  else POSTGRES_ADMIN_URLS)
    reasons = []
    for url in candidates:
        engine = sa.create_engine(url, connect_args={"timeout": 3})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return url, reasons
        except Exception as exc:  # noqa: BLE001 - any failure means "not this one"
            reasons.append(f"{url.split('://')[1]}: {type(exc).__name__}: {exc}"[:300])
        finally:
            engine.dispose()
    return None, reasons


class RssSampler:
    """The summed RSS of a function's process tree, sampled every ``interval`` s in a thread while
    the block runs; ``peak`` is the largest seen (from the block's start), ``samples`` how many."""

    def __init__(self, function, interval: float = 0.005):  # noqa: ANN001 - a _common.Function
        self.function, self.interval = function, interval
        self.peak = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for p in self.function.process_tree():
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a process that just ended
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
