"""The instance Pod is one the API server takes (strict schema) and one that runs unprivileged, with
the resources its job definition asks for (jobs.md §3.2: 1 CPU and 1Gi by default, requests = limits)."""

from __future__ import annotations

import uuid

import pytest

from shared.launchers import pods
from shared.launchers.base import LaunchSpec


def make_spec(**overrides) -> LaunchSpec:
    values = dict(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}",
                  project_id=f"project-{uuid.uuid4()}", owner="alice", image="informaticsmatters/vs-prep:1.0",
                  command=["/code/run.py"])
    values.update(overrides)
    return LaunchSpec(**values)


SPECS = {"job": make_spec(), "application": make_spec(is_job=False, port=8888),
         "sized job": make_spec(memory="2Gi", cores="500m")}


@pytest.mark.parametrize("name", SPECS)
def test_the_api_server_schema_takes_the_pod(name):
    import kubernetes_validate

    pod = pods.pod_manifest(SPECS[name], "data-manager", service_account_name="data-manager-app",
                            node_selector={"informaticsmatters.com/purpose-worker": "yes"}, image_pull_secrets=["im"])
    kubernetes_validate.validate(pod, "1.37", strict=True)


def restricted_problems(pod: dict) -> list[str]:
    """What the Pod Security Standard `restricted` (and this platform) asks of a pod's security."""
    problems = []
    pod_context = pod["spec"].get("securityContext") or {}
    for container in pod["spec"]["containers"]:
        context = {**pod_context, **(container.get("securityContext") or {})}
        if context.get("runAsNonRoot") is not True or context.get("runAsUser") == 0:
            problems.append("may run as root")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append("may escalate privileges")
        if (context.get("capabilities") or {}).get("drop") != ["ALL"] or (context.get("capabilities") or {}).get("add"):
            problems.append("keeps capabilities")
        if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append("no seccomp profile")
        if context.get("privileged"):
            problems.append("privileged")
    return problems


@pytest.mark.parametrize("name", SPECS)
def test_the_pod_runs_unprivileged(name):
    pod = pods.pod_manifest(SPECS[name], "data-manager")
    assert restricted_problems(pod) == []
    assert pod["spec"]["securityContext"]["runAsUser"] == pods.RUN_AS_USER != 0


def test_the_check_sees_a_privileged_pod():
    pod = pods.pod_manifest(make_spec(), "data-manager")
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    pod["spec"]["containers"][0]["securityContext"] = {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}
    assert restricted_problems(pod) == ["may run as root", "may escalate privileges", "keeps capabilities"]


def test_resources_come_from_the_job_definition_with_the_operators_defaults():
    sized = pods.pod_manifest(make_spec(memory="2Gi", cores="500m"), "data-manager")["spec"]["containers"][0]
    assert sized["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                  "limits": {"cpu": "500m", "memory": "2Gi"}}
    plain = pods.pod_manifest(make_spec(), "data-manager")["spec"]["containers"][0]
    assert plain["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
