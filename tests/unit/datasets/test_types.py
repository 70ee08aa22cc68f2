"""The file-type catalogue and the streaming content validator (shared.datasets.types)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import time
import zlib

import pytest

from shared.datasets import types as t
from shared.datasets.types import (
    TYPES,
    ContentValidator,
    check_filename,
    get_type,
    is_gzip_name,
    types_response,
    validate_bytes,
    validator_for,
)
from shared.errors import DmError, Unprocessable, Unsupported

SDF, SMILES, CSV, TSV, TEXT, BINARY = (
    "chemical/x-mdl-sdfile",
    "chemical/x-daylight-smiles",
    "text/csv",
    "text/tab-separated-values",
    "text/plain",
    "application/octet-stream",
)

# --- sample content -------------------------------------------------------------------

ETHANOL = b"""ethanol
     RDKit          2D

  3  2  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2990    0.7500    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.5981   -0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  1  0
M  END
>  <ID>
MOL-1

>  <NAME>
ethanol, absolute

$$$$
"""

ACETIC_ACID = b"""
     RDKit          2D

  4  3  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2990    0.7500    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2990    2.2500    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
    2.5981   -0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  2  0
  2  4  1  0
M  END
>  <ID>
MOL-2

>  <SUPPLIER>
Caf\xe9 Chimie $$$$ (latin-1)

$$$$
"""

WATER_V3000 = b"""water
  hand-made

  0  0  0     0  0            999 V3000
M  V30 BEGIN CTAB
M  V30 COUNTS 3 2 0 0 0
M  V30 BEGIN ATOM
M  V30 1 O 0 0 0 0
M  V30 2 H 0.9584 0 0 0
M  V30 3 H -0.2396 0.9279 0 0
M  V30 END ATOM
M  V30 BEGIN BOND
M  V30 1 1 1 2
M  V30 2 1 1 3
M  V30 END BOND
M  V30 END CTAB
M  END
$$$$
"""

SDF_TEXT = ETHANOL + ACETIC_ACID + WATER_V3000
BAD_COUNTS = "is not a valid counts line (V2000 or V3000 expected)"

SMILES_TEXT = (
    "smiles\tname\n"
    "CC(=O)Oc1ccccc1C(=O)O\taspirin\n"
    "C[C@H](N)C(=O)O L-alanine (S)\n"
    "[Na+].[Cl-]\tsodium chloride, table salt\n"
    "C/C=C\\C trans-2-butene\n"
    "\n"
    "C1CCCCC%10CCCCC1%10 bicycle\n"
    "  c1ccc2ccccc2c1   naphthalene — indented\n"
    "[2H]C([2H])([2H])[2H] * deuterated $$$$\n"
    "O=C=O\n"
).encode()

CSV_TEXT = (
    "id,smiles,name,comment\n"
    'MOL-1,CCO,ethanol,"simple, with a comma"\n'
    'MOL-2,CC(=O)O,"acetic acid","line one\nline two"\n'
    "\n"
    'MOL-3,c1ccccc1,benzene,"he said ""aromatic"", twice"\n'
    "MOL-4,,no smiles,\n"
    '"MOL-5","O","water",""\n'
    "MOL-6,C,methane,\xe9l\xe8ve \u00e9t\u00e9 \U0001f600\n"
).encode()

TSV_TEXT = (
    "id\tsmiles\tname\n"
    "MOL-1\tCCO\tethanol\n"
    'MOL-2\tCC(=O)O\t"acetic\tacid"\n'
    "MOL-3\tc1ccccc1\t\n"
    "MOL-4\tO\twater, \"quoted\" inside\n"
).encode()

TEXT_TEXT = "Ångström units – 日本語 and emoji 😀\nsecond line\n\nlast line without newline".encode()

GOOD = {
    (SDF, "mols.sdf"): (SDF_TEXT, 3),
    (SMILES, "mols.smi"): (SMILES_TEXT, 8),
    (CSV, "mols.csv"): (CSV_TEXT, 6),
    (TSV, "mols.tsv"): (TSV_TEXT, 4),
    (TEXT, "notes.txt"): (TEXT_TEXT, 4),
    (BINARY, "blob.bin"): (bytes(range(256)) * 3, None),
}


def outcome(mime: str, filename: str, chunks, **options) -> tuple:
    """('ok', records, size) or ('error', status, message) for content fed in the given pieces."""
    v = validator_for(mime, filename, **options)
    try:
        for chunk in chunks:
            v.feed(chunk)
        v.finish()
    except DmError as exc:
        assert type(exc) is Unprocessable, exc
        return ("error", exc.status, exc.message)
    return ("ok", v.records, v.size)


def whole(mime, filename, data, **options):
    return outcome(mime, filename, [data], **options)


def splits(data: bytes):
    """Every way of cutting data in two, then in three around the middle, then byte by byte."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    mid = len(data) // 2
    for i in range(max(0, mid - 40), mid):
        yield [data[:i], data[i:mid], data[mid:]]
    yield [data[i : i + 1] for i in range(len(data))]


def assert_all_chunkings_agree(mime, filename, data, **options):
    expected = whole(mime, filename, data, **options)
    for chunks in splits(data):
        got = outcome(mime, filename, chunks, **options)
        assert got == expected, [len(c) for c in chunks]
    return expected


def error_of(mime, filename, data, **options) -> str:
    result = assert_all_chunkings_agree(mime, filename, data, **options) if len(data) < 3000 else whole(
        mime, filename, data, **options
    )
    assert result[0] == "error", result
    assert result[1] == 422
    return result[2]


# --- the catalogue -------------------------------------------------------------------------


def test_catalogue_has_the_documented_types_and_extensions():
    expected = {
        SDF: (".sdf", ".sdf.gz"),
        SMILES: (".smi", ".smi.gz", ".smiles", ".smiles.gz"),
        CSV: (".csv", ".csv.gz"),
        TSV: (".tsv", ".tsv.gz"),
        TEXT: (".txt", ".txt.gz"),
        "chemical/x-mdl-molfile": (".mol", ".mol.gz"),
        "chemical/x-pdb": (".pdb", ".pdb.gz"),
    }
    for mime, extensions in expected.items():
        assert TYPES[mime].file_extensions == extensions
    assert TYPES[BINARY].any_extension and ".bin" in TYPES[BINARY].file_extensions
    assert not TYPES["chemical/x-mdl-molfile"].uploadable and not TYPES["chemical/x-pdb"].uploadable


def test_catalogue_entries_are_consistent():
    for mime, ft in TYPES.items():
        assert ft.mime == mime
        assert all(e.startswith(".") and e == e.lower() for e in ft.file_extensions)
        assert all(e + ".gz" in ft.file_extensions for e in ft.file_extensions if not e.endswith(".gz"))
        assert ft.uploadable == (ft.formatter_image is not None)
        if ft.formatter_options is not None:
            assert isinstance(ft.formatter_options["title"], str)
            assert ft.formatter_options["type"] == "object"
            assert isinstance(ft.formatter_options["required"], list)
            assert isinstance(ft.formatter_options["properties"], dict)
    assert TYPES[SDF].formatter_supports_db_load


def test_file_type_is_frozen_and_hashable():
    ft = TYPES[SDF]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ft.mime = "x/y"  # type: ignore[misc]
    assert len({ft, TYPES[CSV], ft}) == 2


def test_types_response_is_a_types_get_response():
    body = types_response()
    json.dumps(body)
    assert body["count"] == len(body["types"]) == len(TYPES)
    by_mime = {s["mime"]: s for s in body["types"]}
    assert by_mime[SDF]["file_extensions"] == [".sdf", ".sdf.gz"]
    assert by_mime[SDF]["formatter_image"]
    assert by_mime[SDF]["formatter_supports_db_load"] is True
    assert by_mime[SDF]["formatter_options"]["type"] == "object"
    for mime in ("chemical/x-mdl-molfile", "chemical/x-pdb"):
        assert set(by_mime[mime]) == {"mime", "file_extensions"}
    by_mime[SDF]["formatter_options"]["title"] = "changed"  # the response is a copy
    assert types_response()["types"][0]["formatter_options"]["title"] != "changed"


def test_get_type():
    assert get_type(SDF) is TYPES[SDF]
    assert get_type(" Chemical/X-MDL-SDFile ") is TYPES[SDF]
    assert get_type("chemical/x-pdb") is TYPES["chemical/x-pdb"]


@pytest.mark.parametrize("mime", ["image/png", "", None, "chemical/x-mdl-sdfile; charset=utf-8"])
def test_get_type_unknown_is_415_listing_the_supported_types(mime):
    with pytest.raises(Unsupported) as info:
        get_type(mime)
    assert info.value.status == 415
    assert "Unsupported file type" in info.value.message
    assert SDF in info.value.message and CSV in info.value.message


def test_attach_only_types_cannot_be_uploaded():
    with pytest.raises(Unsupported, match="as_type"):
        get_type("chemical/x-pdb", uploadable=True)
    with pytest.raises(Unsupported):
        validator_for("chemical/x-mdl-molfile", "x.mol")


@pytest.mark.parametrize(
    "mime, filename, extension",
    [
        (SDF, "mols.sdf", ".sdf"),
        (SDF, "MOLS.SDF.GZ", ".sdf.gz"),
        (SDF, "my.mols.v2.sdf", ".sdf"),
        (SMILES, "x.smiles.gz", ".smiles.gz"),
        (SMILES, "x.SMI", ".smi"),
        (CSV, "table.csv", ".csv"),
        (TSV, "table.tsv.gz", ".tsv.gz"),
        (TEXT, "notes.txt", ".txt"),
        ("chemical/x-pdb", "1abc.pdb.gz", ".pdb.gz"),
        (BINARY, "blob.bin", ".bin"),
        (BINARY, "model.pkl", ".pkl"),
        (BINARY, "archive.tar.gz", ".tar.gz"),
        (BINARY, "x.gz", ".gz"),
        (BINARY, "README", ""),
    ],
)
def test_check_filename_accepts(mime, filename, extension):
    assert check_filename(mime, filename) == extension


@pytest.mark.parametrize(
    "mime, filename",
    [
        (SDF, "mols.csv"),
        (SDF, "mols.sdf.zip"),
        (SDF, "mols.gz"),
        (SDF, ".sdf"),
        (SDF, "mols.sdfx"),
        (SDF, ""),
        (CSV, "table.tsv"),
        (SMILES, "x.smile"),
        (BINARY, ""),
    ],
)
def test_check_filename_refuses(mime, filename):
    with pytest.raises(Unsupported) as info:
        check_filename(mime, filename)
    assert info.value.status == 415
    assert mime in info.value.message and TYPES[mime].file_extensions[0] in info.value.message


def test_check_filename_unknown_type():
    with pytest.raises(Unsupported, match="Unsupported file type"):
        check_filename("application/x-nope", "a.nope")


def test_validator_for_checks_type_and_name():
    with pytest.raises(Unsupported):
        validator_for("application/x-nope", "a.sdf")
    with pytest.raises(Unsupported, match="must end with"):
        validator_for(SDF, "mols.csv")
    v = validator_for(SDF, "mols.sdf.gz")
    assert isinstance(v, ContentValidator) and v.compressed and v.file_type is TYPES[SDF]


def test_is_gzip_name():
    assert is_gzip_name("a.sdf.gz") and is_gzip_name("A.SDF.GZ")
    assert not is_gzip_name("a.sdf") and not is_gzip_name("a.gzip") and not is_gzip_name("gz")


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
    noun = t._checker(mime, 1).noun
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
    assert message == f"line 2 of the {t._checker(mime, 1).noun} contains a NUL byte (binary data?)"


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
    data = b"smiles\n" + b"C" * (t.MAX_LINE + 1) + b"\nCCO\n"
    expected = ("error", 422, "line 2 of the SMILES file is longer than 1 MiB")
    assert whole(SMILES, "a.smi", data) == expected
    assert outcome(SMILES, "a.smi", [data[i : i + 65536] for i in range(0, len(data), 65536)]) == expected
    ok = b"smiles\n" + b"C" * t.MAX_LINE + b"\nCCO\n"
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
        bad = token[0].translate(None, t._SMILES_ALLOWED)
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


# --- throughput (prints figures, asserts nothing about time) ---------------------------------


def _throughput(label: str, mime: str, filename: str, data: bytes, piece: int = 1 << 20) -> None:
    view = memoryview(data)
    v = validator_for(mime, filename)
    start = time.perf_counter()
    for i in range(0, len(view), piece):
        v.feed(view[i : i + piece])
    v.finish()
    seconds = time.perf_counter() - start
    print(
        f"\n  {label:<34} {len(data) / 2**20:7.1f} MiB fed in {seconds:6.3f} s"
        f" = {v.size / seconds / 1e6:8.0f} MB/s fed, {v.content_size / seconds / 1e6:6.0f} MB/s content"
        f", records={v.records}",
        end="",
    )


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * (size // len(unit) + 1)


def _drug_like_record(n: int) -> bytes:
    """A V2000 record the size RDKit writes for a drug-like molecule (24 atoms, 3 properties)."""
    atoms = b"".join(
        b"%10.4f%10.4f%10.4f %-3s 0  0  0  0  0  0  0  0  0  0  0  0\n"
        % (1.3 * (i % 6), 0.75 * (i // 6), 0.0, b"CNOCCC"[i % 6 : i % 6 + 1])
        for i in range(24)
    )
    bonds = b"".join(b"%3d%3d%3d  0\n" % (i + 1, i + 2, 1 + (i % 3 == 0)) for i in range(23))
    return (
        b"CHEMBL%d\n     RDKit          2D\n\n 24 23  0  0  0  0  0  0  0  0999 V2000\n" % n
        + atoms
        + bonds
        + b"M  CHG  1   3   1\nM  END\n>  <chembl_id>\nCHEMBL%d\n\n>  <mw>\n342.39\n\n" % n
        + b">  <smiles>\nCC(=O)Nc1ccc(O)cc1C(=O)N1CCN(C)CC1\n\n$$$$\n"
    )


def test_throughput_figures():
    mib = 1 << 20
    typical_sdf = b"".join(_drug_like_record(i) for i in range(1000))
    sdf = _repeat(typical_sdf, 64 * mib)
    tiny_sdf = _repeat(SDF_TEXT, 64 * mib)
    binary = os.urandom(mib) * 64
    smiles = _repeat(b"".join(b"CC(=O)Nc1ccc(O)cc1C(=O)N1CCN(C)CC1 CHEMBL%d\n" % i for i in range(1000)), 32 * mib)
    messy_smiles = _repeat(SMILES_TEXT.split(b"\n", 1)[1] * 50, 32 * mib)  # blank and indented lines
    plain_csv = _repeat(b"MOL-1,CCO,ethanol,12.5,simple\n" + b"MOL-2,CC(=O)O,acetic acid,60.05,weak\n", 32 * mib)
    csv_data = b"id,smiles,name,mw,comment\n" + plain_csv
    quoted = b'"id","smiles","name","mw","comment"\n' + _repeat(b'"MOL-1","CCO","ethanol","12.5","a, b"\n', 16 * mib)
    r_style = b'"id","smiles","name","mw","use"\n' + _repeat(
        b'"CHEMBL25","CC(=O)Oc1ccccc1C(=O)O","aspirin",180.16,"Analgesic, antipyretic"\n', 32 * mib
    )
    tsv = b"id\tsmiles\tname\tmw\tcomment\n" + plain_csv.replace(b",", b"\t")
    text = _repeat(TEXT_TEXT + b"\n", 64 * mib)
    ascii_text = _repeat(b"The quick brown fox jumps over the lazy dog.\n", 64 * mib)
    packed_sdf = zlib.compress(sdf, 1, wbits=31)
    packed_binary = zlib.compress(binary, 1, wbits=31)
    print(f"\n  (typical SD-file record: {len(typical_sdf) // 1000} bytes; tiny: {len(SDF_TEXT) // 3} bytes)", end="")
    _throughput("binary (64 MiB)", BINARY, "blob.bin", binary)
    _throughput("binary .gz (64 MiB, incompressible)", BINARY, "blob.bin.gz", packed_binary)
    _throughput("text/plain ASCII (64 MiB)", TEXT, "a.txt", ascii_text)
    _throughput("text/plain UTF-8 (64 MiB)", TEXT, "a.txt", text)
    _throughput("SD-file, typical records (64 MiB)", SDF, "a.sdf", sdf)
    _throughput("SD-file, tiny records (64 MiB)", SDF, "a.sdf", tiny_sdf)
    _throughput("SD-file .gz (64 MiB of content)", SDF, "a.sdf.gz", packed_sdf)
    _throughput("SMILES (32 MiB)", SMILES, "a.smi", smiles)
    _throughput("SMILES, messy lines (32 MiB)", SMILES, "a.smi", messy_smiles)
    _throughput("CSV, unquoted (32 MiB)", CSV, "a.csv", csv_data)
    _throughput("CSV, short fields all quoted (16 MiB)", CSV, "a.csv", quoted)
    _throughput("CSV, strings quoted as R writes (32 MiB)", CSV, "a.csv", r_style)
    _throughput("TSV (32 MiB)", TSV, "a.tsv", tsv)
    print()
