"""The api function: routing, authentication, error mapping and JSON responses."""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Response

from functions.api.context import RequestContext
from functions.api.router import Route
from shared.config import Settings, get_settings
from shared.errors import DmError

if TYPE_CHECKING:
    from flask import Request

log = logging.getLogger("dm.api")

ROUTE_MODULES = ("service", "project", "file_and_path", "managed_file", "dataset", "metadata", "task", "user", "job",
                 "instance", "docs")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )


def error_response(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


class Api:
    """A WSGI-independent dispatcher: ``api(request)`` answers one Flask request."""

    def __init__(self, settings: Settings):
        import importlib

        self.settings = settings
        from shared.process_services import ProcessServices

        self.services = ProcessServices(settings)
        self.routes: list[Route] = []
        for name in ROUTE_MODULES:
            module = importlib.import_module(f"functions.api.routes.{name}")
            self.routes.extend(module.router.routes)
        rules = [
            Rule(r.path, methods=list(r.methods), endpoint=i) for i, r in enumerate(self.routes)
        ]
        # No trailing-slash redirects: a redirected POST would lose its body (client §1).
        self.url_map = Map(rules, strict_slashes=True, redirect_defaults=False, merge_slashes=False)

    def __call__(self, request: "Request") -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            index, args = adapter.match(request.path, method=request.method)
        except RequestRedirect:
            return error_response("Not found", 404)
        except MethodNotAllowed:
            return error_response(f"Method {request.method} is not allowed here", 405)
        except RouteNotFound:
            return error_response("Not found", 404)
        route = self.routes[index]
        ctx = RequestContext(request, self.settings, self.services)
        try:
            if route.auth:
                ctx.principal = self.services.verifier.verify(request.headers.get("Authorization"))
                from shared.services import users

                users.record_visit(self.services.engine, ctx.principal)
            result = route.view(ctx, **args)
        except DmError as exc:
            return error_response(exc.message, exc.status)
        except HTTPException as exc:  # werkzeug's own, e.g. 416 for an unsatisfiable Range
            return error_response(exc.description or exc.name, exc.code or 500)
        except Exception:
            log.exception("Unhandled error in %s %s", request.method, request.path)
            return error_response("Internal server error", 500)
        return self._to_response(result, route)

    @staticmethod
    def _to_response(result: Any, route: Route) -> Response:
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status=route.status)
        return json_response(result, route.status)


@functools.lru_cache(maxsize=1)
def get_api() -> Api:
    return Api(get_settings())


def handle(request: "Request") -> Response:
    """The functions-framework entry point's body."""
    return get_api()(request)
