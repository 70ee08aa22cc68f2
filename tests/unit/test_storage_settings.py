"""DM_PROJECT_VOLUME and DM_DATASET_STORE: their defaults, and the settings refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, Settings


def test_defaults_keep_the_local_layout(tmp_path):
    settings = Settings.from_env({"DM_DATA_DIR": str(tmp_path)})
    assert settings.project_volume_path == (tmp_path / "store" / "projects").resolve()
    assert settings.dataset_store_url == str((tmp_path / "store").resolve())


def test_both_are_read(tmp_path):
    settings = Settings.from_env({"DM_PROJECT_VOLUME": str(tmp_path / "vol"), "DM_DATASET_STORE": "s3://b/p",
                                  "DM_LAUNCHER": "kubernetes"})
    assert settings.project_volume_path == tmp_path / "vol" and settings.dataset_store_url == "s3://b/p"


def test_a_project_volume_in_an_object_store_is_refused():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DM_PROJECT_VOLUME": "s3://bucket/projects"})
    message = str(caught.value)
    assert "DM_PROJECT_VOLUME" in message and "DM_DATASET_STORE" in message
    assert "file system that jobs mount" in message


@pytest.mark.parametrize("value", ["ftp://x", "s3://", "s3:///prefix"])
def test_a_bad_dataset_store_is_refused(value):
    with pytest.raises(ConfigError, match="DM_DATASET_STORE"):
        Settings.from_env({"DM_DATASET_STORE": value})


@pytest.mark.parametrize("value", ["s3://bucket/store", "/var/dm/store", ""])
def test_the_retired_dm_storage_is_refused_naming_its_replacements(value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DM_STORAGE": value, "DM_PROJECT_VOLUME": "/v"})
    message = str(caught.value)
    assert all(name in message for name in ("DM_STORAGE", "DM_PROJECT_VOLUME", "DM_DATASET_STORE"))


@pytest.mark.parametrize("volume", [None, ""])
def test_kubernetes_needs_the_claims_mount_path(volume):
    env = {"DM_LAUNCHER": "kubernetes"} | ({} if volume is None else {"DM_PROJECT_VOLUME": volume})
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert all(name in message for name in ("DM_LAUNCHER", "DM_PROJECT_VOLUME", "DM_PROJECT_CLAIM"))
    assert Settings.from_env({**env, "DM_PROJECT_VOLUME": "/data-manager/projects"}).project_volume_path == \
        Path("/data-manager/projects")


def test_dm_reports_the_refusal_and_stops(monkeypatch, capsys):
    from shared import cli

    monkeypatch.setenv("DM_STORAGE", "s3://bucket/store")
    assert cli.main(["db", "current"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dm: configuration error: DM_STORAGE") and "DM_DATASET_STORE" in err
