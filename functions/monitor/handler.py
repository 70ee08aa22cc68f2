"""The monitor: schedule ticks run its jobs (``shared.services.monitor``); ``/dead-letter`` is
the dead-letter sink of every Trigger (``shared.services.dead_letters``)."""

from __future__ import annotations

from shared.db.session import transaction
from shared.events import wire
from shared.events.consumer import Consumer, Received
from shared.events.contracts import ScheduleTick
from shared.process_services import ProcessServices
from shared.services import dead_letters, monitor

consumer = Consumer("monitor")
services = ProcessServices()  # settings from the environment, collaborators on first use
DEAD_LETTER_PATH = "/dead-letter"


@consumer.on(ScheduleTick)
def on_tick(event: ScheduleTick, received: Received) -> None:
    # no inbox claim: a tick is an invitation to catch up, and a repeated one finds nothing to do
    monitor.run_job(services, event.job)


def on_dead_letter(request):
    """Keep whatever the Broker could not deliver (any type: it is the original event)."""
    if request.method != "POST":
        return ({"error": "POST a CloudEvent here"}, 405)
    try:
        event = wire.from_http(request.headers, request.get_data())
    except wire.NotACloudEvent as exc:
        return ({"error": f"Not a readable CloudEvent: {exc}"}, 400)
    with transaction(services.engine) as s:
        dead_letters.receive(s, event)
    return ("", 202)


def handle(request):
    if request.path.rstrip("/") == DEAD_LETTER_PATH:
        return on_dead_letter(request)
    return consumer.handle(request)
