"""The streaming content validator (shared.datasets.content): good and refused content, fed in
every chunking, plain and gzipped."""

from __future__ import annotations

import gzip
import os

import pytest

from shared.datasets import content
from shared.datasets.content import validate_bytes, validator_for
from shared.errors import Unprocessable
from tests.unit.datasets.samples import (
    ACETIC_ACID,
    BAD_COUNTS,
    BINARY,
    CSV,
    CSV_TEXT,
    ETHANOL,
    GOOD,
    SDF,
    SDF_TEXT,
    SMILES,
    TEXT,
    TEXT_TEXT,
    TSV,
    assert_all_chunkings_agree,
    error_of,
    outcome,
    whole,
)

# --- good content ----------------------------------------------------------------------


@pytest.mark.parametrize("key", list(GOOD), ids=lambda k: k[0])
def test_good_content_in_every_chunking(key):
    mime, filename = key
    data, records = GOOD[key]
    assert assert_all_chunkings_agree(mime, filename, data) == ("ok", records, len(data))


@pytest.mark.parametrize("key", list(GOOD), ids=lambda k: k[0])
def test_good_content_gzipped_in_every_chunking(key):
    mime, filename = key
    data, records = GOOD[key]
    packed = gzip.compress(data, mtime=0)
    result = assert_all_chunkings_agree(mime, filename + ".gz", packed)
    assert result == ("ok", records, len(packed))


@pytest.mark.parametrize("key", list(GOOD), ids=lambda k: k[0])
def test_good_content_with_crlf_line_ends(key):
    mime, filename = key
    data, records = GOOD[key]
    if mime == BINARY:
        return
    assert assert_all_chunkings_agree(mime, filename, data.replace(b"\n", b"\r\n")) == (
        "ok",
        records,
        len(data) + data.count(b"\n"),
    )


def test_good_content_without_final_newline():
    assert whole(SDF, "a.sdf", SDF_TEXT.rstrip(b"\n")) == ("ok", 3, len(SDF_TEXT) - 1)
    assert whole(SMILES, "a.smi", b"CCO")[:2] == ("ok", 1)
    assert whole(CSV, "a.csv", b"a,b\n1,2")[:2] == ("ok", 1)
    assert whole(CSV, "a.csv", b'a,b\n1,"2\n3"')[:2] == ("ok", 1)


def test_sdf_allows_blank_lines_after_the_last_record():
    for tail in (b"\n", b"\n\n\n\n\n\n", b"  \r\n\t\n\n\n\n"):
        assert assert_all_chunkings_agree(SDF, "a.sdf", ETHANOL + tail)[:2] == ("ok", 1)


def test_sdf_single_record_with_blank_title():
    assert whole(SDF, "a.sdf", ACETIC_ACID)[:2] == ("ok", 1)


def test_smiles_header_is_optional_and_not_a_record():
    assert whole(SMILES, "a.smi", b"SMILES\nCCO\n")[:2] == ("ok", 1)
    assert whole(SMILES, "a.smi", b"CCO\nsmiles\n")[:2] == ("ok", 2)  # only line 1 is a header
    assert whole(SMILES, "a.smi", b"\xef\xbb\xbfsmiles,id\n".replace(b",", b" ") + b"CCO x\n")[:2] == ("ok", 1)


def test_csv_single_column_skips_blank_lines():
    assert assert_all_chunkings_agree(CSV, "a.csv", b"name\nethanol\n\n  \n\"water, pure\"\nbenzene\n")[:2] == ("ok", 3)


def test_csv_header_only_has_no_rows():
    assert whole(CSV, "a.csv", b"a,b,c\n")[:2] == ("ok", 0)


def test_csv_text_after_closing_quote_is_kept_like_the_csv_module():
    import csv
    import io

    data = 'a,b\n"x"y,2\n1,"q""r"s\n'
    assert all(len(row) == 2 for row in csv.reader(io.StringIO(data)))
    assert whole(CSV, "a.csv", data.encode())[:2] == ("ok", 2)


def test_csv_agrees_with_the_csv_module_on_tricky_rows():
    import csv
    import io

    rows = [
        ["id", "text", "n"],
        ["1", 'comma, "quote" and\nnewline', "3"],
        ["2", "", ""],
        ["3", '"', ","],
        ["4", "\r\n", " leading space"],
        ["5", "tab\there", '""'],
    ]
    for delimiter, mime, name in ((",", CSV, "a.csv"), ("\t", TSV, "a.tsv")):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
        data = out.getvalue().encode()
        assert assert_all_chunkings_agree(mime, name, data)[:2] == ("ok", 5)


def test_multi_member_gzip_is_one_stream():
    data = gzip.compress(ETHANOL, mtime=0) + gzip.compress(ACETIC_ACID, mtime=0)
    assert assert_all_chunkings_agree(SDF, "a.sdf.gz", data) == ("ok", 2, len(data))


def test_feed_accepts_bytearray_and_memoryview():
    v = validator_for(SDF, "a.sdf")
    v.feed(bytearray(ETHANOL[:50]))
    v.feed(memoryview(ETHANOL)[50:])
    v.finish()
    assert (v.records, v.size, v.content_size) == (1, len(ETHANOL), len(ETHANOL))
    v = validator_for(BINARY, "a.bin")
    v.feed(memoryview(b"\0\1\2"))
    v.finish()
    assert v.size == 3 and v.records is None


def test_sizes_are_compressed_and_decompressed():
    packed = gzip.compress(SDF_TEXT)
    v = validate_bytes(SDF, "a.sdf.gz", packed, chunk_size=100)
    assert (v.size, v.content_size, v.records) == (len(packed), len(SDF_TEXT), 3)


# --- failures -------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(GOOD), ids=lambda k: k[0])
def test_empty_is_refused(key):
    mime, filename = key
    assert whole(mime, filename, b"") == ("error", 422, "The file is empty")
    assert outcome(mime, filename, []) == ("error", 422, "The file is empty")
    assert whole(mime, filename + ".gz", b"") == ("error", 422, "The file is empty")
    assert error_of(mime, filename + ".gz", gzip.compress(b"")) == "The file is empty (once decompressed)"


def test_corrupt_gzip():
    packed = bytearray(gzip.compress(SDF_TEXT * 4, mtime=0))
    packed[len(packed) // 2] ^= 0xFF
    packed[len(packed) // 2 + 1] ^= 0x55
    message = error_of(SDF, "a.sdf.gz", bytes(packed))
    assert message.startswith("The gzip data is corrupt") or "line" in message


def test_gzip_with_a_bad_checksum():
    packed = bytearray(gzip.compress(ETHANOL, mtime=0))
    packed[-6] ^= 0xFF  # CRC32 in the trailer
    assert error_of(SDF, "a.sdf.gz", bytes(packed)) == "The gzip data is corrupt (incorrect data check)"


@pytest.mark.parametrize("cut", [1, 4, 8, 30])
def test_truncated_gzip(cut):
    packed = gzip.compress(ETHANOL, mtime=0)
    assert error_of(SDF, "a.sdf.gz", packed[:-cut]) == "The gzip data is truncated"


def test_gzip_cut_inside_its_header():
    packed = gzip.compress(TEXT_TEXT, mtime=0)
    for n in range(1, 10):
        assert error_of(TEXT, "a.txt.gz", packed[:n]) == "The gzip data is truncated"


def test_not_gzip_at_all():
    assert error_of(SDF, "a.sdf.gz", ETHANOL).startswith("The file name ends in .gz but the content is not gzip data")


def test_garbage_after_gzip():
    packed = gzip.compress(ETHANOL, mtime=0)
    for tail in (b"x", b"garbage", b"\0\0\0\0"):
        assert error_of(SDF, "a.sdf.gz", packed + tail) == "The file has unexpected data after its gzip data"


def test_sdf_without_terminator():
    assert error_of(SDF, "a.sdf", ETHANOL.replace(b"$$$$\n", b"")) == "The SD-file has no '$$$$' record terminator"


def test_sdf_last_record_not_terminated_names_the_line():
    data = ETHANOL + ACETIC_ACID.replace(b"$$$$\n", b"")
    last = data.rstrip().count(b"\n") + 1
    assert error_of(SDF, "a.sdf", data) == (
        f"line {last} of the SD-file is not a valid record terminator: the last record must end with '$$$$'"
    )


def test_sdf_dollars_inside_a_line_do_not_terminate():
    fake = ETHANOL.replace(b"$$$$\n", b"x$$$$\n$$$$ not the end\n")
    assert error_of(SDF, "a.sdf", fake) == "The SD-file has no '$$$$' record terminator"
    assert error_of(SDF, "a.sdf", ETHANOL + fake).endswith("the last record must end with '$$$$'")


def test_sdf_that_is_actually_csv():
    assert error_of(SDF, "a.sdf", CSV_TEXT) == f"line 4 of the SD-file {BAD_COUNTS}"
    assert error_of(SDF, "a.sdf", b"a,b\n1,2\n") == "The SD-file has no '$$$$' record terminator"


def test_sdf_bad_counts_line_in_a_later_record():
    data = ETHANOL + ACETIC_ACID.replace(b"V2000", b"V9999")
    line = ETHANOL.count(b"\n") + 4
    assert error_of(SDF, "a.sdf", data) == f"line {line} of the SD-file {BAD_COUNTS}"


def test_sdf_record_shorter_than_its_header():
    data = ETHANOL + b"title\nprogram\n$$$$\n"
    line = ETHANOL.count(b"\n") + 3
    assert error_of(SDF, "a.sdf", data) == (
        f"line {line} of the SD-file ends a record before its counts line (line 4 of the record)"
    )


def test_sdf_blank_record_between_records_is_refused():
    data = ETHANOL + b"\n\n\n\n\n$$$$\n" + ETHANOL
    line = ETHANOL.count(b"\n") + 4
    assert error_of(SDF, "a.sdf", data) == f"line {line} of the SD-file {BAD_COUNTS}"


def test_csv_row_with_the_wrong_field_count_names_the_line():
    data = CSV_TEXT + b"MOL-7,C,too,many,fields\n"
    line = CSV_TEXT.count(b"\n") + 1
    assert error_of(CSV, "a.csv", data) == f"line {line} of the CSV file has 5 fields but the header has 4"
    assert error_of(CSV, "a.csv", b"a,b\n1\n") == "line 2 of the CSV file has 1 field but the header has 2"
    quoted = b'a,b\n"1","2"\n"1","2","3"\n'
    assert error_of(CSV, "a.csv", quoted) == "line 3 of the CSV file has 3 fields but the header has 2"


def test_tsv_row_with_the_wrong_field_count():
    assert error_of(TSV, "a.tsv", b"a\tb\tc\n1\t2\t3\n1,2,3\n") == (
        "line 3 of the TSV file has 1 field but the header has 3"
    )


def test_csv_unclosed_quote():
    assert error_of(CSV, "a.csv", b'a,b\n1,2\n3,"four\n5,6\n') == (
        "line 3 of the CSV file has a quoted field that is never closed"
    )


def test_csv_without_a_header():
    assert error_of(CSV, "a.csv", b"\n \n\n") == "The CSV file has no header line"


def test_smiles_failures():
    assert error_of(SMILES, "a.smi", b"CCO\nC C\nCC{O}\n") == (
        "line 3 of the SMILES file does not start with a valid SMILES (unexpected '{')"
    )
    assert error_of(SMILES, "a.smi", CSV_TEXT) == (
        "line 1 of the SMILES file does not start with a valid SMILES (unexpected ',')"
    )
    assert error_of(SMILES, "a.smi", ETHANOL).endswith("(unexpected '>')")  # an SD-file is not SMILES
    assert error_of(SMILES, "a.smi", b"smiles\n\n  \n") == "The SMILES file contains no SMILES"
    assert error_of(SMILES, "a.smi", b"CCO\n\xe9CO\n") == (
        "line 2 of the SMILES file does not start with a valid SMILES (unexpected byte 0xe9)"
    )


JUNK = bytes(range(256)) + os.urandom(2000) + b"\0"
JUNK_WITHOUT_NUL = bytes(range(1, 256)) * 4


@pytest.mark.parametrize(
    "mime, filename", [(SDF, "j.sdf"), (SMILES, "j.smi"), (CSV, "j.csv"), (TSV, "j.tsv"), (TEXT, "j.txt")]
)
def test_binary_junk_declared_as_text(mime, filename):
    noun = content._checker(mime, 1).noun
    assert whole(mime, filename, JUNK)[2] == f"line 1 of the {noun} contains a NUL byte (binary data?)"
    assert whole(BINARY, "j.bin", JUNK)[0] == "ok"


def test_binary_junk_without_nul_bytes():
    assert error_of(TEXT, "j.txt", JUNK_WITHOUT_NUL) == "line 2 of the text file is not valid UTF-8"
    assert error_of(SDF, "j.sdf", JUNK_WITHOUT_NUL) == f"line 4 of the SD-file {BAD_COUNTS}"
    assert error_of(SMILES, "j.smi", JUNK_WITHOUT_NUL) == (
        "line 1 of the SMILES file does not start with a valid SMILES (unexpected byte 0x01)"
    )


@pytest.mark.parametrize("key", [k for k in GOOD if k[0] != BINARY], ids=lambda k: k[0])
def test_nul_in_text(key):
    mime, filename = key
    data = GOOD[key][0]
    cut = data.index(b"\n") + 3
    message = error_of(mime, filename, data[:cut] + b"\0" + data[cut:])
    assert message == f"line 2 of the {content._checker(mime, 1).noun} contains a NUL byte (binary data?)"


def test_latin1_is_text_for_chemistry_but_not_for_text_plain():
    assert b"\xe9" in ACETIC_ACID and whole(SDF, "a.sdf", ACETIC_ACID)[0] == "ok"
    assert whole(CSV, "a.csv", b"name\ncaf\xe9\n")[:2] == ("ok", 1)
    assert whole(TEXT, "a.txt", b"caf\xe9\n")[0] == "error"


def test_text_must_be_utf8():
    assert error_of(TEXT, "a.txt", b"caf\xe9\n") == "line 1 of the text file is not valid UTF-8"
    assert error_of(TEXT, "a.txt", b"ok\nok\n\xff\xfe\n") == "line 3 of the text file is not valid UTF-8"
    cut = "one\nend \u00e9".encode()[:-1]
    assert error_of(TEXT, "a.txt", cut) == "line 2 of the text file ends inside a UTF-8 character"
    assert error_of(TEXT, "a.txt", b"\xe2\x82" + b"\n") == "line 1 of the text file is not valid UTF-8"


def test_over_long_line_small_limit():
    data = b"name\n" + b"x" * 64 + b"\n" + b"y" * 65 + b"\n"
    for mime, filename, noun in (
        (SMILES, "a.smi", "SMILES file"),
        (CSV, "a.csv", "CSV file"),
        (SDF, "a.sdf", "SD-file"),
    ):
        assert error_of(mime, filename, data, max_line=64) == f"line 3 of the {noun} is longer than 64 bytes"
        assert error_of(mime, filename, data[:-1], max_line=64) == f"line 3 of the {noun} is longer than 64 bytes"


def test_over_long_line_real_limit():
    data = b"smiles\n" + b"C" * (content.MAX_LINE + 1) + b"\nCCO\n"
    expected = ("error", 422, "line 2 of the SMILES file is longer than 1 MiB")
    assert whole(SMILES, "a.smi", data) == expected
    assert outcome(SMILES, "a.smi", [data[i : i + 65536] for i in range(0, len(data), 65536)]) == expected
    ok = b"smiles\n" + b"C" * content.MAX_LINE + b"\nCCO\n"
    assert whole(SMILES, "a.smi", ok)[:2] == ("ok", 2)
    assert outcome(SMILES, "a.smi.gz", [gzip.compress(data)]) == expected


def test_error_sticks():
    v = validator_for(CSV, "a.csv")
    with pytest.raises(Unprocessable) as first:
        v.feed(b"a,b\n1,2,3\n")
    with pytest.raises(Unprocessable) as again:
        v.feed(b"4,5\n")
    assert again.value is first.value
    with pytest.raises(Unprocessable) as last:
        v.finish()
    assert last.value is first.value


def test_max_content_size_stops_a_gzip_bomb():
    bomb = gzip.compress(b"CCO\n" * (1 << 20), compresslevel=9)
    v = validator_for(SMILES, "bomb.smi.gz", max_content_size=1 << 20)
    with pytest.raises(Unprocessable, match="larger than 1048576 bytes"):
        v.feed(bomb)
