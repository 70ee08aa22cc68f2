"""The local launcher's pods as a cluster shows them: the Pod a wrapper's record describes (for
a pod no watcher saw end), a failed container's message, and the CloudEvent an ApiServerSource in
Resource mode sends for a Pod (knative.md §3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pods

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

# What an in-cluster ApiServerSource puts in `source`: the API server it talks to.
DEFAULT_SOURCE = "https://kubernetes.default.svc:443"
# FallbackToLogsOnError: a failed container's message is the end of its log.
MESSAGE_MAX_BYTES = 2048
MESSAGE_MAX_LINES = 80


def pod_event(action: str, pod: dict[str, Any], source: str = DEFAULT_SOURCE) -> "CloudEvent":
    """The CloudEvent an ApiServerSource in Resource mode sends for ``pod`` (knative.md §3).

    ``action`` is add, update or delete; the data is the whole Pod.
    """
    from cloudevents.http import CloudEvent

    from shared.events.contracts import PodChange

    change = PodChange(action, pod)
    meta = pod["metadata"]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return CloudEvent({
        "type": change.type,
        "source": source,
        "subject": change.subject,
        "id": str(uuid.uuid4()),
        "time": now,
        "datacontenttype": change.CONTENT_TYPE,
        "kind": "Pod",
        "name": meta["name"],
        "namespace": meta["namespace"],
        "apiversion": "v1",
    }, pod)


def log_tail(log_path: Path) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - MESSAGE_MAX_BYTES, 0))
            tail = f.read()
    except OSError:
        return ""
    return b"\n".join(tail.splitlines()[-MESSAGE_MAX_LINES:]).decode("utf-8", "replace")


def read_record(path: Path) -> dict[str, Any] | None:
    """The wrapper's record of a pod's process (`local_wrapper`); None when there is none."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_pod(kept: dict[str, Any], record: dict[str, Any], log_path: Path | None) -> dict[str, Any]:
    """The kept pod brought to what the wrapper recorded: Running, or its end (``log_path``
    given: a failed container's message is the end of its log, as the watcher reports it)."""
    pod = json.loads(json.dumps(kept))
    meta, container = pod["metadata"], pod["spec"]["containers"][0]
    meta["resourceVersion"] = pods.next_resource_version()
    pod["spec"]["nodeName"] = "localhost"
    status: dict[str, Any] = dict(started_at=record.get("started_at") or meta.get("creationTimestamp"),
                                  container_id=f"local://{record['pid']}" if record.get("pid") else None,
                                  host_ip="127.0.0.1")
    exit_code = record.get("exit_code")
    if exit_code is None:
        phase = "Running"
    else:
        phase = "Succeeded" if exit_code == 0 else "Failed"
        message = record.get("message") or (log_tail(log_path) if exit_code != 0 and log_path else None)
        status.update(exit_code=int(exit_code), finished_at=record.get("finished_at"), reason=record.get("reason"),
                      message=message or None)
    pod["status"] = pods.pod_status(phase, container_name=container["name"], image=container["image"],
                                    created=meta.get("creationTimestamp") or status["started_at"], **status)
    return pod
