"""The fuzzing suite's world: one api per database (SQLite, PostgreSQL) on the served document,
and real objects of every kind (projects, files, datasets, instances, tasks, jobs) whose ids
the fuzzer puts into its requests."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time

import pytest

from tests.conftest import ALL_USERS, ROOT, USERS, Caller, _empty_tables

TEST_MANIFEST = ROOT / "tests" / "data" / "jobs" / "manifest.yaml"
WORKFLOW = ROOT / "tests" / "data" / "workflows" / "two-step-chain.yaml"  # dm-test jobs only
WORKFLOW_VARIABLES = {"resultFile": "result.txt"}
SDF = (
    "ethanol\n  RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
    "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n$$$$\n"
).encode()
SDF_TYPE = "chemical/x-mdl-sdfile"
JOBS_APP = "datamanagerjobs.squonk.it"
SPARE_USERS = ("dave", "erin")  # not callers of the fuzzed requests: an admin may suspend or remove them
FILES = (("/dir", "a.sdf"), ("/", "b.txt"), ("/dir/sub", "c.txt"))  # the seeded project's files


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_home(tmp_path_factory):
    """Hypothesis keeps its caches in a temporary folder, not in the checkout."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@dataclasses.dataclass
class World:
    """The api on one database (``app`` as served), its callers, and the real values the fuzzer may use."""

    db: str
    api: object
    app: object
    upload: object
    callers: dict[str, Caller]
    values: dict[str, list] = dataclasses.field(default_factory=dict)
    spoilt: bool = True  # the seeded objects may have been changed: seed again before the next operation

    def headers(self, username: str) -> dict[str, str]:
        return dict(self.callers[username].headers)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, identity, token_for, ff_app, tmp_path_factory):
    """An api on a fresh store over the session's database; seeded by ``seeded`` per operation."""
    import functions_framework

    from functions.api import app as api_module
    from functions.upload import handler
    from shared.config import Settings
    from shared.services.background import wait_idle

    url = request.getfixturevalue(f"{request.param}_url")
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    settings = Settings(database_url=url, project_volume=str(data_dir / "store" / "projects"),
                        dataset_store=str(data_dir / "store"), data_dir=data_dir,
                        public_url=identity.url, max_upload_bytes=4 * 1024 * 1024)
    instance = api_module.Api(settings)

    class Same:  # the upload function on the api's database and store
        settings = instance.settings
        engine = instance.services.engine
        storage = instance.services.storage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_module, "get_api", lambda: instance)
        patch.setattr(handler, "services", Same())
        upload = functions_framework.create_app(target="upload", source=str(ROOT / "main.py"),
                                                signature_type="http").test_client()
        client = ff_app.test_client()
        callers = {u: Caller(client, u, token_for(u), {}) for u in ALL_USERS}
        yield World(request.param, instance, served_app(ff_app), upload, callers)
        assert wait_idle(30), "a background job did not finish"
        instance.services.launcher.close()  # the instances the fuzzer launched


def served_app(ff_app):
    """The api function as its server serves it: functions-framework's app behind the JSON-errors layer."""
    from shared.http_server import json_errors
    from shared.stack import api_allowed_methods

    return json_errors(ff_app, api_allowed_methods)


@pytest.fixture
def seeded(world):
    """The world, seeded afresh when the operation before may have changed it."""
    if world.spoilt:
        from shared.services.background import wait_idle

        assert wait_idle(30), "a background job did not finish"
        started = time.monotonic()
        _empty_tables(world.api.settings.database_url)
        world.values = seed(world)
        world.spoilt = False
        print(f"\n{world.db}: seeded in {time.monotonic() - started:.2f}s", end="")
    return world


def seed(world: World) -> dict[str, list]:
    """Create one object of each kind through the API; return the values by parameter name."""
    from shared.account_server.ledger import LedgerAccountServer
    from shared.auth.verify import Principal
    from shared.db.session import transaction
    from shared.services import instances, service_errors

    api = world.api
    ledger = LedgerAccountServer(api.settings, api.services.engine)
    with transaction(ledger.engine) as s:
        units = {u: ledger.ensure_personal_unit(s, u) for u in USERS}
    api.units = units
    for user, caller in world.callers.items():
        caller.unit = units.get(user, {})
    alice, bob, admin = (world.callers[u] for u in ("alice", "bob", "admin"))
    for spare in SPARE_USERS:  # accounts an admin may suspend or remove
        assert world.callers[spare].get("/user/account").status_code == 200

    def ok(resp):
        assert resp.status_code in (200, 201, 204), resp.get_data(as_text=True)
        return resp.get_json(silent=True)

    ok(admin.put("/admin/job-manifest", data={"url": str(TEST_MANIFEST)}))
    jobs = ok(alice.get("/job"))["jobs"]
    manifests = ok(admin.get("/admin/job-manifest"))["job_manifests"]
    ok(admin.put(f"/job/{jobs[0]['id']}/exchange-rate", data={"rate": "1.5", "comment": "seeded"}))

    project = alice.create_project("Fuzzed project")
    private = bob.create_project("Private project", private=True)
    ok(alice.put(f"/project/{project}/observer/carol"))
    ok(alice.put(f"/project/{project}/editor/bob"))
    for (path, name), content in zip(FILES, (SDF, b"hello\n", b"x\n")):
        ok(alice.put(f"/project/{project}/file", content_type="multipart/form-data",
                     data={"path": path, "file": (io.BytesIO(content), name)}))
    ok(alice.put("/path", data={"project_id": project, "path": "/empty"}))

    dataset = ok(alice.post("/dataset", content_type="multipart/form-data",
                            data={"dataset_type": SDF_TYPE, "unit_id": units["alice"]["unit_id"],
                                  "dataset_file": (io.BytesIO(SDF), "ethanol.sdf")}))["dataset_id"]
    _deliver_events(world)
    ok(alice.post(f"/dataset/{dataset}/meta", data={"labels": json.dumps([{"label": "colour", "value": "red"}])}))
    ok(alice.put(f"/dataset/{dataset}/editor/bob"))
    attached = ok(alice.post("/file", data={"dataset_id": dataset, "dataset_version": "1", "project_id": project,
                                            "path": "/managed", "as_type": SDF_TYPE}))
    _deliver_events(world)
    digest = hashlib.sha256(SDF).hexdigest()
    ok(alice.get(f"/digest/dataset/{digest}"))

    principal = Principal("alice", frozenset(), False, "")
    form = {"application_id": JOBS_APP, "project_id": project, "as_name": "Seeded run",
            "specification": specification(), "generate_callback_token": "true"}
    with transaction(api.services.engine) as s:  # recorded, not run: it stays as it is
        row, _ = instances.record(s, principal, instances.check_launch(s, principal, api.services.storage, form))
        instance, token = row.id, row.callback_token
        error = service_errors.record(s, origin="api", summary="seeded fault").id
    tasks = [t["id"] for t in ok(alice.get("/task"))["tasks"]]
    workflows = [ok(alice.post("/workflow", content_type="multipart/form-data", data={
        "name": name, "scope": "GLOBAL", "definition": WORKFLOW.read_text()}))["id"] for name in ("Fuzzed", "Spare")]
    runs = [ok(alice.post(f"/workflow/{workflows[0]}/run", data={
        "project_id": project, "as_name": name, "variables": json.dumps(WORKFLOW_VARIABLES)}))["id"]
        for name in ("Fuzzed flow", "Finished flow")]
    _finish_run(world, runs[1])
    return {
        "project_id": [project, private],
        "user_id": ["alice", "bob", "carol", "dave"],
        "dataset_id": [dataset],
        "dataset_version": [1],
        "dataset_digest": [digest],
        "file_id": [attached["file_id"]],
        "task_id": tasks,
        "instance_id": [instance],
        "token": [token],
        "job_id": [j["id"] for j in jobs],
        "job_manifest_id": [m["id"] for m in manifests],
        "application_id": [JOBS_APP, "jupyternotebooks.squonk.it"],
        "error_id": [error],
        "asset": ["swagger-ui.css", "swagger-ui-bundle.js"],
        # fields of the query string and of bodies
        "path": ["/", "/dir", "/dir/sub", "/managed", "/empty"],
        "src_path": ["/dir", "/dir/sub", "/"],
        "dst_path": ["/moved", "/dir/sub"],
        "file": [name for _, name in FILES] + [attached["file_name"]],
        "files": list(FILES) + [("/managed", attached["file_name"])],  # (path, file) pairs that exist
        "file_name": [name for _, name in FILES],
        "dst_file": ["renamed.txt"],
        "unit_id": [units["alice"]["unit_id"]],
        "org_id": [units["alice"]["organisation_id"]],
        "tier_product_id": [units["alice"]["project_tier_product_id"]],
        "username": ["alice", "bob"],
        "usernames": ["alice", "alice,bob"],
        "dataset_type": [SDF_TYPE],
        "dataset_file": [SDF],
        "as_filename": ["ethanol.sdf"],  # a name of the type's extension
        "as_type": [SDF_TYPE],
        "specification": [specification(), specification("fail", code=1)],
        "collection": ["dm-test"],
        "job": ["event-and-cost", "fail"],
        "version": ["1.0.0"],
        "url": [str(TEST_MANIFEST)],
        # workflows: one with a RUNNING run (not alterable), a spare one; a RUNNING run and a finished one
        "workflow_id": workflows,
        "running_workflow_id": runs,
        "definition": [WORKFLOW.read_text()],
        "scope": ["GLOBAL"],
        "variables": [json.dumps(WORKFLOW_VARIABLES)],
    }


def _finish_run(world: World, run_id: str) -> None:
    """End a run as the workflow engine would."""
    from sqlalchemy import update

    from shared.db.models import RunningWorkflow
    from shared.db.session import transaction

    with transaction(world.api.services.engine) as s:
        s.execute(update(RunningWorkflow).where(RunningWorkflow.id == run_id).values(
            status="SUCCESS", done=True, success=True))


def specification(job: str = "event-and-cost", **variables) -> str:
    variables = variables or {"outputFile": "out.txt", "count": 1, "cost": "1"}
    return json.dumps({"collection": "dm-test", "job": job, "version": "1.0.0", "variables": variables})


def _deliver_events(world: World) -> None:
    """Deliver the pending outbox events to the upload function, as the broker would."""
    from sqlalchemy import select, update

    from shared.db.base import utcnow
    from shared.db.models import OutboxEvent
    from shared.db.session import transaction
    from shared.events import outbox, wire

    engine = world.api.services.engine
    with transaction(engine) as s:
        pending = list(s.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
                                 .order_by(OutboxEvent.created)))
    for event in pending:
        headers, body = wire.to_http(outbox.wire_event(event))
        resp = world.upload.post("/", data=body, headers=headers)
        assert resp.status_code < 300, (event.type, resp.status_code, resp.get_data(as_text=True))
        with transaction(engine) as s:
            s.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(delivered_at=utcnow()))
