"""Where instances run, behind one `Launcher` protocol: local processes or Kubernetes pods.

`create_launcher` imports only the backend asked for, so neither the local stack nor a
function that never launches loads the `kubernetes` client.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import LaunchError, Launcher, LaunchSpec

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = ["LaunchError", "LaunchSpec", "Launcher", "create_launcher", "launcher_for"]

_BACKENDS = {
    "local": "shared.launchers.local:LocalLauncher",
    "kubernetes": "shared.launchers.kubernetes:KubernetesLauncher",
}


def create_launcher(kind: str, **options: Any) -> Launcher:
    """A new launcher of ``kind`` ("local" or "kubernetes"), built with ``options``."""
    try:
        module, cls = _BACKENDS[kind].split(":")
    except KeyError:
        raise ValueError(f"Unknown launcher {kind!r}: expected one of {', '.join(_BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)(**options)


@functools.lru_cache(maxsize=None)
def launcher_for(settings: "Settings") -> Launcher:
    """The process's launcher for ``settings``: one per process, since the local one tracks its children."""
    if settings.launcher == "kubernetes":
        return create_launcher("kubernetes", namespace=settings.kubernetes_namespace,
                               project_claim=settings.project_claim)
    storage = settings.storage_url
    # Local instances work in the project folders of a local store; with S3 there are none to
    # share, so they get empty folders of their own.
    projects_root = settings.data_dir / "projects" if storage.startswith("s3://") else Path(storage) / "projects"
    return create_launcher("local", projects_root=projects_root, logs_root=settings.pod_logs_dir,
                           sink_url=settings.broker_url or None, namespace=settings.kubernetes_namespace)
