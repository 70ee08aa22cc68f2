"""Workflows and their runs through the api (dm-api §3.16), on SQLite and PostgreSQL: definitions
judged by the workflow engine's validator at CREATE, TAG and RUN level, versioned copies, scopes,
runs recorded with one START message in the outbox, stop and delete rules, refusals that change
nothing."""

from __future__ import annotations

import dataclasses
import io
import json
import uuid

import pytest

from tests.conftest import ROOT

pytest.importorskip("workflow.workflow_validator", reason="the workflow engine needs Python 3.12 or later")

WORKFLOWS = ROOT / "tests" / "data" / "workflows"
MANIFEST = ROOT / "tests" / "data" / "jobs" / "workflow-manifest.yaml"
CHAIN = (WORKFLOWS / "two-step-chain.yaml").read_text()
FAN_OUT = (WORKFLOWS / "fan-out-and-combine.yaml").read_text()
RUN_VARIABLES = {"two-step-chain": {"resultFile": "result.txt"},
                 "fan-out-and-combine": {"parts": 3, "combinedFile": "combined.txt"}}
MISSING = "workflow-00000000-0000-0000-0000-000000000000"


@pytest.fixture
def jobs(admin):
    resp = admin.put("/admin/job-manifest", data={"url": str(MANIFEST)})
    assert resp.status_code == 200 and resp.get_json()["num_jobs_loaded"] == 5, resp.get_json()


def create(who, definition: str = CHAIN, name: str = "Chain", scope: str = "GLOBAL", **extra):
    resp = who.post("/workflow", data={"name": name, "scope": scope, "definition": definition, **extra},
                    content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def run(who, workflow_id: str, project_id: str, variables=None, **extra):
    data = {"project_id": project_id, "as_name": "My run",
            "variables": json.dumps(RUN_VARIABLES["two-step-chain"] if variables is None else variables), **extra}
    return who.post(f"/workflow/{workflow_id}/run", data=data)


def rows(api, model, **where):
    from sqlalchemy import select

    from shared.db.session import transaction

    with transaction(api.services.engine, readonly=True) as s:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(s.scalars(query))


def outbox_messages(api):
    """The queued workflow messages, decoded from their protobuf bytes, oldest first."""
    from shared.db.models import OutboxEvent
    from shared.messages.workflow_message_pb2 import WorkflowMessage

    events = sorted(rows(api, OutboxEvent, type="dm.workflow.v1"), key=lambda e: e.created)
    for event in events:
        assert (event.source, event.datacontenttype) == ("/data-manager/api", "application/protobuf")
    return [(e.subject, WorkflowMessage.FromString(e.data)) for e in events]


def set_status(api, run_id: str, status: str) -> None:
    """What the engine does when a run ends."""
    from sqlalchemy import update

    from shared.db.base import utcnow
    from shared.db.models import RunningWorkflow
    from shared.db.session import transaction

    with transaction(api.services.engine) as s:
        s.execute(update(RunningWorkflow).where(RunningWorkflow.id == run_id).values(
            status=status, done=True, success=status == "SUCCESS", stopped=utcnow()))


def snapshot(api) -> dict:
    """Every row of the tables a workflow call may change."""
    from sqlalchemy import select

    from shared.db.models import OutboxEvent, RunningWorkflow, RunningWorkflowStep, Workflow

    with api.services.engine.connect() as conn:
        return {m.__tablename__: sorted(repr(tuple(r)) for r in conn.execute(select(m.__table__)))
                for m in (Workflow, RunningWorkflow, RunningWorkflowStep, OutboxEvent)}


# --- definitions ---------------------------------------------------------------------------------


def test_the_engine_version_is_the_installed_package(alice):
    from importlib.metadata import version

    resp = alice.get("/workflow-engine/version")
    assert resp.status_code == 200
    assert resp.get_json() == {"version": version("im-data-manager-workflow-engine")}


def test_create_from_text_stores_it_as_given(alice, bob):
    made = create(alice)
    assert made["validated"] is True and made["id"].startswith("workflow-")
    detail = alice.get(f"/workflow/{made['id']}").get_json()
    assert detail["name"] == "Chain" and detail["creating_user"] == "alice" and detail["scope"] == "GLOBAL"
    assert detail["workflow_name"] == "two-step-chain"
    assert detail["workflow_description"].startswith("Writes a file")
    assert [s["name"] for s in detail["steps"]] == ["first", "second"]
    assert detail["steps"][0]["specification"] == {"collection": "dm-test", "job": "event-and-cost",
                                                   "version": "1.0.0",
                                                   "variables": {"outputFile": "first.txt", "count": 1, "cost": "1"}}
    assert "resultFile" in detail["variables"]["outputs"]["properties"]
    assert "validation_error_num" not in detail and "version" not in detail and "source_id" not in detail
    assert alice.get(f"/workflow/{made['id']}/definition").get_json() == {"definition": CHAIN}
    listed = bob.get("/workflow").get_json()  # GLOBAL: everyone sees it
    assert listed["count"] == 1 and listed["workflows"][0] == {
        "id": made["id"], "name": "Chain", "validated": True, "scope": "GLOBAL", "workflow_name": "two-step-chain",
        "workflow_description": detail["workflow_description"]}


def test_create_from_a_file_part_and_the_python_clients_filler(alice):
    resp = alice.post("/workflow", content_type="multipart/form-data", data={
        "name": "From a file", "scope": "GLOBAL",
        "definition_file": (io.BytesIO(FAN_OUT.encode()), "fan-out-and-combine.yaml")})
    assert resp.status_code == 201 and resp.get_json()["validated"] is True
    assert alice.get(f"/workflow/{resp.get_json()['id']}/definition").get_json()["definition"] == FAN_OUT
    # The Python client always sends a definition_file part: an empty file name means "no file".
    filler = b"# not a workflow\n" * 8000
    resp = alice.post("/workflow", content_type="multipart/form-data", data={
        "name": "Text and filler", "scope": "GLOBAL", "definition": CHAIN,
        "definition_file": (io.BytesIO(filler), "")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert alice.get(f"/workflow/{resp.get_json()['id']}/definition").get_json()["definition"] == CHAIN


def test_a_definition_failing_create_level_is_stored_with_its_errors(alice):
    broken = CHAIN.replace("kind-version: '2025.2'", "kind-version: '1999.1'")
    made = create(alice, broken, name="Broken")
    assert made["validated"] is False
    detail = alice.get(f"/workflow/{made['id']}").get_json()
    assert detail["validated"] is False and detail["validation_error_num"] == 1
    assert detail["validation_error_msg"] == ["'1999.1' is not one of ['2025.2']"]
    assert "steps" not in detail and "variables" not in detail
    # a replacement that passes is judged again
    resp = alice.patch(f"/workflow/{made['id']}", data={"definition": CHAIN}, content_type="multipart/form-data")
    assert resp.status_code == 200 and resp.get_json() == {"validated": True}
    detail = alice.get(f"/workflow/{made['id']}").get_json()
    assert "validation_error_num" not in detail and len(detail["steps"]) == 2


def test_tag_level_refuses_duplicate_step_names(alice):
    twice = CHAIN.replace("- name: second", "- name: first")
    made = create(alice, twice, name="Twice")
    assert made["validated"] is True  # the schema allows it
    before = alice.get("/workflow").get_json()
    resp = alice.put(f"/workflow/{made['id']}/version", data={"version": "1.0.0"})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == ("The workflow cannot be versioned: validation error 2: "
                                        "Duplicate step names found: first")
    assert alice.get("/workflow").get_json() == before


def test_run_level_needs_the_variables_and_known_jobs(api, alice, jobs):
    project = alice.create_project("Runs")
    made = create(alice)
    resp = run(alice, made["id"], project, variables={})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == ("The workflow cannot run: validation error 8: "
                                        "Missing workflow variable values for: resultFile")
    unknown = create(alice, CHAIN.replace("job: event-and-cost", "job: no-such-job"), name="Unknown jobs")
    resp = run(alice, unknown["id"], project)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == (
        "The workflow cannot run: validation error 9: "
        "The job for step 'first' is not present (dm-test|no-such-job|1.0.0); "
        "The job for step 'second' is not present (dm-test|no-such-job|1.0.0)")
    invalid = create(alice, "kind: DataManagerWorkflow\n", name="Invalid")
    resp = run(alice, invalid["id"], project)
    assert resp.status_code == 400 and "validation error 1: 'kind-version' is a required property" in resp.get_json()["error"]
    assert alice.get("/running-workflow").get_json() == {"count": 0, "running_workflows": []}
    assert outbox_messages(api) == []


@pytest.mark.parametrize("name", ["two-step-chain", "fan-out-and-combine"])
def test_the_test_workflows_pass_every_level(alice, jobs, name):
    text = (WORKFLOWS / f"{name}.yaml").read_text()
    made = create(alice, text, name=name)
    assert made["validated"] is True
    copy = alice.put(f"/workflow/{made['id']}/version", data={"version": "1.0.0"})
    assert copy.status_code == 201, copy.get_data(as_text=True)
    project = alice.create_project(f"Run {name}")
    resp = run(alice, copy.get_json()["id"], project, variables=RUN_VARIABLES[name])
    assert resp.status_code == 201, resp.get_data(as_text=True)


# --- versioned copies ------------------------------------------------------------------------------


def test_versioned_copies_are_immutable_in_production(api, alice):
    made = create(alice)
    resp = alice.put(f"/workflow/{made['id']}/version", data={"version": "1.2.3"})
    assert resp.status_code == 201
    copy_id = resp.get_json()["id"]
    copy = alice.get(f"/workflow/{copy_id}").get_json()
    assert (copy["version"], copy["source_id"], copy["name"], copy["validated"]) == ("1.2.3", made["id"], "Chain", True)
    assert alice.get(f"/workflow/{copy_id}/definition").get_json() == {"definition": CHAIN}
    assert alice.put(f"/workflow/{made['id']}/version", data={"version": "1.2.3"}).status_code == 409
    assert alice.put(f"/workflow/{copy_id}/version", data={"version": "2"}).status_code == 400
    assert alice.put(f"/workflow/{made['id']}/version", data={"version": ""}).status_code == 400

    api.settings = dataclasses.replace(api.settings, mode="PRODUCTION")
    resp = alice.patch(f"/workflow/{copy_id}", data={"name": "Changed"}, content_type="multipart/form-data")
    assert resp.status_code == 403 and "versioned" in resp.get_json()["error"]
    assert alice.patch(f"/workflow/{made['id']}", data={"name": "Changed"}).status_code == 200  # the original may
    api.settings = dataclasses.replace(api.settings, mode="DEVELOPMENT")
    assert alice.patch(f"/workflow/{copy_id}", data={"name": "Changed too"}).status_code == 200

    resp = alice.delete(f"/workflow/{made['id']}")  # the source of a copy
    assert resp.status_code == 409 and copy_id in resp.get_json()["error"]
    assert alice.delete(f"/workflow/{copy_id}").status_code == 204
    assert alice.delete(f"/workflow/{made['id']}").status_code == 204
    assert alice.get("/workflow").get_json() == {"count": 0, "workflows": []}


def test_only_versioned_workflows_run_in_production(api, alice, jobs):
    project = alice.create_project("Production")
    made = create(alice)
    api.settings = dataclasses.replace(api.settings, mode="PRODUCTION")
    resp = run(alice, made["id"], project)
    assert resp.status_code == 400 and "versioned" in resp.get_json()["error"]
    copy_id = alice.put(f"/workflow/{made['id']}/version", data={"version": "1"}).get_json()["id"]
    resp = run(alice, copy_id, project)
    assert resp.status_code == 201
    detail = alice.get(f"/running-workflow/{resp.get_json()['id']}").get_json()
    assert detail["workflow"] == {"id": copy_id, "name": "Chain", "version": "1"}


# --- scopes and who may do what ------------------------------------------------------------------------


def _organisation(api, owner: str, members: tuple[str, ...]) -> str:
    from shared.db.base import utcnow
    from shared.db.models import LedgerOrganisation, LedgerOrganisationMember
    from shared.db.session import transaction

    org_id = f"org-{uuid.uuid4()}"
    with transaction(api.services.engine) as s:
        s.add(LedgerOrganisation(id=org_id, name=f"Org {org_id[-6:]}", owner=owner, created=utcnow()))
        s.flush()
        s.add_all([LedgerOrganisationMember(organisation_id=org_id, username=u) for u in members])
    return org_id


def test_scopes_decide_who_sees_a_workflow(api, alice, bob, carol, admin):
    unit = alice.unit["unit_id"]
    as_unit = create(alice, name="Unit", scope="AS_PROJECT", scope_id=unit)  # stored as AS_UNIT
    org = _organisation(api, "alice", ("carol",))
    as_org = create(alice, name="Org", scope="AS_ORGANISATION", scope_id=org)
    everyone = create(bob, name="Everyone")

    def seen(who):
        return {w["name"]: w for w in who.get("/workflow").get_json()["workflows"]}

    assert seen(alice)["Unit"]["scope"] == "AS_UNIT" and seen(alice)["Unit"]["scope_id"] == unit
    assert set(seen(alice)) == {"Unit", "Org", "Everyone"}
    assert set(seen(bob)) == {"Everyone"}
    assert set(seen(carol)) == {"Org", "Everyone"}  # a member of the organisation
    assert [w["name"] for w in alice.get("/workflow").get_json()["workflows"]] == ["Everyone", "Org", "Unit"]
    for hidden in (as_unit["id"], as_org["id"]):
        for path in (f"/workflow/{hidden}", f"/workflow/{hidden}/definition"):
            assert bob.get(path).status_code == 404
    assert set(seen(admin)) == {"Everyone"}  # not in admin mode
    assert admin.patch("/user/account", data={"become_admin": "true"}).status_code == 204
    assert set(seen(admin)) == {"Unit", "Org", "Everyone"}
    assert admin.get(f"/workflow/{as_unit['id']}").status_code == 200

    # only the creator alters, versions or deletes
    assert carol.patch(f"/workflow/{as_org['id']}", data={"name": "Mine"}).status_code == 403
    assert alice.patch(f"/workflow/{everyone['id']}", data={"name": "Mine"}).status_code == 403
    assert alice.put(f"/workflow/{everyone['id']}/version", data={"version": "1"}).status_code == 403
    assert alice.delete(f"/workflow/{everyone['id']}").status_code == 403
    assert admin.delete(f"/workflow/{as_unit['id']}").status_code == 403  # admin mode widens reads only
    assert bob.delete(f"/workflow/{as_unit['id']}").status_code == 404
    assert seen(bob)["Everyone"]["name"] == "Everyone"


def test_a_scope_needs_membership_and_a_well_formed_id(api, alice, bob):
    before = snapshot(api)
    for data, status in (
            ({"scope": "AS_UNIT", "scope_id": bob.unit["unit_id"]}, 403),  # not alice's unit
            ({"scope": "AS_ORGANISATION", "scope_id": alice.unit["organisation_id"]}, 403),  # the default one
            ({"scope": "AS_UNIT"}, 400),
            ({"scope": "AS_UNIT", "scope_id": "unit-1"}, 400),
            ({"scope": "AS_ORGANISATION", "scope_id": alice.unit["unit_id"]}, 400),
            ({"scope": "GLOBAL", "scope_id": alice.unit["unit_id"]}, 400),
            ({"scope": "PRODUCT"}, 400),
            ({}, 400)):
        resp = alice.post("/workflow", data={"name": "Scoped", "definition": CHAIN, **data},
                          content_type="multipart/form-data")
        assert resp.status_code == status, (data, resp.get_data(as_text=True))
        assert resp.get_json()["error"]
    assert snapshot(api) == before


@pytest.mark.parametrize(("data", "message"), [
    ({"scope": "GLOBAL", "definition": CHAIN}, "name"),
    ({"name": "x", "scope": "GLOBAL", "definition": CHAIN}, "name"),
    ({"name": "No definition", "scope": "GLOBAL"}, "definition"),
    ({"name": "Not YAML", "scope": "GLOBAL", "definition": "steps: [a, b"}, "not YAML"),
    ({"name": "A list", "scope": "GLOBAL", "definition": "- a\n- b\n"}, "mapping"),
    ({"name": "A string", "scope": "GLOBAL", "definition": "just text"}, "mapping"),
    ({"name": "Aliases", "scope": "GLOBAL", "definition": "a: &x [1, 2]\nb: [*x, *x]\n"}, "aliases"),
    ({"name": "Deep", "scope": "GLOBAL", "definition": "[" * 5000 + "]" * 5000}, "nested too deeply"),
    ({"name": "Both", "scope": "GLOBAL", "definition": CHAIN,
      "definition_file": (CHAIN.encode(), "chain.yaml")}, "not both"),
    ({"name": "Binary", "scope": "GLOBAL", "definition_file": (b"\xff\xfe", "chain.yaml")}, "UTF-8"),
])
def test_bad_definitions_are_refused_and_nothing_is_stored(api, alice, data, message):
    # a fresh stream for each run: the client closes the one it sent, and each database runs this
    data = {k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in data.items()}
    before = snapshot(api)
    resp = alice.post("/workflow", data=data, content_type="multipart/form-data")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert message in resp.get_json()["error"]
    assert snapshot(api) == before


def test_an_oversized_definition_is_refused(api, alice):
    before = snapshot(api)
    big = "# padding\n" * 30_000
    for data in ({"definition": big}, {"definition_file": (io.BytesIO(big.encode()), "big.yaml")}):
        resp = alice.post("/workflow", data={"name": "Big", "scope": "GLOBAL", **data},
                          content_type="multipart/form-data")
        assert resp.status_code == 413 and resp.get_json()["error"]
    made = create(alice)
    before = snapshot(api)
    resp = alice.patch(f"/workflow/{made['id']}", data={"definition": big}, content_type="multipart/form-data")
    assert resp.status_code == 413
    assert snapshot(api) == before


# --- runs ---------------------------------------------------------------------------------------------


def test_a_run_is_recorded_with_one_start_message(api, alice, bob, carol, jobs):
    from shared.db.models import RunningWorkflow

    project = alice.create_project("Runs", private=True)
    assert alice.put(f"/project/{project}/observer/carol").status_code == 201
    made = create(alice)
    resp = run(alice, made["id"], project, debug="yes")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    run_id = resp.get_json()["id"]
    assert run_id.startswith("r-workflow-")
    [row] = rows(api, RunningWorkflow)
    assert (row.id, row.status, row.done, row.running_user, row.project_id, row.workflow_id) == (
        run_id, "RUNNING", False, "alice", project, made["id"])
    assert (row.workflow_version, json.loads(row.variables), row.debug) == ("Unversioned", {"resultFile": "result.txt"},
                                                                            "yes")
    [(subject, message)] = outbox_messages(api)
    assert (subject, message.action, message.running_workflow) == (run_id, "START", run_id)
    assert message.timestamp.endswith("Z")

    detail = alice.get(f"/running-workflow/{run_id}").get_json()
    assert detail == {
        "id": run_id, "name": "My run", "status": "RUNNING", "started": detail["started"], "error_num": 0,
        "workflow": {"id": made["id"], "name": "Chain", "version": "Unversioned"},
        "project": {"id": project, "name": "Runs"}, "running_user": "alice", "done": False, "success": False,
        "variables": {"resultFile": "result.txt"}, "debug": "yes"}
    assert carol.get(f"/running-workflow/{run_id}").status_code == 200  # a project member sees it
    assert bob.get(f"/running-workflow/{run_id}").status_code == 404
    assert bob.get("/running-workflow").get_json() == {"count": 0, "running_workflows": []}
    listed = alice.get("/running-workflow", query_string={"workflow_id": made["id"]}).get_json()
    assert listed["count"] == 1 and listed["running_workflows"][0]["id"] == run_id
    assert alice.get("/running-workflow", query_string={"project_id": project}).get_json()["count"] == 1
    assert alice.get("/running-workflow", query_string={"workflow_id": MISSING}).get_json()["count"] == 0
    assert alice.get(f"/running-workflow/{run_id}/steps").get_json() == {"count": 0, "running_workflow_steps": []}

    # while it runs, its Workflow is not altered or deleted
    before = snapshot(api)
    assert alice.patch(f"/workflow/{made['id']}", data={"name": "Renamed"}).status_code == 409
    assert alice.delete(f"/workflow/{made['id']}").status_code == 409
    # an observer or a stranger runs nothing in the Project
    assert run(carol, made["id"], project).status_code == 403
    assert run(bob, made["id"], project).status_code == 404
    assert snapshot(api) == before


def test_deleting_a_running_run_stops_it_and_hides_it_at_once(api, alice, bob, carol, jobs):
    from shared.db.models import RunningWorkflow

    project = alice.create_project("Deleting")
    assert alice.put(f"/project/{project}/observer/carol").status_code == 201
    made = create(alice)
    run_id = run(alice, made["id"], project).get_json()["id"]
    kept = run(alice, made["id"], project, as_name="Kept run").get_json()["id"]
    before = snapshot(api)
    assert carol.delete(f"/running-workflow/{run_id}").status_code == 403  # an observer
    assert bob.delete(f"/running-workflow/{run_id}").status_code == 404  # a stranger
    assert snapshot(api) == before
    resp = alice.delete(f"/running-workflow/{run_id}")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert alice.get(f"/running-workflow/{run_id}").status_code == 404
    assert alice.get(f"/running-workflow/{run_id}/steps").status_code == 404
    assert [r["id"] for r in alice.get("/running-workflow").get_json()["running_workflows"]] == [kept]
    assert alice.put(f"/running-workflow/{run_id}/stop").status_code == 404
    assert alice.delete(f"/running-workflow/{run_id}").status_code == 404
    # the row stays, hidden, until the engine has stopped it: its STOP is queued
    row = next(r for r in rows(api, RunningWorkflow) if r.id == run_id)
    assert (row.deleting, row.stopping_user, row.status) == (True, "alice", "RUNNING")
    assert [(m.action, m.running_workflow) for _, m in outbox_messages(api)] == [
        ("START", run_id), ("START", kept), ("STOP", run_id)]
    assert alice.delete(f"/workflow/{made['id']}").status_code == 409  # it still runs


@pytest.mark.parametrize(("data", "status"), [
    ({"as_name": "x"}, 400),
    ({"as_name": "-bad-"}, 400),
    ({"as_name": None}, 400),
    ({"variables": "not json"}, 400),
    ({"variables": "[1, 2]"}, 400),
    ({"debug": "x" * 81}, 400),
    ({"project_id": "project-1"}, 404),
    ({"project_id": None}, 404),
])
def test_bad_run_requests_change_nothing(api, alice, jobs, data, status):
    project = alice.create_project("Bad runs")
    made = create(alice)
    form = {"project_id": project, "as_name": "Good name", "variables": json.dumps({"resultFile": "r.txt"}), **data}
    before = snapshot(api)
    resp = alice.post(f"/workflow/{made['id']}/run", data={k: v for k, v in form.items() if v is not None})
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["error"]
    assert snapshot(api) == before


def test_stop_and_delete(api, alice, bob, carol, jobs):
    from shared.db.models import RunningWorkflow

    project = alice.create_project("Stops")
    assert alice.put(f"/project/{project}/editor/bob").status_code == 201
    assert alice.put(f"/project/{project}/observer/carol").status_code == 201
    made = create(alice)
    run_id = run(alice, made["id"], project).get_json()["id"]
    assert carol.put(f"/running-workflow/{run_id}/stop").status_code == 403  # an observer
    assert carol.delete(f"/running-workflow/{run_id}").status_code == 403
    resp = bob.put(f"/running-workflow/{run_id}/stop")  # an editor of the Project
    assert resp.status_code == 204 and resp.get_data() == b""
    [row] = rows(api, RunningWorkflow)
    assert (row.stopping_user, row.status) == ("bob", "RUNNING")  # the engine ends it
    assert [(m.action, m.running_workflow) for _, m in outbox_messages(api)] == [("START", run_id), ("STOP", run_id)]
    assert alice.get(f"/running-workflow/{run_id}").get_json()["stopping_user"] == "bob"

    set_status(api, run_id, "USER_STOPPED")
    before = snapshot(api)
    resp = alice.put(f"/running-workflow/{run_id}/stop")
    assert resp.status_code == 404 and "not running" in resp.get_json()["error"]
    assert snapshot(api) == before
    detail = alice.get(f"/running-workflow/{run_id}").get_json()
    assert (detail["status"], detail["done"]) == ("USER_STOPPED", True) and "stopped" in detail
    assert alice.delete(f"/running-workflow/{run_id}").status_code == 204
    assert alice.get(f"/running-workflow/{run_id}").status_code == 404
    assert alice.delete(f"/running-workflow/{run_id}").status_code == 404
    # the Workflow can go now; a finished run does not hold it
    other = run(alice, made["id"], project).get_json()["id"]
    set_status(api, other, "SUCCESS")
    assert alice.delete(f"/workflow/{made['id']}").status_code == 204
    assert alice.get(f"/running-workflow/{other}").get_json()["workflow"]["id"] == made["id"]


def test_steps_as_the_engine_records_them(api, alice, jobs):
    import sqlalchemy.exc

    from shared.db.base import utcnow
    from shared.db.models import RunningWorkflowStep
    from shared.db.session import transaction

    project = alice.create_project("Steps")
    made = create(alice, FAN_OUT, name="Fan out")
    run_id = run(alice, made["id"], project, variables=RUN_VARIABLES["fan-out-and-combine"]).get_json()["id"]
    with transaction(api.services.engine) as s:
        s.add(RunningWorkflowStep(id="r-workflow-step-1", running_workflow_id=run_id, name="split",
                                  variables=json.dumps({"parts": 2}), instance_id="instance-1", task_id="task-1",
                                  status="SUCCESS", done=True, success=True, started=utcnow(), stopped=utcnow()))
        for replica in (1, 0):
            s.add(RunningWorkflowStep(id=f"r-workflow-step-p{replica}", running_workflow_id=run_id, name="process",
                                      replica=replica, replicas=2, prior_step_id="r-workflow-step-1",
                                      variables="{}", started=utcnow()))
    body = alice.get(f"/running-workflow/{run_id}/steps").get_json()
    assert body["count"] == 3
    first = body["running_workflow_steps"][0]
    assert first["id"] == "r-workflow-step-1" and first["instance_id"] == "instance-1" and first["task_id"] == "task-1"
    assert (first["status"], first["done"], first["success"], first["variables"]) == ("SUCCESS", True, True,
                                                                                      {"parts": 2})
    assert first["running_workflow"]["id"] == run_id and "stopped" in first
    later = body["running_workflow_steps"][1:]
    assert [s["name"] for s in later] == ["process", "process"] and "instance_id" not in later[0]
    # a launch is idempotent on (run, step name, replica)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        with transaction(api.services.engine) as s:
            s.add(RunningWorkflowStep(id="r-workflow-step-again", running_workflow_id=run_id, name="process",
                                      replica=1, replicas=2, variables="{}", started=utcnow()))
    set_status(api, run_id, "FAILURE")
    assert alice.delete(f"/running-workflow/{run_id}").status_code == 204
    assert rows(api, RunningWorkflowStep) == []  # the steps go with their run


@pytest.mark.parametrize("path", [f"/workflow/{MISSING}", "/workflow/workflow-nope", f"/workflow/{MISSING}/definition",
                                  "/running-workflow/r-workflow-nope", "/running-workflow/r-workflow-nope/steps"])
def test_unknown_ids_are_404(alice, path):
    resp = alice.get(path)
    assert resp.status_code == 404 and resp.get_json()["error"]


def test_unknown_ids_are_404_for_changes_too(alice):
    for method, path, data in (("PATCH", f"/workflow/{MISSING}", {"name": "New name"}),
                               ("DELETE", f"/workflow/{MISSING}", None),
                               ("PUT", f"/workflow/{MISSING}/version", {"version": "1"}),
                               ("POST", f"/workflow/{MISSING}/run", {"as_name": "Run it"}),
                               ("PUT", "/running-workflow/r-workflow-nope/stop", None),
                               ("DELETE", "/running-workflow/r-workflow-nope", None)):
        resp = alice.request(method, path, data=data)
        assert resp.status_code == 404, (method, path, resp.get_data(as_text=True))
