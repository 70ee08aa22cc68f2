"""Dead letters: events the Broker could not deliver, sent to the monitor's dead-letter sink.

Nothing is dropped silently. An event refused for good (a 4xx other than 404/408/409/429,
knative.md §1.4) fails at once; one that ran out of retries (the function was down, or kept
failing) is re-driven through the Broker with backoff for a bounded time. An event that
cannot be delivered in the end becomes a service error, and the task it belongs to ends
FAILURE with a reason a user can read.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from shared.db.base import utcnow
from shared.db.models import DeadLetter
from shared.db.session import transaction
from shared.errors import DmError
from shared.events import contracts, wire
from shared.services import service_errors, tasks

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger("dm.dead_letters")
RETRIED = frozenset({404, 408, 409, 429})  # and every 5xx: worth another try
MAX_REDRIVES = 5
FIRST_BACKOFF_S = 30.0


def receive(s: "Session", event: wire.WireEvent, *, now: dt.datetime | None = None) -> bool:
    """Keep a dead letter (once per event id); returns whether it is new or came back after a re-drive."""
    now = now or utcnow()
    attrs = event.attributes
    code = _int(attrs.get("knativeerrorcode"))
    error_data = attrs.get("knativeerrordata")
    if error_data:
        try:
            error_data = base64.b64decode(error_data).decode("utf-8", "replace")
        except ValueError:
            pass
    known = s.get(DeadLetter, event.id)
    if known is not None:
        if known.state != "REDRIVEN":
            return False  # a duplicate delivery of the same dead letter
        # it came back after a re-drive: try again later, or give up
        known.error_code, known.error_data, known.state = code, error_data, "REDRIVING"
        known.next_attempt = now + dt.timedelta(seconds=FIRST_BACKOFF_S * 2 ** known.attempts)
        if known.attempts >= MAX_REDRIVES:
            _fail(s, known, f"it was re-driven {known.attempts} times")
        return True
    letter = DeadLetter(event_id=event.id, type=event.type, source=event.source, subject=event.subject,
                        datacontenttype=attrs.get("datacontenttype"), data=event.data,
                        error_dest=attrs.get("knativeerrordest"), error_code=code, error_data=error_data,
                        state="REDRIVING", received=now, attempts=0,
                        next_attempt=now + dt.timedelta(seconds=FIRST_BACKOFF_S))
    s.add(letter)
    s.flush()
    if code is not None and 400 <= code < 500 and code not in RETRIED:
        _fail(s, letter, "it was refused as one that can never be handled")
    return True


def redrive(engine: "Engine", broker_url: str, *, now: dt.datetime | None = None) -> int:
    """Send the dead letters that are due back into the Broker (same id); returns how many."""
    from shared.events.outbox import post

    now = now or utcnow()
    with transaction(engine, readonly=True) as s:
        due = list(s.scalars(select(DeadLetter).where(DeadLetter.state == "REDRIVING",
                                                      DeadLetter.next_attempt <= now)
                             .order_by(DeadLetter.next_attempt).limit(100)))
    sent = 0
    for letter in due:
        with transaction(engine) as s:
            row = s.get(DeadLetter, letter.event_id)
            if row is None or row.state != "REDRIVING":
                continue
            if row.attempts >= MAX_REDRIVES:
                _fail(s, row, f"it was re-driven {row.attempts} times")
                continue
        try:
            post(broker_url, _original(letter))
        except OSError as exc:
            with transaction(engine) as s:
                s.execute(update(DeadLetter).where(DeadLetter.event_id == letter.event_id).values(
                    last_error=str(exc)[:1000], next_attempt=now + dt.timedelta(seconds=FIRST_BACKOFF_S)))
            return sent  # the Broker is away: all of them wait
        with transaction(engine) as s:
            s.execute(update(DeadLetter).where(DeadLetter.event_id == letter.event_id,
                                               DeadLetter.state == "REDRIVING").values(
                state="REDRIVEN", attempts=DeadLetter.attempts + 1, last_error=None))
        sent += 1
    return sent


def _original(letter: DeadLetter) -> wire.WireEvent:
    attributes = {"specversion": "1.0", "id": letter.event_id, "type": letter.type, "source": letter.source}
    if letter.subject:
        attributes["subject"] = letter.subject
    if letter.datacontenttype:
        attributes["datacontenttype"] = letter.datacontenttype
    return wire.from_attributes(attributes, letter.data)


def _fail(s: "Session", letter: DeadLetter, why: str) -> None:
    letter.state, letter.next_attempt = "FAILED", None
    where = f" to {letter.error_dest}" if letter.error_dest else ""
    answer = f" (HTTP {letter.error_code}: {letter.error_data})" if letter.error_code else ""
    summary = f"Event {letter.event_id} ({letter.type}) could not be delivered{where}: {why}{answer}"
    log.error(summary)
    service_errors.record(s, origin="monitor", summary=summary, error_code=letter.error_code)
    from shared.services.workflow_host import ends

    ends.end_for_dead_letter(s, letter.type, letter.data)  # a workflow run it belongs to ends with it
    task_id = _task_of(letter)
    if task_id:
        tasks.set_state(s, task_id, "FAILURE", "The platform could not finish this work; an administrator "
                                                "has been told (service error)", exit_code=1)


def _task_of(letter: DeadLetter) -> str | None:
    """The task an event belongs to, when its contract names one."""
    contract = contracts.contract_for(letter.type)
    if contract is None:
        return None
    try:
        event = contract.from_bytes(letter.data, letter.type)
    except DmError:
        return None
    task_id = getattr(event, "task_id", None) or getattr(getattr(event, "message", None), "task", None)
    return task_id if isinstance(task_id, str) and task_id else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
