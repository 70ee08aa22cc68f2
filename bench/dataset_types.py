"""Dataset type checks: how fast each content validator takes a large file, fed in 1 MiB pieces.

The api checks an uploaded dataset's content while it arrives (`shared.datasets.content`), so
a validator slower than the upload would hold it back. Each sample (binary, text, SD-file,
SMILES, CSV, TSV; some gzip-compressed) is built in memory and fed to its validator once;
the figure is the content bytes checked per second (after decompression for .gz files).
Figures only: the upload targets that these feed into are in dataset_upload.py.
"""

from __future__ import annotations

import os
import time
import zlib

import _common as c

from shared.datasets.content import validator_for
from tests.unit.datasets.samples import BINARY, CSV, SDF, SDF_TEXT, SMILES, SMILES_TEXT, TEXT, TEXT_TEXT, TSV

MIB = 1 << 20


def throughput(mime: str, filename: str, data: bytes, piece: int = MIB) -> tuple[float, float, int]:
    """(seconds, content bytes per second, records) of one validator over ``data``."""
    view = memoryview(data)
    v = validator_for(mime, filename)
    start = time.perf_counter()
    for i in range(0, len(view), piece):
        v.feed(view[i : i + piece])
    v.finish()
    seconds = time.perf_counter() - start
    return seconds, v.content_size / seconds, v.records


def repeat(unit: bytes, size: int) -> bytes:
    return unit * (size // len(unit) + 1)


def drug_like_record(n: int) -> bytes:
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


def samples() -> list[tuple[str, str, str, bytes]]:
    """(label, media type, file name, data) of each case."""
    sdf = repeat(b"".join(drug_like_record(i) for i in range(1000)), 64 * MIB)
    binary = os.urandom(MIB) * 64
    plain_csv = repeat(b"MOL-1,CCO,ethanol,12.5,simple\n" + b"MOL-2,CC(=O)O,acetic acid,60.05,weak\n", 32 * MIB)
    r_style = b'"id","smiles","name","mw","use"\n' + repeat(
        b'"CHEMBL25","CC(=O)Oc1ccccc1C(=O)O","aspirin",180.16,"Analgesic, antipyretic"\n', 32 * MIB)
    return [
        ("binary (64 MiB)", BINARY, "blob.bin", binary),
        ("binary .gz (64 MiB, incompressible)", BINARY, "blob.bin.gz", zlib.compress(binary, 1, wbits=31)),
        ("text/plain ASCII (64 MiB)", TEXT, "a.txt", repeat(b"The quick brown fox jumps over the lazy dog.\n",
                                                             64 * MIB)),
        ("text/plain UTF-8 (64 MiB)", TEXT, "a.txt", repeat(TEXT_TEXT + b"\n", 64 * MIB)),
        ("SD-file, typical records (64 MiB)", SDF, "a.sdf", sdf),
        ("SD-file, tiny records (64 MiB)", SDF, "a.sdf", repeat(SDF_TEXT, 64 * MIB)),
        ("SD-file .gz (64 MiB of content)", SDF, "a.sdf.gz", zlib.compress(sdf, 1, wbits=31)),
        ("SMILES (32 MiB)", SMILES, "a.smi", repeat(b"".join(b"CC(=O)Nc1ccc(O)cc1C(=O)N1CCN(C)CC1 CHEMBL%d\n" % i
                                                             for i in range(1000)), 32 * MIB)),
        ("SMILES, messy lines (32 MiB)", SMILES, "a.smi", repeat(SMILES_TEXT.split(b"\n", 1)[1] * 50, 32 * MIB)),
        ("CSV, unquoted (32 MiB)", CSV, "a.csv", b"id,smiles,name,mw,comment\n" + plain_csv),
        ("CSV, short fields all quoted (16 MiB)", CSV, "a.csv", b'"id","smiles","name","mw","comment"\n'
         + repeat(b'"MOL-1","CCO","ethanol","12.5","a, b"\n', 16 * MIB)),
        ("CSV, strings quoted as R writes (32 MiB)", CSV, "a.csv", r_style),
        ("TSV (32 MiB)", TSV, "a.tsv", b"id\tsmiles\tname\tmw\tcomment\n" + plain_csv.replace(b",", b"\t")),
    ]


def main() -> c.Report:
    report = c.Report("dataset_types")
    for label, mime, filename, data in samples():
        seconds, rate, records = throughput(mime, filename, data)
        report.figure(label, rate, f"{label:<40} {seconds:6.3f} s, {rate / 1e6:6.0f} MB/s of content, "
                                   f"{records if records is not None else '-'} records")
    report.save()
    return report


if __name__ == "__main__":
    main()
