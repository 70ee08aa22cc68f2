"""Instances as Pods, made through the Kubernetes API as the job operator makes them.

The `kubernetes` client is imported on first use, not with this module: it costs about
0.3 s of cold start, which a function that never launches should not pay. What happens to
the pods afterwards reaches the platform through the ApiServerSource (knative/instances.yaml).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import pods
from .base import PURPOSE_LABEL, LaunchError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api

    from .base import LaunchSpec

# (connect, read) seconds for each API call: a function must not hang on a slow API server.
REQUEST_TIMEOUT = (5.0, 30.0)
# 429 (throttled) is a passing fault like a 5xx, not a refusal of the pod.
_TRANSIENT_4XX = {408, 429}
# What the API server says (400) when asked for the log of a container that has not started.
_NOT_STARTED = ("waiting to start", "ContainerCreating", "PodInitializing")


def default_api_client() -> "ApiClient":
    """A client for the cluster this runs in, else for the current kubeconfig context."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class KubernetesLauncher:
    """`Launcher` creating one Pod per instance in ``namespace`` (jobs.md §3.2)."""

    def __init__(self, namespace: str, api_client: "ApiClient | None" = None, project_claim: str = "project", *,
                 run_as_user: int = pods.RUN_AS_USER, run_as_group: int = pods.RUN_AS_GROUP,
                 service_account_name: str | None = None, node_selector: dict[str, str] | None = None,
                 image_pull_secrets: list[str] | None = None,
                 request_timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        self.namespace = namespace
        self.project_claim = project_claim
        self.run_as_user = run_as_user
        self.run_as_group = run_as_group
        self.service_account_name = service_account_name
        self.node_selector = node_selector
        self.image_pull_secrets = image_pull_secrets
        self.request_timeout = request_timeout
        self._api_client = api_client
        self._core: "CoreV1Api | None" = None

    @property
    def core(self) -> "CoreV1Api":
        if self._core is None:
            from kubernetes import client

            if self._api_client is None:
                self._api_client = default_api_client()
            self._core = client.CoreV1Api(self._api_client)
        return self._core

    def manifest(self, spec: "LaunchSpec") -> dict[str, Any]:
        """The Pod this launcher creates for ``spec``."""
        return pods.pod_manifest(spec, self.namespace, project_claim=self.project_claim,
                                 run_as_user=self.run_as_user, run_as_group=self.run_as_group,
                                 service_account_name=self.service_account_name, node_selector=self.node_selector,
                                 image_pull_secrets=self.image_pull_secrets)

    def launch(self, spec: "LaunchSpec") -> None:
        """Create the Pod. One that exists already counts as created (a repeated launch).

        Raises `LaunchError` when the API server refuses the pod (a 4xx); a 5xx, a throttle
        or a connection failure propagates as it is, for the caller to retry.
        """
        from kubernetes.client.exceptions import ApiException

        pods.check_mount(spec)
        try:
            response = self.core.create_namespaced_pod(self.namespace, self.manifest(spec), _preload_content=False,
                                                       _request_timeout=self.request_timeout)
            _done(response)
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status and 400 <= exc.status < 500 and exc.status not in _TRANSIENT_4XX:
                raise LaunchError(f"The pod for {spec.instance_id} was refused: {_message(exc)}") from exc
            raise

    def stop(self, instance_id: str) -> None:
        """Delete the Pod (its containers get SIGTERM, then SIGKILL after the grace period)."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.delete_namespaced_pod(instance_id, self.namespace, _preload_content=False,
                                                       _request_timeout=self.request_timeout)
            _done(response)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def read_log(self, instance_id: str, offset: int = 0) -> bytes:
        """The pod log from byte ``offset`` on (the API has no offsets: read all, skip the start)."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.read_namespaced_pod_log(instance_id, self.namespace, container=instance_id,
                                                         _preload_content=False,
                                                         _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 404 or (exc.status == 400 and any(s in _body(exc) for s in _NOT_STARTED)):
                return b""
            raise
        try:
            data = response.data
        finally:
            response.release_conn()
        return data[max(offset, 0):]

    def pod(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's Pod as the API's JSON; None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.read_namespaced_pod(instance_id, self.namespace, _preload_content=False,
                                                     _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def pods(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        """One list call for any number of instances (a pod is named after its instance)."""
        wanted = set(instance_ids)
        if not wanted:
            return {}
        return {pod["metadata"]["name"]: pod for pod in self.list_instance_pods()
                if pod.get("metadata", {}).get("name") in wanted}

    def list_instance_pods(self) -> list[dict[str, Any]]:
        """Every instance pod in the namespace, as the API's JSON (for reconciliation)."""
        response = self.core.list_namespaced_pod(self.namespace, label_selector=f"{PURPOSE_LABEL}=INSTANCE",
                                                 _preload_content=False, _request_timeout=self.request_timeout)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        return list(body.get("items") or [])


def _done(response: Any) -> None:
    """Read the answer to its end, so its connection can serve the next request."""
    try:
        response.read()
    finally:
        response.release_conn()


def _body(exc: Exception) -> str:
    body = getattr(exc, "body", None) or ""
    return body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)


def _message(exc: Exception) -> str:
    """The `message` of the API server's Status object, else the exception's reason."""
    body = _body(exc)
    try:
        status = json.loads(body) if body else {}
    except (TypeError, ValueError):
        status = {}
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return f"{getattr(exc, 'status', '')} {getattr(exc, 'reason', '')}".strip()
