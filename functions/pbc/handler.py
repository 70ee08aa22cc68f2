"""pbc, the protobuf consumer: PodMessages become instance phases and task states, and the
workflow engine it hosts hears of each START and STOP and of each step instance's end.

The claim (inbox) and the change share one transaction; the change itself is
``instances.apply_pod_message``, and for a workflow step's instance, the first time its end is
seen, the engine's move (``workflow_host``, imported only then: ordinary pods never load it).
Pods the engine asked for start after the commit.
"""

from __future__ import annotations

from shared.db.session import transaction
from shared.events.consumer import Consumer, Received
from shared.events.contracts import PodMessageEvent, WorkflowMessageEvent
from shared.lazy import lazy
from shared.process_services import ProcessServices
from shared.services import instances
from shared.services.workflow_host import ends

host = lazy("shared.services.workflow_host.host")
consumer = Consumer("pbc")
services = ProcessServices()  # settings from the environment, collaborators on first use


@consumer.on(PodMessageEvent)
def on_pod_message(event: PodMessageEvent, received: Received) -> None:
    pending = []
    with transaction(services.engine) as s:
        if received.claim(s):  # else handled before
            instances.apply_pod_message(s, event.message)
            if ends.is_step_end(s, event.message):
                pending = host.after_step_end(s, services, event.message.instance)
    if pending:
        host.launch_pending(services, pending)


@consumer.on(WorkflowMessageEvent)
def on_workflow_message(event: WorkflowMessageEvent, received: Received) -> None:
    host.on_workflow_message(services, event.message, received.claim)


def handle(request):
    return consumer.handle(request)
