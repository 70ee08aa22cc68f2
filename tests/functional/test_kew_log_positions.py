"""kew in a cluster reads each pod-log line once: it keeps the Kubernetes launcher's position (the
time of the last line read and how many lines had that time) and asks only for what follows."""

from tests.functional.test_kew import COST, EVENT, charges, pod_messages, task_events
from tests.functional.test_pbc import instance, pbc_fn  # noqa: F401

SECOND = "2026-11-23T10:55:{:02d}.{:09d}Z"


def stored_position(api, instance_id):
    from shared.db.models import InstanceLog
    from shared.db.session import transaction

    with transaction(api.services.engine, readonly=True) as s:
        return s.get(InstanceLog, instance_id).position


def test_kew_reads_each_line_once_across_reads_and_a_restart(api, alice, instance):  # noqa: F811
    from kubernetes import client

    from shared.events.contracts import PodChange
    from shared.launchers import create_launcher
    from shared.launchers.base import LaunchSpec
    from shared.services import instance_pods
    from tests.k8s_standin import KubernetesStandIn

    instance_id, task_id = instance
    engine = api.services.engine

    def observe(launcher, **options):
        instance_pods.observe(engine, launcher, PodChange("update", standin.pod(instance_id)), **options)

    with KubernetesStandIn() as standin:
        first_client = client.ApiClient(client.Configuration(host=standin.url))
        launcher = create_launcher("kubernetes", namespace="data-manager", api_client=first_client)
        launcher.launch(LaunchSpec(instance_id=instance_id, task_id=task_id, project_id="project-x", owner="alice",
                                   image="informaticsmatters/dm-test:1.0.0", command=["run"]))
        standin.set_phase(instance_id, "Running")
        standin.append_log(instance_id, EVENT.format("one") + EVENT.format("two"), at=SECOND.format(5, 0))
        observe(launcher)
        assert stored_position(api, instance_id) == "2026-11-23T10:55:05Z 2"

        standin.append_log(instance_id, EVENT.format("three"), at=SECOND.format(5, 0))  # the same instant again
        standin.append_log(instance_id, COST.format("+1", 1), at=SECOND.format(5, 1))
        standin.append_log(instance_id, EVENT.format("four").rstrip("\n"), at=SECOND.format(5, 2))  # not ended yet
        observe(launcher)
        assert stored_position(api, instance_id) == "2026-11-23T10:55:05.000000001Z 1"
        first_client.close()

        # kew restarts: a new process, a new launcher, the position from the database
        reads_before = len(standin.log_reads)
        second_client = client.ApiClient(client.Configuration(host=standin.url))
        launcher = create_launcher("kubernetes", namespace="data-manager", api_client=second_client)
        standin.append_log(instance_id, " continued\n", at=SECOND.format(6, 0))
        standin.append_log(instance_id, COST.format("+1", 2) + EVENT.format("five"), at=SECOND.format(6, 1))
        standin.set_phase(instance_id, "Succeeded", exit_code=0)
        observe(launcher, remove_finished=True)
        assert standin.pod(instance_id) is None
        second_client.close()

    (read,) = standin.log_reads[reads_before:]
    assert read["query"]["sinceTime"] == "2026-11-23T10:55:05Z" and read["query"]["timestamps"] == "true"
    messages = [m for _, m in task_events(alice, task_id)]
    assert messages[-5:] == ["one", "two", "three", "four continued", "five"]
    assert len(messages) == len(set(messages))  # no line handled twice
    assert charges(api, instance_id) == [(1, "+1", "1"), (2, "+1", "2")]
    assert [m.phase for _, m in pod_messages(api)] == ["Running", "Succeeded"]
