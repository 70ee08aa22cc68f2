"""Instances as Pods, made through the Kubernetes API as the job operator makes them.

The `kubernetes` client is imported on first use, not with this module: it costs about
0.3 s of cold start, which a function that never launches should not pay. What happens to
the pods afterwards reaches the platform through the ApiServerSource (knative/instances.yaml).
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from . import pods
from .base import PURPOSE_LABEL, LaunchError, LogRead

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api

    from .base import LaunchSpec

# (connect, read) seconds for each API call: a function must not hang on a slow API server.
REQUEST_TIMEOUT = (5.0, 30.0)
# 429 (throttled) is a passing fault like a 5xx, not a refusal of the pod.
_TRANSIENT_4XX = {408, 429}
# What the API server says (400) when asked for the log of a container that has not started.
_NOT_STARTED = ("waiting to start", "ContainerCreating", "PodInitializing")
# The most one log call may return (limitBytes); a longer log is read in further calls.
LOG_LIMIT_BYTES = 1024 * 1024
# A call that returned only lines already read (more than the limit within one second, or one
# very long line) is repeated with a larger limit, up to this; past it that second is left.
MAX_LOG_LIMIT_BYTES = 16 * 1024 * 1024
_LOG_PATH = "/api/v1/namespaces/{namespace}/pods/{name}/log"
_RFC3339 = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([-+])(\d\d):(\d\d))")
_NS = 1_000_000_000
log = logging.getLogger("dm.launchers.kubernetes")


def _nanos(stamp: bytes) -> int | None:
    """An RFC 3339 time (the kubelet's, to the nanosecond) as nanoseconds since the epoch."""
    m = _RFC3339.fullmatch(stamp)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    if sign:
        seconds -= (1 if sign == b"+" else -1) * (int(off_h) * 3600 + int(off_m) * 60)
    return seconds * _NS + int((fraction or b"0").ljust(9, b"0"))


def _stamp(nanos: int) -> str:
    """RFC 3339 with nanoseconds, as the kubelet writes it (UTC, trailing zeros dropped)."""
    seconds, fraction = divmod(nanos, _NS)
    digits = f"{fraction:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{digits}Z" if digits else "Z")


def _log_position(position: str) -> tuple[int | None, int, int]:
    """(time of the latest line read, lines read with exactly that time, log bytes to pass over)."""
    if not position:
        return None, 0, 0
    if position.isdigit():  # a byte offset, as kew stored positions before it had these
        return None, 0, int(position)
    stamp, _, count = position.partition(" ")
    nanos = _nanos(stamp.encode())
    if nanos is None or not count.isdigit():
        raise ValueError(f"Not a log position: {position!r}")
    return nanos, int(count), 0


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
                 request_timeout: tuple[float, float] = REQUEST_TIMEOUT, ingress_host: str = "",
                 ingress_class: str = "nginx", access_url: str = "") -> None:
        self.namespace = namespace
        # an application gets a Service and an Ingress on ingress_host (none without one), whose
        # nginx asks access_url + "/<instance-id>" (the api's access check) before letting a visit in
        self.ingress_host = ingress_host
        self.ingress_class = ingress_class
        self.access_url = access_url.rstrip("/")
        self._networking = None
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

    @property
    def networking(self):
        if self._networking is None:
            from kubernetes import client

            self._networking = client.NetworkingV1Api(self.core.api_client)
        return self._networking

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
        made = [(self.core.create_namespaced_pod, self.manifest(spec), "pod")]
        if not spec.is_job and spec.port and self.ingress_host:  # an application: its way in, with it
            made.append((self.core.create_namespaced_service, pods.service_manifest(spec, self.namespace),
                         "service"))
            made.append((self.networking.create_namespaced_ingress, pods.ingress_manifest(
                spec, self.namespace, host=self.ingress_host, ingress_class=self.ingress_class,
                auth_url=f"{self.access_url}/{spec.instance_id}"), "ingress"))
        for create, body, what in made:
            try:
                _done(create(self.namespace, body, _preload_content=False, _request_timeout=self.request_timeout))
            except ApiException as exc:
                if exc.status == 409:  # made by an earlier launch
                    continue
                if exc.status and 400 <= exc.status < 500 and exc.status not in _TRANSIENT_4XX:
                    raise LaunchError(f"The {what} for {spec.instance_id} was refused: {_message(exc)}") from exc
                raise

    def stop(self, instance_id: str) -> None:
        """Delete an application's Ingress and Service (the way in closes first), then the Pod (its
        containers get SIGTERM, then SIGKILL after the grace period). What is not there is gone."""
        from kubernetes.client.exceptions import ApiException

        removals = [self.core.delete_namespaced_pod]
        if self.ingress_host:  # a job has neither: two 404s, only where applications are exposed
            removals[:0] = [self.networking.delete_namespaced_ingress, self.core.delete_namespaced_service]
        for delete in removals:
            try:
                _done(delete(instance_id, self.namespace, _preload_content=False,
                             _request_timeout=self.request_timeout))
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

    log_limit_bytes = LOG_LIMIT_BYTES
    max_log_limit_bytes = MAX_LOG_LIMIT_BYTES

    def read_log_since(self, instance_id: str, position: str = "") -> LogRead:
        """The log lines after ``position``, asking the API server only for those.

        The position is ``"<time> <n>"``: the kubelet's time of the latest line read and how
        many lines with exactly that time were read. Each call asks for the lines from that
        time's second on (``sinceTime`` has whole seconds) with their times
        (``timestamps=true``); the lines of that second up to the position come again and are
        passed over. The times are removed from what is returned. Each call is bounded by
        ``limitBytes``; when a call is cut off, the next goes on from the last whole line.
        The kubelet's times are taken not to go backwards within a log.
        """
        after, count, skip = _log_position(position)
        stamp = position.partition(" ")[0] if after is not None else ""
        data, limit = bytearray(), self.log_limit_bytes
        while True:
            body = self._log_body(instance_id, None if after is None else after // _NS, limit)
            if body is None:
                break
            size, at, seen, new, old = len(body), 0, 0, False, after is not None
            while (end := body.find(b"\n", at)) >= 0:
                time_end = body.find(b" ", at, end)
                t = _nanos(body[at:time_end]) if time_end > at else None
                if t is None:
                    raise ValueError(f"A log line of {instance_id} has no time: {body[at:at + 60]!r}")
                text, line_stamp, at = body[time_end + 1:end + 1], body[at:time_end], end + 1
                if old:  # the lines read before come first
                    if t < after or (t == after and seen < count):
                        seen += 1 if t == after else 0
                        continue
                    old = False
                new = True
                if skip:
                    taken = min(skip, len(text))
                    text, skip = text[taken:], skip - taken
                data += text
                if after is None or t > after:
                    after, count, stamp = t, 1, line_stamp.decode()
                elif t == after:
                    count += 1
            if size < limit:  # the log's end: what is left is a line not ended yet, not read
                rest = body[at:]
                time_end = rest.find(b" ")
                if time_end > 0 and not skip:
                    data += rest[time_end + 1:]
                break
            if new:
                continue  # cut off after some new lines: go on from them
            if limit < self.max_log_limit_bytes:
                limit = min(limit * 4, self.max_log_limit_bytes)
                continue
            # Nothing new fits even the largest call: start at the next line's second, or
            # when that is the second already asked for, leave the rest of it.
            time_end = body.find(b" ", at)
            first = _nanos(body[at:time_end]) if time_end > at else after  # after: the body was all old lines
            if first is None:
                raise ValueError(f"A log line of {instance_id} has no time: {body[at:at + 60]!r}")
            second = first // _NS * _NS
            if after is None or second <= after:
                second += _NS
                log.warning("Lines of %s in the second from %s were not read: over %d bytes", instance_id,
                            _stamp(second - _NS), limit)
            after, count, stamp = second, 0, _stamp(second)
        return LogRead(bytes(data), f"{stamp} {count}" if after is not None else position)

    def _log_body(self, instance_id: str, since: int | None, limit: int) -> bytes | None:
        """One log call with each line's time, from second ``since`` on; None when there is no
        log (yet)."""
        from kubernetes.client.exceptions import ApiException

        # read_namespaced_pod_log has no sinceTime (the API's OpenAPI document lacks it): the
        # same call, made directly.
        query: list[tuple[str, Any]] = [("container", instance_id), ("limitBytes", limit), ("timestamps", "true")]
        if since is not None:
            query.append(("sinceTime", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))))
        api = self.core.api_client
        try:
            response = api.call_api(_LOG_PATH, "GET", {"namespace": self.namespace, "name": instance_id}, query,
                                    {"Accept": api.select_header_accept(["text/plain", "application/json"])},
                                    auth_settings=["BearerToken"], _return_http_data_only=True,
                                    _preload_content=False, _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 404 or (exc.status == 400 and any(s in _body(exc) for s in _NOT_STARTED)):
                return None
            raise
        try:
            return response.data
        finally:
            response.release_conn()

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
