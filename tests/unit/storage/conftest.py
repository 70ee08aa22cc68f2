"""Storage fixtures: every test runs on a local folder and on S3 through a moto server over HTTP."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from shared.storage import Storage, create_storage
from tests.moto_server import start_moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    endpoint, stop = start_moto_server()
    yield endpoint
    stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Dummy credentials, and no user AWS config that could point boto3 elsewhere."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_client(aws_env, moto_endpoint):
    """A plain boto3 client on the moto server, to look behind the storage's back."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"  # a fresh bucket per test: the moto server is shared


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, bucket) -> Storage:
    if request.param == "local":
        return create_storage(str(tmp_path / "store"))
    request.getfixturevalue("aws_env")
    return create_storage(f"s3://{bucket}/some/prefix", request.getfixturevalue("moto_endpoint"))
