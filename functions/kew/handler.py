"""kew, the Kubernetes event watcher: ApiServerSource pod events in; task events, charges and
PodMessages out, through ``shared.services.instance_pods``."""

from __future__ import annotations

from shared.events.consumer import Consumer, Received
from shared.events.contracts import PodChange
from shared.process_services import ProcessServices
from shared.services import instance_pods

consumer = Consumer("kew")
services = ProcessServices()  # settings from the environment, collaborators on first use


@consumer.on(PodChange)
def on_pod_change(event: PodChange, received: Received) -> None:
    settings = services.settings
    instance_pods.observe(services.engine, services.launcher, event, claim=received.claim,
                          broker_url=settings.broker_url, remove_finished=settings.launcher == "kubernetes")


def handle(request):
    return consumer.handle(request)
