"""EVENT/COST log lines: parsing, the incremental cursor and cost tracking."""

from __future__ import annotations

import json
import random
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from shared.jobs.log_lines import (
    MAX_LINE_BYTES,
    REFERENCE_COST_RE,
    REFERENCE_EVENT_RE,
    CostLine,
    CostTracker,
    EventLine,
    LogCursor,
    parse_line,
    read_log,
)

SAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "logs"
EXPECTED = sorted(SAMPLES.glob("*.expected.json")) if SAMPLES.is_dir() else []
needs_samples = pytest.mark.skipif(not EXPECTED, reason=f"the sample job logs are not there ({SAMPLES})")
TS = "2026-11-23T10:56:03+00:00"


def event(message: str, level: str = "INFO", ts: str = TS) -> bytes:
    return f"{ts} # {level} -EVENT- {message}\n".encode()


def cost(text: str, sqn: int | str, ts: str = TS) -> bytes:
    return f"{ts} # INFO -COST- {text} {sqn}\n".encode()


def strip_end(records):
    return [r._replace(end=None) for r in records]


def feed_chunks(data: bytes, sizes, cursor: LogCursor | None = None):
    """Feed ``data`` in chunks of the given sizes (cycled); records and the cursor."""
    cursor = cursor or LogCursor()
    out, i, sizes = [], 0, list(sizes)
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += cursor.feed(data[i:i + n])
        i, k = i + n, k + 1
    return out + cursor.finish(), cursor


def random_sizes(seed: int, top: int = 300) -> list[int]:
    rnd = random.Random(seed)
    return [rnd.randint(1, top) for _ in range(1000)]


def as_expected(record) -> dict:
    if isinstance(record, EventLine):
        return {"type": "EVENT", "level": record.level, "message": record.message}
    return {"type": "COST", "cost": record.cost_text, "sqn": record.sqn, "incremental": record.incremental}


# --- the sample logs ------------------------------------------------------------------


def load_sample(expected_file: Path) -> tuple[bytes, dict]:
    expected = json.loads(expected_file.read_text())
    return (expected_file.parent / expected["log"]).read_bytes(), expected


def check_against(records, expected: dict) -> None:
    assert [as_expected(r) for r in records] == expected["records_in_order"]
    assert sum(isinstance(r, EventLine) for r in records) == expected["event_count"]
    assert sum(isinstance(r, CostLine) for r in records) == expected["cost_count"]
    tracker = CostTracker()
    charges = tracker.apply_all(records)
    assert tracker.total == Decimal(expected["final_cost"])
    assert sum(charge for _, charge in charges) == Decimal(expected["final_cost"])
    for record in records:
        assert "\x00" not in getattr(record, "message", "")


@needs_samples
@pytest.mark.parametrize("expected_file", EXPECTED, ids=lambda p: p.name)
def test_sample_logs_fed_whole(expected_file):
    data, expected = load_sample(expected_file)
    records = read_log(data)
    check_against(records, expected)
    assert records[-1].end <= len(data)
    # Each record's end is just past its own line.
    for r in records:
        assert data[r.end - 1:r.end] == b"\n"
        assert parse_line(data[:r.end].rsplit(b"\n", 2)[-2]) == r._replace(end=None)


@needs_samples
def test_sample_totals():
    totals = {}
    for expected_file in EXPECTED:
        data, expected = load_sample(expected_file)
        tracker = CostTracker()
        tracker.apply_all(read_log(data))
        totals[expected["log"]] = tracker.total
    assert totals.get("sucos-like-success.log") == Decimal("336")
    assert totals.get("screen-like-failure.log") == Decimal("8.25001")


@needs_samples
@pytest.mark.parametrize("expected_file", EXPECTED, ids=lambda p: p.name)
@pytest.mark.parametrize("sizes", [[1], [2], [7], *(random_sizes(seed) for seed in range(5))],
                         ids=["1", "2", "7", *(f"random{s}" for s in range(5))])
def test_sample_logs_fed_in_chunks(expected_file, sizes):
    data, expected = load_sample(expected_file)
    records, cursor = feed_chunks(data, sizes)
    check_against(records, expected)
    assert records == read_log(data)  # the same ends too
    assert cursor.offset == len(data) and cursor.pending == b""


@needs_samples
@pytest.mark.parametrize("expected_file", EXPECTED, ids=lambda p: p.name)
def test_sample_logs_with_crlf_and_kubelet_timestamps(expected_file):
    data, expected = load_sample(expected_file)
    check_against(read_log(data.replace(b"\n", b"\r\n")), expected)
    stamped = b"".join(b"2026-11-23T10:56:03.123456789Z " + line for line in data.splitlines(keepends=True))
    check_against(read_log(stamped, kubelet_timestamps=True), expected)
    records, _ = feed_chunks(stamped, random_sizes(11), LogCursor(kubelet_timestamps=True))
    check_against(records, expected)


@needs_samples
@pytest.mark.parametrize("expected_file", EXPECTED, ids=lambda p: p.name)
def test_sample_logs_match_the_reference_expressions(expected_file):
    data, _ = load_sample(expected_file)
    for raw in data.split(b"\n"):
        assert parse_line(raw) == reference_parse(raw.decode("utf-8", "replace"))


# --- parse_line -------------------------------------------------------------------------


def reference_parse(text: str):
    """§4.2 as written: COST first, then EVENT; NULs removed from the message, then stripped."""
    m = REFERENCE_COST_RE.match(text)
    if m:
        return CostLine(m["timestamp"], m["level"], m["cost"], Decimal(m["cost"]), m["cost"].startswith("+"),
                        int(m["sqn"]))
    m = REFERENCE_EVENT_RE.match(text)
    if m:
        return EventLine(m["timestamp"], m["level"], m["message"].replace("\x00", "").strip())
    return None


def test_event_lines():
    assert parse_line(event("Processed 100 records")) == EventLine(TS, "INFO", "Processed 100 records")
    assert parse_line(event("\x00" * 300 + "Processed 200 records")).message == "Processed 200 records"
    assert parse_line(event(" \x00 \x00 two\x00 NULs inside\x00 \x00")).message == "two NULs inside"
    assert parse_line(event("Careful   ", level="WARNING")) == EventLine(TS, "WARNING", "Careful")
    assert parse_line(event("x", level="Level 25")).level == "Level 25"
    assert parse_line(event("x", level="20")).level == "20"
    assert parse_line(event("(blank)")).message == "(blank)"
    assert parse_line(event("")) == EventLine(TS, "INFO", "")
    assert parse_line(event("has a -COST- 5 1 in it")).message == "has a -COST- 5 1 in it"
    assert parse_line(event("ends with CRLF").replace(b"\n", b"\r\n")).message == "ends with CRLF"
    assert parse_line("  " + event("leading blanks").decode()).message == "leading blanks"
    line = event("str and bytes agree \x00")
    assert parse_line(line) == parse_line(line.decode()) == parse_line(bytearray(line)) == \
        parse_line(memoryview(line))


def test_cost_lines():
    assert parse_line(cost("336", 1)) == CostLine(TS, "INFO", "336", Decimal(336), False, 1)
    for text, value, incremental in [("5.7", "5.7", False), ("+0.5", "0.5", True), ("+1e-05", "0.00001", True),
                                     ("1E+3", "1000", False), (".5", "0.5", False), ("5.", "5", False),
                                     ("0", "0", False), ("+0", "0", True), ("2.50e2", "250", False)]:
        line = parse_line(cost(text, 9))
        assert (line.cost_text, line.cost, line.incremental, line.sqn) == (text, Decimal(value), incremental, 9)
        assert isinstance(line.cost, Decimal)
    assert parse_line(cost("+2.5", 3).replace(b"\n", b"  \r\n")).sqn == 3
    assert parse_line(cost("5", "000123")).sqn == 123


@pytest.mark.parametrize("line", [
    "",
    "Done.",
    "2026-11-23 10:56:03,541 # INFO Batch 1: 250 molecules, 3 hits",  # DM-like format, no marker
    "2026-11-23 10:56:03,541 # INFO -EVENT- a space in the time",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5",  # no sequence number
    "2026-11-23T10:56:03+00:00 # INFO -COST- -5 1",  # negative
    "2026-11-23T10:56:03+00:00 # INFO -COST- -0.5 2",
    "2026-11-23T10:56:03+00:00 # INFO -COST- five 3",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 1.2.3 4",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5 -1",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5 1.5",
    "2026-11-23T10:56:03+00:00 # INFO -COST- NaN 1",
    "2026-11-23T10:56:03+00:00 # INFO -COST- Infinity 1",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 0x10 1",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5 1 extra",
    "2026-11-23T10:56:03+00:00 # INFO -COST- 1e999999999 1",  # beyond 1e30
    "2026-11-23T10:56:03+00:00 # INFO -COST- 1e-31 1",
    "2026-11-23T10:56:03+00:00 # INFO -COST- " + "9" * 41 + " 1",  # cost text too long
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5 " + "9" * 19,  # sequence number too long
    "2026-11-23T10:56:03+00:00 # INFO -COST- 5 " + "9" * 5000,  # beyond int()'s digit limit
    "2026-11-23T10:56:03+00:00 INFO -EVENT- no hash",
    "2026-11-23T10:56:03+00:00 # INFO -EVENT-no space",
    "2026-11-23T10:56:03+00:00 #  INFO -EVENT- two spaces",
    "2026-11-23T10:56:03+00:00 # INF0 -EVENT- digit in the level",
    "# INFO -EVENT- no timestamp",
    "\x00\x01\x02\xff binary T- noise -EVENT- ",
])
def test_ordinary_and_malformed_lines(line):
    assert parse_line(line) is None
    assert parse_line(line.encode("utf-8", "surrogateescape")) is None


def test_invalid_utf8_is_replaced_never_raised():
    line = parse_line(event("caf\xe9").replace("caf\xe9".encode(), b"caf\xe9\xff\xfe"))
    assert line.message == "caf\ufffd\ufffd\ufffd"
    assert parse_line(cost("5", 1).replace(b"5", b"5\xff")) is None
    assert parse_line(b"\xff\xfe\xfd # INFO -EVENT- odd timestamp").timestamp == "\ufffd\ufffd\ufffd"


def test_kubelet_timestamps():
    stamped = b"2026-11-23T10:56:03.000000001Z " + event("hello")
    assert parse_line(stamped, kubelet_timestamps=True) == EventLine(TS, "INFO", "hello")
    assert parse_line(stamped) is None
    assert parse_line(b"2026-11-23T10:56:03.000000001Z", kubelet_timestamps=True) is None
    assert parse_line(stamped.decode(), kubelet_timestamps=True).message == "hello"


def test_multi_line_strings_follow_the_reference():
    head = TS + " # INFO -EVENT- "
    for text in [head + "msg\n", head + "msg  \n \n", head + "\n\n msg", head + "msg\nmore", head + "msg\n\x00",
                 head + "\x00\n\x00msg\x00 \n", head + "msg\r\n", TS + " # INFO -COST- 5 1\n",
                 TS + " # INFO -COST- 5 1\nx"]:
        assert parse_line(text) == reference_parse(text), repr(text)


def test_agrees_with_the_reference_expressions_on_random_lines():
    rnd = random.Random(1234)
    parts = [TS, "2026-11-23 10:56:03,541", "", " ", "  ", "\t", "\x00", "\x00\x00", "#", " # ", "INFO", "Level 25",
             "20", "WARNING", "-EVENT-", "-COST-", " -EVENT- ", " -COST- ", "5", "+2.5", "1e-05", ".5", "-3", "x",
             "1", "42", "\r", "\u00a0", "\u2028", "\x1c", "é", "\ufffd", "T- ", "msg with words", "\n"]
    structured = [TS, " # ", "INFO", " -COST- ", "+2.5", " ", "7"]
    for i in range(20000):
        if i % 2:
            pieces = list(structured)
            pieces[rnd.randrange(len(pieces))] = rnd.choice(parts)
            pieces.insert(rnd.randrange(len(pieces) + 1), rnd.choice(parts))
            if rnd.random() < 0.5:
                pieces[3] = " -EVENT- "
        else:
            pieces = [rnd.choice(parts) for _ in range(rnd.randrange(1, 10))]
        text = "".join(pieces)
        assert parse_line(text) == reference_parse(text), repr(text)


def test_event_with_long_inner_whitespace_is_linear():
    line = event("a" + " " * (MAX_LINE_BYTES - 100) + "b")
    started = time.perf_counter()
    assert parse_line(line).message == "a" + " " * (MAX_LINE_BYTES - 100) + "b"
    assert time.perf_counter() - started < 0.5


# --- LogCursor ------------------------------------------------------------------------------


def test_lines_split_anywhere_give_the_same_records():
    data = (b"plain\n" + event("one") + cost("+1.5", 1) + b"noise T- here\n" + event("\x00" * 40 + "two")
            + cost("10", 2).replace(b"\n", b"\r\n") + event("three"))
    whole = read_log(data)
    assert [as_expected(r) for r in whole] == [
        {"type": "EVENT", "level": "INFO", "message": "one"},
        {"type": "COST", "cost": "+1.5", "sqn": 1, "incremental": True},
        {"type": "EVENT", "level": "INFO", "message": "two"},
        {"type": "COST", "cost": "10", "sqn": 2, "incremental": False},
        {"type": "EVENT", "level": "INFO", "message": "three"},
    ]
    for cut in range(len(data) + 1):
        cursor = LogCursor()
        assert cursor.feed(data[:cut]) + cursor.feed(data[cut:]) + cursor.finish() == whole
    for seed in range(20):
        assert feed_chunks(data, random_sizes(seed, 40))[0] == whole


def test_finish_parses_an_unterminated_last_line():
    data = event("first") + event("last").rstrip(b"\n")
    cursor = LogCursor()
    records = cursor.feed(data)
    assert [r.message for r in records] == ["first"]
    assert cursor.offset == len(event("first")) and cursor.pending == event("last").rstrip(b"\n")
    last = cursor.finish()
    assert last == [EventLine(TS, "INFO", "last", len(data))]
    assert cursor.offset == len(data) and cursor.state() == {"offset": len(data)}
    assert cursor.finish() == []
    with pytest.raises(RuntimeError):
        cursor.feed(b"more\n")


def test_empty_feeds_and_empty_log():
    cursor = LogCursor()
    assert cursor.feed(b"") == [] and cursor.finish() == []
    assert read_log(b"") == [] and read_log(b"\n\n\r\n") == []


def test_a_huge_line_is_dropped_with_bounded_memory():
    valid = event("after the huge line")
    huge = b"x" * (10 * 1024 * 1024)
    data = event("before") + huge + b"\n" + valid
    for size in (1000, 64 * 1024, 1024 * 1024, len(data)):
        cursor, records = LogCursor(), []
        for i in range(0, len(data), size):
            records += cursor.feed(data[i:i + size])
            assert len(cursor.pending) <= cursor.max_line
        records += cursor.finish()
        assert [r.message for r in records] == ["before", "after the huge line"]
        assert records[-1].end == len(data)


def test_a_huge_line_holding_markers_is_dropped_too():
    huge = event("-EVENT- T- " * 10_000).rstrip(b"\n") + cost("5", 1)  # one line of ~120 KB
    data = huge + cost("7", 2) + b"y" * 200_000  # and an unterminated over-long last line
    assert [as_expected(r) for r in read_log(data)] == [{"type": "COST", "cost": "7", "sqn": 2, "incremental": False}]
    for seed in range(3):
        records, cursor = feed_chunks(data, random_sizes(seed, 70_000))
        assert [r.sqn for r in records] == [2] and cursor.offset == len(data)


def test_a_100_mb_line_does_not_use_100_mb():
    block = b"z" * (1024 * 1024)
    cursor = LogCursor()
    tracemalloc.start()
    try:
        for _ in range(100):
            assert cursor.feed(block) == []
            assert len(cursor.pending) <= MAX_LINE_BYTES
        records = cursor.feed(b"\n" + event("still here"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.message for r in records] == ["still here"]
    assert peak < 4 * 1024 * 1024
    assert cursor.offset == cursor.position == 100 * len(block) + 1 + len(event("still here"))


def test_the_line_length_limit_is_the_same_for_every_chunking():
    limit = 200
    prefix = event("").rstrip(b"\n")
    exact = prefix + b"k" * (limit - len(prefix))  # exactly `limit` bytes
    over = exact + b"!"
    data = exact + b"\n" + over + b"\n" + exact
    for sizes in ([1], [3], [limit - 1], [limit], [limit + 1], [len(data)], random_sizes(5, 2 * limit)):
        cursor = LogCursor(max_line=limit)
        records, cursor = feed_chunks(data, sizes, cursor)
        assert [len(r.message) for r in records] == [limit - len(prefix)] * 2, sizes
        assert cursor.pending == b""


def test_binary_noise_invalid_utf8_and_nuls_between_valid_lines():
    rnd = random.Random(99)
    valid = [event("first"), cost("+1", 1), event("\x00" * 50 + "second", "WARNING"), cost("+2", 2),
             event("third \xe9\x00").replace("\xe9".encode(), b"\xe9"), cost("3.5", 3)]
    pieces = []
    for line in valid:
        pieces.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(5000))))
        pieces.append(b"\n\x00\x00\xff\xfe\xc3\n\r\n")
        pieces.append(line)
    pieces.append(bytes(rnd.randrange(256) for _ in range(3000)))
    data = b"".join(pieces)
    expected = [parse_line(line) for line in valid]
    assert expected[-2].message == "third \ufffd"
    for sizes in ([len(data)], [1], random_sizes(3, 700)):
        records = strip_end(feed_chunks(data, sizes)[0])
        assert records == expected
    tracker = CostTracker()
    tracker.apply_all(expected)
    assert tracker.total == Decimal("3.5")


def test_kubelet_timestamps_in_the_cursor():
    data = b"".join(b"2026-11-23T10:56:0%dZ " % i + line for i, line in
                    enumerate([b"plain\n", event("one"), cost("+2", 1), b"\n", event("two")]))
    assert [as_expected(r) for r in read_log(data, kubelet_timestamps=True)] == [
        {"type": "EVENT", "level": "INFO", "message": "one"},
        {"type": "COST", "cost": "+2", "sqn": 1, "incremental": True},
        {"type": "EVENT", "level": "INFO", "message": "two"},
    ]
    assert read_log(data) == []


def test_cursor_arguments():
    with pytest.raises(ValueError):
        LogCursor(-1)
    with pytest.raises(ValueError):
        LogCursor(10, position=11)
    with pytest.raises(ValueError):
        LogCursor(max_line=0)


# --- resuming -------------------------------------------------------------------------------


def generated_log(lines: int = 400, seed: int = 3) -> bytes:
    rnd = random.Random(seed)
    out, sqn = [], 0
    for i in range(lines):
        r = rnd.random()
        if r < 0.2:
            out.append(event("\x00" * rnd.randrange(30) + f"step {i}"))
        elif r < 0.4:
            sqn += 1
            out.append(cost(rnd.choice(["+0.25", "+1e-05", "+3", f"{sqn * 2}"]), sqn))
        else:
            out.append(f"ordinary line {i} # INFO with T- things -EVENT-\n".encode())
    return b"".join(out)


def run_with_restarts(data: bytes, cuts: list[int], from_start: bool) -> tuple[list, list, Decimal]:
    """Read ``data``, stopping (and storing the state as JSON) at each cut, resuming each time."""
    stored = {"cursor": LogCursor().state(), "tracker": CostTracker().state()}
    records, charges = [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(data)]):
        state = json.loads(json.dumps(stored))
        if from_start:  # the log can only be read from its beginning: the cursor skips what was handled
            cursor = LogCursor.from_state(state["cursor"], position=0)
            chunks = [data[:hi]]
        else:  # read on from the stored offset
            cursor = LogCursor.from_state(state["cursor"])
            chunks = [data[cursor.offset:hi]]
        tracker = CostTracker.from_state(state["tracker"])
        got = []
        for chunk in chunks:
            for i in range(0, len(chunk), 37):
                got += cursor.feed(chunk[i:i + 37])
        if hi == len(data):
            got += cursor.finish()
        records += got
        charges += [charge for _, charge in tracker.apply_all(got)]
        stored = {"cursor": cursor.state(), "tracker": tracker.state()}
        assert cursor.offset <= hi
    return records, charges, CostTracker.from_state(stored["tracker"]).total


@pytest.mark.parametrize("from_start", [False, True])
def test_resume_mid_line_gives_the_same_records_and_total(from_start):
    data = generated_log()
    whole = read_log(data)
    tracker = CostTracker()
    whole_charges = [c for _, c in tracker.apply_all(whole)]
    rnd = random.Random(5)
    for _ in range(30):
        cuts = sorted(rnd.sample(range(1, len(data)), rnd.randrange(1, 8)))
        records, charges, total = run_with_restarts(data, cuts, from_start)
        assert records == whole  # no duplicates, nothing missed, same ends
        assert charges == whole_charges
        assert total == tracker.total == sum(charges)


@needs_samples
@pytest.mark.parametrize("expected_file", EXPECTED, ids=lambda p: p.name)
def test_resume_the_samples_at_every_byte(expected_file):
    data, expected = load_sample(expected_file)
    for cut in range(1, len(data)):
        records, charges, total = run_with_restarts(data, [cut], from_start=cut % 2 == 0)
        assert [as_expected(r) for r in records] == expected["records_in_order"]
        assert total == sum(charges) == Decimal(expected["final_cost"])


def test_resume_after_a_given_record():
    data = generated_log(100)
    whole = read_log(data)
    for i, record in enumerate(whole):
        cursor = LogCursor(offset=record.end)
        rest = cursor.feed(data[record.end:]) + cursor.finish()
        assert rest == whole[i + 1:]


def test_reading_again_from_an_older_offset_charges_nothing_twice():
    data = generated_log(200)
    tracker = CostTracker()
    first = [c for _, c in tracker.apply_all(read_log(data))]
    again = tracker.apply_all(read_log(data))  # a restart that lost its cursor state
    assert again == [] and tracker.total == sum(first)


def test_dropping_already_handled_bytes_across_chunks():
    data = generated_log(50)
    whole = read_log(data)
    offset = whole[len(whole) // 2].end
    cursor = LogCursor(offset, position=0)
    records, _ = feed_chunks(data, [5], cursor)
    assert records == [r for r in whole if r.end > offset]


# --- CostTracker ------------------------------------------------------------------------------


def costs(*lines: tuple[str, int]) -> list[CostLine]:
    return [parse_line(cost(text, sqn)) for text, sqn in lines]


def test_absolute_and_incremental_costs():
    tracker = CostTracker()
    assert [tracker.apply(c) for c in costs(("5.7", 1), ("8.3", 2))] == [Decimal("5.7"), Decimal("2.6")]
    assert tracker.total == Decimal("8.3")
    tracker = CostTracker()
    assert [tracker.apply(c) for c in costs(("+5.7", 1), ("+8.3", 2))] == [Decimal("5.7"), Decimal("8.3")]
    assert tracker.total == Decimal("14.0")
    tracker = CostTracker()
    charges = [tracker.apply(c) for c in costs(("+1", 1), ("10", 2), ("+0.5", 3), ("4", 4), ("+1e-05", 5))]
    assert charges == [Decimal(1), Decimal(9), Decimal("0.5"), Decimal("-6.5"), Decimal("0.00001")]
    assert tracker.total == Decimal("4.00001") == sum(charges)


def test_duplicates_and_out_of_order_sequence_numbers():
    tracker = CostTracker()
    lines = costs(("+1", 1), ("+2", 3), ("+1", 1), ("+4", 2), ("+2", 3), ("+8", 2), ("+16", 0))
    charges = [tracker.apply(c) for c in lines]
    # sqn 2 arrives after 3 and still counts (never seen); repeats of 1, 3 and 2 are ignored.
    assert charges == [Decimal(1), Decimal(2), None, Decimal(4), None, None, Decimal(16)]
    assert tracker.total == Decimal(23) and len(tracker) == 4 and 2 in tracker and 5 not in tracker
    late_absolute = CostTracker()
    assert [late_absolute.apply(c) for c in costs(("10", 2), ("3", 1))] == [Decimal(10), Decimal(-7)]
    assert late_absolute.total == 3  # arrival order, not sequence order


def test_tracker_state_round_trip():
    tracker = CostTracker()
    tracker.apply_all(costs(("+1", 1), ("+2", 2), ("+3", 3), ("+0.5", 7), ("+0.25", 9), ("+0.125", 8)))
    state = json.loads(json.dumps(tracker.state()))
    assert state == {"total": "6.875", "seen": [[1, 3], [7, 9]]}
    again = CostTracker.from_state(state)
    assert again.total == Decimal("6.875") and again.state() == state
    assert again.apply(costs(("+5", 2))[0]) is None
    assert again.apply(costs(("+5", 4))[0]) == Decimal(5)
    # Or from stored charges: their sequence numbers and the running total.
    rebuilt = CostTracker(total="11.875", seen=[1, 2, 3, 4, 7, 8, 9])
    assert rebuilt.state() == again.state()
    assert CostTracker.from_state({}).total == 0


def test_tracker_sums_exactly():
    tracker = CostTracker()
    tracker.apply_all(costs(*((f"+{'0.' + '0' * 28 + '1'}", i) for i in range(1, 11)), ("+1e30", 11)))
    assert tracker.total == Decimal("1" + "0" * 30 + "." + "0" * 27 + "1")  # 1e30 + 1e-28, no rounding
    tracker.apply_all(costs(("+0.1", 12), ("+0.2", 13)))
    assert tracker.total == Decimal("1" + "0" * 30 + ".3" + "0" * 26 + "1")


def test_apply_all_passes_over_events():
    records = read_log(event("e") + cost("+1", 1) + event("f") + cost("+1", 1))
    tracker = CostTracker()
    assert [(c.sqn, d) for c, d in tracker.apply_all(records)] == [(1, Decimal(1))]
