"""The instance Pod as JSON: what the launcher creates, and the states it then passes through.

One place builds both the Pod that `KubernetesLauncher` sends to the API server and the Pod
objects that the local launcher (and the test stand-in for the API server) report in pod
events, so the two cannot drift apart. The shape follows what the job operator creates
(jobs.md §3.2) and what the API server hands to an ApiServerSource in Resource mode
(knative.md §3): camelCase keys, timestamps as RFC 3339 strings with second precision.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import LaunchSpec

PROJECT_VOLUME = "project"
DEFAULT_CORES = "1"
DEFAULT_MEMORY = "1Gi"
RUN_AS_USER = 1001
RUN_AS_GROUP = 1001
INSTANCE_DIRECTORY_VARIABLE = "DM_INSTANCE_DIRECTORY"
APPLICATION_PORT_VARIABLE = "DM_APPLICATION_PORT"
BASE_PATH_VARIABLE = "DM_APPLICATION_BASE_PATH"
ALWAYS_PULLED_TAGS = ("latest", "stable")
TERMINAL_PHASES = ("Succeeded", "Failed")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Like the API server's, one counter for every object; seeded from the clock so a restarted
# local stack keeps counting upwards.
_versions = itertools.count(int(time.time() * 1000))
_versions_lock = threading.Lock()


def next_resource_version() -> str:
    with _versions_lock:
        return str(next(_versions))


def timestamp(when: dt.datetime | float | None = None) -> str:
    """An RFC 3339 time as the API server writes it (UTC, whole seconds, 'Z')."""
    if when is None:
        when = dt.datetime.now(dt.timezone.utc)
    elif isinstance(when, (int, float)):
        when = dt.datetime.fromtimestamp(when, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_directory(instance_id: str) -> str:
    """The instance's own folder, relative to the project (jobs.md §3.2)."""
    return "." + instance_id


def image_pull_policy(image: str) -> str:
    """Always for the moving tags (latest, stable, or none), else IfNotPresent (jobs.md §3.2)."""
    if "@" in image:  # pinned by digest
        return "IfNotPresent"
    name = image.rsplit("/", 1)[-1]
    tag = name.partition(":")[2]
    return "Always" if tag in ("",) + ALWAYS_PULLED_TAGS else "IfNotPresent"


def environment(spec: "LaunchSpec") -> dict[str, str]:
    """The container's variables: the instance directory (and an application's port and base
    path), then the spec's own (which win)."""
    own = {INSTANCE_DIRECTORY_VARIABLE: instance_directory(spec.instance_id)}
    if not spec.is_job and spec.port:
        own.update({APPLICATION_PORT_VARIABLE: str(spec.port), BASE_PATH_VARIABLE: base_path(spec.instance_id)})
    return {**own, **spec.environment}


def base_path(instance_id: str) -> str:
    """Where an application is served: its URL is ``<base>/<instance-id>/``."""
    return f"/{instance_id}/"


def command(spec: "LaunchSpec") -> list[str]:
    """The argv to run: an application's with its port and base path put in ("{port}", "{base_path}")."""
    if spec.is_job:
        return list(spec.command)
    values = {"{port}": str(spec.port or ""), "{base_path}": base_path(spec.instance_id)}
    out = []
    for arg in spec.command:
        for mark, value in values.items():
            arg = arg.replace(mark, value)
        out.append(arg)
    return out


def check_mount(spec: "LaunchSpec") -> None:
    """What a '..' could lead out of: the volume's subPath is the project id, a single folder name;
    the container's folders are clean absolute paths; the command's paths are project-relative."""
    from shared.storage import paths

    from .base import LaunchError

    if not _FOLDER_NAME.fullmatch(spec.project_id or ""):
        raise LaunchError(f"The project id {spec.project_id!r} cannot name the project's folder on the volume")
    try:
        for what, folder in (("working directory", spec.working_directory),
                             ("project directory", spec.project_directory)):
            if not folder.startswith("/"):
                raise paths.PathRefused(f"The {what} {folder!r} must be an absolute path in the container")
            paths.project_relative(folder, f"The {what}", mount="/")
        for relative in spec.paths:
            paths.project_relative(relative, f"The path {relative!r}")
    except paths.PathRefused as exc:
        raise LaunchError(exc.message) from None


def pod_labels(spec: "LaunchSpec") -> dict[str, str]:
    labels = spec.labels()
    if spec.debug:
        labels["debug"] = "yes"  # the operator keeps such pods after they end
    return labels


def pod_manifest(spec: "LaunchSpec", namespace: str, *, project_claim: str = "project",
                 run_as_user: int = RUN_AS_USER, run_as_group: int = RUN_AS_GROUP,
                 service_account_name: str | None = None, node_selector: dict[str, str] | None = None,
                 image_pull_secrets: list[str] | None = None) -> dict[str, Any]:
    """The Pod to create for ``spec``: one container named like the pod (jobs.md §3.2)."""
    name = spec.instance_id
    resources = {"cpu": spec.cores or DEFAULT_CORES, "memory": spec.memory or DEFAULT_MEMORY}
    container = {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": image_pull_policy(spec.image),
        "command": command(spec),
        "workingDir": spec.working_directory,
        "env": [{"name": k, "value": v} for k, v in environment(spec).items()],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [{"name": PROJECT_VOLUME, "mountPath": spec.project_directory,
                          "subPath": spec.project_id}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # users pick the image: it gains no privileges beyond the user it runs as
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if not spec.is_job and spec.port:
        container["ports"] = [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",
        # runAsNonRoot: the kubelet refuses to start the pod should the user ever be root
        "securityContext": {"runAsUser": run_as_user, "runAsGroup": run_as_group, "fsGroup": 0,
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": PROJECT_VOLUME, "persistentVolumeClaim": {"claimName": project_claim}}],
    }
    if service_account_name:
        pod_spec["serviceAccountName"] = service_account_name
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels(spec)},
        "spec": pod_spec,
    }


def _condition(kind: str, ok: bool, when: str, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                 "lastTransitionTime": when}
    if reason:
        condition["reason"] = reason
    return condition


def pod_status(phase: str, *, container_name: str, image: str, created: str, started_at: str | None = None,
               finished_at: str | None = None, exit_code: int | None = None, reason: str | None = None,
               message: str | None = None, container_id: str | None = None,
               host_ip: str | None = None) -> dict[str, Any]:
    """The Pod's ``status`` in ``phase`` (Pending, Running, Succeeded or Failed).

    A Pending pod with ``started_at`` is scheduled and creating its container; a terminal
    phase needs ``exit_code`` and reports the container as terminated (reason Completed for
    exit code 0, else Error, unless ``reason`` says otherwise).
    """
    status: dict[str, Any] = {"phase": phase, "qosClass": "Guaranteed"}
    if phase == "Pending" and started_at is None:
        return status  # just created: not yet scheduled
    start = started_at or created
    status["startTime"] = start
    if host_ip:
        status["hostIP"] = host_ip
        status["podIP"] = host_ip
    container: dict[str, Any] = {"name": container_name, "image": image, "imageID": "", "restartCount": 0,
                                 "lastState": {}}
    if container_id:
        container["containerID"] = container_id
    if phase == "Pending":
        container.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
        conditions = [_condition("PodScheduled", True, start), _condition("Initialized", True, start),
                      _condition("ContainersReady", False, start, "ContainersNotReady"),
                      _condition("Ready", False, start, "ContainersNotReady")]
    elif phase == "Running":
        container.update(ready=True, started=True, state={"running": {"startedAt": start}})
        conditions = [_condition("PodScheduled", True, start), _condition("Initialized", True, start),
                      _condition("ContainersReady", True, start), _condition("Ready", True, start)]
    elif phase in TERMINAL_PHASES:
        if exit_code is None:
            raise ValueError(f"a {phase} pod needs an exit code")
        end = finished_at or start
        terminated: dict[str, Any] = {"exitCode": exit_code,
                                      "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                                      "startedAt": start, "finishedAt": end}
        if message:
            terminated["message"] = message
        if container_id:
            terminated["containerID"] = container_id
        container.update(ready=False, started=False, state={"terminated": terminated})
        conditions = [_condition("PodScheduled", True, start), _condition("Initialized", True, start),
                      _condition("ContainersReady", False, end, "PodCompleted"),
                      _condition("Ready", False, end, "PodCompleted")]
    else:
        raise ValueError(f"unknown pod phase {phase!r}")
    status["conditions"] = conditions
    status["containerStatuses"] = [container]
    return status


def pod_object(spec: "LaunchSpec", phase: str, *, namespace: str, uid: str, created: str,
               resource_version: str | None = None, project_claim: str = "project", node_name: str | None = None,
               deletion_timestamp: str | None = None, **status: Any) -> dict[str, Any]:
    """The whole Pod as the API server reports it: the manifest, server metadata and ``status``.

    ``status`` takes `pod_status`'s keyword arguments (started_at, finished_at, exit_code …).
    """
    pod = pod_manifest(spec, namespace, project_claim=project_claim)
    meta = pod["metadata"]
    meta.update(uid=uid, resourceVersion=resource_version or next_resource_version(), creationTimestamp=created)
    if deletion_timestamp:
        meta.update(deletionTimestamp=deletion_timestamp, deletionGracePeriodSeconds=0)
    if node_name and (phase != "Pending" or status.get("started_at")):
        pod["spec"]["nodeName"] = node_name
    container = pod["spec"]["containers"][0]
    pod["status"] = pod_status(phase, container_name=container["name"], image=container["image"], created=created,
                               **status)
    return pod


# --- an application's way in (a cluster): a Service for its pod, an Ingress on the DM's host ---

INGRESS_PROXY_BODY_SIZE = "500m"  # as the Jupyter operator's default


def service_manifest(spec: "LaunchSpec", namespace: str) -> dict[str, Any]:
    """A ClusterIP Service named after the instance, selecting its pod by the instance label."""
    from .base import INSTANCE_LABEL

    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.instance_id, "namespace": namespace, "labels": pod_labels(spec)},
        "spec": {"type": "ClusterIP", "selector": {INSTANCE_LABEL: spec.instance_id},
                 "ports": [{"name": "http", "port": spec.port, "targetPort": spec.port, "protocol": "TCP"}]},
    }


def ingress_manifest(spec: "LaunchSpec", namespace: str, *, host: str, ingress_class: str,
                     auth_url: str) -> dict[str, Any]:
    """An Ingress for ``/<instance-id>`` on ``host`` to the instance's Service; nginx asks ``auth_url``
    (the api's access check) before each request, and passes the cookie that answer may set."""
    annotations = {
        "nginx.ingress.kubernetes.io/auth-url": auth_url,
        "nginx.ingress.kubernetes.io/auth-always-set-cookie": "true",
        "nginx.ingress.kubernetes.io/proxy-body-size": INGRESS_PROXY_BODY_SIZE,
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",  # a quiet WebSocket is alive
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
    }
    path = {"path": base_path(spec.instance_id).rstrip("/"), "pathType": "Prefix",
            "backend": {"service": {"name": spec.instance_id, "port": {"number": spec.port}}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": spec.instance_id, "namespace": namespace, "labels": pod_labels(spec),
                     "annotations": annotations},
        "spec": {"ingressClassName": ingress_class, "rules": [{"host": host, "http": {"paths": [path]}}]},
    }
