"""The objects the authorisation matrix calls on: one private Project of alice's with its
files, a Dataset, a managed file, an instance, a task, a service error and a job manifest,
built once per database through the api (and the upload function), plus fresh copies made
on demand for the calls that consume what they act on."""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import pytest

from tests.conftest import ALL_USERS, ROOT, Caller, _empty_tables

TEST_MANIFEST = ROOT / "tests" / "data" / "jobs" / "manifest.yaml"
WORKFLOW = ROOT / "tests" / "data" / "workflows" / "two-step-chain.yaml"  # dm-test jobs only
WORKFLOW_VARIABLES = {"resultFile": "result.txt"}
SDF = ("{name}\n  RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
       "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
       "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n$$$$\n")
SDF_TYPE = "chemical/x-mdl-sdfile"
# the role -> the user who plays it; admin and admin_mode are one user, with admin mode off or on
PLAYERS = {"owner": "alice", "editor": "bob", "observer": "carol", "stranger": "dave", "admin": "admin",
           "admin_mode": "admin", "suspended": "erin", "anonymous": None}
# members of every Project and Dataset the matrix uses who never call: the removal calls remove them
BYSTANDER = "frank"
# tables that change on calls that change nothing: the API log of every call
UNWATCHED_TABLES = {"api_log"}
UNWATCHED_COLUMNS = {("users", "last_seen")}


class StubLauncher:
    """Launches and stops nothing; remembers what it was asked to do (a refused call asks nothing)."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def launch(self, spec) -> None:
        self.calls.append(("launch", spec.instance_id))

    def stop(self, instance_id: str) -> None:
        self.calls.append(("stop", instance_id))

    def read_log(self, instance_id: str, offset: int = 0) -> bytes:
        return b""

    def pod(self, instance_id: str):
        return None

    def pods(self, instance_ids):
        return {}


def sdf(name: str) -> bytes:
    return SDF.format(name=name).encode()


class World:
    """alice's objects, the callers for every role, and a picture of the state to compare against."""

    def __init__(self, api, client, token_for, upload_client, units):
        self.api = api
        self.engine = api.services.engine
        self.launcher = api.services.launcher
        self.upload = upload_client
        self.units = units
        self.callers = {role: Caller(client, user, token_for(user) if user else None, units)
                        for role, user in PLAYERS.items()}
        self.owner = self.callers["owner"]
        self.admin = self.callers["admin"]
        self.counter = itertools.count(1)
        self.document: dict = {}
        self.picture: dict = {}

    # --- set-up --------------------------------------------------------------------------------

    def build(self) -> None:
        import yaml

        for role in ("owner", "editor", "observer", "stranger", "admin", "suspended"):
            assert self.callers[role].get("/user/account").status_code == 200  # every user is recorded
        assert self.admin.put(f"/admin/user/{BYSTANDER}").status_code == 201
        resp = self.admin.put("/admin/job-manifest", data={"url": str(TEST_MANIFEST)})
        assert resp.status_code == 200 and resp.get_json()["num_jobs_loaded"] == 3, resp.get_json()
        self.manifest_id = self.admin.get("/admin/job-manifest").get_json()["job_manifests"][0]["id"]
        self.job = {j["job"]: j for j in self.owner.get("/job").get_json()["jobs"]}["fail"]
        self.project = self.fresh_project("Matrix")
        self.own_projects = {user: self.callers[role].create_project(self.name("Own"), private=True)
                             for role, user in PLAYERS.items() if user not in (None, "alice", "erin")}
        self.dataset, self.digest = self.fresh_dataset("matrix-dataset")
        self.managed_file = self.fresh_managed_file()
        self.instance, self.token = self.fresh_instance()
        self.task = self.fresh_task()
        self.service_error = self.fresh_service_error()
        self.workflow = self.fresh_workflow()
        self.running_workflow = self.fresh_run()
        self.finished_run = self.fresh_run(finished=True)
        resp = self.admin.patch("/admin/user/erin", data={"suspend_message": "Matrix"})
        assert resp.status_code == 204
        self.document = yaml.safe_load(self.callers["anonymous"].get("/openapi.yaml").get_data())
        self.take_picture()

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def own_project(self, who) -> str:
        """A Project of the caller's own (alice's: the matrix's), or alice's for those without one."""
        return self.own_projects.get(who.username, self.project)

    def fresh_project(self, prefix: str = "Fresh") -> str:
        """A private Project of alice's: bob edits, carol observes, the bystander holds every role."""
        pid = self.owner.create_project(self.name(prefix), private=True)
        for role, user in (("editor", "bob"), ("observer", "carol"), ("administrator", BYSTANDER),
                           ("editor", BYSTANDER), ("observer", BYSTANDER)):
            assert self.owner.put(f"/project/{pid}/{role}/{user}").status_code == 201
        for path, name, data in (("/in", "mol.sdf", sdf(self.name("project-file"))),
                                 ("/docs", "notes.txt", b"notes\n")):
            resp = self.owner.put(f"/project/{pid}/file", data={"path": path, "file": (io.BytesIO(data), name)},
                                  content_type="multipart/form-data")
            assert resp.status_code == 201, resp.get_data(as_text=True)
        return pid

    def fresh_dataset(self, prefix: str = "fresh-dataset") -> tuple[str, str]:
        """A processed Dataset of alice's (its id and digest); bob and the bystander edit it."""
        import hashlib

        data = sdf(self.name(prefix))
        form = {"dataset_type": SDF_TYPE, "unit_id": self.owner.unit["unit_id"],
                "dataset_file": (io.BytesIO(data), "mol.sdf")}
        resp = self.owner.post("/dataset", data=form, content_type="multipart/form-data")
        assert resp.status_code == 201, resp.get_data(as_text=True)
        self.deliver_events()
        dataset_id = resp.get_json()["dataset_id"]
        for user in ("bob", BYSTANDER):
            assert self.owner.put(f"/dataset/{dataset_id}/editor/{user}").status_code == 201
        return dataset_id, hashlib.sha256(data).hexdigest()

    def fresh_managed_file(self) -> str:
        """Version 1 of the Dataset, placed (and copied) in the Project."""
        resp = self.owner.post("/file", data={"dataset_id": self.dataset, "dataset_version": "1",
                                              "project_id": self.project, "as_type": SDF_TYPE,
                                              "path": "/" + self.name("managed")})
        assert resp.status_code == 201, resp.get_data(as_text=True)
        self.deliver_events()
        return resp.get_json()["file_id"]

    def fresh_instance(self) -> tuple[str, str]:
        """An instance of alice's in the Project, recorded (not run), with a callback token."""
        from shared.db.session import transaction
        from shared.services import instances

        spec = json.dumps({"collection": "dm-test", "job": "fail", "version": "1.0.0", "variables": {"code": 3}})
        form = {"application_id": "datamanagerjobs.squonk.it", "project_id": self.project,
                "as_name": self.name("Run"), "specification": spec, "generate_callback_token": "true"}
        with transaction(self.engine) as s:
            principal = self.principal("alice")
            launch = instances.check_launch(s, principal, self.api.services.storage, form)
            row, _ = instances.record(s, principal, launch)
            return row.id, row.callback_token

    def fresh_workflow(self) -> str:
        """A valid Workflow of alice's, scoped to her unit: she and admin mode see it."""
        resp = self.owner.post("/workflow", content_type="multipart/form-data", data={
            "name": self.name("Workflow"), "scope": "AS_UNIT", "scope_id": self.owner.unit["unit_id"],
            "definition": WORKFLOW.read_text()})
        assert resp.status_code == 201 and resp.get_json()["validated"], resp.get_data(as_text=True)
        return resp.get_json()["id"]

    def fresh_run(self, finished: bool = False) -> str:
        """A run of alice's Workflow in the Project, RUNNING (or ended, as the engine ends one)."""
        from sqlalchemy import update

        from shared.db.models import RunningWorkflow
        from shared.db.session import transaction

        resp = self.owner.post(f"/workflow/{self.workflow}/run", data={
            "project_id": self.project, "as_name": self.name("Flow"), "variables": json.dumps(WORKFLOW_VARIABLES)})
        assert resp.status_code == 201, resp.get_data(as_text=True)
        run_id = resp.get_json()["id"]
        if finished:
            with transaction(self.engine) as s:
                s.execute(update(RunningWorkflow).where(RunningWorkflow.id == run_id).values(
                    status="SUCCESS", done=True, success=True))
        return run_id

    def fresh_task(self) -> str:
        """A finished task of alice's in the Project."""
        from shared.db.session import transaction
        from shared.services import tasks

        with transaction(self.engine) as s:
            task = tasks.create(s, purpose="FILE", purpose_id=self.managed_file, owner="alice",
                                project_id=self.project, message="placed")
            tasks.set_state(s, task.id, "SUCCESS")
            return task.id

    def fresh_service_error(self) -> int:
        from shared.db.session import transaction
        from shared.services import service_errors

        with transaction(self.engine) as s:
            return service_errors.record(s, origin="api", summary=self.name("matrix fault")).id

    def fresh_manifest(self) -> int:
        """A registered (not loaded) manifest at a location of its own."""
        from shared.db.session import transaction
        from shared.services import jobs

        with transaction(self.engine) as s:
            return jobs.put_manifest(s, self.principal("admin"), f"/nowhere/{self.name('manifest')}.yaml",
                                     "", "").id

    def fresh_user(self) -> str:
        name = self.name("user")
        assert self.admin.put(f"/admin/user/{name}").status_code == 201
        return name

    @staticmethod
    def principal(username: str):
        from shared.auth.verify import Principal

        return Principal(username, frozenset(), username == "admin", "")

    def deliver_events(self) -> None:
        """Hand every undelivered event to the upload function, as the broker would."""
        from sqlalchemy import select, update

        from shared.db.base import utcnow
        from shared.db.models import OutboxEvent
        from shared.db.session import transaction
        from shared.events import outbox, wire

        from functions.upload.handler import consumer

        with transaction(self.engine) as s:  # only the upload function's: workflow messages wait for pbc
            pending = list(s.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None),
                                                               OutboxEvent.type.in_(consumer.accepts))
                                     .order_by(OutboxEvent.created)))
        for event in pending:
            headers, body = wire.to_http(outbox.wire_event(event))
            assert self.upload.post("/", data=body, headers=headers).status_code == 202, event.type
            with transaction(self.engine) as s:
                s.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(delivered_at=utcnow()))

    def set_admin_mode(self, on: bool) -> None:
        resp = self.admin.patch("/user/account", data={"become_admin": "true" if on else "false"})
        assert resp.status_code == 204
        self.take_picture()

    # --- what "nothing changed" compares ---------------------------------------------------------

    def state(self) -> dict:
        """Every row of every table (but the API log), every stored object, every launcher call."""
        from sqlalchemy import select

        from shared.db.base import Base

        out: dict = {}
        watched = [(table, [c for c in table.columns if (table.name, c.name) not in UNWATCHED_COLUMNS])
                   for table in Base.metadata.sorted_tables if table.name not in UNWATCHED_TABLES]
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # one round trip instead of one per table
                quote = conn.dialect.identifier_preparer.quote
                parts = [f"(SELECT string_agg(row_to_json(x)::text, chr(10) ORDER BY row_to_json(x)::text) FROM "
                         f"(SELECT {', '.join(quote(c.name) for c in columns)} FROM {quote(table.name)}) x)"
                         for table, columns in watched]
                row = conn.exec_driver_sql("SELECT " + ", ".join(parts)).one()
                out.update({table.name: text for (table, _), text in zip(watched, row)})
            else:
                for table, columns in watched:
                    out[table.name] = sorted(repr(tuple(row)) for row in conn.execute(select(*columns)))
        root = Path(self.api.settings.dataset_store)  # the project volume is inside it
        out["storage"] = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())
        out["launcher"] = list(self.launcher.calls)
        return out

    def take_picture(self) -> None:
        from shared.services.background import wait_idle

        assert wait_idle(), "a background job did not finish"
        self.picture = self.state()

    def changes(self) -> list[str]:
        """The parts of the state that differ from the last picture."""
        now = self.state()
        return [name for name in now if now[name] != self.picture.get(name)]


def build_world(request, db: str, tmp_path_factory):
    """The api on ``db`` with the world built; undone when the module's tests are done."""
    from functions.api import app as api_module
    from functions.upload import handler
    from shared.account_server.ledger import LedgerAccountServer
    from shared.config import Settings
    from shared.db.session import transaction

    url = request.getfixturevalue(f"{db}_url")
    identity = request.getfixturevalue("identity")
    ff_app = request.getfixturevalue("ff_app")
    token_for = request.getfixturevalue("token_for")
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("DM_"):
            patch.delenv(name)
    _empty_tables(url)
    tmp = tmp_path_factory.mktemp(f"matrix-{db}")
    settings = Settings(database_url=url, project_volume=str(tmp / "store" / "projects"),
                        dataset_store=str(tmp / "store"), data_dir=tmp, public_url=identity.url,
                        max_upload_bytes=4 * 1024 * 1024)
    api = api_module.Api(settings)
    api.services.launcher = StubLauncher()
    patch.setattr(api_module, "get_api", lambda: api)
    ledger = LedgerAccountServer(settings, api.services.engine)
    with transaction(ledger.engine) as s:
        units = {u: ledger.ensure_personal_unit(s, u) for u in ALL_USERS}
    api.units = units

    class Same:
        engine = api.services.engine
        storage = api.services.storage

    Same.settings = settings
    patch.setattr(handler, "services", Same())
    import functions_framework

    upload = functions_framework.create_app(target="upload", source=str(ROOT / "main.py"),
                                            signature_type="http").test_client()
    world = World(api, ff_app.test_client(), token_for, upload, units)
    try:
        world.build()
    except BaseException:
        patch.undo()
        raise
    return world, patch
