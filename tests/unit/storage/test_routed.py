"""The routed storage: project files on a volume (a folder), datasets in a folder or on S3 (moto over HTTP)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from shared.storage import create_routed_storage
from shared.storage.local import STAGING, LocalStorage
from shared.storage.paths import PathRefused
from shared.storage.routed import RoutedStorage

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def volume(tmp_path) -> Path:
    return tmp_path / "volume"


@pytest.fixture(params=["folder", "s3"])
def routed(request, tmp_path, volume, bucket) -> RoutedStorage:
    if request.param == "folder":
        return create_routed_storage(str(volume), str(tmp_path / "datasets"))
    request.getfixturevalue("aws_env")
    return create_routed_storage(str(volume), f"s3://{bucket}/ds", request.getfixturevalue("moto_endpoint"))


def read(storage, key: str) -> bytes:
    return b"".join(storage.open(key))


def dataset_objects(routed: RoutedStorage) -> list[str]:
    """Every file in the dataset store, by its key there."""
    store = routed.datasets
    if isinstance(store, LocalStorage):
        root = Path(store.root)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and STAGING not in p.parts)
    return sorted(o["Key"][len("ds/"):] for page in store._s3.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix="ds/") for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def leftovers(routed: RoutedStorage) -> list:
    """Staging files on the volume and in the dataset store, or its unfinished multipart uploads."""
    found = os.listdir(os.path.join(routed.projects.root, STAGING))
    store = routed.datasets
    if isinstance(store, LocalStorage):
        return found + os.listdir(os.path.join(store.root, STAGING))
    return found + store._s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def volume_files(volume: Path) -> list[str]:
    return sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())


def failing_after(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), MiB):
        yield data[i:i + MiB]
    raise OSError("the disk went away")


def test_keys_land_on_their_backend(routed, volume):
    routed.write("projects/p1/a.txt", [b"project file"])
    routed.write("datasets/d1/1/e.sdf", [b"dataset"])
    routed.write("uploads/u1", [b"staged"])
    assert (volume / "p1" / "a.txt").read_bytes() == b"project file"  # the folder a job mounts
    assert (volume / ".dm" / "uploads" / "u1").read_bytes() == b"staged"
    assert volume_files(volume) == [".dm/uploads/u1", "p1/a.txt"]  # no dataset on the volume
    assert dataset_objects(routed) == ["datasets/d1/1/e.sdf"]
    assert read(routed, "datasets/d1/1/e.sdf") == b"dataset" and read(routed, "uploads/u1") == b"staged"
    assert routed.local_path("projects/p1/a.txt") == str(volume / "p1" / "a.txt")
    assert (routed.local_path("datasets/d1/1/e.sdf") is None) == (not isinstance(routed.datasets, LocalStorage))


def test_listings_hide_the_volumes_own_folders(routed):
    routed.write("projects/p1/a.txt", [b"1"])
    routed.make_dirs("projects/p2")
    routed.write("uploads/u1", [b"2"])
    assert routed.list_dir("projects").dirs == ["p1", "p2"]
    assert routed.is_dir("projects") and routed.is_dir("") and not routed.is_dir("datasets")
    assert routed.list_dir("").dirs == ["projects", "uploads"]
    routed.write("datasets/d1/1/f", [b"3"])
    assert routed.list_dir("").dirs == ["datasets", "projects", "uploads"]
    assert [f.name for f in routed.list_dir("uploads").files] == ["u1"]
    assert not routed.exists("projects") and routed.stat("projects") is None
    for key in ("projects/.dm/uploads/u1", "projects/.staging/x"):
        with pytest.raises(ValueError):
            routed.write(key, [b"x"])


def test_a_staged_project_file_is_renamed_into_place(routed, volume):
    routed.write("uploads/u1", [b"uploaded"])
    inode = os.stat(volume / ".dm" / "uploads" / "u1").st_ino
    routed.move("uploads/u1", "projects/p1/dir/f.txt")
    assert os.stat(volume / "p1" / "dir" / "f.txt").st_ino == inode  # the same file: no copy
    assert not routed.exists("uploads/u1") and read(routed, "projects/p1/dir/f.txt") == b"uploaded"


def test_moves_across_the_backends_copy_then_delete(routed, volume):
    data = os.urandom(9 * MiB + 7)  # more than one S3 part
    routed.write("uploads/u1", iter([data]))
    routed.move("uploads/u1", "datasets/d1/1/big.bin")
    assert read(routed, "datasets/d1/1/big.bin") == data and not routed.exists("uploads/u1")
    assert routed.stat("datasets/d1/1/big.bin").size == len(data)
    routed.write("projects/p1/old.bin", [b"replaced"])
    routed.move("datasets/d1/1/big.bin", "projects/p1/old.bin")
    assert (volume / "p1" / "old.bin").read_bytes() == data and not routed.exists("datasets/d1/1/big.bin")
    with pytest.raises(FileNotFoundError):
        routed.move("uploads/gone", "datasets/d1/1/x")
    assert leftovers(routed) == []


def test_two_folders_on_one_file_system_move_by_rename(tmp_path, volume):
    routed = create_routed_storage(str(volume), str(tmp_path / "datasets"))
    routed.write("uploads/u1", [b"staged upload"])
    inode = os.stat(volume / ".dm" / "uploads" / "u1").st_ino
    routed.move("uploads/u1", "datasets/d1/1/f.bin")
    stored = tmp_path / "datasets" / "datasets" / "d1" / "1" / "f.bin"
    assert os.stat(stored).st_ino == inode  # the same file: no copy
    assert read(routed, "datasets/d1/1/f.bin") == b"staged upload" and not routed.exists("uploads/u1")
    with pytest.raises(FileNotFoundError, match="uploads/u1"):
        routed.move("uploads/u1", "datasets/d1/1/f.bin")
    assert read(routed, "datasets/d1/1/f.bin") == b"staged upload"
    assert leftovers(routed) == []


def test_two_folders_on_different_file_systems_copy(tmp_path, volume, monkeypatch):
    routed = create_routed_storage(str(volume), str(tmp_path / "datasets"))
    data = os.urandom(3 * MiB + 5)
    routed.write("uploads/u1", [data])

    replace = os.replace

    def cross_device(src, dst):
        if str(src).startswith(str(volume)) and not str(dst).startswith(str(volume)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    routed.move("uploads/u1", "datasets/d1/1/f.bin")  # the copy: its own write renames in its folder
    monkeypatch.undo()
    assert read(routed, "datasets/d1/1/f.bin") == data and not routed.exists("uploads/u1")


def test_a_failed_cross_copy_leaves_nothing_half_made(routed, monkeypatch):
    data = os.urandom(10 * MiB)  # past the first S3 part: a multipart upload is under way when it fails
    routed.write("uploads/u1", [data])
    routed.write("datasets/d1/1/kept.bin", [b"the old version"])
    if isinstance(routed.datasets, LocalStorage):  # as if the two folders were on two file systems
        monkeypatch.setattr(routed.datasets, "adopt", lambda other, src_key, dst_key: False)
    monkeypatch.setattr(routed.projects, "open", lambda key: failing_after(data))
    with pytest.raises(OSError, match="went away"):
        routed.move("uploads/u1", "datasets/d1/1/new.bin")
    with pytest.raises(OSError, match="went away"):
        routed.move("uploads/u1", "datasets/d1/1/kept.bin")
    assert not routed.exists("datasets/d1/1/new.bin") and read(routed, "datasets/d1/1/kept.bin") == b"the old version"
    assert routed.stat("uploads/u1").size == len(data)  # the source stays
    assert dataset_objects(routed) == ["datasets/d1/1/kept.bin"]
    assert leftovers(routed) == []


def test_move_tree_across_the_backends(routed, volume):
    routed.write("projects/p1/t/a", [b"1"])
    routed.write("projects/p1/t/sub/b", [b"22"])
    routed.make_dirs("projects/p1/t/empty")
    routed.move_tree("projects/p1/t", "datasets/d1/t")
    assert not routed.is_dir("projects/p1/t") and routed.is_dir("projects/p1")
    assert read(routed, "datasets/d1/t/sub/b") == b"22" and routed.list_dir("datasets/d1/t").dirs == ["empty", "sub"]
    assert routed.usage("datasets/d1/t") == 3
    routed.make_dirs("projects/p1/taken")
    with pytest.raises(FileExistsError):
        routed.move_tree("datasets/d1/t", "projects/p1/taken")
    with pytest.raises(FileNotFoundError):
        routed.move_tree("datasets/missing", "projects/p1/x")
    with pytest.raises(ValueError):
        routed.move_tree("projects", "datasets/all")


def test_a_failed_move_tree_leaves_the_source_and_no_destination(routed, monkeypatch):
    routed.write("projects/p1/t/a", [b"1"])
    routed.write("projects/p1/t/b", [os.urandom(10 * MiB)])
    original = routed.projects.open
    monkeypatch.setattr(routed.projects, "open",
                        lambda key: failing_after(b"x" * 10 * MiB) if key.endswith("/b") else original(key))
    with pytest.raises(OSError, match="went away"):
        routed.move_tree("projects/p1/t", "datasets/d1/t")
    assert not routed.is_dir("datasets/d1/t") and dataset_objects(routed) == []
    assert routed.usage("projects/p1/t") == 1 + 10 * MiB
    assert leftovers(routed) == []


def test_usage_and_removal_dispatch(routed):
    routed.write("projects/p1/a", [b"x" * 100])
    routed.write("projects/p2/b", [b"y" * 20])
    routed.write("datasets/d1/1/c", [b"z" * 3])
    routed.write("uploads/u", [b"w"])
    assert routed.usage("projects/p1") == 100 and routed.usage("projects") == 120
    assert routed.usage("datasets") == 3 and routed.usage("") == 124 and routed.usage("uploads") == 1
    routed.delete("datasets/d1/1/c")
    assert not routed.exists("datasets/d1/1/c") and routed.is_dir("datasets/d1/1")
    routed.delete_tree("projects/p2")
    assert routed.list_dir("projects").dirs == ["p1"]
    routed.delete_tree("projects")  # every project, not the staged uploads
    assert routed.list_dir("projects").dirs == [] and routed.exists("uploads/u")


def test_remove_unfinished_clears_both_backends(routed):
    old = datetime.now(timezone.utc) - timedelta(hours=1)
    staged = os.path.join(routed.projects.root, STAGING, "dead-writer")
    Path(staged).write_bytes(b"partial")
    os.utime(staged, (old.timestamp(),) * 2)
    store = routed.datasets
    if isinstance(store, LocalStorage):
        other = os.path.join(store.root, STAGING, "dead-writer")
        Path(other).write_bytes(b"partial")
        os.utime(other, (old.timestamp(),) * 2)
    else:  # moto dates a multipart upload in the past
        store._s3.create_multipart_upload(Bucket=store.bucket, Key="ds/datasets/d1/1/f")
    assert routed.remove_unfinished(datetime.now(timezone.utc) - timedelta(minutes=5)) == 2
    assert leftovers(routed) == []


def test_a_link_out_of_its_project_is_refused_on_the_volume(routed, volume):
    routed.write("projects/p2/secret", [b"other project"])
    routed.make_dirs("projects/p1")
    os.symlink(volume / "p2", volume / "p1" / "link")
    with pytest.raises(PathRefused):
        routed.open("projects/p1/link/secret")
    assert routed.list_dir("projects/p1").dirs == []  # not shown


def test_folders_only_never_import_boto3(tmp_path):
    code = (
        "import shared.storage, sys; "
        f"s = shared.storage.create_routed_storage({str(tmp_path / 'v')!r}, {str(tmp_path / 'd')!r}); "
        "s.write('datasets/d/1/f', [b'1']); "
        "print('boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
