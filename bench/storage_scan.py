"""Storage scan: measuring a project folder of 100,000 files, against ``du -sb`` on the same tree.

The monitor's storage-charges job measures each project with ``Storage.usage`` (a streaming
walk of the local store). A tree of 100,000 small files in 1,000 folders (fixed seed, sizes
0–4 KiB) is built in a temporary folder; then, alternately over N rounds after a warm-up,
``LocalStorage.usage`` and ``du -sb`` (GNU coreutils: apparent sizes in bytes) time the same
tree with a warm page cache. Both must give the same byte count (``du -sb`` counts the
folders' own sizes too, so those are subtracted, measured once beforehand).

Memory: the peak RSS growth of this process during a scan (psutil, sampled every 5 ms in a
thread), to show that it does not grow with the number of files.

Targets: the scan at most 2× the time of ``du -sb``; peak memory growth under 20 MiB.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import _common as c

from shared.storage import create_storage

FILES = 100_000
FOLDERS = 1_000
ROUNDS = 5
TARGET_RATIO = 2.0
TARGET_MEMORY_MIB = 20


def build(root: Path) -> int:
    rng = random.Random(7)
    total = 0
    project = root / "projects" / "project-bench"
    for f in range(FOLDERS):
        folder = project / f"d{f:04d}"
        folder.mkdir(parents=True)
        for n in range(FILES // FOLDERS):
            size = rng.randrange(4096)
            (folder / f"f{n:03d}.txt").write_bytes(b"x" * size)
            total += size
    return total


def peak_rss_growth(work) -> tuple[object, int]:
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        stop.set()
        thread.join()
    return result, peak[0] - base


def main() -> c.Report:
    report = c.Report("storage_scan")
    if shutil.which("du") is None:
        raise SystemExit("du is not on this machine")
    with tempfile.TemporaryDirectory(prefix="dm-bench-scan-") as tmp:
        root = Path(tmp)
        print(f"building {FILES:,} files in {FOLDERS:,} folders ...", flush=True)
        expected = build(root)
        project = root / "projects" / "project-bench"
        folders_bytes = sum(os.lstat(d).st_size for d in [project, *project.iterdir()])
        storage = create_storage(str(root), None)

        def scan() -> int:
            return storage.usage("projects/project-bench")

        def du() -> int:
            out = subprocess.run(["du", "-sb", str(project)], check=True, capture_output=True, text=True).stdout
            return int(out.split()[0]) - folders_bytes

        assert scan() == expected and du() == expected, (scan(), du(), expected)  # also the warm-up
        scans, dus = [], []
        for _ in range(ROUNDS):
            for fn, times in ((scan, scans), (du, dus)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        _, growth = peak_rss_growth(scan)
    s, d = statistics.median(scans), statistics.median(dus)
    report.figure("bytes", expected, f"tree: {FILES:,} files, {expected:,} bytes; both measures agree")
    report.figure("scan_s", {"median": s, "rounds": scans}, f"Storage.usage: median {s:.3f} s ({FILES / s:,.0f} files/s)")
    report.figure("du_s", {"median": d, "rounds": dus}, f"du -sb: median {d:.3f} s")
    report.figure("memory_growth_bytes", growth, f"peak RSS growth during a scan: {growth / 2**20:.1f} MiB")
    report.target("scan time vs du -sb", s / d, "<=", TARGET_RATIO, "x")
    report.target("peak memory growth during a scan", growth / 2**20, "<", TARGET_MEMORY_MIB, " MiB")
    report.save()
    return report


if __name__ == "__main__":
    main()
