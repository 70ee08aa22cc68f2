"""The protobuf consumer: PodMessages become task states and instance phases.

Delivery is at least once and in no particular order, so every change is guarded: a
finished task never moves again, a finished instance keeps its phase, a start is
recorded once.
"""

from __future__ import annotations

import datetime as dt
import logging

from shared.process_services import ProcessServices
from shared.events.consumer import EventView, PermanentFailure, claim, handle as dispatch

log = logging.getLogger("dm.pbc")
CONSUMER = "pbc"
POD_MESSAGE_EVENT = "dm.pod.message.v1"
ENDED_WELL = ("Succeeded", "Completed")
ENDED = ENDED_WELL + ("Failed",)


services = ProcessServices()  # settings from the environment, collaborators on first use


def _time(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def on_pod_message(event: EventView) -> None:
    from shared.messages.pod_message_pb2 import PodMessage

    try:
        message = PodMessage.FromString(event.raw)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise PermanentFailure("The event's data is not a PodMessage") from None
    if not message.instance or not message.task:
        raise PermanentFailure("The PodMessage names no instance or no task")
    apply(services.engine, message, event)


def apply(engine, message, event: EventView | None = None) -> None:
    """Apply one PodMessage in one transaction (with the event's claim, when there is one).

    A handful of guarded statements, no ORM objects: pbc sees every pod's every change.
    """
    from sqlalchemy import func, select, update

    from shared.db.base import utcnow
    from shared.db.models import Instance
    from shared.db.models.job import TERMINAL_PHASES
    from shared.db.session import transaction
    from shared.services import tasks

    table = Instance.__table__
    with transaction(engine) as s:
        if event is not None and not claim(s, CONSUMER, event):
            return  # handled before
        row = s.execute(select(table.c.phase, table.c.started, table.c.application_type, table.c.delete_task_id)
                        .where(table.c.id == message.instance)).first()
        if row is None:
            raise PermanentFailure(f"There is no instance {message.instance}")
        if row.phase in TERMINAL_PHASES:
            return  # finished before: a late or repeated message changes nothing
        this = update(table).where(table.c.id == message.instance, table.c.phase.not_in(TERMINAL_PHASES))
        started = _time(message.start_timestamp)
        if message.phase == "Running":
            if row.phase == "PENDING" or row.started is None:  # a start is recorded once
                s.execute(this.values(phase="RUNNING", started=func.coalesce(table.c.started, started or utcnow())))
            tasks.mark_started(s, message.task)
            return
        if message.phase not in ENDED:
            phase = {"CrashLoopBackOff": "CRASH_LOOP_BACKOFF", "ImagePullBackOff": "IMAGE_PULL_BACKOFF",
                     "Unknown": "UNKNOWN"}.get(message.phase)
            if phase and phase != row.phase:  # a troubled pod: shown, but not final
                s.execute(this.values(phase=phase))
            return
        code = message.exit_code if message.has_exit_code else None
        good = message.phase in ENDED_WELL and code in (0, None)
        if row.application_type == "APPLICATION" and row.delete_task_id:
            good = True  # an application's life ends when it is deleted: that is its success
        reason = None
        if not good:
            if row.delete_task_id:
                reason = "The instance was stopped (deleted) before it finished"
            elif code is not None:
                reason = f"The job failed with exit code {code}"
            else:
                reason = "The pod ended before its job could finish"
        moved = s.execute(this.values(
            phase="COMPLETED" if good else "FAILED", stopped=_time(message.finish_timestamp) or utcnow(),
            exit_code=code, error_message=reason,
            started=func.coalesce(table.c.started, started))).rowcount
        if not moved:
            return  # a concurrent message finished it first
        tasks.mark_started(s, message.task)  # ended before its start was seen: STARTED comes first
        if good:
            tasks.set_state(s, message.task, "SUCCESS", "The instance finished", exit_code=0)
        else:
            tasks.set_state(s, message.task, "FAILURE", reason, exit_code=code if code else 1)


HANDLERS = {POD_MESSAGE_EVENT: on_pod_message}


def handle(request):
    return dispatch(request, HANDLERS)
