"""The ledger's receiver of the Data Manager's charges (as-api.md §4), as CloudEvents from the broker.

Delivery is at least once, so both kinds are idempotent twice over: the inbox records each
event id (a re-delivery changes nothing), and the charges themselves are keyed by what they
are. A processing charge is kept once per ``(auth_code, sqn)``: the same charge re-sent under
another event id changes nothing, and one with different content (anything but its
timestamp) is refused with 422, since the ledger cannot know which is right. A storage charge
sets (absolute bytes) or moves (``+``/``-`` bytes) the size of one item (its name) of its
payer (product, else unit, else organisation) and reason, and the ledger keeps each UTC day's
peak (as-api.md §3.4): an absolute charge may be repeated harmlessly, a delta counts once per
event id. Charges for payers the ledger does not know are kept too (the DM's test product
has no ledger row); they count for nobody's coins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import TYPE_CHECKING, Any

from shared.account_server.coins import decimal
from shared.errors import PermanentFailure

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session

    from shared.events.consumer import Consumer

CONSUMER = "ledger"
ID_LENGTH = 64
ITEM_LENGTH = 256
_BYTES = re.compile(r"(?P<sign>[+-]?)(?P<digits>\d{1,3}(?:,\d{3})+|\d+)")
_REASONS = {0: "UNSPECIFIED", 1: "DATASET", 2: "PROJECT"}  # StorageReasonEnum


def create_consumer(engine: "Engine", key: bytes | None = None, *, production: bool = False) -> "Consumer":
    """The ``ledger`` consumer: processing and storage charges into the ledger's tables.

    With a ``key`` only events signed with it are taken (`shared.events.signing`); without
    one, unsigned events are taken in development and none in production."""
    from shared.db.session import core_transaction
    from shared.events import signing
    from shared.events.consumer import Consumer
    from shared.events.contracts import ProcessingCharge, StorageCharge

    def authenticate(event) -> str | None:
        if key is None:
            return "The ledger has no DM_EVENT_SIGNING_KEY: it takes no charges" if production else None
        if not signing.is_signed(event, key):
            return f"The event is not signed with the Data Manager's key (its '{signing.ATTRIBUTE}' attribute)"
        return None

    consumer = Consumer(CONSUMER, authenticate)

    @consumer.on(ProcessingCharge)
    def on_processing(event: ProcessingCharge, received) -> None:
        with core_transaction(engine) as s:
            if received.claim(s):
                record_processing(s, event.message)

    @consumer.on(StorageCharge)
    def on_storage(event: StorageCharge, received) -> None:
        with core_transaction(engine) as s:
            if received.claim(s):
                record_storage(s, event.message)

    return consumer


def _id(value: str, name: str) -> str | None:
    if len(value) > ID_LENGTH:
        raise PermanentFailure(f"The charge's {name} is longer than {ID_LENGTH} characters")
    return value or None


def digest(message: Any) -> str:
    """What makes two processing charges the same: every field but the timestamp."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("timestamp")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def record_processing(s: "Session | Connection", message: Any, now: dt.datetime | None = None) -> bool:
    """Keep one ``MerchantProcessingChargeMessage``; False when it was kept before."""
    from sqlalchemy import select

    from shared.db.base import utcnow
    from shared.db.models import LedgerProcessingCharge
    from shared.db.session import insert_new

    if decimal(message.coins) is None:
        raise PermanentFailure(f"The charge's coins {message.coins[:40]!r} are not a decimal number")
    if len(message.coins) > 40:
        raise PermanentFailure("The charge's coins are longer than 40 characters")
    values = dict(auth_code=message.auth_code, sqn=message.sqn, eoc=message.eoc, coins=message.coins.strip(),
                  name=message.name, username=message.user, product_id=_id(message.product, "product"),
                  unit_id=_id(message.unit, "unit"), organisation_id=_id(message.organisation, "organisation"),
                  merchant_kind=message.merchant_kind, merchant_name=message.merchant_name,
                  merchant_id=message.merchant_id, timestamp=message.timestamp, received=now or utcnow(),
                  additional_data=message.additional_data or None, digest=digest(message))
    table = LedgerProcessingCharge.__table__
    if insert_new(s, table, values):
        return True
    earlier = s.scalar(select(table.c.digest).where(table.c.auth_code == message.auth_code,
                                                    table.c.sqn == message.sqn))
    if earlier != values["digest"]:
        raise PermanentFailure(f"Charge {message.auth_code}/{message.sqn} was received before with "
                               "different content")
    return False


def parse_bytes(text: str) -> tuple[int, bool]:
    """A humanised byte count: (value, is_delta); ``"2,045,023"`` is absolute, ``"+4,096"`` a delta."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise PermanentFailure(f"The charge's bytes {text[:40]!r} are not a byte count such as '2,045,023' "
                               "or '+4,096'")
    value = int(match["digits"].replace(",", ""))
    return (-value if match["sign"] == "-" else value), bool(match["sign"])


def record_storage(s: "Session | Connection", message: Any, now: dt.datetime | None = None) -> None:
    """Apply one ``MerchantStorageChargeMessage`` to today's row of its payer, reason and item."""
    from sqlalchemy import select

    from shared.db.base import utcnow
    from shared.db.models import LedgerStorageCharge
    from shared.db.session import insert_new

    size, delta = parse_bytes(message.bytes)
    payer = _id(message.product, "product") or _id(message.unit, "unit") or _id(message.organisation,
                                                                                 "organisation")
    if payer is None:
        raise PermanentFailure("The storage charge names no payer")
    reason = _REASONS.get(message.reason)
    if reason is None:
        raise PermanentFailure(f"The storage charge's reason {message.reason} is not one of {sorted(_REASONS)}")
    now = now or utcnow()
    key = dict(payer_id=payer, reason=reason, item=message.name[:ITEM_LENGTH], day=now.date())
    table = LedgerStorageCharge.__table__
    where = [table.c[name] == value for name, value in key.items()]
    row = dict(username=message.user[:80] or None, auth_code=message.auth_code, updated=now,
               additional_data=message.additional_data or None)
    # lock today's row (PostgreSQL; SQLite holds the write lock) before reading the size it moves
    today = s.execute(select(table.c.current_bytes, table.c.peak_bytes).where(*where).with_for_update()).first()
    if today is None:
        before = s.scalar(select(table.c.current_bytes).where(*where[:3], table.c.day < key["day"])
                          .order_by(table.c.day.desc()).limit(1)) if delta else None
        current = max(0, (before or 0) + size) if delta else size
        if insert_new(s, table, dict(**key, current_bytes=current, peak_bytes=current, **row)):
            return
        today = s.execute(select(table.c.current_bytes, table.c.peak_bytes).where(*where).with_for_update()).one()
    current = max(0, today.current_bytes + size) if delta else size
    s.execute(table.update().where(*where).values(current_bytes=current, peak_bytes=max(today.peak_bytes, current),
                                                  **row))
