"""The per-format checks (shared.datasets.format_checks) against simple references on random
text, on content of many blocks, and their throughput."""

from __future__ import annotations

import gzip

import pytest

from shared.datasets import format_checks
from shared.datasets.content import validator_for
from tests.unit.datasets.samples import (
    BAD_COUNTS,
    CSV,
    CSV_TEXT,
    ETHANOL,
    GOOD,
    SDF,
    SMILES,
    SMILES_TEXT,
    TSV,
    outcome,
)

# --- differential checks against simple references ----------------------------------------


def _csv_reference(text: str, delimiter: str):
    """The verdict the csv module gives (blank rows skipped), in stream order."""
    import csv
    import io

    state = "start"  # a per-character scan, only to know whether the text ends inside quotes
    for c in text.replace("\r", "\n"):
        if state in ("start", "field"):
            state = "quoted" if c == '"' and state == "start" else "start" if c in (delimiter, "\n") else "field"
        elif state == "quoted":
            state = "after" if c == '"' else "quoted"
        else:
            state = "quoted" if c == '"' else "start" if c in (delimiter, "\n") else "field"
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    if not rows:
        return "no header"
    for i, row in enumerate(rows):
        if state == "quoted" and i == len(rows) - 1:
            return "never closed"
        if len(row) != len(rows[0]):
            return "fields but"
    return len(rows) - 1


def _verdict(mime, filename, data, piece):
    result = outcome(mime, filename, _pieces(data, piece))
    if result[0] == "ok":
        return result[1]
    for key in ("never closed", "no header", "fields but", "field but"):
        if key in result[2]:
            return "fields but" if key == "field but" else key
    return result[2]


@pytest.mark.parametrize("seed", range(4))
def test_csv_and_tsv_agree_with_the_csv_module_on_random_text(seed):
    import random

    rng = random.Random(seed)
    for _ in range(1500):
        delimiter = rng.choice(",\t")
        alphabet = ["a", "b", "xy", delimiter, delimiter, '"', '"', '""', "\n", "\n", "\r\n"]
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        mime, name = (CSV, "a.csv") if delimiter == "," else (TSV, "a.tsv")
        expected = _csv_reference(text, delimiter)
        for piece in (1, 5, 1000):
            assert _verdict(mime, name, text.encode(), piece) == expected, (text, piece)


def _sdf_reference(text: str):
    """A plain line-by-line reading of the SD-file rules."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    records, index, blank, deferred = 0, 0, True, None
    for n, line in enumerate(lines, 1):
        terminator = line.startswith("$$$$") and not line[4:].strip()
        if index < 3:
            if terminator:
                return f"line {n} ends a record"
            blank = blank and not line.strip()
        elif index == 3:
            if "V2000" not in line and "V3000" not in line:
                if not (blank and not line.strip()):
                    return f"line {n} counts"
                deferred = f"line {n} counts"
        elif terminator:
            if deferred:
                return deferred
            records, index, blank = records + 1, -1, True
        index += 1
    if not records:
        return "no terminator"
    last = [n for n, line in enumerate(lines, 1) if line.strip()][-1]
    if lines[last - 1].rstrip() != "$$$$":
        return deferred or f"line {last} terminator"
    return records


def _sdf_verdict(data: bytes, piece: int):
    result = outcome(SDF, "a.sdf", _pieces(data, piece))
    if result[0] == "ok":
        return result[1]
    message = result[2]
    if "no '$$$$'" in message:
        return "no terminator"
    line = message.split()[1]
    for key, short in (("ends a record", "ends a record"), ("counts line", "counts"), ("terminator", "terminator")):
        if key in message:
            return f"line {line} {short}"
    return message


@pytest.mark.parametrize("seed", range(4))
def test_sdf_agrees_with_a_line_by_line_reading_on_random_text(seed):
    import random

    rng = random.Random(seed)
    vocabulary = ["title", "  1  0  0  0  0  0  0  0  0  0999 V2000", "  0  0 V3000", "M  END", "$$$$", "$$$$ ",
                  "x$$$$", "$$$$x", "", "  ", "> <id>", "$", "\r"]
    for _ in range(1500):
        lines = [rng.choice(vocabulary) for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.5:  # mostly well-formed records, with some damage
            lines = []
            for _ in range(rng.randint(1, 4)):
                lines += ["t", "p", "c", rng.choice(vocabulary[1:3] * 5 + vocabulary)]
                lines += [rng.choice(vocabulary) for _ in range(rng.randint(0, 3))] + ["$$$$"]
            lines += [""] * rng.randint(0, 5)
        text = "\n".join(lines) + rng.choice(["", "\n"])
        if not text:
            continue
        expected = _sdf_reference(text)
        for piece in (1, 7, 1000):
            assert _sdf_verdict(text.encode(), piece) == expected, (text, piece)


def _smiles_reference(data: bytes):
    records = 0
    for n, line in enumerate(data.split(b"\n"), 1):
        token = line.split(None, 1)
        if not token or (n == 1 and token[0].lower() == b"smiles"):
            continue
        bad = token[0].translate(None, format_checks._SMILES_ALLOWED)
        if bad:
            return f"line {n} {chr(bad[0])!r}"
        records += 1
    return records or "no SMILES"


@pytest.mark.parametrize("seed", range(2))
def test_smiles_agrees_with_a_line_by_line_reading_on_random_text(seed):
    import random

    rng = random.Random(seed)
    vocabulary = ["CCO", "c1ccccc1 name, with comma", "  [NH4+]", "\tO=C=O x", "", " ", "\r", "smiles", "SMILES id",
                  "C,C", "CCO\r", "C{C}", "C C", "N#N\t"]
    for _ in range(1500):
        data = "\n".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 12))).encode() + rng.choice([b"", b"\n"])
        expected = _smiles_reference(data)
        for piece in (1, 6, 1000):
            result = outcome(SMILES, "a.smi", _pieces(data, piece))
            if result[0] == "ok":
                assert result[1] == expected, (data, piece)
            elif expected == "no SMILES" or not data.strip():
                assert result[2] in ("The SMILES file contains no SMILES", "The file is empty"), (data, piece)
            else:
                line, char = result[2].split()[1], result[2].rsplit("unexpected ", 1)[1].rstrip(")")
                assert f"line {line} {char}" == expected, (data, piece)


@pytest.mark.parametrize("key", list(GOOD), ids=lambda k: k[0])
def test_random_bytes_give_a_verdict_never_another_exception(key):
    import random

    mime, filename = key
    rng = random.Random(7)
    sample = GOOD[key][0]
    for _ in range(300):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        else:  # damaged good content: a few bytes changed, cut somewhere
            data = bytearray(sample[: rng.randint(0, len(sample))])
            for _ in range(rng.randint(0, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.choice(b'\0\n\r"$,\t \xe9\xff')
            data = bytes(data)
        packed = bytearray(gzip.compress(data, mtime=0))
        if rng.random() < 0.5:
            packed[rng.randrange(len(packed))] ^= 1 << rng.randrange(8)
        for name, content in ((filename, data), (filename + ".gz", bytes(packed))):
            piece = rng.choice((1, 3, 64, 4096))
            assert outcome(mime, name, _pieces(content, piece))[0] in ("ok", "error")  # DmError must be a 422


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _agree_on_big(mime, filename, data, expected):
    """Many-block content gives `expected` fed whole, in 1 MiB, 64 KiB and odd-sized pieces, and
    gzipped. `expected` is ("ok", records) or ("error", 422, message)."""

    def check(got):
        assert (got[:2] if expected[0] == "ok" else got) == expected

    for size in (len(data), 1 << 20, 65536, 7919):
        check(outcome(mime, filename, _pieces(data, size)))
    check(outcome(mime, filename + ".gz", _pieces(gzip.compress(data, compresslevel=1), 65536)))


def test_big_sdf_counts_records_and_names_a_late_bad_line():
    data = ETHANOL * 8000  # about 3.3 MiB
    _agree_on_big(SDF, "a.sdf", data, ("ok", 8000))
    bad = data + ETHANOL.replace(b"V2000", b"V2001") + ETHANOL
    line = data.count(b"\n") + 4
    expected = ("error", 422, f"line {line} of the SD-file {BAD_COUNTS}")
    _agree_on_big(SDF, "a.sdf", bad, expected)


def test_big_smiles_with_blank_and_indented_lines():
    unit = SMILES_TEXT.split(b"\n", 1)[1]  # 8 SMILES, a blank line and an indented line
    data = b"smiles name\n" + unit * 30000
    _agree_on_big(SMILES, "a.smi", data, ("ok", 8 * 30000))
    bad = data + b"CCO ok\n\n  C,C bad\n"
    line = data.count(b"\n") + 3
    message = f"line {line} of the SMILES file does not start with a valid SMILES (unexpected ',')"
    _agree_on_big(SMILES, "a.smi", bad, ("error", 422, message))


def test_big_csv_mixes_plain_quoted_and_blank_rows():
    body = CSV_TEXT.split(b"\n", 1)[1]  # 6 rows, one over two lines, a blank line
    plain = b"MOL-9,C,plain,\n" * 50
    data = b"id,smiles,name,comment\n" + (body + plain) * 3000
    _agree_on_big(CSV, "a.csv", data, ("ok", 56 * 3000))
    bad = data + b'"x","y\nz",w,v\n' + plain + b'a,b,c\n' + plain
    line = data.count(b"\n") + 2 + 50 + 1
    _agree_on_big(CSV, "a.csv", bad, ("error", 422, f"line {line} of the CSV file has 3 fields but the header has 4"))


def test_big_tsv_and_single_column_csv():
    data = b"a\tb\n" + b"1\t2\n" * 300000 + b"\n" + b"3\t4\n" * 300000
    _agree_on_big(TSV, "a.tsv", data, ("ok", 600000))
    column = b"name\n" + b"ethanol\n\n" * 300000
    _agree_on_big(CSV, "a.csv", column, ("ok", 300000))


def test_huge_single_piece_is_sliced():
    data = ETHANOL * 20000  # about 8 MiB in one feed
    v = validator_for(SDF, "a.sdf")
    v.feed(data)
    v.finish()
    assert v.records == 20000 and v.size == len(data)
