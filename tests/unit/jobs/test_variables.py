"""Which job variables are paths, and how their values are kept in the project (shared/jobs/variables.py)."""

from pathlib import Path

import pytest
import yaml

from shared.errors import BadRequest
from shared.jobs import variables
from shared.storage.paths import PathRefused, project_relative

REAL_JOBS = Path(__file__).resolve().parents[4] / "shared" / "data" / "jobs"
TEST_JOBS = Path(__file__).resolve().parents[2] / "data" / "jobs" / "dm-test.yaml"


def job_variables(path: Path, job: str) -> dict:
    return yaml.safe_load(path.read_text())["jobs"][job].get("variables") or {}


@pytest.mark.skipif(not REAL_JOBS.is_dir(), reason="the reference job definitions are not beside the repository")
@pytest.mark.parametrize("file, job, expected", [
    ("virtual-screening/xchem.yaml", "sucos", {"inputFile": "input", "reference": "input", "outputFile": "option"}),
    ("virtual-screening/dmpk.yaml", "pk-tmax-cmax-sim", {"outputBaseName": "option", "pngFile": "output",
                                                         "txtFile": "output"}),
    ("data-manager-job-template/jobs.yaml", "echo", {"outputFile": "output"}),
])
def test_the_path_variables_of_real_definitions(file, job, expected):
    assert variables.path_names(job_variables(REAL_JOBS / file, job)) == expected


def test_the_path_variables_of_the_test_jobs():
    declared = job_variables(TEST_JOBS, "event-and-cost")
    assert variables.path_names(declared) == {"inputFile": "input", "outputFile": "option"}
    assert variables.path_names(job_variables(TEST_JOBS, "fail")) == {}


@pytest.mark.parametrize("option, is_path", [
    ({"title": "t", "type": "string", "pattern": "^[A-Za-z0-9_/\\.\\-]+$"}, True),  # the file-name convention
    ({"title": "t", "type": "string", "pattern": "^https?://.+$"}, False),  # a URL is not a project path
    ({"title": "t", "type": "string"}, False),
    ({"title": "t", "type": "integer"}, False),
])
def test_options_are_paths_by_their_pattern(option, is_path):
    declared = {"options": {"type": "object", "properties": {"value": option}}}
    assert ("value" in variables.path_names(declared)) is is_path


@pytest.mark.parametrize("name", ["workDir", "inputFiles", "outputPath", "scratch_directory", "dataFolder"])
def test_options_are_paths_by_their_name(name):
    declared = {"options": {"type": "object", "properties": {name: {"title": "t", "type": "string"}}}}
    assert variables.path_names(declared) == {name: "option"}


@pytest.mark.parametrize("value, expected", [
    ("a/b.sdf", "a/b.sdf"), ("./a/./b", "a/b"), ("dir/", "dir"), (".", ""),
    ("/data", ""), ("/data/", ""), ("/data/a/b", "a/b"), ("%2e%2e/x", "%2e%2e/x"),
])
def test_clean_paths(value, expected):
    assert project_relative(value, mount="/data") == expected


@pytest.mark.parametrize("value", [
    "/tmp/x", "/database/x", "/etc/passwd", "../x", "a/../../x", "a/..", "/data/../x", "a//b", "//data/x",
    "a\\..\\x", "a\x00b", "a\nb", "a\rb", "a\tb", "a\x7fb", "", "x" * 1025,
])
def test_escaping_paths_are_refused(value):
    with pytest.raises(PathRefused) as caught:
        project_relative(value, "The option 'outputFile'", mount="/data")
    assert caught.value.message.startswith("The option 'outputFile'") and caught.value.status == 400
    assert isinstance(caught.value, ValueError)


def test_without_a_mount_every_absolute_path_is_refused():
    with pytest.raises(PathRefused):
        project_relative("/data/x")


def test_confine_makes_every_path_value_project_relative():
    declared = {"inputs": {"type": "object", "properties": {"mols": {"title": "m", "type": "files"}}},
                "outputs": {"type": "object", "properties": {"out": {"title": "o", "type": "file",
                                                                     "creates": "{{ base }}.sdf"}}},
                "options": {"type": "object", "properties": {"base": {"title": "b", "type": "string"},
                                                             "msg": {"title": "m", "type": "string"}}}}
    given = {"mols": ["/data/a.sdf", "b/c.sdf"], "base": "./res/out", "msg": "/etc/passwd is just text"}
    confined = variables.confine(declared, given, "/data")
    assert confined.values == {"mols": ["a.sdf", "b/c.sdf"], "base": "res/out", "msg": "/etc/passwd is just text"}
    assert confined.paths == {"mols": ["a.sdf", "b/c.sdf"], "base": ["res/out"]}
    assert given["mols"] == ["/data/a.sdf", "b/c.sdf"]  # the caller's values are left alone
    for bad in ({"mols": ["a.sdf", "../b.sdf"]}, {"base": "/tmp/x"}, {"base": 3}, {"msg": "a\x00b"}):
        with pytest.raises(PathRefused) as caught:
            variables.confine(declared, {**given, **bad}, "/data")
        assert f"'{next(iter(bad))}'" in caught.value.message


def test_undeclared_variables_the_command_uses_are_refused_and_others_dropped():
    declared = {"options": {"type": "object", "properties": {"n": {"title": "n", "type": "integer"}}}}
    command = "run {{ n }} {{ CODE_DIRECTORY|default('/code') }}/main.nf"
    assert variables.refuse_undeclared(declared, {"n": 1, "spare": "/etc"}, command) == {"n": 1}
    for name in ("CODE_DIRECTORY", "DM_INSTANCE_DIRECTORY"):
        with pytest.raises(BadRequest, match=name):
            variables.refuse_undeclared(declared, {"n": 1, name: "/tmp"}, command)
