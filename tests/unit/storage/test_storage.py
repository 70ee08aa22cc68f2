"""Conformance tests for `Storage`: each runs on both backends (see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from shared.config import ConfigError
from shared.storage import FileInfo, Storage, create_storage
from shared.storage.base import CHUNK_SIZE
from shared.storage.local import STAGING, LocalStorage
from shared.storage.s3 import S3Storage

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[3]


def chunked(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(storage: Storage, key: str) -> bytes:
    return b"".join(storage.open(key))


def leftovers(storage: Storage) -> list:
    """What an aborted write could leave behind: staging files, or unfinished multipart uploads."""
    if isinstance(storage, LocalStorage):
        return os.listdir(os.path.join(storage.root, STAGING))
    return storage._s3.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])


def failing(size: int) -> Iterator[bytes]:
    yield from chunked(os.urandom(size), MiB)
    raise RuntimeError("client went away")


# --- write / open ---------------------------------------------------------------------------


def test_round_trip_of_a_multi_part_object(storage: Storage):
    data = os.urandom(9 * MiB + 12345)  # more than one S3 part, odd-sized tail
    assert storage.write("projects/p1/big.bin", chunked(data)) == len(data)
    chunks = list(storage.open("projects/p1/big.bin"))
    assert b"".join(chunks) == data
    assert len(chunks) >= 10 and max(map(len, chunks)) <= CHUNK_SIZE


def test_small_and_empty_files(storage: Storage):
    assert storage.write("a/small.txt", [b"hello ", b"world"]) == 11
    assert read(storage, "a/small.txt") == b"hello world"
    assert storage.write("a/empty", []) == 0
    assert read(storage, "a/empty") == b""
    assert storage.stat("a/empty").size == 0


def test_overwrite_replaces_content(storage: Storage):
    storage.write("a/f.txt", [b"x" * 1000])
    storage.write("a/f.txt", [b"short"])
    assert read(storage, "a/f.txt") == b"short"
    assert storage.stat("a/f.txt").size == 5


def test_failed_write_leaves_nothing(storage: Storage):
    with pytest.raises(RuntimeError, match="went away"):
        storage.write("fail/f.bin", failing(10 * MiB))  # past the first S3 part
    assert not storage.exists("fail/f.bin")
    assert storage.stat("fail/f.bin") is None
    assert not storage.is_dir("fail")
    assert leftovers(storage) == []


def test_failed_overwrite_keeps_the_old_file(storage: Storage):
    storage.write("a/f.bin", [b"old"])
    with pytest.raises(RuntimeError):
        storage.write("a/f.bin", failing(10 * MiB))
    assert read(storage, "a/f.bin") == b"old"
    assert leftovers(storage) == []


def test_write_streams_instead_of_buffering(storage: Storage):
    """Halfway through the iterable, most of what it gave has already left the process."""
    seen: list[int] = []

    def probe() -> Iterator[bytes]:
        for _ in range(20):
            yield os.urandom(MiB)
        if isinstance(storage, LocalStorage):
            staging = os.path.join(storage.root, STAGING)
            seen.extend(os.path.getsize(os.path.join(staging, n)) for n in os.listdir(staging))
        else:
            (upload,) = leftovers(storage)
            key, upload_id = upload["Key"], upload["UploadId"]
            parts = storage._s3.list_parts(Bucket=storage.bucket, Key=key, UploadId=upload_id)
            seen.extend(part["Size"] for part in parts["Parts"])
        yield from chunked(os.urandom(5 * MiB), MiB)

    assert storage.write("a/streamed.bin", probe()) == 25 * MiB
    assert sum(seen) >= 12 * MiB
    assert storage.stat("a/streamed.bin").size == 25 * MiB


def test_open_missing_raises_before_iteration(storage: Storage):
    with pytest.raises(FileNotFoundError):
        storage.open("nope.txt")  # not iterated: the error comes from the call itself
    storage.make_dirs("d")
    with pytest.raises(FileNotFoundError):
        storage.open("d")


def test_local_path(storage: Storage):
    storage.write("a/f.txt", [b"data"])
    path = storage.local_path("a/f.txt")
    if isinstance(storage, LocalStorage):
        assert Path(path).read_bytes() == b"data"
    else:
        assert path is None


# --- stat / exists / is_dir -----------------------------------------------------------------


def test_stat(storage: Storage):
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    storage.write("a/b/file.csv", [b"1,2,3\n"])
    info = storage.stat("a/b/file.csv")
    assert (info.name, info.size) == ("file.csv", 6)
    assert info.modified.utcoffset() == timedelta(0)
    assert before <= info.modified <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert storage.stat("a/b/missing.csv") is None
    assert storage.stat("a/b") is None  # a directory is not a file


def test_exists_and_is_dir(storage: Storage):
    storage.write("a/b/f", [b"1"])
    assert storage.exists("a/b/f")
    assert not storage.exists("a/b") and not storage.exists("a/b/g")
    assert storage.is_dir("") and storage.is_dir("a") and storage.is_dir("a/b")
    assert not storage.is_dir("a/b/f") and not storage.is_dir("a/c") and not storage.is_dir("a/b/f/x")


# --- listing and directories ----------------------------------------------------------------


def test_list_dir(storage: Storage):
    storage.write("p/z.txt", [b"zz"])
    storage.write("p/a.txt", [b"a"])
    storage.write("p/.hidden", [b"h"])
    storage.write("p/sub/deep/f", [b"f"])
    storage.make_dirs("p/.cache")
    storage.make_dirs("p/empty")

    listing = storage.list_dir("p")
    assert [f.name for f in listing.files] == [".hidden", "a.txt", "z.txt"]
    assert [f.size for f in listing.files] == [1, 1, 2]
    assert all(isinstance(f, FileInfo) and f.modified.tzinfo for f in listing.files)
    assert listing.dirs == [".cache", "empty", "sub"]
    assert storage.list_dir("p/sub").files == [] and storage.list_dir("p/sub").dirs == ["deep"]
    root = storage.list_dir("")
    assert (root.files, root.dirs) == ([], ["p"])  # the local staging folder is not shown


def test_list_dir_missing(storage: Storage):
    storage.write("a/f", [b"1"])
    with pytest.raises(FileNotFoundError):
        storage.list_dir("b")
    with pytest.raises(FileNotFoundError):
        storage.list_dir("a/f")  # a file, not a directory


def test_make_dirs_and_empty_directories(storage: Storage):
    storage.make_dirs("a/b/c")
    storage.make_dirs("a/b/c")  # again: no error
    assert storage.is_dir("a") and storage.is_dir("a/b") and storage.is_dir("a/b/c")
    assert not storage.exists("a/b")
    empty = storage.list_dir("a/b/c")
    assert (empty.files, empty.dirs) == ([], [])
    assert storage.list_dir("a/b").dirs == ["c"]
    assert storage.usage("a") == 0


# --- removal and moves ----------------------------------------------------------------------


def test_delete(storage: Storage):
    storage.write("a/f", [b"1"])
    storage.delete("a/f")
    assert not storage.exists("a/f")
    assert storage.is_dir("a") and storage.list_dir("a").files == []  # the directory stays
    with pytest.raises(FileNotFoundError):
        storage.delete("a/f")
    storage.make_dirs("a/d")
    with pytest.raises(FileNotFoundError):
        storage.delete("a/d")  # delete() is for files
    assert storage.is_dir("a/d")


def test_delete_tree(storage: Storage):
    storage.write("p/a/f1", [b"1"])
    storage.write("p/a/b/f2", [b"22"])
    storage.make_dirs("p/a/empty")
    storage.write("p/ab", [b"sibling whose name shares the prefix"])
    storage.delete_tree("p/a")
    assert not storage.is_dir("p/a") and not storage.exists("p/a/b/f2")
    assert read(storage, "p/ab").startswith(b"sibling")
    assert storage.list_dir("p").dirs == []
    storage.delete_tree("p/a")  # missing: no error
    storage.delete_tree("nowhere/at/all")
    assert storage.exists("p/ab")


def test_move(storage: Storage):
    storage.write("a/src.txt", [b"source"])
    storage.write("b/dst.txt", [b"old destination"])
    storage.move("a/src.txt", "b/dst.txt")
    assert not storage.exists("a/src.txt") and storage.is_dir("a")
    assert read(storage, "b/dst.txt") == b"source"

    storage.move("b/dst.txt", "c/new/dir/renamed.txt")  # parents are created
    assert read(storage, "c/new/dir/renamed.txt") == b"source"
    storage.move("c/new/dir/renamed.txt", "c/new/dir/renamed.txt")  # onto itself: kept
    assert read(storage, "c/new/dir/renamed.txt") == b"source"
    with pytest.raises(FileNotFoundError):
        storage.move("a/src.txt", "a/other.txt")


def test_move_of_a_multi_part_object(storage: Storage):
    data = os.urandom(9 * MiB)
    storage.write("a/big", chunked(data, MiB))
    storage.move("a/big", "b/big")
    assert read(storage, "b/big") == data and not storage.exists("a/big")


def test_move_tree(storage: Storage):
    storage.write("p/src/f1", [b"1"])
    storage.write("p/src/sub/f2", [b"22"])
    storage.make_dirs("p/src/empty")
    storage.write("p/srcx", [b"not part of the tree"])
    storage.move_tree("p/src", "q/r/dst")  # dst's parents are created
    assert not storage.is_dir("p/src") and storage.is_dir("p") and storage.exists("p/srcx")
    assert read(storage, "q/r/dst/f1") == b"1" and read(storage, "q/r/dst/sub/f2") == b"22"
    assert storage.list_dir("q/r/dst").dirs == ["empty", "sub"]
    assert storage.usage("q/r/dst") == 3


def test_move_tree_errors(storage: Storage):
    storage.write("a/f", [b"1"])
    storage.make_dirs("b")
    storage.write("c", [b"file"])
    with pytest.raises(FileExistsError):
        storage.move_tree("a", "b")
    with pytest.raises(FileExistsError):
        storage.move_tree("a", "c")
    with pytest.raises(FileNotFoundError):
        storage.move_tree("missing", "d")
    with pytest.raises(ValueError):
        storage.move_tree("a", "a/inside")
    assert read(storage, "a/f") == b"1" and storage.is_dir("b") and read(storage, "c") == b"file"


def test_usage(storage: Storage):
    storage.write("p/a", [b"x" * 100])
    storage.write("p/sub/b", [b"y" * 23])
    storage.make_dirs("p/empty")
    storage.write("q/c", [b"z" * 7])
    assert storage.usage("p") == 123
    assert storage.usage("p/sub") == 23
    assert storage.usage("") == 130
    assert storage.usage("missing") == 0


# --- key checks -----------------------------------------------------------------------------

BAD_KEYS = ["/abs", "a//b", "a/../b", "..", "a/", "./a", "a/.", "a\\b", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS + [""])
def test_bad_keys_are_rejected(storage: Storage, key: str):
    calls = [
        lambda: storage.write(key, [b"1"]),
        lambda: storage.open(key),
        lambda: storage.local_path(key),
        lambda: storage.stat(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.make_dirs(key),
        lambda: storage.delete_tree(key),
        lambda: storage.move(key, "ok"),
        lambda: storage.move("ok", key),
        lambda: storage.move_tree(key, "ok"),
        lambda: storage.move_tree("ok", key),
    ]
    if key:  # '' is the root for these
        calls += [lambda: storage.list_dir(key), lambda: storage.is_dir(key), lambda: storage.usage(key)]
    for call in calls:
        with pytest.raises(ValueError):
            call()


# --- construction ---------------------------------------------------------------------------


def test_importing_storage_does_not_import_boto3(tmp_path):
    code = (
        "import shared.storage, sys; "
        f"shared.storage.create_storage({str(tmp_path / 'store')!r}); "
        "print('boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_create_storage_picks_the_backend(tmp_path, s3_client, moto_endpoint, bucket):
    assert isinstance(create_storage(str(tmp_path)), LocalStorage)
    s3 = create_storage(f"s3://{bucket}/deep/prefix/", moto_endpoint)  # bucket created: endpoint given
    assert isinstance(s3, S3Storage)
    s3.write("a/f", [b"1"])
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["deep/prefix/a/f"]


def test_s3_missing_bucket_is_not_created_without_permission(s3_client, moto_endpoint, bucket):
    with pytest.raises(ConfigError, match=bucket):
        S3Storage(bucket, "", moto_endpoint)
    assert bucket not in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]


def test_s3_write_uses_multipart_only_for_large_content(s3_client, moto_endpoint, bucket):
    s3 = S3Storage(bucket, "", moto_endpoint, create_bucket=True)
    s3.write("small", chunked(os.urandom(3 * MiB)))
    s3.write("large", chunked(os.urandom(17 * MiB), MiB))
    assert "-" not in s3_client.head_object(Bucket=bucket, Key="small")["ETag"]
    assert s3_client.head_object(Bucket=bucket, Key="large")["ETag"].endswith('-3"')  # 8 + 8 + 1 MiB


def test_local_write_mixes_small_and_large_chunks_in_order_and_starts_writeback(tmp_path, monkeypatch):
    """Small chunks are gathered, large ones written as they are; every 8 MiB the disk is asked to
    start on what was written, and the result is byte for byte what came, whatever the sizes."""
    from shared.storage import local

    started: list[tuple[int, int]] = []
    monkeypatch.setattr(local, "_sync_file_range", lambda: lambda fd, offset, nbytes: started.append((offset, nbytes)))
    pieces = [os.urandom(n) for n in (10, 3 * MiB, 700_000, 5, 2 * MiB + 1, 1, 9 * MiB, 65_536, 0, 4 * MiB - 1)]
    store = LocalStorage(str(tmp_path / "store"))
    chunks = (memoryview(bytearray(p)) if i % 2 else p for i, p in enumerate(pieces))  # a reader's reused views
    assert store.write("a/mixed.bin", chunks) == sum(map(len, pieces))
    assert read(store, "a/mixed.bin") == b"".join(pieces)
    assert started and started[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(started, started[1:]))  # contiguous, in order
    assert sum(n for _, n in started) > 8 * MiB  # two hints for 20 MiB: the rest is left to the fsync
    assert os.listdir(os.path.join(store.root, STAGING)) == []
