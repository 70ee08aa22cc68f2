"""The file-type catalogue (shared.datasets.types)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared.datasets.content import ContentValidator, validator_for
from shared.datasets.types import (
    TYPES,
    check_filename,
    get_type,
    is_gzip_name,
    types_response,
)
from shared.errors import Unsupported
from tests.unit.datasets.samples import BINARY, CSV, SDF, SMILES, TEXT, TSV

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
