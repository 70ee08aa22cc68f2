"""Charges on their way to the Account Server: processing and storage (as-api.md §3.2–§3.4, §4).

Every stored charge of an instance (one per COST line, ``instance_pods``) becomes a
``MerchantProcessingChargeMessage`` for the instance's authorisation code, numbered by its
``sqn``; once the instance has ended its last message is flagged ``eoc``. The messages
leave through the outbox in the transaction that marks the charges sent, so a charge is
queued exactly once and re-sent with the same event id until the broker takes it; the
Account Server's receiver is idempotent on ``(auth_code, sqn)`` as well.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_, update

from shared.db.base import iso, utcnow
from shared.db.models import Instance, InstanceCharge, Project
from shared.db.models.job import TERMINAL_PHASES
from shared.db.session import transaction
from shared.events import outbox
from shared.events.contracts import ProcessingCharge, StorageCharge

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

MERCHANT_KIND = "DATA_MANAGER"
MERCHANT_NAME = "data-manager"
COST_SCALE_FACTOR = 1000  # job exchange rates are stored ×1000 (as-api.md §3.3)
BATCH = 500
CONNECTIONS = 4  # to the broker at once; one authorisation code's charges keep their order on one
CHARGES, INSTANCES = InstanceCharge.__table__, Instance.__table__


def _additional_data(instance: Instance, charge_cost: str) -> str:
    """The DM's AsAdditionalDataProcessingCharge fields, as the stringified map the AS passes on."""
    data: dict[str, Any] = {
        "cost": charge_cost, "cost_to_coins_er": instance.launch_exchange_rate or "0",
        "cost_scale_factor": str(COST_SCALE_FACTOR), "instance_id": instance.id,
        "instance_name": instance.name, "started": iso(instance.started) if instance.started else None,
        "collateral_pod_count": 0, "collateral_cpu_hours": "0",
    }
    if instance.stopped:
        data["stopped"] = iso(instance.stopped)
        if instance.started:
            data["run_time"] = str(instance.stopped - instance.started)
    if instance.error_message:
        data["error_message"] = instance.error_message
    if instance.job_collection:
        data.update(job_collection=instance.job_collection, job_job=instance.job_job, job_version=instance.job_version)
    return json.dumps({k: v for k, v in data.items() if v is not None}, sort_keys=True)


def _message(instance: Instance, product_id: str, *, sqn: int, coins: str, cost: str, eoc: bool,
             timestamp: str | None = None):
    from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage

    return MerchantProcessingChargeMessage(
        timestamp=timestamp or iso(utcnow()), merchant_kind=MERCHANT_KIND, merchant_name=MERCHANT_NAME,
        auth_code=instance.authorisation_code, name=instance.name, coins=coins, sqn=sqn, eoc=eoc,
        user=instance.owner, product=product_id, additional_data=_additional_data(instance, cost))


def queue_processing_charges(s: "Session", limit: int = BATCH) -> tuple[list[str], int]:
    """Queue the messages for up to ``limit`` unsent charges (and the closing ``eoc`` of ended
    instances); returns the outbox event ids and how many charges were settled. Instances without an authorisation code (no
    Account Server grant) are settled without messages."""
    now = utcnow()
    pending = list(s.execute(
        select(InstanceCharge, Instance, Project.product_id)
        .join(Instance, Instance.id == InstanceCharge.instance_id)
        .join(Project, Project.id == Instance.project_id, isouter=True)
        .where(InstanceCharge.sent.is_(None))
        .order_by(InstanceCharge.instance_id, InstanceCharge.sqn).limit(limit)
        # a second monitor skips what the first is sending (PostgreSQL; SQLite has one writer)
        .with_for_update(skip_locked=True, of=InstanceCharge)).all())
    messages, closed = [], []
    if pending:
        last_sqn = dict(s.execute(select(InstanceCharge.instance_id, func.max(InstanceCharge.sqn))
                                  .where(InstanceCharge.instance_id.in_({i.id for _, i, _ in pending}))
                                  .group_by(InstanceCharge.instance_id)).all())
        # Core, not ORM, statements, one for the whole batch: only the rows this run settled are sent
        key = tuple_(CHARGES.c.instance_id, CHARGES.c.sqn)
        keys = [(charge.instance_id, charge.sqn) for charge, _, _ in pending]
        settled = {tuple(row) for row in s.execute(
            update(CHARGES).where(key.in_(keys), CHARGES.c.sent.is_(None)).values(sent=now)
            .returning(CHARGES.c.instance_id, CHARGES.c.sqn))}
        for charge, instance, product_id in pending:
            if (charge.instance_id, charge.sqn) not in settled or not instance.authorisation_code:
                continue
            eoc = instance.phase in TERMINAL_PHASES and charge.sqn == last_sqn.get(instance.id)
            messages.append(ProcessingCharge(_message(
                instance, product_id or "", sqn=charge.sqn, coins=charge.coins, cost=charge.cost, eoc=eoc,
                timestamp=charge.timestamp or None)))
            if eoc:
                closed.append(instance.id)
    if closed:
        s.execute(update(INSTANCES).where(INSTANCES.c.id.in_(closed)).values(charges_closed=True))
    ids = outbox.add_all(s, messages)
    ids += _close_ended(s, limit)
    return ids, len(pending)


def _close_ended(s: "Session", limit: int) -> list[str]:
    """Ended instances whose charges are all sent but whose last message was not flagged ``eoc``
    (they ended after it went): one more message, no coins, ``eoc`` set."""
    unsent = select(InstanceCharge.instance_id).where(InstanceCharge.sent.is_(None))
    rows = s.execute(select(Instance, Project.product_id)
                     .join(Project, Project.id == Instance.project_id, isouter=True)
                     .where(Instance.phase.in_(TERMINAL_PHASES), Instance.charges_closed.is_(False),
                            Instance.id.not_in(unsent)).limit(limit)).all()
    if not rows:
        return []
    # one UPDATE claims them all: an instance another monitor closed meanwhile is not RETURNed
    closed = set(s.scalars(update(INSTANCES).where(INSTANCES.c.id.in_([i.id for i, _ in rows]),
                                                   INSTANCES.c.charges_closed.is_(False))
                           .values(charges_closed=True).returning(INSTANCES.c.id)))
    last = dict(s.execute(select(InstanceCharge.instance_id, func.max(InstanceCharge.sqn))
                          .where(InstanceCharge.instance_id.in_(closed)).group_by(InstanceCharge.instance_id)).all())
    return outbox.add_all(s, [ProcessingCharge(_message(instance, product_id or "", sqn=(last.get(instance.id) or 0) + 1,
                                                        coins="0", cost="0", eoc=True))
                              for instance, product_id in rows
                              if instance.id in closed and instance.authorisation_code])


PERIODS_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _period_s(text: str | None) -> float:
    """A humanised period ("1 hour", "30 minutes") in seconds; an hour when unreadable."""
    parts = (text or "").split()
    try:
        count = float(parts[0]) if len(parts) == 2 else 1.0
        unit = parts[-1].rstrip("s").lower()
        return count * PERIODS_S[unit]
    except (ValueError, KeyError, IndexError):
        return 3600.0


def _cost_units(specification: str | None) -> Decimal:
    """PxGi: processors × GiB of memory the application asked for (1 × 1 by default)."""
    try:
        variables = (json.loads(specification or "{}") or {}).get("variables") or {}
    except (ValueError, AttributeError):
        variables = {}
    cpu = variables.get("cpu") if isinstance(variables.get("cpu"), (int, float)) else 1
    memory = str(variables.get("memory") or "1Gi")
    gib = Decimal(memory[:-2]) if memory.endswith("Gi") and memory[:-2].isdigit() else Decimal(1)
    return Decimal(str(cpu)) * gib


def accrue_application_charges(s: "Session", now: dt.datetime | None = None) -> int:
    """Charge each application for the running time since it was last charged: ``cost`` coins
    per ``cost_unit`` (processors × GiB) per ``cost_period``, pro rata. An application that has
    ended is charged up to its end, so its last charge exists before its ``eoc`` is sent."""
    from shared.jobs import applications

    now = now or utcnow()
    rows = s.scalars(select(Instance).where(Instance.application_type == "APPLICATION",
                                            Instance.started.is_not(None), Instance.charges_closed.is_(False)))
    added = 0
    for instance in rows:
        app = applications.APPLICATIONS.get(instance.application_id)
        end = instance.stopped or now
        since = instance.charged_until or instance.started
        if app is None or not app.cost_unit or end <= since:
            continue
        periods = Decimal(str((end - since).total_seconds() / _period_s(app.cost_period)))
        coins = (Decimal(app.cost) * _cost_units(instance.specification) * periods).quantize(Decimal("0.000001"))
        last = s.scalar(select(func.max(InstanceCharge.sqn)).where(InstanceCharge.instance_id == instance.id)) or 0
        total = Decimal(instance.coins or "0") + coins
        s.add(InstanceCharge(instance_id=instance.id, sqn=last + 1, cost=str(coins), total=str(total), coins=str(coins),
                             timestamp=iso(end), recorded=now))
        instance.charged_until, instance.coins, instance.cost = end, str(total), str(total)
        added += 1
    s.flush()
    return added


def send_processing_charges(engine: "Engine", broker_url: str) -> int:
    """Queue and send every unsent charge, a batch per transaction; returns how many messages."""
    total = 0
    with transaction(engine) as s:
        accrue_application_charges(s)
    while True:
        with transaction(engine) as s:
            ids, settled = queue_processing_charges(s)
        outbox.deliver(engine, broker_url, ids, connections=CONNECTIONS)
        total += len(ids)
        if settled < BATCH:
            return total


# --- storage (as-api.md §3.2, §3.4) ----------------------------------------------------------


def _humanised(n: int) -> str:
    return f"{n:,}"


def _storage_message(reason: str, name: str, size: int, *, product: str = "", unit: str = "", auth_code: int = 0,
                     user: str = ""):
    from shared.messages.merchant_storage_charge_message_pb2 import MerchantStorageChargeMessage

    message = MerchantStorageChargeMessage(timestamp=iso(utcnow()), merchant_kind=MERCHANT_KIND,
                                           merchant_name=MERCHANT_NAME, auth_code=auth_code, name=name,
                                           bytes=_humanised(size), user=user, product=product, unit=unit)
    message.reason = message.DESCRIPTOR.fields_by_name["reason"].enum_type.values_by_name[
        f"STORAGE_REASON_ENUM_{reason}"].number
    return message


RESEND_AFTER = dt.timedelta(minutes=55)  # an unchanged size is sent again about hourly, for each day's peak


def _record_usage(s: "Session", reason: str, object_id: str, size: int) -> bool:
    """Record what was measured; True when it is to be sent (changed, or not sent for a while)."""
    from shared.db.models import StorageUsage

    now = utcnow()
    usage = s.get(StorageUsage, (reason, object_id))
    if usage is None:
        s.add(StorageUsage(reason=reason, object_id=object_id, bytes=size, measured=now, sent_bytes=size, sent=now))
        return True
    usage.bytes, usage.measured = size, now
    if usage.sent_bytes == size and usage.sent is not None and now - usage.sent < RESEND_AFTER:
        return False
    usage.sent_bytes, usage.sent = size, now
    return True


def send_storage_charges(engine: "Engine", storage: Any, broker_url: str) -> int:
    """Measure every live project's folder (a streaming walk: memory does not grow with the
    files) and every dataset's stored versions, and send each as an absolute storage charge
    when it changed or was last sent about an hour ago (the Account Server keeps the daily
    peak); frequent runs send little. Returns how many charges were queued."""
    from shared.db.models import Dataset, DatasetVersion

    with transaction(engine, readonly=True) as s:
        projects = s.execute(select(Project.id, Project.name, Project.product_id, Project.creator)
                             .where(Project.deleted.is_(None))).all()
    sent = 0
    for project in projects:
        size = storage.usage(f"projects/{project.id}")  # measured outside any transaction
        with transaction(engine) as s:
            if not _record_usage(s, "PROJECT", project.id, size):
                continue
            ids = [outbox.add(s, StorageCharge(_storage_message("PROJECT", project.name, size,
                                                                product=project.product_id,
                                                                user=project.creator))).id]
        outbox.deliver(engine, broker_url, ids)
        sent += 1
    with transaction(engine) as s:
        rows = s.execute(select(Dataset.id, Dataset.name, Dataset.unit_id, Dataset.owner,
                                func.coalesce(func.sum(DatasetVersion.size), 0),
                                func.max(DatasetVersion.authorisation_code))
                         .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
                         .where(DatasetVersion.deleted.is_(None), DatasetVersion.processing_stage == "DONE")
                         .group_by(Dataset.id, Dataset.name, Dataset.unit_id, Dataset.owner)).all()
        ids = []
        for dataset_id, name, unit_id, owner, size, auth_code in rows:
            if not _record_usage(s, "DATASET", dataset_id, int(size)):
                continue
            ids.append(outbox.add(s, StorageCharge(_storage_message("DATASET", name, int(size), unit=unit_id,
                                                                    auth_code=auth_code or 0, user=owner))).id)
    outbox.deliver(engine, broker_url, ids)
    return sent + len(ids)
