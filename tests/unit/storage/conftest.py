"""Storage fixtures: every test runs on a local folder and on S3 through a moto server over HTTP."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from shared.storage import Storage, create_storage


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
