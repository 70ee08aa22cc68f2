"""The local stack's Broker: delivers CloudEvents to the Triggers in `knative/`.

`Router` serves an ingress (POST a CloudEvent, get 202) and delivers each event to every
matching Trigger's subscriber (`shared.events.triggers`), with that Trigger's retries,
backoff, per-attempt timeout and dead-letter sink, the way Knative's channel-based Broker
does (reference/knative.md §5, §12). A subscriber's reply goes back into the Broker one hop
further on, counted in the knativebrokerttl extension.

Events are read and written by `shared.events.wire`; their data travels as raw bytes from
ingress to subscriber and is never decoded here, so protobuf payloads arrive byte for byte.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import heapq
import http.client
import itertools
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from cloudevents.http import CloudEvent
from werkzeug.wrappers import Request, Response

from shared.events import wire
from shared.events.triggers import DeliverySpec, Routing, Trigger
from shared.events.wire import NotACloudEvent, WireEvent

__all__ = ["DeadLettered", "Delivered", "Router"]

log = logging.getLogger("dm.router")

MAX_TTL = 255  # knativebrokerttl: hops a reply chain may take before it is dropped
TTL_EXTENSION = "knativebrokerttl"
ERROR_DATA_MAX = 1024  # bytes of a failed response kept in knativeerrordata
DEFAULT_TIMEOUT_S = 600.0  # per attempt, when the delivery sets none (not scaled)
KEEP_RECORDS = 10_000  # delivered / dead-lettered records kept for observability
RETRYABLE = frozenset({404, 408, 409, 429})  # and every 5xx (knative.md §1.4)


# --- on the wire --------------------------------------------------------------------------


def _hop_count(event: WireEvent) -> tuple[WireEvent, int]:
    """Take the hop count out of an event (subscribers never see it); missing or not a number
    means a fresh event with every hop left."""
    text = event.attributes.get(TTL_EXTENSION)
    try:
        ttl = int(text) if text is not None else MAX_TTL
    except ValueError:
        ttl = MAX_TTL
    return event.without(TTL_EXTENSION), ttl


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One POST with a deadline for the whole exchange; redirects are not followed."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = connection_class(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=dict(headers))
        sock = conn.sock
        response = conn.getresponse()
        chunks = []
        while not response.isclosed():  # closed once the whole body has been read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response within {timeout:g}s")
            if sock is not None:
                sock.settimeout(remaining)
            chunk = response.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, b"".join(chunks)
    finally:
        conn.close()


# --- the Broker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """An event a subscriber accepted."""

    trigger: str
    event_id: str
    event_type: str
    url: str
    status: int
    attempts: int
    reply_type: str | None = None


@dataclass(frozen=True)
class DeadLettered:
    """An event that could not be delivered: sent to `sink`, or (sink None) written to the
    dead-letter file and the log."""

    trigger: str
    event_id: str
    event_type: str
    error_dest: str
    error_code: int
    reason: str
    attempts: int
    sink: str | None


@dataclass
class _Job:
    trigger: Trigger
    delivery: DeliverySpec
    event: WireEvent
    url: str
    ttl: int
    attempts: int = 0
    failure: DeadLettered | None = None  # set when this job carries a dead letter to its sink


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "ok", "retry" or "fail"
    code: int
    body: bytes = b""
    reason: str = ""
    reply: WireEvent | None = None  # its hop count taken out: a reply is one hop on from its request


class Router:
    """The Broker stand-in: an ingress plus a small pool of delivery workers.

    `resolve(destination)` turns a Destination ({ref, uri}) into a local URL, or None when that
    service is not running here (its Triggers are skipped; a dead-letter sink that resolves to
    None sends dead letters to the file). `time_scale` multiplies backoff delays and the
    configured per-attempt timeouts, so tests can run a manifest's schedule quickly.
    """

    def __init__(self, routing: Routing, resolve: Callable[[Mapping[str, Any]], str | None], *,
                 dead_letter_file: Path | None = None, time_scale: float = 1.0,
                 broker: str = "default", namespace: str | None = None, workers: int = 4):
        if time_scale < 0 or workers < 1:
            raise ValueError("time_scale must be >= 0 and workers >= 1")
        self.routing = routing
        self.broker = broker
        self.dead_letter_file = Path(dead_letter_file) if dead_letter_file is not None else None
        self.time_scale = time_scale
        self._resolve = resolve
        known = routing.broker(broker, namespace)
        self.namespace = namespace if namespace is not None else (known.namespace if known else None)
        self._routes = [(t, routing.delivery_for(t)) for t in routing.triggers_for(broker, self.namespace)]
        self._workers = workers
        self._ready: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._delayed: list[tuple[float, int, _Job]] = []
        self._sequence = itertools.count()
        self._changed = threading.Condition()  # guards everything below; notified on any change
        self._pending = 0  # jobs queued, waiting for a retry, or in flight
        self._threads: list[threading.Thread] = []
        self._started = self._stopping = False
        self._delivered: collections.deque[Delivered] = collections.deque(maxlen=KEEP_RECORDS)
        self._dead_letters: collections.deque[DeadLettered] = collections.deque(maxlen=KEEP_RECORDS)
        self._dropped: collections.deque[str] = collections.deque(maxlen=KEEP_RECORDS)
        self._unresolved: set[str] = set()
        self._file_lock = threading.Lock()

    # observability ----------------------------------------------------------------------

    @property
    def delivered(self) -> list[Delivered]:
        """The most recent deliveries a subscriber accepted, oldest first."""
        with self._changed:
            return list(self._delivered)

    @property
    def dead_letters(self) -> list[DeadLettered]:
        """The most recent events that could not be delivered, oldest first."""
        with self._changed:
            return list(self._dead_letters)

    @property
    def dropped(self) -> list[str]:
        """Ids of events dropped because their hop count (knativebrokerttl) ran out."""
        with self._changed:
            return list(self._dropped)

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> "Router":
        with self._changed:
            if self._stopping:
                raise RuntimeError("a stopped Router cannot be started again")
            if self._started:
                return self
            self._started = True
        self._threads = [threading.Thread(target=self._schedule, name="dm-router-scheduler", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"dm-router-worker-{i}", daemon=True)
                          for i in range(self._workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the threads: a request in flight finishes, anything queued or waiting for a
        retry is dropped with a warning (the outbox sends it again). True if all ended in time."""
        with self._changed:
            if not self._stopping:
                self._stopping = True
                for _, _, job in self._delayed:
                    self._abandon(job)
                self._pending -= len(self._delayed)
                self._delayed.clear()
                self._changed.notify_all()
                for _ in range(self._workers if self._started else 0):
                    self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued, waiting for a retry or in flight (for tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def __enter__(self) -> "Router":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ingress ----------------------------------------------------------------------------

    def wsgi_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """POST / (or /<namespace>/<broker>) takes a binary or structured CloudEvent: 202."""
        request = Request(environ)
        return self._ingress(request)(environ, start_response)

    __call__ = wsgi_app

    def _ingress(self, request: Request) -> Response:
        if request.path == "/healthz":
            if request.method in ("GET", "HEAD"):
                return _json({"status": "ok"}, 200)
            return _json({"error": "method not allowed"}, 405, allow="GET, HEAD")
        paths = {"/", f"/{self.namespace}/{self.broker}" if self.namespace else f"/{self.broker}"}
        if request.path not in paths:
            return _json({"error": f"no broker at {request.path}"}, 404)
        if request.method != "POST":
            return _json({"error": "method not allowed"}, 405, allow="POST")
        try:
            event, ttl = _hop_count(wire.from_http(dict(request.headers), request.get_data()))
        except NotACloudEvent as exc:
            return _json({"error": f"not a CloudEvent: {exc}"}, 400)
        if self._stopping:
            return _json({"error": "the broker is stopping"}, 503)
        self._publish(event.with_attributes(knativearrivaltime=_now()), ttl)
        return Response(status=202)

    def publish(self, event: CloudEvent) -> int:
        """Route one event as if it came through the ingress; returns how many Triggers took it."""
        try:
            normal, ttl = _hop_count(wire.from_attributes(event.get_attributes(), event.data))
        except NotACloudEvent as exc:
            raise ValueError(str(exc)) from None
        if "knativearrivaltime" not in normal.attributes:
            normal = normal.with_attributes(knativearrivaltime=_now())
        return self._publish(normal, ttl)

    def _publish(self, event: WireEvent, ttl: int) -> int:
        if ttl <= 0:
            log.warning("dropped event %s (%s): its hop count ran out (a reply loop?)", event.id, event.type)
            with self._changed:
                self._dropped.append(event.id)
            return 0
        taken = 0
        for trigger, delivery in self._routes:
            if not trigger.matches(event.attributes):
                continue
            url = self._resolve_quietly(trigger.subscriber)
            if url is None:
                if trigger.name not in self._unresolved:
                    self._unresolved.add(trigger.name)
                    log.info("trigger %s: its subscriber is not running here; its events are skipped",
                             trigger.name)
                continue
            self._submit(_Job(trigger, delivery, event, url, ttl))
            taken += 1
        return taken

    def _resolve_quietly(self, destination: Mapping[str, Any]) -> str | None:
        try:
            return self._resolve(destination)
        except Exception:  # noqa: BLE001 - a broken resolver must not lose the event
            log.exception("could not resolve %s", destination)
            return None

    # the machinery -----------------------------------------------------------------------

    def _submit(self, job: _Job, delay: float = 0.0) -> None:
        with self._changed:
            if self._stopping:
                self._abandon(job)
                return
            self._pending += 1
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._sequence), job))
                self._changed.notify_all()
            else:
                self._ready.put(job)

    def _schedule(self) -> None:
        """Move retries whose backoff has passed onto the ready queue."""
        with self._changed:
            while not self._stopping:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready.put(heapq.heappop(self._delayed)[2])
                self._changed.wait(self._delayed[0][0] - now if self._delayed else None)

    def _work(self) -> None:
        while True:
            job = self._ready.get()
            if job is None:
                return
            try:
                if self._stopping:
                    self._abandon(job)
                else:
                    self._attempt(job)
            except Exception:  # noqa: BLE001 - a worker must survive anything
                log.exception("trigger %s: delivery of event %s failed", job.trigger.name, job.event.id)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()

    def _abandon(self, job: _Job) -> None:
        log.warning("router stopping: event %s (%s) for trigger %s not delivered",
                    job.event.id, job.event.type, job.trigger.name)

    def _attempt(self, job: _Job) -> None:
        job.attempts += 1
        # Binary mode unless the delivery asks for json (an attribute a header cannot carry
        # sends that event structured anyway).
        headers, body = wire.to_http(job.event, "json" if job.delivery.format == "json" else "binary")
        if job.failure is None:
            headers["Prefer"] = "reply"
        timeout = (job.delivery.timeout * self.time_scale if job.delivery.timeout is not None
                   else DEFAULT_TIMEOUT_S)
        try:
            status, response_headers, response_body = _post(job.url, headers, body, timeout)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out ...
            # Knative reports a failed dispatch as a 500 with the error text as the body.
            text = f"dispatch error: {type(exc).__name__}: {exc}"
            outcome = _Outcome("retry", 500, text.encode(), text)
        else:
            outcome = _judge(status, response_headers, response_body, expect_reply=job.failure is None)

        if outcome.kind == "ok":
            self._succeeded(job, outcome)
        elif outcome.kind == "retry" and job.attempts <= job.delivery.retry:
            delay = job.delivery.backoff(job.attempts) * self.time_scale
            log.info("trigger %s: event %s to %s failed (%s); retry %d/%d in %.3gs", job.trigger.name,
                     job.event.id, job.url, outcome.reason, job.attempts, job.delivery.retry, delay)
            self._submit(job, delay)
        elif job.failure is None:
            self._dead_letter(job, outcome)
        else:
            self._to_file(job.failure, job.event, f"{job.failure.reason}; dead-letter sink {job.url} "
                                                  f"failed too ({outcome.reason})")

    def _succeeded(self, job: _Job, outcome: _Outcome) -> None:
        if job.failure is not None:
            record = dataclasses.replace(job.failure, sink=job.url)
            log.warning("dead letter: trigger %s, event %s (%s) sent to %s: %s", record.trigger,
                        record.event_id, record.event_type, job.url, record.reason)
            with self._changed:
                self._dead_letters.append(record)
            return
        reply_type = outcome.reply.type if outcome.reply else None
        with self._changed:
            self._delivered.append(Delivered(job.trigger.name, job.event.id, job.event.type, job.url,
                                             outcome.code, job.attempts, reply_type))
        if outcome.reply is not None:
            # A reply goes back into the broker one hop further on (knativebrokerttl).
            self._publish(outcome.reply.with_attributes(knativearrivaltime=_now()), job.ttl - 1)

    def _dead_letter(self, job: _Job, outcome: _Outcome) -> None:
        """Send the original event, with the knativeerror* extensions, to the dead-letter sink."""
        extensions = {"knativeerrordest": job.url, "knativeerrorcode": str(outcome.code)}
        if outcome.body:
            extensions["knativeerrordata"] = base64.b64encode(outcome.body[:ERROR_DATA_MAX]).decode("ascii")
        event = job.event.with_attributes(**extensions)
        retried = f" after {job.attempts} attempts" if job.attempts > 1 else ""
        record = DeadLettered(job.trigger.name, job.event.id, job.event.type, job.url, outcome.code,
                              f"{outcome.reason}{retried}", job.attempts, None)
        sink = job.delivery.dead_letter_sink
        url = self._resolve_quietly(sink) if sink is not None else None
        if url is None:
            where = ("no dead-letter sink is configured" if sink is None
                     else "its dead-letter sink is not running here")
            self._to_file(record, event, f"{record.reason}; {where}")
            return
        self._submit(_Job(job.trigger, job.delivery, event, url, job.ttl, failure=record))

    def _to_file(self, record: DeadLettered, event: WireEvent, reason: str) -> None:
        record = dataclasses.replace(record, reason=reason, sink=None)
        log.error("dead letter: trigger %s, event %s (%s) not delivered: %s", record.trigger,
                  record.event_id, record.event_type, reason)
        with self._changed:
            self._dead_letters.append(record)
        if self.dead_letter_file is None:
            return
        line = json.dumps({"time": _now(), "broker": self.broker, "trigger": record.trigger,
                           "reason": reason, "event": wire.to_structured_dict(event)})
        try:
            with self._file_lock:
                self.dead_letter_file.parent.mkdir(parents=True, exist_ok=True)
                with self.dead_letter_file.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
        except OSError:
            log.exception("could not write the dead letter to %s", self.dead_letter_file)


def _judge(status: int, headers: Mapping[str, str], body: bytes, *, expect_reply: bool) -> _Outcome:
    """What a subscriber's answer means (knative.md §5, "What a subscriber's HTTP answer means")."""
    if 200 <= status < 300:
        if status == 202 or not expect_reply:
            return _Outcome("ok", status)  # a 202 body is never a reply
        if wire.looks_like_cloudevent(headers):
            try:
                reply, _ = _hop_count(wire.from_http(headers, body))
                return _Outcome("ok", status, reply=reply)
            except NotACloudEvent as exc:
                return _Outcome("retry", 502, body, f"{status} with an invalid reply event: {exc}")
        if body:
            # The channel-based broker turns this into a 502: retried, then dead-lettered.
            return _Outcome("retry", 502, body, f"{status} with a body that is not a CloudEvent")
        return _Outcome("ok", status)
    kind = "retry" if status in RETRYABLE or status >= 500 else "fail"
    return _Outcome(kind, status, body, f"HTTP {status}")


def _json(payload: Mapping[str, Any], status: int, *, allow: str | None = None) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    if allow:
        response.headers["Allow"] = allow
    return response


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
