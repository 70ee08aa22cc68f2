"""The pieces the local Broker's tests share: subscribers and dead-letter sinks as small WSGI
apps on real local ports, Broker and Trigger manifests built in Python, and posting to the
ingress."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.events.delivery import Router

NS = "test"
PROTOBUF = bytes(range(256)) + b"\x00\xff\x80\x0a\x0d{\"not\": json}\xc3\x28"  # not UTF-8, not JSON
SCALE = 0.01  # PT1S in a manifest waits 10 ms here


# --- real HTTP plumbing -------------------------------------------------------------------


class Server:
    """A WSGI app served on a free local port."""

    def __init__(self, app: Callable):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def event(self) -> CloudEvent:
        return from_http(self.headers, self.body, data_unmarshaller=lambda b: b)


class Subscriber:
    """Records every request and answers from a script; the last answer repeats. An answer is
    a status, a (status, body[, headers]) tuple, or a callable taking the Received request."""

    def __init__(self, *script: Any):
        self.script = list(script) or [202]
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        got = Received(request.path, {k.lower(): v for k, v in request.headers.items()}, request.get_data())
        with self._lock:
            self.received.append(got)
            answer = self.script[min(len(self.received), len(self.script)) - 1]
        if callable(answer):
            answer = answer(got)
        if isinstance(answer, int):
            answer = (answer,)
        status, body, headers = (tuple(answer) + (b"", {}))[:3]
        return Response(body, status=status, headers=headers)(environ, start_response)

    def paths(self, event_id: str | None = None) -> list[str]:
        return [r.path for r in self.received if event_id is None or r.headers.get("ce-id") == event_id]


def free_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- manifests ----------------------------------------------------------------------------


def service(name: str, uri: str | None = None) -> dict:
    ref = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}
    destination: dict[str, Any] = {"ref": ref}
    if uri:
        destination["uri"] = uri
    return destination


def trigger(name: str, *, filters: list | None = None, attributes: dict | None = None,
            subscriber: dict | None = None, delivery: dict | None = None) -> dict:
    spec: dict[str, Any] = {"broker": "default", "subscriber": subscriber or service("sink", f"/{name}")}
    if filters is not None:
        spec["filters"] = filters
    if attributes is not None:
        spec["filter"] = {"attributes": attributes}
    if delivery is not None:
        spec["delivery"] = delivery
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def broker(delivery: dict | None = None) -> dict:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
            "metadata": {"name": "default", "namespace": NS},
            "spec": {"delivery": delivery} if delivery else {}}


def exact_type(type_: str) -> list:
    return [{"exact": {"type": type_}}]


def retries(n: int, delay: str = "PT1S", policy: str = "exponential", **more: Any) -> dict:
    return {"retry": n, "backoffPolicy": policy, "backoffDelay": delay, **more}


DLS = service("monitor", "/dead-letter")


def post(ingress: str, type_: str, data: bytes | None = b"", *, mode: str = "binary",
         content_type: str | None = "application/octet-stream", **extensions: str) -> CloudEvent:
    attributes = {"type": type_, "source": "/test", **extensions}
    if content_type:
        attributes["datacontenttype"] = content_type
    event = CloudEvent(attributes, data)
    headers, body = to_binary(event) if mode == "binary" else to_structured(event)
    response = requests.post(ingress, headers=headers, data=body, timeout=5)
    assert response.status_code == 202, response.text
    assert response.content == b""
    return event


def settle(router: Router) -> None:
    assert router.wait_idle(5), "the router did not settle"


def dead_letter_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
