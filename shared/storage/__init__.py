"""File storage behind one `Storage` protocol: a local folder or an S3 bucket.

`create_storage` picks the backend from the storage URL and imports only that module,
so the local stack (and the api function's cold start) never imports boto3.
"""

from __future__ import annotations

import importlib

from .base import FileInfo, Listing, Storage, check_key, check_prefix

__all__ = ["FileInfo", "Listing", "Storage", "check_key", "check_prefix", "create_storage"]

_BACKENDS = {
    "local": "shared.storage.local:LocalStorage",
    "s3": "shared.storage.s3:S3Storage",
}


def _backend(name: str) -> type:
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_storage(url: str, s3_endpoint_url: str = "") -> Storage:
    """Return the storage for `url`: ``s3://bucket[/prefix]`` or a local folder."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        # Only a dev/test store (one with an endpoint URL) gets its bucket created for it.
        return _backend("s3")(bucket, prefix, s3_endpoint_url or None, create_bucket=bool(s3_endpoint_url))
    return _backend("local")(url)
