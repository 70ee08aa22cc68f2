"""What an instance's pod reports, as kew sees it: its log read into task events and charges,
its phase turned into PodMessages for pbc.

For an instance pod the log is read from where the last reading stopped: EVENT lines become
task events, COST lines charges (once per sequence number); when the pod starts or ends a
PodMessage is queued through the outbox. The log position is the lease: it only moves
forward through a guarded UPDATE, so two deliveries racing over the same pod never record
the same lines twice. Any state of a pod may come again, or late.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared.db.base import utcnow
from shared.db.models import Instance, InstanceCharge, InstanceLog
from shared.db.session import transaction
from shared.errors import PermanentFailure
from shared.events.inbox import Claim, no_claim
from shared.events import outbox
from shared.events.contracts import PodChange, PodMessageEvent
from shared.jobs.log_lines import CostLine, CostTracker, EventLine, LogCursor
from shared.launchers.base import INSTANCE_LABEL, PURPOSE_LABEL, TASK_LABEL
from shared.services import tasks

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.launchers.base import Launcher

log = logging.getLogger("dm.instance_pods")
ENDED = ("Succeeded", "Failed")
READ_ATTEMPTS = 3
RATE_SCALE = Decimal(1000)
def pod_facts(change: PodChange) -> dict[str, Any] | None:
    """What kew needs from the Pod; None for a pod that is not an instance's."""
    labels, pod = change.labels, change.pod
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


def observe(engine: "Engine", launcher: "Launcher", change: PodChange, *, claim: Claim = no_claim,
            broker_url: str = "", remove_finished: bool = False) -> None:
    """Handle one state of one pod.

    ``remove_finished``: delete a job's pod once it has ended and its log is read, as the
    job operator does in a cluster (local processes leave nothing to remove).
    """
    facts = pod_facts(change)
    if facts is None:
        return  # not an instance pod: nothing of ours
    ended = facts["phase"] in ENDED
    if change.deleted and not ended:
        facts["phase"] = "Failed"  # gone before it finished
    for _ in range(READ_ATTEMPTS):
        outcome = _read_and_record(engine, launcher, facts, final=ended or change.deleted, claim=claim)
        if outcome is not None:
            break
    else:
        raise RuntimeError(f"The log of {facts['instance']} kept moving under concurrent readers")
    if outcome:
        outbox.deliver(engine, broker_url, outcome)
    if remove_finished and ended and not change.deleted and not change.labels.get("debug"):
        try:
            launcher.stop(facts["instance"])
        except Exception:  # noqa: BLE001 - the monitor's reconciliation removes it later
            log.warning("Could not remove the finished pod of %s", facts["instance"], exc_info=True)


def _read_and_record(engine: "Engine", launcher: "Launcher", facts: dict, *, final: bool,
                     claim: Claim) -> list[str] | None:
    """Read the log past the stored position and record it; None when another reader moved first."""
    instance_id = facts["instance"]
    with transaction(engine, readonly=True) as s:
        instance = s.get(Instance, instance_id)
        if instance is None:
            raise PermanentFailure(f"There is no instance {instance_id}")
        state = s.get(InstanceLog, instance_id)
        position = state.position if state else ""
        last_phase = state.last_phase if state else None
    if last_phase in ENDED:
        with transaction(engine) as s:
            claim(s)
        return []  # everything was read and sent when it ended
    read = launcher.read_log_since(instance_id, position)
    cursor = LogCursor()
    lines = cursor.feed(read.data)
    if final:
        lines += cursor.finish()
    with transaction(engine) as s:
        if state is None:
            try:
                with s.begin_nested():
                    s.add(InstanceLog(instance_id=instance_id, position="", lines=0))
            except IntegrityError:
                pass  # a concurrent reader made it first
        moved = s.execute(update(InstanceLog).where(InstanceLog.instance_id == instance_id,
                                                    InstanceLog.position == position)
                          .values(position=read.position, lines=InstanceLog.lines + len(lines))).rowcount
        if not moved:
            return None  # another delivery read these lines first: read again from its position
        _record_lines(s, instance_id, facts["task"], lines)
        event_ids = _phase_message(s, facts, last_phase, final)
        claim(s)
        return event_ids


def _record_lines(s: "Session", instance_id: str, task_id: str, lines: list) -> None:
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


def _phase_message(s: "Session", facts: dict, last_phase: str | None, final: bool) -> list[str]:
    """Queue a PodMessage when the pod's phase moved on (started, ended); returns the event ids."""
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
    return [outbox.add(s, PodMessageEvent(message)).id]
