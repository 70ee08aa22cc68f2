"""What starts and stops instance pods: one small interface, a local and a Kubernetes implementation.

A launcher only creates, stops and reads pods. What happens to a pod afterwards reaches the
platform as pod events (the ApiServerSource in a cluster; the local launcher sends the same
CloudEvents itself) for the kew function, which reads the log through ``read_log``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

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


class LaunchError(Exception):
    """The pod could not be created (a bad spec or a refusal: permanent)."""


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec) -> None:
        """Create the instance's pod; returns once it is created (not once it runs)."""

    def stop(self, instance_id: str) -> None:
        """Stop and remove the instance's pod; nothing happens if there is none."""

    def read_log(self, instance_id: str, offset: int = 0) -> bytes:
        """The pod's log from byte ``offset`` on (b"" when there is nothing more, or no pod)."""

    def pod(self, instance_id: str) -> dict | None:
        """The instance's Pod as the API server would show it now (its JSON), or None when
        there is none: for reconciling what no event reported."""

    def pods(self, instance_ids: list[str]) -> dict[str, dict]:
        """The pods of those instances that have one, by instance id: for reconciling many at
        once with as few calls as the launcher can make."""
