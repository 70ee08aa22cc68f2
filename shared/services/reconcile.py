"""Reconciliation: instances checked against the pods that exist, for what no event reported.

ApiServerSource sends nothing for pods that changed while it was away, and a local
launcher's watcher dies with its process (knative.md §1, DESIGN.md "How events move"; the
local pod's wrapper still records its end, which the launcher's `pod` then reports). So
every instance not yet finished is looked up through its launcher: a pod in a state kew has
not seen goes through kew's own handling (``instance_pods.observe``: the log read, the same
PodMessage sent); an instance whose pod is gone, or that stayed PENDING past a deadline with
no pod, ends FAILED with a reason a user can read. A workflow step whose host died between
recording it and starting its pod has the pod started (``workflow_host.starts``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shared.db.base import iso, utcnow
from shared.db.models import Instance, InstanceLog
from shared.db.models.job import TERMINAL_PHASES
from shared.db.session import transaction
from shared.events import outbox
from shared.events.contracts import PodChange
from shared.services import instance_pods, instances
from shared.services.workflow_host import ends, starts

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.launchers.base import Launcher

log = logging.getLogger("dm.reconcile")
GRACE_S = 30.0  # a launch this young may not have its pod yet, nor its first event
PENDING_DEADLINE_S = 600.0  # no pod this long after the launch: it is never coming
LOST = "The instance's pod disappeared before it reported its end (it may have been lost with a node or a restart)"
NEVER_STARTED = "The instance never started: no pod appeared within {} minutes of its launch"


def reconcile(services: Any) -> int:
    """The monitor's job: steps' pods their hosts did not start, then every unfinished instance."""
    started = starts.start_stranded(services.engine, services.storage, services.launcher)
    return started + reconcile_instances(services.engine, services.launcher, services.settings.broker_url)


def reconcile_instances(engine: "Engine", launcher: "Launcher", broker_url: str, *, now: dt.datetime | None = None,
                        grace_s: float = GRACE_S, pending_deadline_s: float = PENDING_DEADLINE_S) -> int:
    """Bring every unfinished instance in line with its pod; returns how many were changed."""
    now = now or utcnow()
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(Instance.id, Instance.task_id, Instance.phase, Instance.launched,
                                InstanceLog.last_phase)
                         .join(InstanceLog, InstanceLog.instance_id == Instance.id, isouter=True)
                         .where(Instance.phase.not_in(TERMINAL_PHASES),
                                Instance.launched <= now - dt.timedelta(seconds=grace_s))).all()
    if not rows:
        return 0
    try:
        found = launcher.pods([row.id for row in rows])
    except Exception:  # noqa: BLE001 - the API server is away: try again next time
        log.warning("Could not look up the pods of %d instances", len(rows), exc_info=True)
        return 0
    changed = 0
    for row in rows:
        pod = found.get(row.id)
        if pod is not None:
            action = "delete" if (pod.get("metadata") or {}).get("deletionTimestamp") else "update"
            change = PodChange(action, pod)
            facts = instance_pods.pod_facts(change)
            if action == "update" and facts is not None and facts["phase"] == row.last_phase:
                continue  # kew has seen this state: its log is kew's to read, not read again here
            instance_pods.observe(engine, launcher, change, broker_url=broker_url)
            changed += _phase_of(engine, row.id) != row.phase
            continue
        if row.phase == "PENDING" and now - row.launched < dt.timedelta(seconds=pending_deadline_s):
            continue  # still being created
        reason = NEVER_STARTED.format(round(pending_deadline_s / 60)) if row.phase == "PENDING" else LOST
        message = _lost_message(row.id, row.task_id, now)
        with transaction(engine) as s:
            instances.apply_pod_message(s, message, reason=reason)
            told = ends.queue_step_end(s, message)  # a workflow step's end reaches the engine (pbc)
        if told:
            outbox.deliver(engine, broker_url, [told])
        log.warning("Instance %s: %s", row.id, reason)
        changed += 1
    return changed


def _phase_of(engine: "Engine", instance_id: str) -> str | None:
    with transaction(engine, readonly=True) as s:
        return s.scalar(select(Instance.phase).where(Instance.id == instance_id))


def _lost_message(instance_id: str, task_id: str, now: dt.datetime) -> Any:
    from shared.messages.pod_message_pb2 import PodMessage

    stamp = iso(now)
    return PodMessage(timestamp=stamp, pod_name=instance_id, task=task_id, phase="Failed", instance=instance_id,
                      finish_timestamp=stamp)
