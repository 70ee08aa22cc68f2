"""A fan-out's links on a real folder: every replica gets the prior step's whole directory, checked
once per folder (not per file), and a folder that leads out of the Project is still refused."""

from __future__ import annotations

import os

import pytest

from shared.errors import PermanentFailure
from shared.services.workflow_host import links
from shared.storage import paths
from shared.storage.local import LocalStorage

PARTS = 100


@pytest.fixture
def split(tmp_path):
    storage = LocalStorage(str(tmp_path))
    folder = tmp_path / "projects" / "project-1"
    prior = folder / ".instance-split"
    prior.mkdir(parents=True)
    for n in range(PARTS):
        (prior / f"part-{n + 1}.txt").write_text(f"part {n + 1}\n")
    return storage, folder


def test_every_replica_gets_every_part_checked_once_per_folder(split, monkeypatch):
    storage, folder = split
    checks = []
    real_inside = paths.inside
    monkeypatch.setattr(paths, "inside", lambda a, b: checks.append(b) or real_inside(a, b))
    for n in range(10):
        links.link_inputs(storage, "project-1", f"instance-r{n}", instances=["instance-split"], project_files=[])
    for n in range(10):
        linked = folder / f".instance-r{n}" / ".instance-split"
        assert sorted(p.name for p in linked.iterdir()) == sorted(f"part-{i + 1}.txt" for i in range(PARTS))
        assert (linked / "part-7.txt").stat().st_ino == (folder / ".instance-split" / "part-7.txt").stat().st_ino
    assert len(checks) == 2 * 10  # the source folder and the target folder, once per replica


def test_linking_again_replaces_what_is_there(split):
    storage, folder = split
    links.link_inputs(storage, "project-1", "instance-r", instances=["instance-split"], project_files=[])
    target = folder / ".instance-r" / ".instance-split" / "part-1.txt"
    target.unlink()
    target.write_text("stale")
    links.link_inputs(storage, "project-1", "instance-r", instances=["instance-split"], project_files=[])
    assert target.read_text() == "part 1\n"
    assert not [p for p in target.parent.iterdir() if ".link-" in p.name]  # no temporary left


def test_an_output_folder_that_leads_out_of_the_project_is_refused(split, tmp_path):
    storage, folder = split
    step = folder / ".instance-step"
    (step / "results").mkdir(parents=True)
    (step / "results" / "a.txt").write_text("a")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, folder / "results")  # the Project's results folder leads elsewhere
    with pytest.raises(PermanentFailure):
        links.link_outputs(storage, "project-1", "instance-step", ["results"])
    assert not any(outside.iterdir())


def test_a_symbolic_link_among_the_files_is_left_out(split, tmp_path):
    storage, folder = split
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", folder / ".instance-split" / "escape.txt")
    links.link_inputs(storage, "project-1", "instance-r", instances=["instance-split"], project_files=[])
    linked = folder / ".instance-r" / ".instance-split"
    assert not (linked / "escape.txt").exists() and len(list(linked.iterdir())) == PARTS
