"""kew, the Kubernetes event watcher: pod events in, task events, charges and PodMessages out.

Pod events arrive as an ApiServerSource delivers them in Resource mode (the whole Pod as
JSON). For an instance pod kew reads the log from where it stopped last time, turns EVENT
lines into task events and COST lines into charges (once per sequence number), and when
the pod starts or ends it queues a PodMessage (protobuf) for pbc through the outbox.

The log position is the lease: it only moves forward through a guarded UPDATE, so two
deliveries racing over the same pod never record the same lines twice.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from shared.process_services import ProcessServices
from shared.events.consumer import EventView, PermanentFailure, claim, handle as dispatch

log = logging.getLogger("dm.kew")
CONSUMER = "kew"
POD_EVENTS = ("dev.knative.apiserver.resource.add", "dev.knative.apiserver.resource.update",
              "dev.knative.apiserver.resource.delete")
POD_MESSAGE_EVENT = "dm.pod.message.v1"
ENDED = ("Succeeded", "Failed")
READ_ATTEMPTS = 3
RATE_SCALE = Decimal(1000)


services = ProcessServices()  # settings from the environment, collaborators on first use


def on_pod_event(event: EventView) -> None:
    pod = event.data
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise PermanentFailure("The event's data is not a Pod")
    settings = services.settings
    handle_pod(services.engine, services.launcher, pod, deleted=event.type.endswith(".delete"), event=event,
               broker_url=settings.broker_url, remove_finished=settings.launcher == "kubernetes")


def pod_facts(pod: dict) -> dict[str, Any] | None:
    """What kew needs from a Pod: None for a pod that is not an instance's."""
    from shared.launchers.base import INSTANCE_LABEL, PURPOSE_LABEL, TASK_LABEL

    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(PURPOSE_LABEL) != "INSTANCE" or not labels.get(INSTANCE_LABEL) or not labels.get(TASK_LABEL):
        return None
    status = pod.get("status") or {}
    facts: dict[str, Any] = {"instance": labels[INSTANCE_LABEL], "task": labels[TASK_LABEL],
                             "pod_name": (pod.get("metadata") or {}).get("name") or labels[INSTANCE_LABEL],
                             "phase": status.get("phase") or "Unknown", "started": status.get("startTime"),
                             "finished": None, "exit_code": None, "waiting": None}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "terminated" in state:
            terminated = state["terminated"] or {}
            facts["exit_code"] = terminated.get("exitCode")
            facts["finished"] = terminated.get("finishedAt")
            facts["started"] = facts["started"] or terminated.get("startedAt")
        elif "running" in state:
            facts["started"] = facts["started"] or (state["running"] or {}).get("startedAt")
        elif "waiting" in state:
            facts["waiting"] = (state["waiting"] or {}).get("reason")
        break  # one container per instance pod
    if facts["waiting"] in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"):
        facts["phase"] = "ImagePullBackOff" if facts["waiting"] == "ErrImagePull" else facts["waiting"]
    return facts


def handle_pod(engine, launcher, pod: dict, *, deleted: bool = False, event: EventView | None = None,
               broker_url: str = "", remove_finished: bool = False) -> None:
    """Handle one state of one pod (idempotent: any state may come again, or late).

    ``remove_finished``: delete a job's pod once it has ended and its log is read, as the
    job operator does in a cluster (local processes leave nothing to remove).
    """
    from shared.events import outbox

    facts = pod_facts(pod)
    if facts is None:
        return  # not an instance pod: nothing of ours
    ended = facts["phase"] in ENDED
    if deleted and not ended:
        facts["phase"] = "Failed"  # gone before it finished
    for _ in range(READ_ATTEMPTS):
        outcome = _read_and_record(engine, launcher, facts, final=ended or deleted, event=event)
        if outcome is not None:
            break
    else:
        raise RuntimeError(f"The log of {facts['instance']} kept moving under concurrent readers")
    if outcome:
        outbox.deliver(engine, broker_url, outcome)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if remove_finished and ended and not deleted and not labels.get("debug"):
        try:
            launcher.stop(facts["instance"])
        except Exception:  # noqa: BLE001 - the monitor's reconciliation removes it later
            log.warning("Could not remove the finished pod of %s", facts["instance"], exc_info=True)


def _read_and_record(engine, launcher, facts: dict, *, final: bool, event: EventView | None) -> list[str] | None:
    """Read the log past the stored offset and record it; None when another reader moved first."""
    from sqlalchemy import update

    from shared.db.models import Instance, InstanceLog
    from shared.db.session import transaction
    from shared.jobs.log_lines import LogCursor

    instance_id = facts["instance"]
    with transaction(engine, readonly=True) as s:
        instance = s.get(Instance, instance_id)
        if instance is None:
            raise PermanentFailure(f"There is no instance {instance_id}")
        state = s.get(InstanceLog, instance_id)
        offset = state.offset if state else 0
        last_phase = state.last_phase if state else None
    if last_phase in ENDED:
        if event is not None:
            with transaction(engine) as s:
                claim(s, CONSUMER, event)
        return []  # everything was read and sent when it ended
    data = launcher.read_log(instance_id, offset)
    cursor = LogCursor(offset=offset)
    lines = cursor.feed(data)
    if final:
        lines += cursor.finish()
    with transaction(engine) as s:
        if state is None:
            from sqlalchemy.exc import IntegrityError

            try:
                with s.begin_nested():
                    s.add(InstanceLog(instance_id=instance_id, offset=0, lines=0))
            except IntegrityError:
                pass  # a concurrent reader made it first
        moved = s.execute(update(InstanceLog).where(InstanceLog.instance_id == instance_id,
                                                    InstanceLog.offset == offset)
                          .values(offset=cursor.offset, lines=InstanceLog.lines + len(lines))).rowcount
        if not moved:
            return None  # another delivery read these lines first: read again from its offset
        _record_lines(s, instance_id, facts["task"], lines)
        event_ids = _phase_message(s, facts, last_phase, final)
        if event is not None:
            claim(s, CONSUMER, event)
        return event_ids


def _record_lines(s, instance_id: str, task_id: str, lines: list) -> None:
    from sqlalchemy import select

    from shared.db.base import utcnow
    from shared.db.models import Instance, InstanceCharge
    from shared.jobs.log_lines import CostLine, CostTracker, EventLine
    from shared.services import tasks

    costs = [line for line in lines if isinstance(line, CostLine)]
    for line in lines:
        if isinstance(line, EventLine):
            level = line.level if line.level in tasks.LEVELS else "INFO"
            tasks.add_event(s, task_id, line.message or "(blank)", level)
    if not costs:
        return
    instance = s.get(Instance, instance_id)
    seen = s.scalars(select(InstanceCharge.sqn).where(InstanceCharge.instance_id == instance_id,
                                                      InstanceCharge.sqn.in_([c.sqn for c in costs])))
    tracker = CostTracker(total=Decimal(instance.cost or "0"), seen=seen)
    rate = Decimal(instance.launch_exchange_rate or "0") / RATE_SCALE
    coins, now = Decimal(instance.coins or "0"), utcnow()
    for line in costs:
        charge = tracker.apply(line)
        if charge is None:
            continue  # the same line again (a re-read, or a repeated sequence number)
        coins += charge * rate
        s.add(InstanceCharge(instance_id=instance_id, sqn=line.sqn, cost=line.cost_text, total=str(tracker.total),
                             coins=str(charge * rate), timestamp=line.timestamp[:40], recorded=now))
    instance.cost, instance.coins = str(tracker.total), str(coins)


def _phase_message(s, facts: dict, last_phase: str | None, final: bool) -> list[str]:
    """Queue a PodMessage when the pod's phase moved on (started, ended); returns the event ids."""
    from sqlalchemy import update

    from shared.db.base import utcnow
    from shared.db.models import InstanceLog
    from shared.events import outbox
    from shared.messages.pod_message_pb2 import PodMessage

    phase = facts["phase"]
    if phase == last_phase or (phase == "Pending" and last_phase is None and not final):
        return []
    if last_phase == "Running" and phase == "Pending":
        return []  # a late, older state
    message = PodMessage(timestamp=utcnow().isoformat().replace("+00:00", "Z"), pod_name=facts["pod_name"],
                         task=facts["task"], phase=phase, instance=facts["instance"])
    if facts["started"]:
        message.start_timestamp = facts["started"]
    if phase in ENDED:
        message.finish_timestamp = facts["finished"] or message.timestamp
        if facts["exit_code"] is not None:
            message.has_exit_code, message.exit_code = True, int(facts["exit_code"])
    s.execute(update(InstanceLog).where(InstanceLog.instance_id == facts["instance"]).values(last_phase=phase))
    event = outbox.add(s, POD_MESSAGE_EVENT, message.SerializeToString(), subject=facts["instance"],
                       content_type="application/protobuf")
    return [event.id]


HANDLERS = {name: on_pod_event for name in POD_EVENTS}


def handle(request):
    return dispatch(request, HANDLERS)

