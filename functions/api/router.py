"""A tiny route table on werkzeug's Map: route modules fill a Router, app.py merges them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shared.config import API_PREFIX


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    view: Callable
    auth: bool  # False: answered without a bearer token
    status: int  # the documented success status

    @property
    def summary(self) -> str:
        doc = (self.view.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Router:
    def __init__(self, tag: str):
        self.tag = tag
        self.routes: list[Route] = []

    def route(self, path: str, method: str, *, status: int = 200, auth: bool = True):
        """Register ``view(ctx, **path_args)`` for ``method`` on ``path`` (below the API prefix)."""

        def register(view: Callable) -> Callable:
            self.routes.append(Route(API_PREFIX + path, (method,), view, auth, status))
            return view

        return register

    def get(self, path: str, **kw):
        return self.route(path, "GET", **kw)

    def post(self, path: str, **kw):
        return self.route(path, "POST", **kw)

    def put(self, path: str, **kw):
        return self.route(path, "PUT", **kw)

    def patch(self, path: str, **kw):
        return self.route(path, "PATCH", **kw)

    def delete(self, path: str, **kw):
        return self.route(path, "DELETE", **kw)
