"""EVENT and COST lines in instance pod logs: the pure parsing core of the kew role.

A Job reports progress and usage through its stdout (``DmLog`` in
``im-data-manager-job-utilities``)::

    <timestamp> # <LEVEL> -EVENT- <message>
    <timestamp> # INFO -COST- <cost> <sequence-number>

Three parts, none of them doing any I/O:

- `parse_line` turns one log line into an `EventLine`, a `CostLine` or ``None`` (an
  ordinary line, or one that is malformed). It never raises on log content.
- `LogCursor` reads a log incrementally from byte chunks as they arrive. Lines may be split
  anywhere across chunks; ``\\r\\n`` endings are accepted; a line longer than ``max_line``
  bytes is dropped without being held in memory. Its state is one integer (see below).
- `CostTracker` applies the COST lines of one instance: duplicates are dropped by sequence
  number, absolute costs replace the running total, ``+`` costs add to it, and each
  accepted line yields the charge: the change of the total.

Resuming (the local launcher's log positions are these offsets)
----------------------------------------------------------------

``LogCursor.state()`` is ``{"offset": N}``: N is the byte offset in the log just past the
last *complete* line (ended by ``\\n``) that the cursor has handled. Bytes of an
unterminated last line are not part of the state: after a restart the kew reads the log
again from byte N (``LogCursor(offset=N)``), or from the start of the log when it cannot
seek (``LogCursor(offset=N, position=0)`` drops the first N bytes itself), so only that
partial line is read twice. Every record also carries ``end``, the offset just past its
own line, so ``LogCursor(offset=record.end)`` resumes right after any one record.

EVENT lines have no sequence number: that offset is what keeps them from being sent
twice. COST lines are also de-duplicated by `CostTracker`, whose state is
``{"total": "<decimal>", "seen": [[first, last], ...]}`` (the running total as text and
the sequence numbers already applied, as inclusive ranges).
"""

from __future__ import annotations

import re
from decimal import Context, Decimal
from typing import Iterable, Mapping, NamedTuple

MAX_LINE_BYTES = 64 * 1024
"""Longest line the cursor keeps (bytes, without the ``\\n``); longer lines are dropped."""

MAX_COST_CHARS = 40
"""Longest cost text accepted; longer ones make the line malformed."""

MAX_COST_EXPONENT = 30
"""A non-zero cost must lie between 1e-30 and 1e+31 (``Decimal.adjusted()`` within ±30)."""

MAX_SQN_DIGITS = 18
"""A sequence number has at most 18 digits (it always fits a signed 64-bit integer)."""

# The regular expressions of the reference (jobs.md §4.2), for the record and for tests.
REFERENCE_EVENT_RE = re.compile(
    r"^\s*(?P<timestamp>\S+) # (?P<level>[A-Za-z]+(?: \d+)?|\d+) -EVENT- [\s\x00]*(?P<message>.*?)\s*$")
REFERENCE_COST_RE = re.compile(
    r"^\s*(?P<timestamp>\S+) # (?P<level>[A-Za-z]+(?: \d+)?|\d+) -COST- "
    r"(?P<cost>\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?) (?P<sqn>\d+)\s*$")

# What is matched: one expression with the reference's common head, then either the rest of
# the reference COST expression or the EVENT marker. The head can only split a line one way,
# so this is "COST first, then EVENT" in a single match. The EVENT message is what follows
# the marker (its leading NULs, DmLog's quirk, already skipped by the match) with NULs
# removed and whitespace stripped: the reference's result. (The reference's lazy
# ``.*?\s*$`` is quadratic on a message with a long run of inner whitespace; this is linear.)
LINE_RE = re.compile(
    r"^\s*(\S+) # ([A-Za-z]+(?: \d+)?|\d+) -(?:COST- "
    r"(\+?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?) (\d+)\s*$|EVENT- \x00*)")
# An EVENT message that holds a line break (only from `parse_line` given several lines):
# the reference matches when everything after the message's first line is whitespace.
_LEAD_RE = re.compile(r"[\s\x00]*")

# Both markers end with "T- ": one search finds the lines that may hold either.
_MARKER = b"T- "
_line_match = LINE_RE.match
_tuple_new = tuple.__new__  # builds the records without NamedTuple's keyword handling

# Decimal arithmetic of the tracker: wide enough that sums of accepted costs are exact.
_CONTEXT = Context(prec=120, Emax=9999, Emin=-9999, traps=[])


class EventLine(NamedTuple):
    """An EVENT line: level and message as written (NULs and surrounding whitespace removed)."""

    timestamp: str
    level: str
    message: str
    end: int | None = None
    """Offset in the log just past this line (set by `LogCursor`; None from `parse_line`)."""

    kind = "EVENT"


class CostLine(NamedTuple):
    """A COST line. ``cost_text`` is the cost as written (with any ``+``); ``cost`` its value."""

    timestamp: str
    level: str
    cost_text: str
    cost: Decimal
    incremental: bool
    sqn: int
    end: int | None = None
    """Offset in the log just past this line (set by `LogCursor`; None from `parse_line`)."""

    kind = "COST"


def _parse_text(text: str, end: int | None) -> EventLine | CostLine | None:
    """COST first, then EVENT, on one decoded line (no kubelet prefix)."""
    m = _line_match(text)
    if m is None:
        return None
    timestamp, level, cost_text, sqn = m.groups()
    if cost_text is not None:
        if len(cost_text) > MAX_COST_CHARS or len(sqn) > MAX_SQN_DIGITS:
            return None
        value = Decimal(cost_text)
        if value and not -MAX_COST_EXPONENT <= value.adjusted() <= MAX_COST_EXPONENT:
            return None
        return _tuple_new(CostLine, (timestamp, level, cost_text, value, cost_text[0] == "+", int(sqn), end))
    message = text[m.end():]
    if "\n" in message:
        message = message[_LEAD_RE.match(message).end():]
        message, _, after = message.partition("\n")
        if after and not after.isspace():
            return None
    if "\x00" in message:
        message = message.replace("\x00", "")
    return _tuple_new(EventLine, (timestamp, level, message.strip(), end))


def _strip_kubelet_time(line):
    """Drop the ``<RFC 3339 time> `` prefix that ``timestamps=true`` puts before each line."""
    space = line.find(b" " if isinstance(line, bytes) else " ")
    return None if space < 0 else line[space + 1:]


def parse_line(line: str | bytes, *, kubelet_timestamps: bool = False) -> EventLine | CostLine | None:
    """One log line (with or without its line ending) as an `EventLine`, a `CostLine` or None.

    None for an ordinary line and for anything malformed: a COST line without a sequence
    number, with a negative or unreadable cost, a cost over ``MAX_COST_CHARS`` characters
    or beyond 1e±30, a sequence number over 18 digits. Bytes are decoded as UTF-8 with
    invalid sequences replaced (U+FFFD). With ``kubelet_timestamps`` the line's first
    word (the kubelet's time) is removed first.
    """
    if isinstance(line, (bytes, bytearray, memoryview)):
        line = bytes(line).decode("utf-8", "replace")
    if kubelet_timestamps:
        line = _strip_kubelet_time(line)
        if line is None:
            return None
    return _parse_text(line, None)


class LogCursor:
    """Reads one log incrementally: `feed` byte chunks in log order, `finish` at the end.

    ``offset``: the log offset just past the last complete line already handled (from a
    saved `state`). ``position``: the log offset of the first byte that will be fed; by
    default ``offset`` (the caller reads on from there). Give ``position=0`` when the log is
    read again from its start: the first ``offset`` bytes fed are then dropped.
    ``max_line``: longer lines (bytes, not counting ``\\n``) are dropped, and at most that
    many bytes of an unterminated line are held. ``kubelet_timestamps``: the log was fetched
    with ``timestamps=true``; remove each line's leading time.
    """

    __slots__ = ("_offset", "_position", "_pending", "_skipping", "_drop", "max_line", "kubelet_timestamps",
                 "finished")

    def __init__(self, offset: int = 0, *, position: int | None = None, max_line: int = MAX_LINE_BYTES,
                 kubelet_timestamps: bool = False):
        if offset < 0:
            raise ValueError("offset must not be negative")
        if position is None:
            position = offset
        if not 0 <= position <= offset:
            raise ValueError("position must be between 0 and offset (bytes after offset would be missed)")
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._offset = offset
        self._position = position
        self._drop = offset - position
        self._pending = b""
        self._skipping = False
        self.max_line = max_line
        self.kubelet_timestamps = kubelet_timestamps
        self.finished = False

    @classmethod
    def from_state(cls, state: Mapping, **options) -> "LogCursor":
        """A cursor resuming from `state` (``{"offset": N}``); options as for the constructor."""
        return cls(int(state["offset"]), **options)

    def state(self) -> dict:
        """``{"offset": N}``: read the log again from byte N to go on from here."""
        return {"offset": self._offset}

    @property
    def offset(self) -> int:
        """Log offset just past the last complete line handled."""
        return self._offset

    @property
    def position(self) -> int:
        """Log offset just past the last byte fed."""
        return self._position

    @property
    def pending(self) -> bytes:
        """The bytes held of an unterminated last line (never more than ``max_line``)."""
        return self._pending

    @property
    def skipping(self) -> bool:
        """True while the rest of an over-long line is being dropped."""
        return self._skipping

    def feed(self, chunk: bytes) -> list[EventLine | CostLine]:
        """The EVENT and COST lines completed by ``chunk`` (the next bytes of the log), in order."""
        if self.finished:
            raise RuntimeError("the log was finished")
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        size = len(chunk)
        if not size:
            return []
        base = self._position  # log offset of chunk[0]
        self._position = base + size
        start = 0
        if self._drop:
            if size <= self._drop:
                self._drop -= size
                return []
            start, self._drop = self._drop, 0
        out: list[EventLine | CostLine] = []
        if self._skipping:  # the rest of an over-long line
            nl = chunk.find(b"\n", start)
            if nl < 0:
                return out
            self._skipping = False
            self._offset = base + nl + 1
            start = nl + 1
        last = chunk.rfind(b"\n", start)
        if last < 0:  # no line ends in this chunk
            if len(self._pending) + size - start > self.max_line:
                self._pending, self._skipping = b"", True
            else:
                self._pending += chunk[start:] if start else chunk
            return out
        if self._pending:  # finish the held line
            nl = chunk.find(b"\n", start)
            if len(self._pending) + nl - start <= self.max_line:
                self._candidate(self._pending + chunk[start:nl], base + nl + 1, out)
            self._pending = b""
            start = nl + 1
        if start <= last:
            self._scan(chunk, start, last, base, out)
        rest = size - last - 1
        if rest > self.max_line:
            self._skipping = True
        elif rest:
            self._pending = chunk[last + 1:]
        self._offset = base + last + 1
        return out

    def finish(self) -> list[EventLine | CostLine]:
        """At the end of the log: the record of a last line without ``\\n``, if it is one.

        Call it only once the log is complete (the pod has ended); the offset then moves
        past that line, and no more chunks may be fed.
        """
        out: list[EventLine | CostLine] = []
        if not self.finished:
            self.finished = True
            if self._pending:
                self._candidate(self._pending, self._position, out)
            self._pending, self._skipping = b"", False
            self._offset = max(self._offset, self._position)
        return out

    def _candidate(self, line: bytes, end: int, out: list) -> None:
        if _MARKER in line:
            if self.kubelet_timestamps:
                line = _strip_kubelet_time(line)
                if line is None:
                    return
            record = _parse_text(line.decode("utf-8", "replace"), end)
            if record is not None:
                out.append(record)

    def _scan(self, buf: bytes, start: int, last: int, base: int, out: list) -> None:
        """Complete lines of ``buf[start:last + 1]`` (``buf[last]`` is ``\\n``): only those
        holding the marker are looked at."""
        find, rfind, max_line, append = buf.find, buf.rfind, self.max_line, out.append
        kubelet = self.kubelet_timestamps
        pos = find(_MARKER, start, last)
        while pos >= 0:
            begin = rfind(b"\n", start, pos) + 1 or start
            end = find(b"\n", pos, last + 1)
            if end - begin <= max_line:
                line = buf[begin:end]
                if kubelet:
                    line = _strip_kubelet_time(line)
                if line is not None:
                    record = _parse_text(line.decode("utf-8", "replace"), base + end + 1)
                    if record is not None:
                        append(record)
            pos = find(_MARKER, end + 1, last)


def read_log(data: bytes, **options) -> list[EventLine | CostLine]:
    """Every EVENT and COST line of a complete log held in memory (options as `LogCursor`)."""
    cursor = LogCursor(**options)
    return cursor.feed(data) + cursor.finish()


class CostTracker:
    """The running cost of one instance, fed its COST lines in the order they were read.

    Rules: a sequence number already applied is ignored (a duplicate, or a line read again).
    Any other line is applied in arrival order, whatever its number: a lower number arriving
    after a higher one still counts if it was never seen (the sequence number only
    de-duplicates; it does not order). An absolute cost replaces the total, an incremental
    one (``+``) is added to it. Each applied line gives its charge, the new total minus the
    previous one; that is negative when an absolute cost lowers the total.

    Two processes of one job that both count from 1 therefore share the numbers: only the
    first line with each number is charged.
    """

    __slots__ = ("_total", "_seen")

    def __init__(self, total: Decimal | str | int = 0, seen: Iterable[int] = ()):
        self._total = Decimal(total)
        self._seen = set(seen)

    @classmethod
    def from_state(cls, state: Mapping) -> "CostTracker":
        """Rebuild from `state` (``{"total": "8.25", "seen": [[1, 3], [5, 5]]}``)."""
        seen: set[int] = set()
        for first, last in state.get("seen", ()):
            seen.update(range(int(first), int(last) + 1))
        return cls(Decimal(state.get("total", "0")), seen)

    def state(self) -> dict:
        """JSON-ready: the total as text and the applied sequence numbers as inclusive ranges."""
        ranges: list[list[int]] = []
        for sqn in sorted(self._seen):
            if ranges and ranges[-1][1] == sqn - 1:
                ranges[-1][1] = sqn
            else:
                ranges.append([sqn, sqn])
        return {"total": str(self._total), "seen": ranges}

    @property
    def total(self) -> Decimal:
        return self._total

    def __contains__(self, sqn: int) -> bool:
        return sqn in self._seen

    def __len__(self) -> int:
        """How many sequence numbers have been applied."""
        return len(self._seen)

    def apply(self, line: CostLine) -> Decimal | None:
        """The charge of ``line`` (new total minus previous total), or None for a duplicate."""
        seen = self._seen
        if line.sqn in seen:
            return None
        seen.add(line.sqn)
        previous = self._total
        total = _CONTEXT.add(previous, line.cost) if line.incremental else line.cost
        self._total = total
        return _CONTEXT.subtract(total, previous)

    def apply_all(self, records: Iterable[EventLine | CostLine]) -> list[tuple[CostLine, Decimal]]:
        """`apply` each COST line of ``records`` (others are passed over): (line, charge) of each
        line applied."""
        out = []
        for record in records:
            if type(record) is CostLine:
                charge = self.apply(record)
                if charge is not None:
                    out.append((record, charge))
        return out
