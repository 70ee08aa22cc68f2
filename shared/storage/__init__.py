"""File storage behind one `Storage` protocol: a local folder or an S3 bucket.

`create_storage` picks the backend from the storage URL and imports only that module,
so the local stack (and the api function's cold start) never imports boto3 unless a store
is on S3. `create_routed_storage` joins a project volume and a dataset store into one.
"""

from __future__ import annotations

import importlib

from .base import FileInfo, Listing, Storage, check_key, check_prefix

__all__ = ["FileInfo", "Listing", "Storage", "check_key", "check_prefix", "create_routed_storage",
           "create_storage"]

_BACKENDS = {
    "local": "shared.storage.local:LocalStorage",
    "s3": "shared.storage.s3:S3Storage",
    "routed": "shared.storage.routed:RoutedStorage",
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


def create_routed_storage(project_volume: str, dataset_store: str, s3_endpoint_url: str = "") -> Storage:
    """Project files (and staged uploads) in the folder `project_volume`, datasets in `dataset_store`."""
    projects = _backend("local")(project_volume, unit_depth=1)  # each project's folder is at the top
    return _backend("routed")(projects, create_storage(dataset_store, s3_endpoint_url))
