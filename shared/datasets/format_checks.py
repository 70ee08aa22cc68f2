"""The content checks of each uploadable format, fed decompressed content piece by piece.

`shared.datasets.content.ContentValidator` picks one checker per upload and feeds it the content
(empty files, gzip and size limits are the validator's business). A checker raises
`shared.errors.Unprocessable` naming the (1-based) line at fault. SD-files, SMILES, CSV and TSV
are read as bytes, so UTF-8 and latin-1 both pass and only NUL bytes are refused as "binary";
text/plain must be valid UTF-8 without NUL; binary accepts anything. The line-based checkers hold
at most one partial line, and refuse one longer than the `max_line` they are given.
"""

from __future__ import annotations

import codecs
import re

from shared.errors import Unprocessable

__all__ = [
    "BinaryChecker",
    "Checker",
    "DelimitedChecker",
    "LineChecker",
    "SdfChecker",
    "SmilesChecker",
    "TextChecker",
]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Checker:
    """Checks decompressed content. `consume` gets non-empty bytes-like pieces, `end` runs last."""

    noun = "file"
    records: int | None = None

    def consume(self, data) -> None:  # noqa: ANN001 - bytes, bytearray or memoryview
        pass

    def end(self) -> None:
        pass

    def _fail(self, line: int, what: str) -> Unprocessable:
        return Unprocessable(f"line {line} of the {self.noun} {what}")

    def _nul(self, block: bytes, first: int) -> Unprocessable:
        at = block.index(b"\0")
        return self._fail(first + block.count(b"\n", 0, at), "contains a NUL byte (binary data?)")


class BinaryChecker(Checker):
    """Anything goes (emptiness is checked by the validator)."""


class TextChecker(Checker):
    """text/plain: valid UTF-8 (decoded incrementally; pure-ASCII pieces skip the decoder), no NUL."""

    noun = "text file"

    def __init__(self, max_line: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._lines = 0  # newlines seen
        self._open_line = False  # the content so far ends inside a line
        self.records = 0

    def consume(self, data) -> None:  # noqa: ANN001
        if type(data) is not bytes:
            data = bytes(data)
        if b"\0" in data:
            raise self._nul(data, self._lines + 1)
        pending = self._decoder.getstate()[0]
        if pending or not data.isascii():
            try:
                self._decoder.decode(data)
            except UnicodeDecodeError as exc:
                at = max(exc.start - len(pending), 0)
                raise self._fail(self._lines + 1 + data.count(b"\n", 0, at), "is not valid UTF-8") from None
        newlines = data.count(b"\n")
        self._lines += newlines
        self._open_line = not data.endswith(b"\n")
        self.records = self._lines + self._open_line

    def end(self) -> None:
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError:
            raise self._fail(self._lines + 1, "ends inside a UTF-8 character") from None


class LineChecker(Checker):
    """Cuts the content into blocks of whole lines for `_block`, holding at most one partial line
    (refused beyond `max_line` bytes); a missing final newline is supplied at the end."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._tail = bytearray()  # the current partial line
        self._lines = 0  # lines handed to _block so far
        self.records = 0

    def consume(self, data) -> None:  # noqa: ANN001
        if type(data) is not bytes:
            data = bytes(data)
        nl = data.rfind(b"\n")
        if nl < 0:
            self._tail += data
            if len(self._tail) > self._max_line:
                raise self._too_long(self._lines + 1)
            return
        if self._tail:
            self._tail += data[: nl + 1]
            block = bytes(self._tail)
        else:
            block = data if nl + 1 == len(data) else data[: nl + 1]
        self._tail = bytearray(data[nl + 1 :])
        self._feed_block(block)
        if len(self._tail) > self._max_line:
            raise self._too_long(self._lines + 1)

    def end(self) -> None:
        if self._tail:
            self._feed_block(bytes(self._tail) + b"\n")
            self._tail = bytearray()
        self._end()

    def _feed_block(self, block: bytes) -> None:
        first = self._lines + 1
        if len(block) > self._max_line:  # only then can a line in it be too long
            limit, pos = self._max_line, 0
            while len(block) - pos > limit:
                nl = block.rfind(b"\n", pos, pos + limit + 1)
                if nl < 0:
                    raise self._too_long(first + block.count(b"\n", 0, pos))
                pos = nl + 1
        newlines = block.count(b"\n")
        self._lines += newlines
        self._block(block, first, newlines)

    def _too_long(self, line: int) -> Unprocessable:
        limit = self._max_line
        size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
        return self._fail(line, f"is longer than {size}")

    def _block(self, block: bytes, first: int, newlines: int) -> None:
        """Check whole lines: `block` ends with b"\\n" and starts at line `first`."""
        raise NotImplementedError

    def _end(self) -> None:
        pass


def _is_terminator(line: bytes) -> bool:
    return line.startswith(b"$$$$") and not line[4:].strip()


class SdfChecker(LineChecker):
    """SD-file: records end with a `$$$$` line, line 4 of each record is a V2000/V3000 counts line,
    and the last non-blank line is `$$$$`. The work is a handful of finds per record, none per line;
    line numbers are only counted for an error."""

    noun = "SD-file"

    def __init__(self, max_line: int) -> None:
        super().__init__(max_line)
        self._due: int | None = 3  # lines to pass before the current record's counts line
        self._record_blank = True  # the current record's lines so far are all blank
        self._deferred: Unprocessable | None = None  # a blank "record" is only bad if more follows
        self._last_line = 0  # number of the last non-blank line
        self._last_is_terminator = False

    def _block(self, block: bytes, first: int, newlines: int) -> None:
        if b"\0" in block:
            raise self._nul(block, first)
        content = block.rstrip()
        if content:
            self._last_line = first + newlines - block.count(b"\n", len(content))
            self._last_is_terminator = content[content.rfind(b"\n") + 1 :] == b"$$$$"
        find, size, pos = block.find, len(block), 0  # pos: a line start while a counts line is due
        while pos < size:
            if self._due is not None:
                if self._due == 3:  # the usual case: the record's first four lines are in this block
                    e2 = find(b"\n", find(b"\n", pos) + 1)
                    e3 = find(b"\n", e2 + 1) if e2 >= 0 else -1
                    e4 = find(b"\n", e3 + 1) if e3 >= 0 else -1
                    if (
                        e4 >= 0
                        and (find(b"V2000", e3, e4) >= 0 or find(b"V3000", e3, e4) >= 0)
                        and find(b"$$$$", pos, e3) < 0
                    ):
                        self._due, pos = None, e4 + 1
                        continue
                pos = self._walk_to_counts(block, pos, first)
                continue
            p = find(b"$", pos)  # one byte: a memchr, much faster than looking for "$$$$"
            if p < 0:
                return
            end = find(b"\n", p)
            if (
                (p == 0 or block[p - 1] == 10)
                and block.startswith(b"$$$$", p)
                and (end == p + 4 or not block[p + 4 : end].strip())
            ):
                if self._deferred is not None:
                    raise self._deferred
                self.records += 1
                self._due, self._record_blank = 3, True
                pos = end + 1
            else:
                pos = p + 1

    def _walk_to_counts(self, block: bytes, pos: int, first: int) -> int:
        """Line by line towards the counts line (at most four lines); returns where it stopped."""
        find, size = block.find, len(block)
        while pos < size and self._due is not None:
            end = find(b"\n", pos)
            text = block[pos:end]
            if self._due == 0:
                self._due = None
                if b"V2000" not in text and b"V3000" not in text:
                    line = first + block.count(b"\n", 0, pos)
                    error = self._fail(line, "is not a valid counts line (V2000 or V3000 expected)")
                    if not (self._record_blank and not text.strip()):
                        raise error
                    self._deferred = error  # blank lines after the last record are fine
            elif _is_terminator(text):
                line = first + block.count(b"\n", 0, pos)
                raise self._fail(line, "ends a record before its counts line (line 4 of the record)")
            else:
                self._record_blank = self._record_blank and not text.strip()
                self._due -= 1
            pos = end + 1
        return pos

    def _end(self) -> None:
        if self.records == 0:
            raise Unprocessable("The SD-file has no '$$$$' record terminator")
        if not self._last_is_terminator:
            if self._deferred is not None:
                raise self._deferred
            raise self._fail(
                self._last_line, "is not a valid record terminator: the last record must end with '$$$$'"
            )


_SMILES_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789[]()=#+-@/\\%.:*$~"
_BLANKS = b" \t\r\f\v"
_TOKEN = rb"[" + re.escape(_SMILES_ALLOWED) + rb"]++(?:[ \t\r\f\v][^\n]*+)?+"
# Possessive, so a match just stops at the first line it does not take. The strict one takes only
# lines starting with a SMILES token (the common file, and then every line is a record); the
# lenient one also takes blank lines and leading blanks.
_SMILES_LINES = re.compile(rb"(?:" + _TOKEN + rb"\n)*+")
_SMILES_LINES_LENIENT = re.compile(rb"(?:[ \t\r\f\v]*+(?:" + _TOKEN + rb")?+\n)*+")
_BOM = codecs.BOM_UTF8


class SmilesChecker(LineChecker):
    """SMILES: each non-blank line's first token is made of SMILES characters; the first line may
    be a `smiles` header. `records` counts the SMILES lines."""

    noun = "SMILES file"

    def _block(self, block: bytes, first: int, newlines: int) -> None:
        if b"\0" in block:
            raise self._nul(block, first)
        pos = 0
        if first == 1:
            if block.startswith(_BOM):
                pos = len(_BOM)
            token = block[pos : block.find(b"\n")].split(None, 1)
            if token and token[0].lower() == b"smiles":
                self.records -= 1  # a header, not a molecule
        size = len(block)
        if _SMILES_LINES.match(block, pos).end() == size:
            self.records += newlines
            return
        end = _SMILES_LINES_LENIENT.match(block, pos).end()
        if end != size:
            token = block[end : block.find(b"\n", end)].split(None, 1)[0]
            bad = token.translate(None, _SMILES_ALLOWED)[0]
            shown = repr(chr(bad)) if 32 <= bad < 127 else f"byte 0x{bad:02x}"
            line = first + block.count(b"\n", 0, end)
            raise self._fail(line, f"does not start with a valid SMILES (unexpected {shown})")
        # once blanks other than newlines are gone, split() yields the non-blank lines
        self.records += len((block[pos:] if pos else block).translate(None, _BLANKS).split())

    def _end(self) -> None:
        if self.records <= 0:
            raise Unprocessable("The SMILES file contains no SMILES")


class DelimitedChecker(LineChecker):
    """CSV/TSV with the csv module's quoting rules (a field starting with `"` is quoted, `""` is a
    quote inside it, quoted fields may hold delimiters and newlines, text after a closing quote is
    kept). The first non-blank record is the header; every later non-blank record must have as
    many fields.

    Three speeds: a block without quotes is checked at once (delete all but delimiters and
    newlines, compare with the expected pattern); otherwise regexes built for the header's field
    count take runs of one-line rows and single multi-line rows; whatever they do not take (blank
    lines, a wrong count, a record spanning blocks) goes through a line-wise state machine.
    `records` counts the data rows."""

    def __init__(self, max_line: int, delimiter: bytes, noun: str) -> None:
        super().__init__(max_line)
        self.noun = noun
        self._delim = delimiter
        self._blank = b" \t\r\f\v".replace(delimiter, b"")  # what a blank line may hold
        self._drop = bytes(c for c in range(256) if c not in delimiter + b"\n")  # all but delimiter, newline
        self._expected: int | None = None  # the header's field count
        self._unit: bytes | None = None  # a good row once all but delimiters and newline are deleted
        self._fields = 0  # fields of the current record so far
        self._in_quotes = False
        self._record_line = 0
        self._rows: re.Pattern[bytes] | None = None
        self._quoted_row: re.Pattern[bytes] | None = None

    def _compile(self, fields: int) -> None:
        d = re.escape(self._delim)
        if fields == 1:  # no delimiter: unquoted lines, blank or not (blank ones are not counted)
            self._rows = re.compile(rb'(?:[^%s"\n]*+\n)*+' % d)
            return
        self._unit = self._delim * (fields - 1) + b"\n"
        one_line = rb'(?>"(?:[^"\n]++|"")*+"[^%s\n]*+|[^%s"\n][^%s\n]*+|)' % (d, d, d)
        self._rows = re.compile(rb"(?:%s(?:%s%s){%d}\n)*+" % (one_line, d, one_line, fields - 1))
        one = rb'(?>"(?:[^"]++|"")*+"[^%s\n]*+|[^%s"\n][^%s\n]*+|)' % (d, d, d)
        self._quoted_row = re.compile(rb"%s(?:%s%s){%d}\n" % (one, d, one, fields - 1))

    def _block(self, block: bytes, first: int, newlines: int) -> None:
        if b"\0" in block:
            raise self._nul(block, first)
        at_record_start = not self._fields and not self._in_quotes
        if self._unit is not None and at_record_start and b'"' not in block:
            if block.translate(None, self._drop) == self._unit * newlines:
                self.records += newlines
                return
        size, pos, line = len(block), 0, first
        rows, quoted = self._rows, self._quoted_row
        while pos < size:
            if rows is not None and not self._fields and not self._in_quotes:
                end = rows.match(block, pos).end()
                if end > pos:
                    count = block.count(b"\n", pos, end)
                    if self._unit is None:  # one column: once blanks are gone, split() gives the rows
                        self.records += len(block[pos:end].translate(None, self._blank).split())
                    else:
                        self.records += count
                    pos, line = end, line + count
                    if pos == size:
                        return
                if quoted is not None:
                    m = quoted.match(block, pos)
                    if m is not None:
                        end = m.end()
                        self.records += 1
                        pos, line = end, line + block.count(b"\n", pos, end)
                        continue
            end = block.find(b"\n", pos)
            self._line(block[pos:end], line)
            pos, line = end + 1, line + 1
            rows, quoted = self._rows, self._quoted_row

    def _line(self, text: bytes, line: int) -> None:
        """One line through the state machine (the slow path)."""
        delim, i, n = self._delim, 0, len(text)
        if not self._in_quotes and not self._fields:
            if not text.strip(self._blank):
                return  # a blank line between records
            self._record_line = line
        while True:
            if self._in_quotes:
                while True:
                    q = text.find(b'"', i)
                    if q < 0:
                        return  # the quoted field goes on past this newline
                    if q + 1 < n and text[q + 1] == 34:
                        i = q + 2
                        continue
                    break
                self._in_quotes = False
                i = q + 1
            elif i < n and text[i] == 34:  # a field that starts with a quote
                self._in_quotes = True
                i += 1
                continue
            j = text.find(delim, i)
            self._fields += 1
            if j < 0:
                self._end_record()
                return
            i = j + 1

    def _end_record(self) -> None:
        fields, self._fields = self._fields, 0
        if self._expected is None:
            self._expected = fields
            self._compile(fields)
            return
        if fields != self._expected:
            raise self._fail(
                self._record_line, f"has {_plural(fields, 'field')} but the header has {self._expected}"
            )
        self.records += 1

    def _end(self) -> None:
        if self._in_quotes:
            raise self._fail(self._record_line, "has a quoted field that is never closed")
        if self._expected is None:
            raise Unprocessable(f"The {self.noun} has no header line")
