"""The local store follows a symbolic link only while it stays in its project (shared/storage/local.py)."""

from __future__ import annotations

import os

import pytest

from shared.storage import create_storage
from shared.storage.paths import PathRefused, inside

PROJECT = "projects/project-1"


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"secret")
    return folder


@pytest.fixture
def store(tmp_path, outside):
    storage = create_storage(str(tmp_path / "store"))
    storage.write(f"{PROJECT}/mine.txt", [b"mine"])
    storage.write("projects/project-2/theirs.txt", [b"theirs"])
    project = tmp_path / "store" / "projects" / "project-1"
    (project / "out").symlink_to(outside, target_is_directory=True)
    (project / "leak.txt").symlink_to(outside / "secret.txt")
    (project / "neighbour").symlink_to(tmp_path / "store" / "projects" / "project-2", target_is_directory=True)
    (project / "alias.txt").symlink_to(project / "mine.txt")
    return storage


def snapshot(folder):
    return sorted((p.name, p.read_bytes()) for p in folder.iterdir())


@pytest.mark.parametrize("operation", [
    lambda s: s.open(f"{PROJECT}/out/secret.txt"),
    lambda s: s.open(f"{PROJECT}/leak.txt"),
    lambda s: s.open(f"{PROJECT}/neighbour/theirs.txt"),  # another project is outside too
    lambda s: s.stat(f"{PROJECT}/leak.txt"),
    lambda s: s.exists(f"{PROJECT}/out/secret.txt"),
    lambda s: s.is_dir(f"{PROJECT}/out"),
    lambda s: s.list_dir(f"{PROJECT}/out"),
    lambda s: s.local_path(f"{PROJECT}/out/secret.txt"),
    lambda s: s.write(f"{PROJECT}/out/planted.txt", [b"x"]),
    lambda s: s.write(f"{PROJECT}/leak.txt", [b"overwritten"]),
    lambda s: s.make_dirs(f"{PROJECT}/out/made"),
    lambda s: s.delete(f"{PROJECT}/out/secret.txt"),
    lambda s: s.delete_tree(f"{PROJECT}/out"),
    lambda s: s.move(f"{PROJECT}/out/secret.txt", f"{PROJECT}/taken.txt"),
    lambda s: s.move(f"{PROJECT}/mine.txt", f"{PROJECT}/out/mine.txt"),
    lambda s: s.move_tree(f"{PROJECT}/out", f"{PROJECT}/moved"),
    lambda s: s.usage(f"{PROJECT}/out"),
])
def test_nothing_is_read_or_written_through_a_link_out_of_the_project(store, outside, operation):
    before = snapshot(outside)
    with pytest.raises(PathRefused, match="outside its project"):
        operation(store)
    assert snapshot(outside) == before
    assert store.exists(f"{PROJECT}/mine.txt")


def test_links_out_are_not_listed_and_links_within_are_followed(store):
    listing = store.list_dir(PROJECT)
    assert [f.name for f in listing.files] == ["alias.txt", "mine.txt"] and listing.dirs == []
    assert b"".join(store.open(f"{PROJECT}/alias.txt")) == b"mine"


def test_inside(tmp_path, outside):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "l").symlink_to(outside)
    assert inside(tmp_path / "p", tmp_path / "p" / "new" / "file")
    assert not inside(tmp_path / "p", tmp_path / "p" / "l" / "new")
    assert not inside(tmp_path / "p", tmp_path / "p2")  # a sibling sharing the prefix
    assert inside(tmp_path / "p", tmp_path / "p")
    assert os.path.exists(outside / "secret.txt")
