"""A small real HTTP server standing in for the Kubernetes API, for the pod calls the platform makes.

It serves, on 127.0.0.1 and a free port:

- ``POST /api/v1/namespaces/{ns}/pods`` (201 with the stored pod; 409 AlreadyExists; 422 Invalid),
- ``GET /api/v1/namespaces/{ns}/pods`` (a PodList; ``labelSelector`` with ``k=v``, ``k==v``,
  ``k!=v``, ``k`` and ``!k`` terms, comma-separated), and with ``watch=true`` a real watch
  stream (chunked, one JSON event a line, honouring ``resourceVersion`` and ``timeoutSeconds``),
- ``GET`` / ``DELETE /api/v1/namespaces/{ns}/pods/{name}`` (404 NotFound for unknown pods),
- ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` (plain text; ``limitBytes``, ``tailLines``,
  ``sinceTime`` (whole seconds, as the API server passes it on to the kubelet) and
  ``timestamps`` honoured; 400 while the pod is Pending, as the API server answers),

and for an application's way in, ``POST`` ``/api/v1/namespaces/{ns}/services`` and
``/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses`` (201 with the stored object, a cluster IP
for a Service; 409 AlreadyExists; 422 Invalid), and ``GET`` / ``DELETE`` of one by name (404
NotFound; a deleted Service is answered with itself, an Ingress with a Success Status),
with errors as real ``Status`` objects. Tests drive the pods' lives with `set_phase` and
`append_log`, which build the status with the same helper the local launcher uses. Each log
line keeps the time its first byte arrived (a chosen one, to the nanosecond, if given), as the
container runtime stamps it; `log_reads` records each log request and the bytes it returned.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
import re
import socket
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.launchers import pods
from tests.k8s_objects import ObjectRoutes, ObjectStore, match_object

_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<log>/log)?)?/?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DEFAULT_WATCH_TIMEOUT_S = 60
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # what Go's strconv.ParseBool takes (the client sends "True")
_NS = 1_000_000_000
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([-+])(\d\d):(\d\d))")


def _nanos(at: str | dt.datetime | int) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (ValueError if it is none), a datetime or ns."""
    if isinstance(at, int):
        return at
    if isinstance(at, dt.datetime):
        delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000
    m = _TIME.fullmatch(at)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {at!r}")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if sign:
        seconds -= (1 if sign == "+" else -1) * (int(off_h) * 3600 + int(off_m) * 60)
    return seconds * _NS + int((fraction or "0").ljust(9, "0"))


def _stamp(nanos: int) -> str:
    """Go's time.RFC3339Nano in UTC, as the kubelet prefixes lines: trailing zeros of the fraction dropped."""
    seconds, fraction = divmod(nanos, _NS)
    digits = f"{fraction:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{digits}" if digits else "") + "Z"


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A failure as the API server reports it: a v1 Status."""
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}
    if details is not None:
        status["details"] = details
    return status


class ApiError(Exception):
    def __init__(self, status: dict[str, Any]):
        super().__init__(status["message"])
        self.status = status


def _not_found(name: str) -> ApiError:
    return ApiError(status_object(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}))


def _invalid(name: str, causes: list[tuple[str, str]]) -> ApiError:
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(status_object(422, "Invalid", f'Pod "{name}" is invalid: {text}', {
        "name": name, "kind": "Pod",
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]}))


def _selector(text: str):
    """A predicate on labels for an equality-based label selector."""
    terms = []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) != v)
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append(lambda labels, k=key.strip(), v=value.strip(): labels.get(k) == v)
        elif term.startswith("!"):
            terms.append(lambda labels, k=term[1:].strip(): k not in labels)
        else:
            terms.append(lambda labels, k=term: k in labels)
    return lambda labels: all(t(labels) for t in terms)


def _validate(pod: dict[str, Any]) -> None:
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                                        "lower case alphanumeric characters, '-' or '.'"))
    for key, value in (meta.get("labels") or {}).items():
        if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
            causes.append((f"metadata.labels[{key}]", f'Invalid value: "{value}": a valid label must be 63 '
                           "characters or less and consist of alphanumerics, '-', '_' or '.'"))
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(("spec.containers", "Required value"))
    for i, container in enumerate(containers):
        cname = container.get("name") or ""
        if len(cname) > 63 or not _LABEL_NAME.match(cname):
            causes.append((f"spec.containers[{i}].name", f'Invalid value: "{cname}": a lowercase RFC 1123 label '
                                                          "must consist of lower case alphanumeric characters or '-'"))
        if not container.get("image"):
            causes.append((f"spec.containers[{i}].image", "Required value"))
    if causes:
        raise _invalid(name, causes)


class KubernetesStandIn(ObjectStore):
    """The pod part of a Kubernetes API server, in memory, on a real port."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        # each pod's log lines: [time in ns, text, ended with "\n"]
        self._logs: dict[tuple[str, str], list[list[Any]]] = {}
        self.log_reads: list[dict[str, Any]] = []  # {"query": {...}, "bytes": n} of each log request
        self._history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, type, namespace, pod)
        self._version = 1000
        self._cond = threading.Condition()
        self._failures: list[dict[str, Any]] = []
        self._closing = False
        self._connections: set[socket.socket] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path with query) as received
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name): Service, Ingress
        self._cluster_ips = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "KubernetesStandIn":
        standin = self

        class Handler(_Handler):
            api = standin

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = False  # so server_close joins every handler thread
        server.block_on_close = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="k8s-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the watches, close every connection and join every thread."""
        if self._server is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._server.shutdown()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> "KubernetesStandIn":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- test controls ------------------------------------------------------------------

    def fail_next(self, code: int, reason: str = "InternalError", message: str = "injected failure") -> None:
        """The next request (of any kind) gets this error Status instead of an answer."""
        with self._cond:
            self._failures.append(status_object(code, reason, message))

    def pod(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._cond:
            key = self._find(name, namespace)
            return copy.deepcopy(self._pods[key]) if key else None

    def pod_names(self, namespace: str | None = None) -> list[str]:
        with self._cond:
            return sorted(n for ns, n in self._pods if namespace is None or ns == namespace)

    def set_phase(self, name: str, phase: str, exit_code: int | None = None, namespace: str | None = None) -> dict:
        """Move a pod to ``phase`` (Pending, Running, Succeeded, Failed); watchers see MODIFIED."""
        with self._cond:
            key = self._find(name, namespace)
            if key is None:
                raise KeyError(name)
            pod = self._pods[key]
            container = pod["spec"]["containers"][0]
            now = pods.timestamp()
            previous = pod.get("status") or {}
            started = previous.get("startTime") or now
            if phase in pods.TERMINAL_PHASES and exit_code is None:
                exit_code = 0 if phase == "Succeeded" else 1
            pod["status"] = pods.pod_status(
                phase, container_name=container["name"], image=container["image"],
                created=pod["metadata"]["creationTimestamp"],
                started_at=None if phase == "Pending" else started,
                finished_at=now if phase in pods.TERMINAL_PHASES else None, exit_code=exit_code,
                container_id=f"containerd://{pod['metadata']['uid'].replace('-', '')}",
                host_ip=None if phase == "Pending" else "10.0.0.7")
            if phase != "Pending":
                pod["spec"].setdefault("nodeName", "worker-1")
            self._changed("MODIFIED", key)
            return copy.deepcopy(pod)

    def append_log(self, name: str, text: str | bytes, namespace: str | None = None,
                   at: str | dt.datetime | int | None = None) -> None:
        """Write ``text`` to the pod's log at time ``at`` (RFC 3339, an aware datetime or ns since
        the epoch; now by default). A line not yet ended goes on with its first time."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        nanos = time.time_ns() if at is None else _nanos(at)
        with self._cond:
            key = self._find(name, namespace)
            if key is None:
                raise KeyError(name)
            lines = self._logs.setdefault(key, [])
            start = 0
            while start < len(data):
                end = data.find(b"\n", start)
                piece = data[start:] if end < 0 else data[start:end + 1]
                start += len(piece)
                if lines and not lines[-1][2]:
                    lines[-1][1] += piece
                    lines[-1][2] = piece.endswith(b"\n")
                else:
                    lines.append([nanos, bytearray(piece), piece.endswith(b"\n")])

    # --- the store ------------------------------------------------------------------

    def _find(self, name: str, namespace: str | None) -> tuple[str, str] | None:
        for ns, n in self._pods:
            if n == name and (namespace is None or ns == namespace):
                return ns, n
        return None

    def _changed(self, kind: str, key: tuple[str, str], pod: dict[str, Any] | None = None) -> None:
        """Record a change with a new resourceVersion and wake the watchers (``_cond`` held)."""
        self._version += 1
        pod = pod if pod is not None else self._pods[key]
        pod["metadata"]["resourceVersion"] = str(self._version)
        self._history.append((self._version, kind, key[0], copy.deepcopy(pod)))
        self._cond.notify_all()

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(body)
        meta = pod.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            raise ApiError(status_object(400, "BadRequest", "the namespace of the provided object does not match "
                                                             "the namespace sent on the request"))
        if pod.get("kind", "Pod") != "Pod" or pod.get("apiVersion", "v1") != "v1":
            raise ApiError(status_object(400, "BadRequest", "the object is not a v1 Pod"))
        _validate(pod)
        name = meta["name"]
        with self._cond:
            if (namespace, name) in self._pods:
                raise ApiError(status_object(409, "AlreadyExists", f'pods "{name}" already exists',
                                             {"name": name, "kind": "pods"}))
            pod.update(apiVersion="v1", kind="Pod")
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=pods.timestamp())
            spec = pod.setdefault("spec", {})
            for field, default in (("dnsPolicy", "ClusterFirst"), ("schedulerName", "default-scheduler"),
                                   ("serviceAccountName", "default"), ("terminationGracePeriodSeconds", 30),
                                   ("restartPolicy", "Always")):
                spec.setdefault(field, default)
            container = spec["containers"][0]
            pod["status"] = pods.pod_status("Pending", container_name=container["name"], image=container["image"],
                                            created=meta["creationTimestamp"])
            self._pods[(namespace, name)] = pod
            self._changed("ADDED", (namespace, name))
            return copy.deepcopy(pod)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            pod = self._pods.get((namespace, name))
            if pod is None:
                raise _not_found(name)
            return copy.deepcopy(pod)

    def delete(self, namespace: str, name: str) -> dict[str, Any]:
        """Gone at once: watchers see MODIFIED (deletionTimestamp set), then DELETED."""
        with self._cond:
            pod = self._pods.get((namespace, name))
            if pod is None:
                raise _not_found(name)
            pod["metadata"].update(deletionTimestamp=pods.timestamp(), deletionGracePeriodSeconds=0)
            self._changed("MODIFIED", (namespace, name))
            del self._pods[(namespace, name)]
            self._logs.pop((namespace, name), None)
            self._changed("DELETED", (namespace, name), pod)
            return copy.deepcopy(pod)

    def list(self, namespace: str, selector: str) -> dict[str, Any]:
        match = _selector(selector)
        with self._cond:
            items = []
            for (ns, _), pod in sorted(self._pods.items()):
                if ns == namespace and match(pod["metadata"].get("labels") or {}):
                    item = copy.deepcopy(pod)
                    item.pop("kind", None)  # list items carry neither kind nor apiVersion
                    item.pop("apiVersion", None)
                    items.append(item)
            return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._version)},
                    "items": items}

    def log(self, namespace: str, name: str, query: dict[str, str]) -> bytes:
        with self._cond:
            pod = self._pods.get((namespace, name))
            if pod is None:
                raise _not_found(name)
            if (pod.get("status") or {}).get("phase") == "Pending":
                container = pod["spec"]["containers"][0]["name"]
                raise ApiError(status_object(400, "BadRequest", f'container "{container}" in pod "{name}" is '
                                                                 "waiting to start: ContainerCreating"))
            lines = [(nanos, bytes(text)) for nanos, text, _ in self._logs.get((namespace, name), [])]
        if query.get("tailLines"):  # the kubelet finds the tail first, then passes over lines before sinceTime
            lines = lines[-int(query["tailLines"]):] if int(query["tailLines"]) else []
        if query.get("sinceTime"):
            try:
                since = _nanos(query["sinceTime"]) // _NS * _NS  # whole seconds reach the kubelet
            except ValueError:
                raise ApiError(status_object(400, "BadRequest", f'parsing time "{query["sinceTime"]}": '
                                                                 "not RFC 3339")) from None
            lines = [(nanos, text) for nanos, text in lines if nanos >= since]
        stamps = query.get("timestamps") in _TRUE
        data = b"".join((_stamp(nanos).encode() + b" " if stamps else b"") + text for nanos, text in lines)
        if query.get("limitBytes"):
            data = data[: int(query["limitBytes"])]
        with self._cond:
            self.log_reads.append({"query": dict(query), "bytes": len(data)})
        return data

    def watch_events(self, namespace: str, selector: str, resource_version: str | None, timeout_s: float):
        """The watch's events as they happen: a generator of (type, pod) until the timeout."""
        match = _selector(selector)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if resource_version in (None, "", "0"):
                cursor = self._version
                pending = [("ADDED", copy.deepcopy(p)) for (ns, _), p in sorted(self._pods.items())
                           if ns == namespace and match(p["metadata"].get("labels") or {})]
            else:
                cursor = int(resource_version)
                pending = []
                if self._history and cursor < self._history[0][0] - 1:
                    yield "ERROR", status_object(410, "Expired", f"too old resource version: {cursor}")
                    return
        while True:
            for event in pending:
                yield event
            with self._cond:
                while True:
                    pending = [(kind, copy.deepcopy(p)) for rv, kind, ns, p in self._history
                               if rv > cursor and ns == namespace and match(p["metadata"].get("labels") or {})]
                    cursor = self._version
                    remaining = deadline - time.monotonic()
                    if pending or self._closing or remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if not pending:
                return

    def _take_failure(self) -> dict[str, Any] | None:
        with self._cond:
            return self._failures.pop(0) if self._failures else None


class _Handler(ObjectRoutes, BaseHTTPRequestHandler):
    api: KubernetesStandIn
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, as the real server
    timeout = 30  # an idle kept-alive connection is dropped after this

    def setup(self) -> None:
        super().setup()
        with self.api._cond:
            self.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.api._cond:
            self.api._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet, as the base class names it
        pass

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        self.api.requests.append((method, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        failure = self.api._take_failure()
        if failure is not None:
            return self._send_json(failure["code"], failure)
        other = match_object(parsed.path)
        if other is not None:
            return self._object(method, *other, raw)
        match = _PODS.match(parsed.path)
        try:
            if match is None:
                raise ApiError(status_object(404, "NotFound", "the server could not find the requested resource"))
            ns, name, is_log = match["ns"], match["name"], bool(match["log"])
            if method == "POST" and name is None:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise ApiError(status_object(400, "BadRequest", "the body is not JSON")) from None
                return self._send_json(201, self.api.create(ns, body))
            if method == "GET" and name is None and query.get("watch") in _TRUE:
                return self._watch(ns, query)
            if method == "GET" and name is None:
                return self._send_json(200, self.api.list(ns, query.get("labelSelector", "")))
            if method == "GET" and is_log:
                data = self.api.log(ns, name, query)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if method == "GET" and name and not is_log:
                return self._send_json(200, self.api.get(ns, name))
            if method == "DELETE" and name and not is_log:
                return self._send_json(200, self.api.delete(ns, name))
            raise ApiError(status_object(405, "MethodNotAllowed", "the server does not allow this method"))
        except ApiError as exc:
            return self._send_json(exc.status["code"], exc.status)

    def _watch(self, namespace: str, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        timeout_s = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        try:
            for kind, obj in self.api.watch_events(namespace, query.get("labelSelector", ""),
                                                   query.get("resourceVersion"), timeout_s):
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(f"{len(line):X}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")
