"""pbc, the protobuf consumer: PodMessages become instance phases and task states.

The claim (inbox) and the change share one transaction; the change itself is
``instances.apply_pod_message``.
"""

from __future__ import annotations

from shared.db.session import transaction
from shared.events.consumer import Consumer, Received
from shared.events.contracts import PodMessageEvent
from shared.process_services import ProcessServices
from shared.services import instances

consumer = Consumer("pbc")
services = ProcessServices()  # settings from the environment, collaborators on first use


@consumer.on(PodMessageEvent)
def on_pod_message(event: PodMessageEvent, received: Received) -> None:
    with transaction(services.engine) as s:
        if received.claim(s):  # else handled before
            instances.apply_pod_message(s, event.message)


def handle(request):
    return consumer.handle(request)
