"""Events the platform sent itself: an HMAC-SHA256 signature in a CloudEvents extension attribute.

The ledger's ``/event`` is reachable wherever the api is, and a charge there is money, so it
takes only events signed with the key its senders share (``DM_EVENT_SIGNING_KEY``; `dm run`
keeps one in its data folder and hands it to every process it starts). A Knative Broker
passes extension attributes through unchanged. The signature covers what a consumer acts on:
id, type, source, subject, content type and the data bytes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.events.wire import WireEvent

ATTRIBUTE = "dmsignature"
KEY_FILE = "event-signing.key"


def signature(event: "WireEvent", key: bytes) -> str:
    fields = [event.id, event.type, event.source, event.subject or "", event.content_type,
              hashlib.sha256(event.data or b"").hexdigest()]
    return hmac.new(key, json.dumps(fields).encode(), hashlib.sha256).hexdigest()


def sign(event: "WireEvent", key: bytes | None) -> "WireEvent":
    """``event`` carrying its signature (unchanged when there is no key)."""
    if not key:
        return event
    return event.without(ATTRIBUTE).with_attributes(**{ATTRIBUTE: signature(event.without(ATTRIBUTE), key)})


def is_signed(event: "WireEvent", key: bytes) -> bool:
    given = event.attributes.get(ATTRIBUTE, "")
    return hmac.compare_digest(given.encode(), signature(event.without(ATTRIBUTE), key).encode())


def key_of(settings: "Settings") -> bytes | None:
    """``DM_EVENT_SIGNING_KEY``, else the key `dm run` keeps in the data folder (so that `dm monitor
    run` by hand signs as the stack does), else none."""
    if settings.event_signing_key:
        return settings.event_signing_key.encode()
    try:
        return (settings.data_dir / "auth" / KEY_FILE).read_text().strip().encode() or None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def process_key() -> bytes | None:
    """The key this process signs the events it sends with (none configured: unsigned)."""
    from shared.config import get_settings

    return key_of(get_settings())


def local_key(data_dir: Path) -> str:
    """The local stack's key, made once in its data folder (readable by its owner only)."""
    path = data_dir / "auth" / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_text().strip()
