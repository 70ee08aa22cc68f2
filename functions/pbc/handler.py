"""pbc, the protobuf consumer: PodMessages become instance phases and task states, and the
workflow engine it hosts hears of each START and STOP and of each step instance's end.

The claim (inbox) and the change share one transaction, on a Core connection (no ORM Session: on
PostgreSQL the claim, the read and the change are two prepared statements); the change itself is
``pod_messages.apply_pod_message``, and for a workflow step's instance, the first time its end is
seen, the engine's move (``workflow_host``, imported only then: ordinary pods never load it), in a
Session on the same transaction. Pods the engine asked for start after the commit.
"""

from __future__ import annotations

from shared.db.session import core_transaction
from shared.events.consumer import Consumer, Received
from shared.events.contracts import PodMessageEvent, WorkflowMessageEvent
from shared.lazy import lazy
from shared.process_services import ProcessServices
from shared.services import pod_messages
from shared.services.workflow_host import ends

host = lazy("shared.services.workflow_host.host")
consumer = Consumer("pbc")
services = ProcessServices()  # settings from the environment, collaborators on first use


@consumer.on(PodMessageEvent)
def on_pod_message(event: PodMessageEvent, received: Received) -> None:
    pending = []
    claim = pod_messages.Claim(received.consumer, received.id, received.sha256)
    with core_transaction(services.engine) as connection:  # an ordinary pod's message needs no ORM Session
        found = pod_messages.apply_pod_message(connection, event.message, claim=claim)  # None: handled before
        if found is not None and found.step:
            pending = _step_end(connection, event.message)
    if pending:
        host.launch_pending(services, pending)


def _step_end(connection, message) -> list:  # noqa: ANN001
    """A workflow step's pod: the engine moves the run on the first time its end is seen, in a
    Session on the same transaction (the Session joins it, and leaves its commit to the caller)."""
    from sqlalchemy.orm import Session

    with Session(connection, expire_on_commit=False) as s:
        pending = host.after_step_end(s, services, message.instance) if ends.is_step_end(s, message) else []
        s.flush()
    return pending


@consumer.on(WorkflowMessageEvent)
def on_workflow_message(event: WorkflowMessageEvent, received: Received) -> None:
    host.on_workflow_message(services, event.message, received.claim)


def handle(request):
    return consumer.handle(request)
