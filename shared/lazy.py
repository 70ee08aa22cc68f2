"""Modules imported on first attribute access: a cold start loads only what a request uses."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for a module until one of its attributes is read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def lazy(name: str) -> LazyModule:
    return LazyModule(name)
