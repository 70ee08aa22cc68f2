"""An application's Service and Ingress through the real `kubernetes` client (NetworkingV1Api for the
Ingress), against the API stand-in: made with the pod, removed with it, both idempotently."""

from __future__ import annotations

import uuid

import pytest

from shared.launchers import create_launcher
from shared.launchers.base import INSTANCE_LABEL, LaunchError, LaunchSpec

NAMESPACE = "data-manager"
HOST = "dm.example.org"
ACCESS = "https://dm.example.org/data-manager-api/instance-access"


def application(**overrides) -> LaunchSpec:
    values = dict(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}",
                  project_id=f"project-{uuid.uuid4()}", owner="alice", image="jupyter/minimal-notebook:notebook-6.3.0",
                  command=["start-notebook.sh", "--port={port}", "--NotebookApp.base_url={base_path}"],
                  working_directory="/home/jovyan", project_directory="/home/jovyan", is_job=False, port=8888)
    values.update(overrides)
    return LaunchSpec(**values)


@pytest.fixture
def launcher(api_client):
    return create_launcher("kubernetes", namespace=NAMESPACE, api_client=api_client, ingress_host=HOST,
                           ingress_class="nginx", access_url=ACCESS)


def test_an_application_gets_a_service_and_an_ingress(launcher, standin):
    spec = application()
    launcher.launch(spec)
    pod = standin.pod(spec.instance_id, NAMESPACE)
    container = pod["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    assert container["command"] == ["start-notebook.sh", "--port=8888", f"--NotebookApp.base_url=/{spec.instance_id}/"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DM_APPLICATION_PORT"] == "8888" and env["DM_APPLICATION_BASE_PATH"] == f"/{spec.instance_id}/"

    service = standin.service(spec.instance_id, NAMESPACE)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["clusterIP"].startswith("10.96.")
    assert service["spec"]["selector"] == {INSTANCE_LABEL: spec.instance_id}
    assert pod["metadata"]["labels"][INSTANCE_LABEL] == spec.instance_id  # the selector finds the pod
    assert service["spec"]["ports"] == [{"name": "http", "port": 8888, "targetPort": 8888, "protocol": "TCP"}]

    ingress = standin.ingress(spec.instance_id, NAMESPACE)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"] == [{"host": HOST, "http": {"paths": [{
        "path": f"/{spec.instance_id}", "pathType": "Prefix",
        "backend": {"service": {"name": spec.instance_id, "port": {"number": 8888}}}}]}}]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == f"{ACCESS}/{spec.instance_id}"
    assert annotations["nginx.ingress.kubernetes.io/auth-always-set-cookie"] == "true"

    # through the client's own models too: what a reader of the cluster would see
    from kubernetes import client

    read = client.NetworkingV1Api(launcher.core.api_client).read_namespaced_ingress(spec.instance_id, NAMESPACE)
    assert read.spec.rules[0].http.paths[0].backend.service.port.number == 8888


def test_launch_and_stop_are_idempotent(launcher, standin):
    spec = application()
    launcher.launch(spec)
    launcher.launch(spec)  # each object exists: three 409s count as made
    conflicts = [r for r in standin.requests if r[0] == "POST"]
    assert len(conflicts) == 6
    launcher.stop(spec.instance_id)
    assert standin.service(spec.instance_id, NAMESPACE) is None
    assert standin.ingress(spec.instance_id, NAMESPACE) is None
    assert standin.pod(spec.instance_id, NAMESPACE) is None
    launcher.stop(spec.instance_id)  # all three gone already: 404s are fine
    deletes = [path for method, path in standin.requests if method == "DELETE"]
    assert [p.split("/")[-2] for p in deletes[:3]] == ["ingresses", "services", "pods"]


def test_a_job_gets_neither(launcher, standin):
    spec = application(is_job=True, port=None, command=["echo", "{port}"])
    launcher.launch(spec)
    assert standin.service(spec.instance_id, NAMESPACE) is None
    assert standin.ingress(spec.instance_id, NAMESPACE) is None
    assert standin.pod(spec.instance_id, NAMESPACE)["spec"]["containers"][0]["command"] == ["echo", "{port}"]


def test_without_an_ingress_host_no_way_in_is_made(api_client, standin):
    launcher = create_launcher("kubernetes", namespace=NAMESPACE, api_client=api_client)
    spec = application()
    launcher.launch(spec)
    assert standin.service(spec.instance_id, NAMESPACE) is None and standin.ingress(spec.instance_id, NAMESPACE) is None
    launcher.stop(spec.instance_id)
    assert [m for m, _ in standin.requests] == ["POST", "DELETE"]


def test_a_refused_ingress_is_a_launch_error(launcher, standin):
    spec = application(port=70000)  # no port number a Service can have
    with pytest.raises(LaunchError, match="service .* refused: Service .* is invalid"):
        launcher.launch(spec)


def test_a_passing_fault_propagates(launcher, standin):
    from kubernetes.client.exceptions import ApiException

    spec = application()
    launcher.launch(spec)
    standin.fail_next(503, "ServiceUnavailable")
    with pytest.raises(ApiException) as failed:
        launcher.stop(spec.instance_id)
    assert failed.value.status == 503
    launcher.stop(spec.instance_id)
    assert standin.ingress(spec.instance_id, NAMESPACE) is None and standin.pod(spec.instance_id, NAMESPACE) is None
