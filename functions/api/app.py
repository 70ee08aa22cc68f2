"""The api function: routing, authentication, error mapping and JSON responses."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import BaseConverter, Map, RequestRedirect, Rule
from werkzeug.wrappers import Response

from functions.api.context import RequestContext
from functions.api.multipart import bound_forms, discard_unread
from functions.api.router import Route
from shared.config import API_PREFIX, Settings, get_settings
from shared.db import integers
from shared.errors import DmError

if TYPE_CHECKING:
    from flask import Request

log = logging.getLogger("dm.api")

ROUTE_MODULES = ("service", "project", "file_and_path", "managed_file", "dataset", "metadata", "task", "user", "job",
                 "instance", "admin", "inventory", "workflow", "docs")
# State-changing calls go to the API log (dm-api §2.9: GETs are not logged).
LOGGED_METHODS = frozenset({"DELETE", "PATCH", "POST", "PUT"})


class IdConverter(BaseConverter):
    """``<int:...>``: an id or version in ASCII digits that fits the database's 32-bit keys.

    Any other value is an unlisted path (404), whatever the method: raised here, after the rule was
    chosen, rather than as werkzeug's ValidationError, which answers 405 when another method's rule
    has the same pattern."""

    regex = integers.DIGITS
    weight = 50  # as werkzeug's own number converters

    def to_python(self, value: str) -> int:
        number = integers.path_id(value)
        if number is None:
            raise RouteNotFound()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


class MatchRule(Rule):
    """werkzeug's Rule with its URL builders made on first use. The api only matches paths, and
    compiling two builders (generated Python code) per rule was most of the cost of building the
    map, paid by each process's first request. A build, should one be asked for, is the same."""

    def _compile_builder(self, append_unknown: bool = True):
        compiled: list = []

        def build(rule: Rule, *args: Any, **values: Any):
            if not compiled:
                compiled.append(Rule._compile_builder(rule, append_unknown))
            return compiled[0](rule, *args, **values)

        return build


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
            MatchRule(r.path, methods=list(r.methods), endpoint=i) for i, r in enumerate(self.routes)
        ]
        # No trailing-slash redirects: a redirected POST would lose its body (client §1).
        self.url_map = Map(rules, strict_slashes=True, redirect_defaults=False, merge_slashes=False,
                           converters={"int": IdConverter})

    def __call__(self, request: "Request") -> Response:
        if "\x00" in request.path:  # no route has one, and the databases refuse it in a value
            return error_response("Not found: the path contains a NUL character", 404)
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
        bound_forms(request)  # before any route reads request.form
        ctx = RequestContext(request, self.settings, self.services)
        started = time.perf_counter_ns()
        response = self._answer(route, ctx, args)
        if ctx.principal is not None and request.method in LOGGED_METHODS:
            self._log_after(response, ctx, started)
        return response

    def _answer(self, route: Route, ctx: RequestContext, args: dict) -> Response:
        request = ctx.request
        try:
            if route.auth:
                ctx.principal = self.services.verifier.verify(request.headers.get("Authorization"))
                from shared.services import users

                # a suspended account is refused everywhere; the check reads a per-process copy
                users.check_not_suspended(self.services.engine, ctx.principal)
                users.record_visit(self.services.engine, ctx.principal)
            result = route.view(ctx, **args)
        except DmError as exc:
            response = error_response(exc.message, exc.status)
            response.headers.update(exc.headers)  # e.g. Retry-After on a 503
            return response
        except HTTPException as exc:  # werkzeug's own, e.g. 416 for an unsatisfiable Range
            return error_response(exc.description or exc.name, exc.code or 500)
        except Exception as exc:
            log.exception("Unhandled error in %s %s", request.method, request.path)
            self._record_fault(request, exc)
            return error_response("Internal server error", 500)
        return self._to_response(result, route)

    def _record_fault(self, request: "Request", exc: Exception) -> None:
        """An unexpected exception becomes a service error, in its own transaction; never raises."""
        try:
            from shared.services import service_errors

            summary = f"{request.method} {request.path} failed: {type(exc).__name__}: {exc}"
            service_errors.record_fault(self.services.engine, origin="api", summary=summary,
                                        stack_trace=traceback.format_exc(), error_code=500)
        except Exception:  # noqa: BLE001 - the answer is already a 500; do not make it worse
            log.exception("Could not record the fault of %s %s", request.method, request.path)

    def _log_after(self, response: Response, ctx: RequestContext, started: int) -> None:
        """Write the API-log row once the response has gone (a close hook), so the caller never waits."""
        from shared.db.base import utcnow

        duration = time.perf_counter_ns() - started
        began = utcnow() - dt.timedelta(microseconds=duration // 1000)
        request, principal, engine = ctx.request, ctx.user, self.services.engine
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
        pairs = list(request.args.lists())

        def write() -> None:
            try:
                from shared.services import api_log

                api_log.record(engine, username=principal.username, began=began, method=request.method,
                               path=path, status_code=response.status_code, duration_ns=duration,
                               params=api_log.params_text(pairs))
            except Exception:  # noqa: BLE001 - a lost log row must not fail a call that succeeded
                log.exception("Could not write the API log for %s %s", request.method, request.path)

        response.call_on_close(write)

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
    try:
        return get_api()(request)
    finally:
        discard_unread(request)  # before functions-framework reads the rest into memory
