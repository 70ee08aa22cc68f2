"""The plumbing every event function shares: read the CloudEvent, decode its contract, answer
the broker as it expects.

202 with an empty body when done; a 4xx the broker will not retry (400, 422) for an event
that can never be handled; an exception (500) for a passing fault, which the broker retries
(knative.md §1, §5). A handler receives the decoded contract and the ``Received`` event,
whose ``claim`` records it in the inbox inside the handler's transaction.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from shared.events import inbox, wire
from shared.errors import DmError
from shared.events.contracts import Contract

if TYPE_CHECKING:
    from flask import Request
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.consumer")
C = TypeVar("C", bound=Contract)


@dataclass(frozen=True)
class Received:
    """One delivery of an event to one consumer."""

    consumer: str
    event: wire.WireEvent

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.event.data or b"").hexdigest()

    def claim(self, s: "Session") -> bool:
        """Record this event as handled in ``s``'s transaction; False if it was handled before."""
        return inbox.claim(s, self.consumer, self.id, self.sha256)


Handler = Callable[[Contract, Received], None]


class Consumer:
    """One event function's handlers, one per contract it accepts."""

    def __init__(self, name: str, authenticate: Callable[[wire.WireEvent], str | None] | None = None):
        """``authenticate(event)`` may refuse an event with a reason (401) before any handler sees it."""
        self.name = name
        self.handlers: dict[str, tuple[type[Contract], Handler]] = {}
        self.authenticate = authenticate

    def on(self, contract: type[C]) -> Callable[[Callable[[C, Received], None]], Callable[[C, Received], None]]:
        """Register the decorated function for every CloudEvent type of ``contract``."""
        def register(handler):
            for event_type in contract.types():
                self.handlers[event_type] = (contract, handler)
            return handler
        return register

    @property
    def accepts(self) -> frozenset[str]:
        return frozenset(self.handlers)

    def handle(self, request: "Request"):
        """Answer one delivery as a Knative Broker expects."""
        if request.method != "POST":
            return ({"error": "POST a CloudEvent here"}, 405)
        try:
            event = wire.from_http(_headers(request.environ), request.get_data())
        except wire.NotACloudEvent as exc:
            return ({"error": f"Not a readable CloudEvent: {exc}"}, 400)
        found = self.handlers.get(event.type)
        if found is None:
            return ({"error": f"This function does not handle events of type {event.type!r}"}, 400)
        refused = self.authenticate(event) if self.authenticate is not None else None
        if refused is not None:
            log.error("Event %s (%s) from %s refused: %s", event.id, event.type, event.source, refused)
            return ({"error": refused}, 401)
        contract, handler = found
        try:
            handler(contract.from_bytes(event.data, event.type), Received(self.name, event))
        except DmError as exc:  # PermanentFailure, or a service's refusal: retrying cannot help
            if exc.status >= 500:
                raise
            log.error("Event %s (%s) can never be handled: %s", event.id, event.type, exc)
            return ({"error": exc.message}, 422)
        return ("", 202)


def _headers(environ: dict) -> dict[str, str]:
    """The request's headers, names lower-cased, straight from the WSGI environ: werkzeug's view of
    them decodes every header again on each look, and every event passes here."""
    headers = {name[5:].replace("_", "-").lower(): value for name, value in environ.items()
               if name.startswith("HTTP_")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return headers
