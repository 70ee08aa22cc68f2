"""Application instances on the api's own port: ``/<instance-id>/…`` forwarded to the instance's
process (the local stack), and the authorisation check an Ingress asks before it forwards (a cluster).

`with_instance_routes` wraps the process's WSGI app: ``GET /data-manager-api/instance-access/<id>``
answers 200, 401, 403, 404 or 503 for nginx's ``auth-url`` sub-request (not an API operation: it is
outside the OpenAPI document), and with ``proxy`` every request under ``/<instance-id>`` is checked
(`shared.services.instance_access`) and streamed both ways to the instance: its body read and sent on
in pieces, the answer passed back as it arrives. WSGI cannot hand a connection over, so WebSocket
upgrades are `upgrade`'s, which `shared.http_server` turns into tunnels.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import quote, urlsplit

from shared.config import API_PREFIX
from shared.errors import DmError, Unavailable

if TYPE_CHECKING:
    from shared.process_services import ProcessServices

log = logging.getLogger("dm.api.instance_proxy")

ACCESS_PREFIX = API_PREFIX + "/instance-access/"
CHUNK = 64 * 1024
READ_TIMEOUT_S = 3600.0  # a notebook may think for long before it answers
# never sent on: they describe one hop, or carry the user's credentials
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "trailers", "transfer-encoding", "upgrade", "authorization", "content-length", "host"})


def _services() -> "ProcessServices":
    from functions.api.app import get_api

    return get_api().services  # the api's own: one verifier, engine and launcher per process


def backend_address(services: "ProcessServices", instance_id: str) -> tuple[str, int] | None:
    """Where the instance's process listens: its pod's IP and its container's port; None while unknown."""
    pod = services.launcher.pod(instance_id)
    if not pod or (pod.get("status") or {}).get("phase") != "Running":
        return None
    host = (pod.get("status") or {}).get("podIP")
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    ports = containers[0].get("ports") or [{}]
    port = ports[0].get("containerPort")
    return (host, int(port)) if host and port else None


def _json(start_response, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps({"error": message}).encode()
    start_response(f"{status} {http.client.responses.get(status, '')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _secure(settings) -> bool:
    return settings.base_url.startswith("https://")


def _without_our_cookie(cookie: str) -> str:
    from shared.services.instance_access import COOKIE

    kept = [p.strip() for p in cookie.split(";") if p.strip() and p.strip().partition("=")[0] != COOKIE]
    return "; ".join(kept)


def _forwarded_headers(environ: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in environ.items():
        if not key.startswith("HTTP_"):
            continue
        name = key[5:].replace("_", "-").title()
        if name.lower() in _HOP_BY_HOP:
            continue
        if name == "Cookie":
            value = _without_our_cookie(value)
            if not value:
                continue
        out.append((name, value))
    if environ.get("CONTENT_TYPE"):
        out.append(("Content-Type", environ["CONTENT_TYPE"]))
    if environ.get("HTTP_HOST"):
        out.append(("Host", environ["HTTP_HOST"]))
    client = environ.get("REMOTE_ADDR")
    if client:
        earlier = environ.get("HTTP_X_FORWARDED_FOR")
        out = [(n, v) for n, v in out if n != "X-Forwarded-For"]
        out.append(("X-Forwarded-For", f"{earlier}, {client}" if earlier else client))
    out.append(("X-Forwarded-Proto", environ.get("wsgi.url_scheme", "http")))
    return out


def _target(environ: dict, query: str) -> str:
    """The path as the client sent it (waitress keeps it raw), with ``query``."""
    raw = environ.get("REQUEST_URI")
    if raw and raw.startswith("/"):
        target = raw.partition("?")[0]
    else:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target = quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    return f"{target}?{query}" if query else target


def proxy(environ: dict, start_response) -> Iterable[bytes]:
    """One request under ``/<instance-id>``: checked, then forwarded; the token in a query is swapped
    for a cookie by a redirect to the same URL without it."""
    from shared.services import instance_access as access

    services = _services()
    path = environ.get("PATH_INFO", "")
    match = access.INSTANCE_PATH.match(path)
    if match is None:
        return _json(start_response, 404, "Not found")
    instance_id = match.group(1)
    query = environ.get("QUERY_STRING", "")
    from_query = access.query_token(query)
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        if from_query is not None:
            access.check(services.engine, services.verifier, instance_id, from_query)
            cookie = ("Set-Cookie", access.cookie_header(instance_id, from_query, _secure(services.settings)))
            rest = access.without_token(query)
            if method in ("GET", "HEAD"):
                location = _target(environ, rest)
                start_response("303 See Other", [("Location", location), cookie, ("Cache-Control", "no-store"),
                                                 ("Referrer-Policy", "no-referrer"), ("Content-Length", "0")])
                return [b""]
            query = rest
        else:
            token = access.token_of(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_COOKIE"))
            access.check(services.engine, services.verifier, instance_id, token)
        address = backend_address(services, instance_id)
        if address is None:
            raise Unavailable(f"Instance {instance_id} does not answer yet", retry_after=access.RETRY_AFTER_S)
    except DmError as exc:
        return _json(start_response, exc.status, exc.message, exc.headers.items())
    return _forward(environ, start_response, address, method, _target(environ, query))


def _forward(environ: dict, start_response, address: tuple[str, int], method: str, target: str) -> Iterable[bytes]:
    connection = http.client.HTTPConnection(*address, timeout=READ_TIMEOUT_S)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in _forwarded_headers(environ):
            connection.putheader(name, value)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(length))
        connection.endheaders()
        body = environ["wsgi.input"]
        while length > 0:  # sent on as it is read: never the whole body in memory
            chunk = body.read(min(CHUNK, length))
            if not chunk:
                break
            connection.send(chunk)
            length -= len(chunk)
        response = connection.getresponse()
    except OSError as exc:
        connection.close()
        log.info("Instance at %s:%s did not answer: %s", *address, exc)
        return _json(start_response, 503, "The instance does not answer yet", [("Retry-After", "2")])
    headers = [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP or n.lower() == "content-length"]
    start_response(f"{response.status} {response.reason}", headers)
    return _Streamed(connection, response)


class _Streamed:
    """The instance's answer, passed on as it arrives (``read1``: what is there, not a full chunk)."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self.connection, self.response = connection, response

    def __iter__(self):
        try:
            while True:
                data = self.response.read1(CHUNK)
                if not data:
                    return
                yield data
        except (OSError, http.client.HTTPException) as exc:
            log.info("The instance's answer broke off: %s", exc)

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def access_check(environ: dict, start_response) -> Iterable[bytes]:
    """``GET /data-manager-api/instance-access/<instance-id>``: nginx's ``auth-url`` sub-request.

    It carries the original request's headers (the bearer token or the instance cookie) and
    ``X-Original-URL``, whose ``token`` query parameter counts too: then the answer sets the cookie
    (``auth-always-set-cookie``), so the browser needs the token in the address only once."""
    from shared.services import instance_access as access

    services = _services()
    instance_id = environ.get("PATH_INFO", "")[len(ACCESS_PREFIX):]
    from_query = access.query_token(urlsplit(environ.get("HTTP_X_ORIGINAL_URL", "")).query)
    token = from_query or access.token_of(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_COOKIE"))
    try:
        allowed = access.check(services.engine, services.verifier, instance_id, token)
    except DmError as exc:
        return _json(start_response, exc.status, exc.message, exc.headers.items())
    headers = [("Content-Length", "0"), ("Cache-Control", "no-store"), ("X-Auth-Request-User", allowed.username)]
    if from_query:
        secure = urlsplit(environ.get("HTTP_X_ORIGINAL_URL", "")).scheme == "https"
        headers.append(("Set-Cookie", access.cookie_header(instance_id, from_query, secure)))
    start_response("200 OK", headers)
    return [b""]


def with_instance_routes(app: Callable, *, proxy_instances: bool) -> Callable:
    """``app`` with the access check, and (``proxy_instances``) the instances' paths in front of it.

    Without the proxy nothing here is loaded until a request needs it: `shared.services.instance_access`
    brings SQLAlchemy and the models, which a function's ``GET /version`` never uses."""
    if proxy_instances:
        from shared.services.instance_access import INSTANCE_PATH

    def wrapped(environ: dict, start_response) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(ACCESS_PREFIX):
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
                return _json(start_response, 405, "Method not allowed here", [("Allow", "GET, HEAD")])
            return access_check(environ, start_response)
        if proxy_instances and INSTANCE_PATH.match(path):
            return proxy(environ, start_response)
        return app(environ, start_response)

    return wrapped


# --- WebSocket upgrades, as tunnels (shared.http_server) -----------------------------------------


def upgrade(request) -> Any:
    """`shared.http_server`'s ``upgrade`` hook: a WebSocket upgrade under ``/<instance-id>`` becomes a
    tunnel to the instance (its head sent on without the user's token), if the visit is allowed."""
    from shared.http_server import Refusal, Upgrade
    from shared.services import instance_access as access

    match = access.INSTANCE_PATH.match(request.path)
    if match is None or request.headers.get("UPGRADE", "").lower() != "websocket":
        return None
    instance_id = match.group(1)
    services = _services()
    headers = request.headers
    token = access.query_token(request.query) or access.token_of(headers.get("AUTHORIZATION"),
                                                                 headers.get("COOKIE"))
    try:
        access.check(services.engine, services.verifier, instance_id, token)
        address = backend_address(services, instance_id)
        if address is None:
            raise Unavailable(f"Instance {instance_id} does not answer yet", retry_after=access.RETRY_AFTER_S)
    except DmError as exc:
        return Refusal(exc.status, exc.message, tuple(exc.headers.items()))
    return Upgrade(address[0], address[1], _tunnel_head(request, access.without_token(request.query)))


def _tunnel_head(request, query: str) -> bytes:
    """The request head as it came, less the user's credentials and the token in its query."""
    lines = request.raw_head.split(b"\r\n") if b"\r\n" in request.raw_head else request.raw_head.split(b"\n")
    uri = request.request_uri.partition("?")[0] + (f"?{query}" if query else "")
    out = [f"{request.command} {uri} HTTP/1.1".encode("latin-1")]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if not line.strip() or lowered in (b"authorization", b"proxy-authorization"):
            continue
        if lowered == b"cookie":
            value = _without_our_cookie(value.decode("latin-1")).encode("latin-1")
            if not value:
                continue
            line = name + b": " + value
        out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n"
