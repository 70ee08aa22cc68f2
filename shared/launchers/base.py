"""What starts and stops instance pods: one small interface, a local and a Kubernetes implementation.

A launcher only creates, stops and reads pods. What happens to a pod afterwards reaches the
platform as pod events (the ApiServerSource in a cluster; the local launcher sends the same
CloudEvents itself) for the kew function, which reads the log through ``read_log_since``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

LABEL_PREFIX = "data-manager.informaticsmatters.com/"
PURPOSE_LABEL = LABEL_PREFIX + "purpose"  # "INSTANCE" on every instance pod
INSTANCE_LABEL = LABEL_PREFIX + "instance-id"
TASK_LABEL = LABEL_PREFIX + "task-id"
IS_JOB_LABEL = LABEL_PREFIX + "instance-is-job"  # "yes" on job pods
APPLICATION_LABEL = LABEL_PREFIX + "instance"  # the instance id, on application pods
OWNER_LABEL = LABEL_PREFIX + "owner"
PROJECT_LABEL = LABEL_PREFIX + "project-id"
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    value = _LABEL_VALUE_BAD.sub("_", text)[:63].strip("_.-")
    return value or "x"


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one instance's pod (the pod is named after the instance)."""

    instance_id: str
    task_id: str
    project_id: str
    owner: str
    image: str  # "name:tag"
    command: list[str]  # argv, run without a shell
    working_directory: str = "/data"  # in the container
    project_directory: str = "/data"  # where the project is mounted in the container
    environment: dict[str, str] = field(default_factory=dict)
    is_job: bool = True
    memory: str | None = None  # e.g. "1Gi"
    cores: str | None = None  # e.g. "1" or "500m"
    debug: bool = False  # keep the pod after it ends
    # project-relative paths the command reads or writes (inputs, outputs, path options); checked
    # at launch, and again by a launcher that works on the host's file system
    paths: tuple[str, ...] = ()
    # an application's port: its container's, and where the local launcher serves it (a free one
    # there); "{port}" and "{base_path}" in an application's command are replaced, see pods.command
    port: int | None = None

    def labels(self) -> dict[str, str]:
        labels = {
            PURPOSE_LABEL: "INSTANCE",
            INSTANCE_LABEL: self.instance_id,
            TASK_LABEL: self.task_id,
            OWNER_LABEL: label_value(self.owner),
            PROJECT_LABEL: self.project_id,
        }
        labels[IS_JOB_LABEL if self.is_job else APPLICATION_LABEL] = "yes" if self.is_job else self.instance_id
        return labels


class LogRead(NamedTuple):
    """What `Launcher.read_log_since` read: the new log text and where to go on from."""

    data: bytes
    """The log after the position, as the job wrote it: complete lines, then perhaps the
    start of a line not yet ended."""
    position: str
    """Where the next read starts: just past the last complete line of ``data``. Opaque
    outside the launcher that made it; "" is the start of the log."""


class LaunchError(Exception):
    """The pod could not be created (a bad spec or a refusal: permanent)."""


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec) -> None:
        """Create the instance's pod; returns once it is created (not once it runs)."""

    def stop(self, instance_id: str) -> None:
        """Stop and remove the instance's pod; nothing happens if there is none."""

    def read_log(self, instance_id: str, offset: int = 0) -> bytes:
        """The pod's whole log from byte ``offset`` on (b"" when there is nothing more, or no pod)."""

    def read_log_since(self, instance_id: str, position: str = "") -> LogRead:
        """The log past ``position`` (a `LogRead.position` from an earlier read, or "" for the
        start), reading only what is new where the launcher can. A line not yet ended is in
        the data but not past the returned position, so it comes again, whole, next time."""

    def pod(self, instance_id: str) -> dict | None:
        """The instance's Pod as the API server would show it now (its JSON), or None when
        there is none: for reconciling what no event reported."""

    def pods(self, instance_ids: list[str]) -> dict[str, dict]:
        """The pods of those instances that have one, by instance id: for reconciling many at
        once with as few calls as the launcher can make."""
