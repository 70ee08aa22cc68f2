"""The hard links a workflow step's instance directory is given, on a real folder."""

from __future__ import annotations

import os

import pytest

from shared.errors import DmError
from shared.services.workflow_host import links
from shared.storage.local import LocalStorage


@pytest.fixture
def project(tmp_path):
    storage = LocalStorage(str(tmp_path))
    folder = tmp_path / "projects" / "project-1"
    prior = folder / ".instance-a"
    (prior / "sub").mkdir(parents=True)
    (prior / "out.txt").write_text("out")
    (prior / "sub" / "deep.txt").write_text("deep")
    (prior / ".instance-older").mkdir()  # linked into it by an earlier step: not passed on
    (prior / ".instance-older" / "x.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", prior / "escape.txt")
    (folder / "input.sdf").write_text("mol")
    return storage, folder


def test_prior_instances_and_project_inputs_are_linked_in(project):
    storage, folder = project
    links.link_inputs(storage, "project-1", "instance-b", instances=["instance-a", "instance-gone"],
                      project_files=["input.sdf", "missing.sdf"])
    own = folder / ".instance-b"
    assert (own / ".instance-a" / "out.txt").stat().st_ino == (folder / ".instance-a" / "out.txt").stat().st_ino
    assert (own / ".instance-a" / "sub" / "deep.txt").read_text() == "deep"
    assert not (own / ".instance-a" / ".instance-older").exists()
    assert not (own / ".instance-a" / "escape.txt").exists()  # a symbolic link is never followed
    assert (own / "input.sdf").stat().st_ino == (folder / "input.sdf").stat().st_ino
    assert not (own / "missing.sdf").exists()


def test_outputs_are_linked_out_replacing_an_earlier_runs(project):
    storage, folder = project
    (folder / "out.txt").write_text("old")
    assert links.link_outputs(storage, "project-1", "instance-a", ["out.txt", "never.txt", "escape.txt"]) == [
        "out.txt"]
    assert (folder / "out.txt").read_text() == "out"
    assert sorted(p.name for p in folder.iterdir()) == [".instance-a", "input.sdf", "out.txt"]  # no leftovers


def test_output_patterns_match_inside_the_instance_directory_only(project):
    storage, folder = project
    for n in (2, 1, 3):
        (folder / ".instance-a" / f"part-{n}.txt").write_text(str(n))
    assert links.output_values(storage, "project-1", "instance-a", "part-*.txt") == [
        "part-1.txt", "part-2.txt", "part-3.txt"]
    assert links.output_values(storage, "project-1", "instance-a", "*.txt") == [
        "out.txt", "part-1.txt", "part-2.txt", "part-3.txt"]  # not the symbolic link
    with pytest.raises(DmError):
        links.output_values(storage, "project-1", "instance-a", "../*.sdf")
