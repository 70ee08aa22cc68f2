"""Kew log parsing: the incremental EVENT/COST reader against a bare regular-expression scan.

A log of 1,200,000 lines is built in memory (about 96 MB; fixed seed): 80% ordinary lines
(print output, Python logging lines, some of them in the ``<time> # LEVEL text`` form
without a marker, tracebacks), 10% EVENT lines (most with a run of up to 199 NULs, as DmLog
writes them) and 10% COST lines (absolute and incremental, sequence numbers from 1).

Timed in the same run, best and median of N rounds after a warm-up:

- the reader: ``LogCursor.feed`` over 64 KiB chunks (sliced beforehand, as they would
  arrive from the pod log stream), ``finish``, and ``CostTracker.apply`` on every COST line;
- two bare regular-expression scans, each only finding and matching, with no other work
  (no NUL stripping, no Decimal, no de-duplication), over the log's text decoded once
  beforehand, outside the timing:
  - line by line: the text split into lines and each line matched with the two regular
    expressions of the reference (jobs.md §4.2), COST first and then EVENT;
  - ``finditer``: one combined, multi-line form of the two patterns over the whole text.

The ratio target is taken against the faster of the two scans in the run (the output names
it); the ratio to each is reported.

Both results are checked against what the generator wrote (event and cost counts, final
total). Targets: ≥ 100,000 lines/s, and at most 3× the bare scan's time.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from decimal import Decimal

import _common as c

from shared.jobs.log_lines import REFERENCE_COST_RE, REFERENCE_EVENT_RE, CostTracker, LogCursor

LINES = 1_200_000
CHUNK = 64 * 1024
ROUNDS = 5
TARGET_LINES_PER_S = 100_000
TARGET_RATIO = 3.0

# The reference patterns, multi-line, with [ \t] where \s could cross a line break.
COMBINED_RE = re.compile(
    r"^[ \t]*(?P<timestamp>\S+) # (?P<level>[A-Za-z]+(?: \d+)?|\d+) "
    r"(?:-COST- (?P<cost>\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?) (?P<sqn>\d+)[ \t\r]*$"
    r"|-EVENT- [ \t\x00]*(?P<message>.*?)[ \t\r]*$)", re.M)

ORDINARY = (
    "{day} {hms},{ms:03d} INFO screen: Batch {i}: 250 molecules, {h} hits",
    "{day} {hms},{ms:03d} # INFO Batch {i} written to output/screen-{i}.sdf",
    "{day} {hms},{ms:03d} # DEBUG args=Namespace(input='candidates.smi', threshold=0.7)",
    "[{hms}] Explicit valence for atom # {h} N, 4, is greater than permitted",
    "Processing molecule {i} of 1200000 (CC(=O)Oc1ccccc1C(=O)O) similarity 0.{h:04d}",
    "  File \"/code/screen.py\", line {h}, in <module>",
    "WARNING: not removing hydrogen atom without neighbors",
)


def build_log(lines: int, seed: int = 7) -> tuple[bytes, dict]:
    """The log's bytes and what it holds (line, event and cost counts, final total)."""
    import datetime as dt

    rnd = random.Random(seed)
    t0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)
    out, events, costs, total, sqn = [], 0, 0, Decimal(0), 0
    for i in range(lines):
        if i % 50 == 0:  # the time moves on a second every 50 lines
            t = t0 + dt.timedelta(seconds=i // 50)
            stamp, day, hms = t.isoformat(), t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")
        r = rnd.random()
        if r < 0.10:
            nul = "\x00" * rnd.randrange(0, 200)
            level = "WARNING" if rnd.random() < 0.05 else "INFO"
            out.append(f"{stamp} # {level} -EVENT- {nul}Processed {i} records, {rnd.randrange(9)} error(s)")
            events += 1
        elif r < 0.20:
            sqn += 1
            if rnd.random() < 0.9:
                cost = f"+{rnd.randrange(1, 1000) / 100}"
                total += Decimal(cost)
            else:
                cost = str(total.quantize(Decimal("0.01")) + rnd.randrange(0, 50))
                total = Decimal(cost)
            out.append(f"{stamp} # INFO -COST- {cost} {sqn}")
            costs += 1
        else:
            template = rnd.choice(ORDINARY)
            out.append(template.format(day=day, hms=hms, ms=rnd.randrange(1000), i=i, h=rnd.randrange(10000)))
    data = ("\n".join(out) + "\n").encode()
    return data, {"lines": lines, "events": events, "costs": costs, "total": total}


def run_reader(chunks: list[bytes]) -> tuple[int, int, Decimal]:
    cursor, tracker = LogCursor(), CostTracker()
    events = costs = 0
    for chunk in chunks:
        for record in cursor.feed(chunk):
            if record.kind == "COST":
                if tracker.apply(record) is not None:
                    costs += 1
            else:
                events += 1
    for record in cursor.finish():
        if record.kind == "COST":
            costs += tracker.apply(record) is not None
        else:
            events += 1
    return events, costs, tracker.total


def run_line_scan(text: str) -> tuple[int, int]:
    cost_match, event_match = REFERENCE_COST_RE.match, REFERENCE_EVENT_RE.match
    events = costs = 0
    for line in text.split("\n"):
        if cost_match(line):
            costs += 1
        elif event_match(line):
            events += 1
    return events, costs


def run_finditer(text: str) -> tuple[int, int]:
    events = costs = 0
    for m in COMBINED_RE.finditer(text):
        if m["sqn"] is not None:
            costs += 1
        else:
            events += 1
    return events, costs


def timed(fn, *args, rounds: int = ROUNDS):
    """(results, seconds of each round); one untimed warm-up round first."""
    result = fn(*args)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return result, times


def main() -> c.Report:
    report = c.Report("kew_log_parsing")
    print(f"building a log of {LINES:,} lines ...", flush=True)
    data, truth = build_log(LINES)
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    text = data.decode()
    report.figure("log_bytes", len(data), f"log: {len(data) / 1e6:.1f} MB, {LINES:,} lines, {truth['events']:,} EVENT "
                  f"and {truth['costs']:,} COST lines, {len(chunks):,} chunks of {CHUNK // 1024} KiB")

    print(f"timing, {ROUNDS} rounds each after a warm-up ...", flush=True)
    (events, costs, total), reader = timed(run_reader, chunks)
    if (events, costs, total) != (truth["events"], truth["costs"], truth["total"]):
        raise SystemExit(f"reader found {events} events, {costs} costs, total {total}; expected {truth}")
    (s_events, s_costs), scan = timed(run_line_scan, text)
    if (s_events, s_costs) != (truth["events"], truth["costs"]):
        raise SystemExit(f"line scan found {s_events} events, {s_costs} costs; expected {truth}")
    (f_events, f_costs), finditer = timed(run_finditer, text)
    if (f_events, f_costs) != (truth["events"], truth["costs"]):
        raise SystemExit(f"finditer found {f_events} events, {f_costs} costs; expected {truth}")

    def figures(key: str, label: str, times: list[float]) -> float:
        best, med = min(times), statistics.median(times)
        report.figure(f"{key}_s", {"best": best, "median": med, "rounds": times},
                      f"{label}: best {best:.3f} s, median {med:.3f} s, {LINES / med:,.0f} lines/s")
        report.figures[f"{key}_lines_per_s"] = LINES / med
        return med

    print("results (lines/s from the median):")
    r = figures("reader", "reader (LogCursor 64 KiB chunks + parsing + CostTracker)", reader)
    s = figures("line_scan", "bare scan, line by line (split, re.match COST then EVENT)", scan)
    f = figures("finditer", "bare scan, finditer of one combined multi-line pattern", finditer)
    report.figure("ratio_to_line_scan", r / s, f"reader / line-by-line scan: {r / s:.2f}x the time")
    report.figure("ratio_to_finditer", r / f, f"reader / finditer scan: {r / f:.2f}x the time")
    baseline, base = min(("finditer", f), ("line_scan", s), key=lambda kv: kv[1])
    report.figure("baseline", baseline, f"the faster bare scan, used for the target: {baseline}")
    report.figure("final_total", str(total), f"final cost total: {total}")
    report.target("reader lines/s", LINES / r, ">=", TARGET_LINES_PER_S, " lines/s")
    report.target("reader time vs the faster bare regex scan", r / base, "<=", TARGET_RATIO, "x")
    report.save()
    return report


if __name__ == "__main__":
    main()
