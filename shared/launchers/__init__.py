"""Where instances run, behind one `Launcher` protocol: local processes or Kubernetes pods.

`create_launcher` imports only the backend asked for, so neither the local stack nor a
function that never launches loads the `kubernetes` client.
"""

from __future__ import annotations

import functools
import importlib
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
        from shared.config import API_PREFIX

        return create_launcher("kubernetes", namespace=settings.kubernetes_namespace,
                               project_claim=settings.project_claim, ingress_host=settings.ingress_host,
                               ingress_class=settings.ingress_class,
                               # the api's access check (functions.api.instance_proxy.ACCESS_PREFIX)
                               access_url=settings.base_url + API_PREFIX + "/instance-access")
    # Local instances work in the project folders themselves, on the project volume.
    return create_launcher("local", projects_root=settings.project_volume_path, logs_root=settings.pod_logs_dir,
                           sink_url=settings.broker_url or None, namespace=settings.kubernetes_namespace)
