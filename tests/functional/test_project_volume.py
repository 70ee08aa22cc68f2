"""Project files on the project volume that local instances work in; datasets in an S3 store (moto over HTTP)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401
from tests.functional.test_jobs import test_jobs  # noqa: F401


@pytest.fixture
def settings(settings, tmp_path, aws_env, moto_endpoint):
    import dataclasses
    import uuid

    return dataclasses.replace(settings, project_volume=str(tmp_path / "volume"),
                               dataset_store=f"s3://volume-{uuid.uuid4().hex[:12]}/dm", s3_endpoint_url=moto_endpoint)


def bucket_keys(api) -> list[str]:
    store = api.services.storage.datasets
    objects = store._s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return [o["Key"] for o in objects if not o["Key"].endswith("/")]


def on_volume(api) -> list[str]:
    volume = Path(api.settings.project_volume)
    return sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())


def test_an_uploaded_file_is_seen_by_a_job_whose_output_is_listed_at_once(api, alice, test_jobs):  # noqa: F811
    pid = alice.create_project("On the volume")
    put = alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(SDF), "mols.sdf")},
                    content_type="multipart/form-data")
    assert put.status_code < 300, put.get_json()
    assert (Path(api.settings.project_volume) / pid / "in" / "mols.sdf").read_bytes() == SDF
    spec = {"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
            "variables": {"outputFile": "out/result.txt", "count": 1, "cost": "1", "inputFile": "in/mols.sdf"}}
    resp = alice.post("/instance", data={"application_id": "datamanagerjobs.squonk.it", "project_id": pid,
                                         "as_name": "Reads", "specification": json.dumps(spec)})
    assert resp.status_code == 201, resp.get_json()
    instance_id = resp.get_json()["instance_id"]
    assert api.services.launcher.wait(instance_id, timeout=60)
    expected = f"done {len(SDF)}\n".encode()  # the job read the whole upload
    got = alice.get(f"/project/{pid}/file", query_string={"path": "/out", "file": "result.txt"})
    assert got.status_code == 200 and got.get_data() == expected
    assert got.headers["Content-Length"] == str(len(expected))
    listed = alice.get("/file", query_string={"project_id": pid, "path": "/out"}).get_json()
    assert [(f["file_name"], f["stat"]["size"]) for f in listed["files"]] == [("result.txt", len(expected))]
    assert bucket_keys(api) == []  # project files never reach the dataset store


def test_a_dataset_lands_in_the_bucket_and_is_put_into_a_project(api, alice, upload_fn):  # noqa: F811
    dataset_id = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile").get_json()["dataset_id"]
    finish(api, upload_fn)
    (key,) = bucket_keys(api)
    assert key.startswith(f"dm/datasets/{dataset_id}/") and key.endswith("ethanol.sdf")
    assert on_volume(api) == []  # nor staged there: the upload was moved into the bucket
    pid = alice.create_project("Gets a dataset")
    resp = alice.post("/file", data={"dataset_id": dataset_id, "dataset_version": "1", "project_id": pid,
                                     "as_type": "chemical/x-mdl-sdfile", "compress": "False"})
    assert resp.status_code == 201, resp.get_json()
    finish(api, upload_fn)
    assert alice.get(f"/task/{resp.get_json()['task_id']}").get_json()["exit_code"] == 0
    assert (Path(api.settings.project_volume) / pid / "ethanol.sdf").read_bytes() == SDF
    listed = alice.get("/file", query_string={"project_id": pid, "path": "/"}).get_json()
    assert [(f["file_name"], f["stat"]["size"]) for f in listed["files"]] == [("ethanol.sdf", len(SDF))]
    assert alice.get(f"/project/{pid}/file", query_string={"file": "ethanol.sdf"}).get_data() == SDF
    assert len(bucket_keys(api)) == 1  # the dataset stays where it was
