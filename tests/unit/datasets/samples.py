"""Sample content of each uploadable type, and helpers that feed content to a validator in pieces
(shared by the catalogue, content validator and format check tests)."""

from __future__ import annotations

from shared.datasets.content import validator_for
from shared.errors import DmError, Unprocessable

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
