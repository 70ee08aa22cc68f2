"""KubernetesLauncher through the real `kubernetes` client, against the API stand-in on a real port."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from shared.launchers import create_launcher, pods
from shared.launchers.base import (APPLICATION_LABEL, INSTANCE_LABEL, IS_JOB_LABEL, OWNER_LABEL, PROJECT_LABEL,
                                   PURPOSE_LABEL, TASK_LABEL, LaunchError, LaunchSpec)
from tests.conftest import ROOT

NAMESPACE = "data-manager"


def make_spec(**overrides) -> LaunchSpec:
    values = dict(
        instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}", project_id=f"project-{uuid.uuid4()}",
        owner="alice@example.org", image="informaticsmatters/vs-prep:stable",
        command=["/code/sucos.py", "--input", "a b.sdf", "--output", "foo/sucos.sdf"],
        working_directory="/data", project_directory="/data", environment={"DM_API_TOKEN": "t0k=en"},
        memory="2Gi", cores="500m")
    values.update(overrides)
    return LaunchSpec(**values)


@pytest.fixture
def core(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def launcher(api_client):
    return create_launcher("kubernetes", namespace=NAMESPACE, api_client=api_client, project_claim="projects-pvc")


# --- the pod it creates ----------------------------------------------------------------


def test_launch_creates_the_pod_the_operator_would(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)

    pod = standin.pod(spec.instance_id, NAMESPACE)
    assert pod["metadata"]["name"] == spec.instance_id
    assert pod["metadata"]["namespace"] == NAMESPACE
    assert pod["metadata"]["labels"] == {
        PURPOSE_LABEL: "INSTANCE", INSTANCE_LABEL: spec.instance_id, TASK_LABEL: spec.task_id,
        OWNER_LABEL: "alice_example.org", PROJECT_LABEL: spec.project_id, IS_JOB_LABEL: "yes"}
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert pod["metadata"]["uid"] and pod["metadata"]["resourceVersion"] and pod["metadata"]["creationTimestamp"]

    body = pod["spec"]
    assert body["restartPolicy"] == "Never"
    assert body["securityContext"] == {"runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 0, "runAsNonRoot": True,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert body["volumes"] == [{"name": "project", "persistentVolumeClaim": {"claimName": "projects-pvc"}}]
    (container,) = body["containers"]
    assert container["name"] == spec.instance_id
    assert container["image"] == "informaticsmatters/vs-prep:stable"
    assert container["imagePullPolicy"] == "Always"
    assert container["command"] == ["/code/sucos.py", "--input", "a b.sdf", "--output", "foo/sucos.sdf"]
    assert container["workingDir"] == "/data"
    assert container["env"] == [{"name": "DM_INSTANCE_DIRECTORY", "value": f".{spec.instance_id}"},
                                {"name": "DM_API_TOKEN", "value": "t0k=en"}]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"},
                                      "limits": {"cpu": "500m", "memory": "2Gi"}}
    assert container["volumeMounts"] == [{"name": "project", "mountPath": "/data", "subPath": spec.project_id}]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_defaults_debug_and_applications(launcher, standin):
    spec = make_spec(memory=None, cores=None, image="informaticsmatters/jote:1.2.3", debug=True, is_job=False,
                     working_directory="/home/jovyan/work", project_directory="/home/jovyan")
    launcher.launch(spec)

    pod = standin.pod(spec.instance_id)
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["workingDir"] == "/home/jovyan/work"
    assert container["volumeMounts"][0]["mountPath"] == "/home/jovyan"
    labels = pod["metadata"]["labels"]
    assert labels["debug"] == "yes"
    assert labels[APPLICATION_LABEL] == spec.instance_id and IS_JOB_LABEL not in labels


@pytest.mark.parametrize("image, policy", [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("im/vs-prep:stable", "Always"),
    ("registry:5000/im/vs-prep", "Always"), ("registry:5000/im/vs-prep:1.0", "IfNotPresent"),
    ("im/vs-prep:1.0.1", "IfNotPresent"), ("im/vs-prep@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert pods.image_pull_policy(image) == policy


def test_a_repeated_launch_is_not_an_error(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)
    uid = standin.pod(spec.instance_id)["metadata"]["uid"]

    launcher.launch(spec)  # the API server answers 409 AlreadyExists

    assert standin.pod_names() == [spec.instance_id]
    assert standin.pod(spec.instance_id)["metadata"]["uid"] == uid
    assert [m for m, _ in standin.requests].count("POST") == 2


def test_a_refused_pod_raises_launch_error(launcher, standin):
    spec = make_spec(instance_id="Instance_Not_A_DNS_Name")

    with pytest.raises(LaunchError, match="is invalid"):
        launcher.launch(spec)
    assert standin.pod_names() == []


@pytest.mark.parametrize("code", [500, 503, 429])
def test_passing_faults_propagate(launcher, standin, code):
    from kubernetes.client.exceptions import ApiException

    standin.fail_next(code)
    with pytest.raises(ApiException) as caught:
        launcher.launch(make_spec())
    assert not isinstance(caught.value, LaunchError) and caught.value.status == code


def test_an_unreachable_api_server_propagates():
    from kubernetes import client
    from urllib3.exceptions import MaxRetryError

    configuration = client.Configuration(host="http://127.0.0.1:9")  # the discard port: nothing listens
    configuration.retries = 0
    with client.ApiClient(configuration) as api:
        launcher = create_launcher("kubernetes", namespace=NAMESPACE, api_client=api)
        with pytest.raises(MaxRetryError):
            launcher.launch(make_spec())


# --- stop, logs, listing -----------------------------------------------------------


def test_stop_deletes_the_pod(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)
    standin.set_phase(spec.instance_id, "Running")

    launcher.stop(spec.instance_id)

    assert standin.pod_names() == []
    assert ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{spec.instance_id}") in standin.requests


def test_stopping_a_missing_pod_does_nothing(launcher, standin):
    launcher.stop("instance-gone")
    assert standin.requests[-1] == ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/instance-gone")


def test_read_log_from_offsets(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)
    assert launcher.read_log(spec.instance_id) == b""  # 400: the container is waiting to start

    standin.set_phase(spec.instance_id, "Running")
    assert launcher.read_log(spec.instance_id) == b""
    first = "2026-11-23T10:55:58+00:00 # INFO -EVENT- Reading reference\n"
    standin.append_log(spec.instance_id, first)
    assert launcher.read_log(spec.instance_id) == first.encode()

    second = "2026-11-23T10:55:59+00:00 # INFO -COST- 5.7 1\n"
    standin.append_log(spec.instance_id, second)
    offset = len(first.encode())
    assert launcher.read_log(spec.instance_id, offset) == second.encode()
    assert launcher.read_log(spec.instance_id, offset + len(second)) == b""
    assert launcher.read_log("instance-unknown") == b""


def test_read_log_after_the_end(launcher, standin):
    spec = make_spec()
    launcher.launch(spec)
    standin.set_phase(spec.instance_id, "Running")
    standin.append_log(spec.instance_id, "déjà vu\n")
    standin.set_phase(spec.instance_id, "Failed", exit_code=3)
    assert launcher.read_log(spec.instance_id, 1) == "déjà vu\n".encode()[1:]


def test_list_instance_pods(launcher, standin, core):
    first, second = make_spec(), make_spec(is_job=False)
    launcher.launch(first)
    launcher.launch(second)
    core.create_namespaced_pod(NAMESPACE, {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"name": "unrelated", "labels": {"app": "other"}},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    core.create_namespaced_pod("elsewhere", pods.pod_manifest(make_spec(), "elsewhere"))

    found = launcher.list_instance_pods()

    assert sorted(p["metadata"]["name"] for p in found) == sorted([first.instance_id, second.instance_id])
    assert all(p["metadata"]["labels"][PURPOSE_LABEL] == "INSTANCE" and "status" in p for p in found)


# --- what a watcher (the ApiServerSource) sees ------------------------------------------


def test_a_watch_sees_the_pod_life(launcher, standin, core):
    from kubernetes import watch

    spec = make_spec()
    start = core.list_namespaced_pod(NAMESPACE).metadata.resource_version
    seen: list[dict] = []
    watcher = watch.Watch()

    def follow():
        for event in watcher.stream(core.list_namespaced_pod, NAMESPACE, label_selector=f"{PURPOSE_LABEL}=INSTANCE",
                                    resource_version=start, timeout_seconds=10):
            seen.append(event)
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=follow)
    thread.start()
    launcher.launch(spec)
    standin.set_phase(spec.instance_id, "Running")
    standin.append_log(spec.instance_id, "done\n")
    standin.set_phase(spec.instance_id, "Succeeded", exit_code=0)
    launcher.stop(spec.instance_id)
    thread.join(10)
    assert not thread.is_alive()

    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    assert [e["object"].status.phase for e in seen] == ["Pending", "Running", "Succeeded", "Succeeded", "Succeeded"]
    versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    final = seen[2]["object"]
    terminated = final.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0 and terminated.reason == "Completed"
    assert terminated.started_at is not None and terminated.finished_at is not None
    assert final.metadata.labels[INSTANCE_LABEL] == spec.instance_id
    assert seen[-1]["raw_object"]["metadata"]["deletionTimestamp"]


def test_a_watch_without_a_version_starts_with_what_exists(launcher, standin, core):
    from kubernetes import watch

    spec = make_spec()
    launcher.launch(spec)
    standin.set_phase(spec.instance_id, "Failed", exit_code=137)

    events = list(watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=1))

    assert [e["type"] for e in events] == ["ADDED"]
    status = events[0]["raw_object"]["status"]
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"


def test_the_standin_answers_with_status_objects(core, standin):
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("nope", NAMESPACE)
    assert caught.value.status == 404
    status = json.loads(caught.value.body)
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'pods "nope" not found', "reason": "NotFound", "code": 404,
                      "details": {"name": "nope", "kind": "pods"}}

    manifest = pods.pod_manifest(make_spec(), NAMESPACE)
    core.create_namespaced_pod(NAMESPACE, manifest)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(NAMESPACE, manifest)
    status = json.loads(caught.value.body)
    assert (status["code"], status["reason"], status["status"]) == (409, "AlreadyExists", "Failure")


# --- the factory -------------------------------------------------------------------


def test_the_factory(tmp_path):
    from shared.launchers.kubernetes import KubernetesLauncher
    from shared.launchers.local import LocalLauncher

    assert isinstance(create_launcher("kubernetes", namespace="ns"), KubernetesLauncher)  # no API call yet
    local = create_launcher("local", projects_root=tmp_path, logs_root=tmp_path, sink_url=None)
    assert isinstance(local, LocalLauncher)
    with pytest.raises(ValueError, match="Unknown launcher"):
        create_launcher("docker")


def test_one_launcher_per_process_and_settings(tmp_path):
    from shared.config import Settings
    from shared.launchers import launcher_for
    from shared.launchers.kubernetes import KubernetesLauncher

    settings = Settings(data_dir=tmp_path, broker_url="http://127.0.0.1:8082")
    local = launcher_for(settings)
    assert launcher_for(settings) is local
    assert local.projects_root == settings.project_volume_path == (tmp_path / "store" / "projects").resolve()
    assert local.logs_root == settings.pod_logs_dir and local.sink_url == "http://127.0.0.1:8082"

    cluster = launcher_for(Settings(data_dir=tmp_path, launcher="kubernetes", kubernetes_namespace="dm",
                                    project_claim="pvc", project_volume="/data-manager/projects"))
    assert isinstance(cluster, KubernetesLauncher)
    assert (cluster.namespace, cluster.project_claim) == ("dm", "pvc")


def test_importing_the_launchers_does_not_import_kubernetes():
    code = ("import sys, shared.launchers, shared.launchers.kubernetes, shared.launchers.local; "
            "assert 'kubernetes' not in sys.modules, 'kubernetes imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_pods_of_many_instances_take_one_call(launcher, standin):
    first, second, never = make_spec(), make_spec(is_job=False), make_spec()
    launcher.launch(first)
    launcher.launch(second)
    before = len(standin.requests)

    found = launcher.pods([first.instance_id, second.instance_id, never.instance_id])

    assert sorted(found) == sorted([first.instance_id, second.instance_id])
    assert found[first.instance_id]["metadata"]["labels"][PURPOSE_LABEL] == "INSTANCE"
    assert [method for method, _ in standin.requests[before:]] == ["GET"]  # one list, not one read each
    assert launcher.pods([]) == {} and len(standin.requests) == before + 1
