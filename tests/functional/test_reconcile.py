"""Reconciliation: unfinished instances against the pods that exist (the Kubernetes stand-in)."""

import datetime as dt

import pytest

from tests.functional.test_kew import pod_messages
from tests.functional.test_pbc import instance, pbc_fn  # noqa: F401


@pytest.fixture
def cluster(api):
    from kubernetes import client

    from shared.launchers import create_launcher
    from tests.k8s_standin import KubernetesStandIn

    with KubernetesStandIn() as standin:
        api_client = client.ApiClient(client.Configuration(host=standin.url))
        yield standin, create_launcher("kubernetes", namespace="data-manager", api_client=api_client)
        api_client.close()


def launch(launcher, instance_id, task_id):
    from shared.launchers.base import LaunchSpec

    launcher.launch(LaunchSpec(instance_id=instance_id, task_id=task_id, project_id="project-x", owner="alice",
                               image="informaticsmatters/dm-test:1.0.0", command=["run"]))


def reconcile(api, launcher, minutes=1):
    from shared.db.base import utcnow
    from shared.services import reconcile

    return reconcile.reconcile_instances(api.services.engine, launcher, "",
                                         now=utcnow() + dt.timedelta(minutes=minutes))


def test_a_pod_that_ended_unseen_sends_the_podmessage_kew_would_have(api, alice, cluster, instance):  # noqa: F811
    standin, launcher = cluster
    instance_id, task_id = instance
    launch(launcher, instance_id, task_id)
    standin.append_log(instance_id, "2026-11-23T10:00:00+00:00 # INFO -EVENT- Seen late\n")
    standin.set_phase(instance_id, "Succeeded", exit_code=0)
    assert reconcile(api, launcher) == 0  # the phase changes when pbc applies the message
    assert [(m.phase, m.exit_code) for _, m in pod_messages(api)] == [("Succeeded", 0)]
    events = [e["message"] for e in alice.get(f"/task/{task_id}").get_json()["events"]]
    assert "Seen late" in events  # the log was read on the way, as kew does
    reconcile(api, launcher)
    assert len(pod_messages(api)) == 1  # nothing twice


def test_an_instance_whose_pod_is_gone_ends_failed_with_a_reason(api, alice, cluster, instance, pbc_fn):  # noqa: F811
    from tests.functional.test_pbc import pod_message, send

    standin, launcher = cluster
    instance_id, task_id = instance
    launch(launcher, instance_id, task_id)
    assert send(pbc_fn, pod_message(instance_id, task_id, "Running", finished=None)).status_code == 202
    standin.delete("data-manager", instance_id)  # gone while no one watched
    assert reconcile(api, launcher) == 1
    task = alice.get(f"/task/{task_id}").get_json()
    assert task["states"][-1]["state"] == "FAILURE" and "disappeared" in task["states"][-1]["message"]
    detail = alice.get(f"/instance/{instance_id}").get_json()
    assert detail["phase"] == "FAILED"
    assert reconcile(api, launcher) == 0


def test_a_pending_instance_without_a_pod_waits_for_its_deadline(api, alice, cluster, instance):  # noqa: F811
    _, launcher = cluster
    instance_id, task_id = instance
    assert reconcile(api, launcher, minutes=1) == 0  # its pod may still be on its way
    assert alice.get(f"/instance/{instance_id}").get_json()["phase"] == "PENDING"
    assert reconcile(api, launcher, minutes=11) == 1
    task = alice.get(f"/task/{task_id}").get_json()
    assert task["done"] and "never started" in task["states"][-1]["message"]


def test_a_pod_in_the_state_kew_has_seen_is_left_to_kew(api, cluster, instance, monkeypatch):  # noqa: F811
    from shared.events.contracts import PodChange
    from shared.launchers.base import LogRead
    from shared.services import instance_pods

    standin, launcher = cluster
    instance_id, task_id = instance
    launch(launcher, instance_id, task_id)
    standin.set_phase(instance_id, "Running")
    instance_pods.observe(api.services.engine, launcher, PodChange("update", standin.pod(instance_id)))  # kew
    reads = []
    monkeypatch.setattr(launcher, "read_log_since", lambda *a: reads.append(a) or LogRead(b"", a[1]))
    assert reconcile(api, launcher) == 0
    assert reads == []  # nothing new: no log read
    standin.set_phase(instance_id, "Succeeded", exit_code=0)
    reconcile(api, launcher)
    assert reads and [m.phase for _, m in pod_messages(api)] == ["Running", "Succeeded"]
