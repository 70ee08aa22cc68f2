"""The monitor: its jobs under leases, processing charges to the Account Server, dead letters,
and its function driven by real schedule-tick and dead-letter CloudEvents."""

import base64
import datetime as dt
import json
import threading
from decimal import Decimal

import pytest

from tests.functional.test_pbc import instance, pod_message  # noqa: F401


@pytest.fixture
def monitor_fn(api, monkeypatch):
    """The monitor function (its own functions-framework app) on the api's database and store."""
    import functions_framework

    from functions.monitor import handler
    from tests.conftest import ROOT

    class Same:
        settings = api.settings
        engine = api.services.engine
        storage = api.services.storage

    monkeypatch.setattr(handler, "services", Same())
    return functions_framework.create_app(target="monitor", source=str(ROOT / "main.py"),
                                          signature_type="http").test_client()


def post(client, event, path="/"):
    from shared.events import wire

    headers, body = wire.to_http(event)
    return client.post(path, data=body, headers=headers)


def add_charges(api, instance_id, *rows, auth_code=77, phase=None):
    from sqlalchemy import update

    from shared.db.base import utcnow
    from shared.db.models import Instance, InstanceCharge
    from shared.db.session import transaction

    with transaction(api.services.engine) as s:
        values = {"authorisation_code": auth_code, "launch_exchange_rate": "2000"}
        if phase:
            values.update(phase=phase, stopped=utcnow())
        s.execute(update(Instance).where(Instance.id == instance_id).values(**values))
        for sqn, coins in rows:
            s.add(InstanceCharge(instance_id=instance_id, sqn=sqn, cost=str(Decimal(coins) / 2), total="0",
                                 coins=coins, timestamp="2026-11-23T10:00:00+00:00", recorded=utcnow()))


def charge_messages(api):
    """The processing charges queued in the outbox, decoded through their contract."""
    from sqlalchemy import select

    from shared.db.models import OutboxEvent
    from shared.db.session import transaction
    from shared.events.contracts import ProcessingCharge

    with transaction(api.services.engine, readonly=True) as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == ProcessingCharge.TYPE)
                         .order_by(OutboxEvent.created))
        return [ProcessingCharge.from_bytes(r.data, r.type).message for r in rows]


def run(api, name, holder=None):
    from shared.services import monitor

    return monitor.run_job(api.services, name, holder)


def test_charges_become_numbered_messages_with_eoc_once_the_instance_ends(api, instance):  # noqa: F811
    instance_id, _ = instance
    add_charges(api, instance_id, (1, "2"), (2, "3"))
    assert run(api, "processing-charges") == 2
    first = charge_messages(api)
    assert [(m.sqn, m.coins, m.eoc, m.auth_code) for m in first] == [(1, "2", False, 77), (2, "3", False, 77)]
    data = json.loads(first[0].additional_data)
    assert data["instance_id"] == instance_id and data["cost_to_coins_er"] == "2000"
    assert data["cost_scale_factor"] == "1000" and data["job_job"]
    assert first[0].product and first[0].user == "alice" and first[0].merchant_kind == "DATA_MANAGER"
    assert run(api, "processing-charges") == 0  # nothing is sent twice
    add_charges(api, instance_id, (3, "1"), phase="COMPLETED")  # the last one arrives as it ends
    assert run(api, "processing-charges") == 1
    last = charge_messages(api)[-1]
    assert (last.sqn, last.coins, last.eoc) == (3, "1", True)
    assert run(api, "processing-charges") == 0
    assert len(charge_messages(api)) == 3


def test_an_instance_that_ends_after_its_last_charge_gets_a_closing_message(api, instance):  # noqa: F811
    instance_id, _ = instance
    add_charges(api, instance_id, (1, "2"))
    assert run(api, "processing-charges") == 1
    add_charges(api, instance_id, phase="FAILED")
    assert run(api, "processing-charges") == 1
    closing = charge_messages(api)[-1]
    assert (closing.sqn, closing.coins, closing.eoc) == (2, "0", True)
    assert run(api, "processing-charges") == 0


def test_without_an_authorisation_code_charges_are_settled_silently(api, instance):  # noqa: F811
    instance_id, _ = instance
    add_charges(api, instance_id, (1, "2"), auth_code=None, phase="COMPLETED")
    assert run(api, "processing-charges") == 0
    assert charge_messages(api) == []


def test_a_job_runs_under_one_lease_at_a_time(api):
    from shared.db.base import utcnow
    from shared.services import monitor

    job = monitor.JOBS["redeliver-events"]
    engine = api.services.engine
    assert monitor.take_lease(engine, job, "one")
    assert not monitor.take_lease(engine, job, "two")  # held
    assert run(api, "redeliver-events", holder="two") is None
    later = utcnow() + dt.timedelta(seconds=job.lease_s + 1)
    assert monitor.take_lease(engine, job, "two", now=later)  # the first holder died: its lease ran out
    monitor.release_lease(engine, job, "one", None)  # a stale holder releases nothing
    assert not monitor.take_lease(engine, job, "three", now=later)
    monitor.release_lease(engine, job, "two", None)
    assert run(api, "redeliver-events", holder="three") == 0


def test_two_monitors_at_once_send_each_charge_once(api, instance):  # noqa: F811
    instance_id, _ = instance
    add_charges(api, instance_id, *[(n, "1") for n in range(1, 41)], phase="COMPLETED")
    results, barrier = [], threading.Barrier(2)

    def monitor_process(name):
        barrier.wait()
        results.append(run(api, "processing-charges", holder=name))

    threads = [threading.Thread(target=monitor_process, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = charge_messages(api)
    assert sorted(m.sqn for m in messages) == list(range(1, 41))
    assert [m.eoc for m in messages].count(True) == 1


def test_a_failing_job_is_a_service_error_and_its_lease_is_released(api, monkeypatch):
    from shared.services import charges, monitor, service_errors
    from shared.db.session import transaction

    monkeypatch.setattr(charges, "send_processing_charges", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run(api, "processing-charges")
    with transaction(api.services.engine) as s:
        [error] = service_errors.list_errors(s)
    assert "processing-charges failed" in error["summary"] and "ZeroDivisionError" in error["stack_trace"]
    assert monitor.take_lease(api.services.engine, monitor.JOBS["processing-charges"], "next")


def test_ticks_run_jobs_through_the_function(api, monitor_fn, instance):  # noqa: F811
    from shared.events import wire
    from shared.events.contracts import ScheduleTick

    instance_id, _ = instance
    add_charges(api, instance_id, (1, "5"))
    assert post(monitor_fn, wire.event_of(ScheduleTick(job="processing-charges"))).status_code == 202
    assert [m.coins for m in charge_messages(api)] == ["5"]
    unknown = post(monitor_fn, wire.event_of(ScheduleTick(job="no-such-job")))
    assert unknown.status_code == 422 and "processing-charges" in unknown.get_json()["error"]
    assert post(monitor_fn, wire.new_event(ScheduleTick.TYPE, "/s", b"{}")).status_code == 422


def dead_letter(event, code, body=b"nope", dest="http://upload.local/"):
    return event.with_attributes(knativeerrorcode=str(code), knativeerrordest=dest,
                                 knativeerrordata=base64.b64encode(body).decode())


def task_state(alice, task_id):
    task = alice.get(f"/task/{task_id}").get_json()
    return task["states"][-1]["state"], task


def test_an_event_refused_for_good_fails_its_task_and_becomes_a_service_error(api, alice, monitor_fn, instance):  # noqa: F811
    from shared.events import wire
    from shared.events.contracts import PodMessageEvent
    from shared.messages.pod_message_pb2 import PodMessage
    from shared.services import service_errors
    from shared.db.session import transaction

    instance_id, task_id = instance
    event = wire.event_of(PodMessageEvent(PodMessage.FromString(pod_message(instance_id, task_id, "Running"))))
    assert post(monitor_fn, dead_letter(event, 422), "/dead-letter").status_code == 202
    assert post(monitor_fn, dead_letter(event, 422), "/dead-letter").status_code == 202  # again: once
    state, task = task_state(alice, task_id)
    assert state == "FAILURE" and "administrator" in task["states"][-1]["message"]
    with transaction(api.services.engine) as s:
        [error] = service_errors.list_errors(s)
    assert event.id in error["summary"] and "HTTP 422: nope" in error["summary"] and error["error_code"] == 422
    assert monitor_fn.get("/dead-letter").status_code == 405
    assert monitor_fn.post("/dead-letter", data=b"x").status_code == 400


def test_an_event_that_ran_out_of_retries_is_redriven_then_given_up(api, alice, instance):  # noqa: F811
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    from shared.db.base import utcnow
    from shared.db.session import transaction
    from shared.events import wire
    from shared.events.contracts import PodMessageEvent
    from shared.messages.pod_message_pb2 import PodMessage
    from shared.services import dead_letters

    received = []

    @Request.application
    def broker(request):
        received.append(wire.from_http(request.headers, request.get_data()))
        return Response(status=202)

    server = make_server("127.0.0.1", 0, broker, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    broker_url = f"http://127.0.0.1:{server.server_port}/"
    instance_id, task_id = instance
    event = wire.event_of(PodMessageEvent(PodMessage.FromString(pod_message(instance_id, task_id, "Running"))))
    engine, now = api.services.engine, utcnow()
    try:
        with transaction(engine) as s:
            assert dead_letters.receive(s, dead_letter(event, 503), now=now)
        assert dead_letters.redrive(engine, broker_url, now=now) == 0  # not due yet
        for attempt in range(dead_letters.MAX_REDRIVES):
            now += dt.timedelta(hours=2)
            assert dead_letters.redrive(engine, broker_url, now=now) == 1
            assert received[-1].id == event.id and received[-1].data == event.data  # the original, byte for byte
            with transaction(engine) as s:  # it failed again and came back
                assert dead_letters.receive(s, dead_letter(event, 503), now=now)
        assert task_state(alice, task_id)[0] == "FAILURE"
        assert dead_letters.redrive(engine, broker_url, now=now + dt.timedelta(days=1)) == 0
        assert len(received) == dead_letters.MAX_REDRIVES
    finally:
        server.shutdown()


def test_storage_is_measured_and_charged_as_absolute_bytes(api, alice):
    from sqlalchemy import select

    from shared.db.models import OutboxEvent, StorageUsage
    from shared.db.session import transaction
    from shared.events.contracts import StorageCharge

    project_id = alice.create_project("Stored")
    payload = b"x" * 12345
    assert alice.put(f"/project/{project_id}/file", data={"file": (io_bytes(payload), "a.txt")},
                     content_type="multipart/form-data").status_code in (200, 201)
    assert run(api, "storage-charges") >= 1
    with transaction(api.services.engine, readonly=True) as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.type == StorageCharge.TYPE))
        messages = [StorageCharge.from_bytes(r.data, r.type).message for r in rows]
        usage = s.get(StorageUsage, ("PROJECT", project_id))
    [mine] = [m for m in messages if m.name == "Stored"]
    assert mine.bytes == "12,345" and mine.product and mine.reason == 2  # STORAGE_REASON_ENUM_PROJECT
    assert usage.bytes == 12345


def io_bytes(data):
    import io

    return io.BytesIO(data)


def test_applications_are_charged_for_their_running_time_pro_rata(api, alice):
    from shared.db.base import utcnow
    from shared.db.models import Instance
    from shared.db.session import transaction
    from shared.services import charges

    project_id = alice.create_project("Notebooks")
    started = utcnow() - dt.timedelta(minutes=90)
    with transaction(api.services.engine) as s:
        s.add(Instance(id="instance-app-1", name="nb", project_id=project_id, owner="alice",
                       application_id="jupyternotebooks.squonk.it", application_version="v2",
                       application_type="APPLICATION", task_id="task-app-1", phase="RUNNING",
                       specification=json.dumps({"variables": {"cpu": 2, "memory": "3Gi"}}),
                       launched=started, started=started, authorisation_code=9))
    assert run(api, "processing-charges") == 1
    [first] = charge_messages(api)
    assert Decimal(first.coins) == pytest.approx(Decimal(9), abs=Decimal("0.01"))  # 1 coin × 2 × 3 PxGi × 1.5 h
    assert not first.eoc
    stopped = utcnow()
    with transaction(api.services.engine) as s:
        s.get(Instance, "instance-app-1").phase, s.get(Instance, "instance-app-1").stopped = "COMPLETED", stopped
    assert run(api, "processing-charges") == 1
    last = charge_messages(api)[-1]
    assert last.eoc and last.sqn == 2 and Decimal(last.coins) < Decimal("0.1")  # the seconds since
    with transaction(api.services.engine) as s:
        assert charges.accrue_application_charges(s) == 0  # closed: nothing more accrues


def test_charges_reach_the_ledger_and_a_product_at_its_limit_takes_no_more_files(api, alice, instance):  # noqa: F811
    """The monitor's messages, through the ledger's receiver, move the product's coins; at its
    limit a file upload into its Project is refused and nothing is stored."""
    from sqlalchemy import select

    from shared.account_server.receiver import record_processing
    from shared.db.models import Instance
    from shared.db.session import transaction

    instance_id, _ = instance
    with transaction(api.services.engine) as s:
        project_id = s.scalar(select(Instance.project_id).where(Instance.id == instance_id))
    assert alice.put(f"/project/{project_id}/file", data={"file": (io_bytes(b"before"), "a.txt")},
                     content_type="multipart/form-data").status_code == 201
    add_charges(api, instance_id, (1, "1000"), (2, "1000"), phase="COMPLETED")  # the product's limit is 2000
    assert run(api, "processing-charges") == 2
    with transaction(api.services.engine) as s:
        for message in charge_messages(api):
            record_processing(s, message)
    refused = alice.put(f"/project/{project_id}/file", data={"file": (io_bytes(b"after"), "b.txt")},
                        content_type="multipart/form-data")
    assert refused.status_code == 403 and "limit" in refused.get_json()["error"]
    listing = alice.get(f"/file?project_id={project_id}&path=/")
    names = [f["file_name"] for f in listing.get_json()["files"]]
    assert "a.txt" in names and "b.txt" not in names


def test_an_unchanged_size_is_not_sent_again_within_the_hour(api, alice):
    from shared.services import charges

    project_id = alice.create_project("Steady")
    assert alice.put(f"/project/{project_id}/file", data={"file": (io_bytes(b"abc"), "a.txt")},
                     content_type="multipart/form-data").status_code == 201
    assert run(api, "storage-charges") >= 1
    assert run(api, "storage-charges") == 0  # nothing changed
    assert alice.put(f"/project/{project_id}/file", data={"file": (io_bytes(b"defg"), "b.txt")},
                     content_type="multipart/form-data").status_code == 201
    assert run(api, "storage-charges") == 1  # the project grew
    assert charges.RESEND_AFTER.total_seconds() < 3600  # each hour's peak is still sent


def test_a_running_job_renews_its_short_lease(api, monkeypatch):
    """A run longer than its lease keeps the job: a killed monitor holds it seconds, not minutes."""
    import dataclasses
    import time as clock

    from shared.services import monitor

    engine = api.services.engine
    job = dataclasses.replace(monitor.JOBS["redeliver-events"], lease_s=0.6)
    seen = []

    def slow(services):
        clock.sleep(1.5)  # more than twice its lease
        seen.append(monitor.take_lease(engine, job, "intruder"))
        return 1

    monkeypatch.setitem(monitor.JOBS, job.name, dataclasses.replace(job, run=slow))
    assert monitor.run_job(api.services, job.name, holder="runner") == 1
    assert seen == [False]  # renewed all along: no one else could take it
    assert monitor.take_lease(engine, job, "next")  # released at the end
    assert monitor.renew_lease(engine, job, "next") and not monitor.renew_lease(engine, job, "runner")
