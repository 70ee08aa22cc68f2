"""The local launcher runs on the host: the folders and paths it gives a process stay in the project."""

from __future__ import annotations

import sys
import uuid

import pytest

from shared.launchers import create_launcher
from shared.launchers.base import LaunchError, LaunchSpec


@pytest.fixture
def launcher(tmp_path):
    launcher = create_launcher("local", projects_root=tmp_path / "projects", logs_root=tmp_path / "logs",
                               sink_url=None, on_event=lambda event: None)
    yield launcher
    launcher.close(timeout=10)


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def spec_for(project_id: str, **overrides) -> LaunchSpec:
    values = dict(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}", project_id=project_id,
                  owner="alice", image="x/y:1", command=[sys.executable, "-c", "open('made.txt', 'w')"])
    values.update(overrides)
    return LaunchSpec(**values)


@pytest.mark.parametrize("overrides", [
    {"working_directory": "/data/link", "project_directory": "/data"},  # the working folder is a link out
    {"paths": ("link/x.txt",)},  # a path the command is given leads out through the link
    {"paths": ("../x.txt",)},
    {"paths": ("/tmp/x.txt",)},
])
def test_a_launch_leading_out_of_the_project_is_refused_and_runs_nothing(launcher, tmp_path, outside, overrides):
    project = tmp_path / "projects" / "project-1"
    project.mkdir(parents=True)
    (project / "link").symlink_to(outside, target_is_directory=True)
    spec = spec_for("project-1", **overrides)
    with pytest.raises(LaunchError, match="outside|relative|'\\.\\.'"):
        launcher.launch(spec)
    assert launcher.running() == [] and launcher.pod(spec.instance_id) is None
    assert list(outside.iterdir()) == []
    assert not (project / f".{spec.instance_id}").exists()


def test_paths_inside_the_project_launch(launcher, tmp_path):
    (tmp_path / "projects" / "project-1" / "real").mkdir(parents=True)
    spec = spec_for("project-1", paths=("real/x.txt", "new/y.txt", "."))
    launcher.launch(spec)
    assert launcher.wait(spec.instance_id, timeout=20)
    assert (tmp_path / "projects" / "project-1" / "made.txt").exists()


@pytest.mark.parametrize("overrides", [
    {"project_id": "../project-2"},  # the volume's subPath would be another folder
    {"project_id": "project-1/sub"},
    {"working_directory": "/data/../etc"},
    {"working_directory": "data"},
    {"project_directory": "/data\n"},
    {"paths": ("../x",)},
    {"paths": ("/etc/passwd",)},
])
def test_a_pod_leading_out_of_the_project_volume_is_refused_before_the_api_is_asked(overrides):
    from shared.launchers.kubernetes import KubernetesLauncher

    class NoApi:  # any call to the API server would fail the test
        def __getattr__(self, name):
            raise AssertionError(f"the API server was asked ({name})")

    launcher = KubernetesLauncher("data-manager")
    launcher._core = NoApi()
    with pytest.raises(LaunchError):
        launcher.launch(spec_for(**{"project_id": "project-1", **overrides}))


def test_a_clean_pod_passes_the_mount_check():
    from shared.launchers import pods

    pods.check_mount(spec_for("project-1", working_directory="/data/sub", project_directory="/data",
                              paths=("a/b.sdf", ".")))
