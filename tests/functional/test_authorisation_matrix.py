"""Who may call what: every operation of the served OpenAPI document, called by every role on
real objects of alice's, on SQLite and PostgreSQL.

The roles: the owner (alice, who made the private Project, its Dataset, instance and task);
a Project editor (bob, also an editor of the Dataset); a Project observer (carol); a stranger
(dave); an administrator without admin mode and the same administrator in admin mode; a
suspended user (erin); and a caller without a token. Each operation names the rule that
decides it (RULES); the operations that need no token (the document's empty `security`) are
open to all, the others refuse the caller without a token (401) and the suspended user (403).
A refused call that is not a GET must change nothing: no row, no stored file, no launch.
An operation the document serves without an entry in OPERATIONS fails the matrix.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.functional.matrix_world import (
    BYSTANDER,
    PLAYERS,
    SDF_TYPE,
    TEST_MANIFEST,
    WORKFLOW,
    WORKFLOW_VARIABLES,
    build_world,
    sdf,
)

SIGNED_IN = frozenset({"owner", "editor", "observer", "stranger", "admin", "admin_mode"})
ROLES = tuple(PLAYERS)
PROJECT_ROLES = ("administrator", "editor", "observer")
# rule -> the signed-in roles it allows (admin mode widens reads only: dm-api §1.2)
RULES = {
    "anyone": SIGNED_IN | {"suspended", "anonymous"},  # the operations that need no token
    "signed in": SIGNED_IN,
    "project reader": frozenset({"owner", "editor", "observer", "admin_mode"}),
    "project member": frozenset({"owner", "editor", "observer"}),
    "project editor": frozenset({"owner", "editor"}),
    "project administrator": frozenset({"owner"}),
    "dataset reader": frozenset({"owner", "editor", "admin_mode"}),
    "dataset editor": frozenset({"owner", "editor"}),
    "task owner": frozenset({"owner"}),
    "unit member or admin": frozenset({"owner", "admin", "admin_mode"}),
    "admin": frozenset({"admin", "admin_mode"}),
    # alice's Workflow is scoped to her unit: only she (and admin mode) see it, only she alters or runs it
    "workflow reader": frozenset({"owner", "admin_mode"}),
    "workflow owner": frozenset({"owner"}),
}
# the listing operations also show alice's object to exactly the roles of a rule
LISTED = {
    "getProjects": ("project reader", lambda w, body: w.project in [p["project_id"] for p in body["projects"]]),
    "getDatasets": ("dataset reader", lambda w, body: w.dataset in [d["dataset_id"] for d in body["datasets"]]),
    "getInstances": ("project reader", lambda w, body: w.instance in [i["id"] for i in body["instances"]]),
    "getTasks": ("project reader", lambda w, body: w.task in [t["id"] for t in body["tasks"]]),
    "getWorkflows": ("workflow reader", lambda w, body: w.workflow in [x["id"] for x in body["workflows"]]),
    "getRunningWorkflows": ("project reader", lambda w, body: w.running_workflow in [
        r["id"] for r in body["running_workflows"]]),
}
# what an allowed call answers, besides a 2xx
ANSWERS = {
    "getDatasetDigest": lambda w, body: body == {"dataset_id": w.dataset, "dataset_version": 1},
    "getProjectFileWithToken": lambda w, body: body.startswith(b"project-file"),
}


@dataclass
class Call:
    method: str
    path: str
    query: dict = field(default_factory=dict)
    data: dict | None = None
    multipart: bool = False


def get(path, /, **values):
    return Call("GET", path, values)


def form(method, path, /, **data):
    return Call(method, path, data=data)


def upload(method, path, /, **data):
    return Call(method, path, data=data, multipart=True)


def query(method, path, /, **values):
    return Call(method, path, values)


def product(who, w):
    return (who.unit or w.owner.unit)["project_tier_product_id"]


def unit(who, w):
    return (who.unit or w.owner.unit)["unit_id"]


def launch_form(w, project):
    spec = json.dumps({"collection": "dm-test", "job": "fail", "version": "1.0.0", "variables": {"code": 3}})
    return {"application_id": "datamanagerjobs.squonk.it", "project_id": project, "as_name": w.name("Run"),
            "specification": spec}


# operationId -> (rule, call), or a list of them for variants that other rules decide. A call is
# built by ``call(world, caller, fresh)``: ``fresh`` is true when the call is expected to succeed
# and would use up or alter one of alice's shared objects, so it acts on a fresh copy instead.
Builder = Callable[..., Call]
OPERATIONS: dict[str, tuple[str, Builder] | list[tuple[str, Builder]]] = {
    # service facts and documentation
    "getVersion": ("anyone", lambda w, who, fresh: get("/version")),
    "getMode": ("anyone", lambda w, who, fresh: get("/mode")),
    "getOpenApiYaml": ("anyone", lambda w, who, fresh: get("/openapi.yaml")),
    "getOpenApiJson": ("anyone", lambda w, who, fresh: get("/openapi.json")),
    "getSwaggerUi": ("anyone", lambda w, who, fresh: get("/api")),
    "getSwaggerUiAsset": ("anyone", lambda w, who, fresh: get("/api/swagger-ui.css")),
    "getAccountServerNamespace": ("signed in", lambda w, who, fresh: get("/account-server/namespace")),
    "getAccountServerRegistration": ("signed in", lambda w, who, fresh: get("/account-server/registration")),
    "getJobDefinitionSchemaVersion": ("signed in", lambda w, who, fresh: get("/job-definition-schema/version")),
    "getInputHandlers": ("signed in", lambda w, who, fresh: get("/input-handler")),
    "getFileTypes": ("signed in", lambda w, who, fresh: get("/type")),
    # projects
    "getProjects": ("signed in", lambda w, who, fresh: get("/project")),
    "createProject": ("signed in", lambda w, who, fresh: form("POST", "/project", name=w.name("Made"),
                                                               tier_product_id=product(who, w))),
    "getProject": ("project reader", lambda w, who, fresh: get(f"/project/{w.project}")),
    "patchProject": ("project administrator", lambda w, who, fresh: form(
        "PATCH", f"/project/{w.fresh_project() if fresh else w.project}", name=w.name("Renamed"), private="false")),
    "deleteProject": ("project administrator", lambda w, who, fresh: Call(
        "DELETE", f"/project/{w.fresh_project() if fresh else w.project}")),
    **{f"add{role.title()}ToProject": ("project administrator", lambda w, who, fresh, role=role: Call(
        "PUT", f"/project/{w.project}/{role}/{w.name('newcomer')}")) for role in PROJECT_ROLES},
    **{f"remove{role.title()}FromProject": ("project administrator", lambda w, who, fresh, role=role: Call(
        "DELETE", f"/project/{w.fresh_project() if fresh else w.project}/{role}/{BYSTANDER}"))
       for role in PROJECT_ROLES},
    # project files and paths
    "getFiles": ("project reader", lambda w, who, fresh: get("/file", project_id=w.project, path="/in")),
    "getProjectFile": ("project reader", lambda w, who, fresh: get(f"/project/{w.project}/file", path="/in",
                                                                   file="mol.sdf")),
    "getProjectFileWithToken": ("anyone", lambda w, who, fresh: get(
        f"/project/{w.project}/file-with-token", token=w.token, path="/in", file="mol.sdf")),
    "addFileToProject": ("project editor", lambda w, who, fresh: upload(
        "PUT", f"/project/{w.project}/file", path="/up", file=(io.BytesIO(b"new\n"), w.name("new") + ".txt"))),
    "deleteUnmanagedFile": ("project editor", lambda w, who, fresh: query(
        "DELETE", "/file", project_id=w.fresh_project() if fresh else w.project, path="/docs", file="notes.txt")),
    "moveFileInProject": ("project editor", lambda w, who, fresh: query(
        "PUT", "/file/move", project_id=w.fresh_project() if fresh else w.project, file="notes.txt",
        src_path="/docs", dst_path="/in", dst_file=w.name("moved") + ".txt")),
    "createPath": ("project editor", lambda w, who, fresh: query("PUT", "/path", project_id=w.project,
                                                                 path="/" + w.name("dir"))),
    "deletePath": ("project editor", lambda w, who, fresh: query(
        "DELETE", "/path", project_id=w.fresh_project() if fresh else w.project, path="/docs")),
    "movePath": ("project editor", lambda w, who, fresh: query(
        "PUT", "/path/move", project_id=w.fresh_project() if fresh else w.project, src_path="/docs",
        dst_path="/" + w.name("moved"))),
    # managed files
    "attachFile": [  # alice's Dataset into alice's Project; into a Project of the caller's own
        ("project editor", lambda w, who, fresh: form(
            "POST", "/file", dataset_id=w.dataset, dataset_version="1", project_id=w.project, as_type=SDF_TYPE,
            path="/" + w.name("attached"))),
        ("dataset editor", lambda w, who, fresh: form(
            "POST", "/file", dataset_id=w.dataset, dataset_version="1", project_id=w.own_project(who),
            as_type=SDF_TYPE, path="/" + w.name("attached")))],
    "downloadFile": ("project reader", lambda w, who, fresh: get(f"/file/{w.managed_file}")),
    "deleteFile": ("project editor", lambda w, who, fresh: Call(
        "DELETE", f"/file/{w.fresh_managed_file() if fresh else w.managed_file}")),
    # datasets and their metadata (bob, the Project editor, also edits the Dataset)
    "getDatasets": ("signed in", lambda w, who, fresh: get("/dataset")),
    "uploadDataset": [  # a Dataset of one's own; a version of alice's
        ("signed in", lambda w, who, fresh: upload(
            "POST", "/dataset", dataset_type=SDF_TYPE, unit_id=unit(who, w),
            dataset_file=(io.BytesIO(sdf(w.name("mine"))), "mol.sdf"))),
        ("dataset editor", lambda w, who, fresh: upload(
            "POST", "/dataset", dataset_id=w.dataset, dataset_type=SDF_TYPE, unit_id=unit(who, w),
            dataset_file=(io.BytesIO(sdf(w.name("version"))), "mol.sdf")))],
    "createDatasetFromFile": [  # from a file of alice's Project: a Dataset of one's own; a version of alice's
        ("project member", lambda w, who, fresh: form(
            "PUT", "/dataset", project_id=w.project, path="/in", file_name="mol.sdf", dataset_type=SDF_TYPE,
            unit_id=unit(who, w))),
        ("dataset editor", lambda w, who, fresh: form(
            "PUT", "/dataset", project_id=w.project, path="/in", file_name="mol.sdf", dataset_type=SDF_TYPE,
            unit_id=unit(who, w), dataset_id=w.dataset))],
    "getVersions": ("dataset reader", lambda w, who, fresh: get(f"/dataset/{w.dataset}/versions")),
    "downloadDataset": ("dataset reader", lambda w, who, fresh: get(f"/dataset/{w.dataset}/1")),
    "deleteDataset": ("dataset editor", lambda w, who, fresh: Call(
        "DELETE", f"/dataset/{w.fresh_dataset()[0] if fresh else w.dataset}/1")),
    "addEditorToDataset": ("dataset editor", lambda w, who, fresh: Call(
        "PUT", f"/dataset/{w.dataset}/editor/{w.name('newcomer')}")),
    "removeEditorFromDataset": ("dataset editor", lambda w, who, fresh: Call(
        "DELETE", f"/dataset/{w.fresh_dataset()[0] if fresh else w.dataset}/editor/{BYSTANDER}")),
    "getMetadata": ("dataset reader", lambda w, who, fresh: get(f"/dataset/{w.dataset}/meta")),
    "addMetadata": ("dataset editor", lambda w, who, fresh: form(
        "POST", f"/dataset/{w.dataset}/meta", meta_properties=json.dumps({"description": w.name("about")}))),
    "getMetadataVersion": ("dataset reader", lambda w, who, fresh: get(f"/dataset/{w.dataset}/meta/1")),
    "addMetadataVersion": ("dataset editor", lambda w, who, fresh: form(
        "POST", f"/dataset/{w.dataset}/meta/1", meta_properties=json.dumps({"description": w.name("about")}))),
    "getSchema": ("dataset reader", lambda w, who, fresh: get(f"/dataset/{w.dataset}/schema/1")),
    "getDatasetDigest": ("dataset reader", lambda w, who, fresh: get(f"/digest/dataset/{w.digest}")),
    # applications and instances
    "getApplications": ("signed in", lambda w, who, fresh: get("/application")),
    "getApplication": ("signed in", lambda w, who, fresh: get("/application/datamanagerjobs.squonk.it")),
    "getInstances": ("signed in", lambda w, who, fresh: get("/instance")),
    "createInstance": ("project editor", lambda w, who, fresh: Call("POST", "/instance",
                                                                    data=launch_form(w, w.project))),
    "dryRunInstance": ("project editor", lambda w, who, fresh: Call("POST", "/instance/dry-run",
                                                                    data=launch_form(w, w.project))),
    "getInstance": ("project reader", lambda w, who, fresh: get(f"/instance/{w.instance}")),
    "patchInstance": ("project editor", lambda w, who, fresh: query(
        "PATCH", f"/instance/{w.fresh_instance()[0] if fresh else w.instance}", archive="true")),
    "terminateInstance": ("project editor", lambda w, who, fresh: Call(
        "DELETE", f"/instance/{w.fresh_instance()[0] if fresh else w.instance}")),
    "deleteInstanceToken": ("anyone", lambda w, who, fresh: Call(
        "DELETE", "/instance/{}/token/{}".format(*(w.fresh_instance() if fresh else (w.instance, w.token))))),
    # jobs and their manifests
    "getJobs": ("signed in", lambda w, who, fresh: get("/job")),
    "getJob": ("signed in", lambda w, who, fresh: get(f"/job/{w.job['id']}")),
    "getJobByVersion": ("signed in", lambda w, who, fresh: get("/job/get-by-version", collection="dm-test",
                                                               job="fail", version="1.0.0")),
    "getJobExchangeRates": ("signed in", lambda w, who, fresh: get(f"/job/{w.job['id']}/exchange-rate")),
    "getAllJobExchangeRates": ("signed in", lambda w, who, fresh: get("/job-exchange-rates")),
    "setJobPricing": ("admin", lambda w, who, fresh: form("PUT", f"/job/{w.job['id']}/exchange-rate",
                                                          rate=str(next(w.counter)))),
    "adminGetJobManifests": ("admin", lambda w, who, fresh: get("/admin/job-manifest")),
    "adminJobManifestPut": ("admin", lambda w, who, fresh: form("PUT", "/admin/job-manifest",
                                                                url=str(TEST_MANIFEST))),
    "adminJobManifestLoad": ("admin", lambda w, who, fresh: Call("PUT", "/admin/job-manifest/load")),
    "adminDeleteJobManifest": ("admin", lambda w, who, fresh: Call(
        "DELETE", f"/admin/job-manifest/{w.fresh_manifest() if fresh else w.manifest_id}")),
    # tasks
    "getTasks": ("signed in", lambda w, who, fresh: get("/task")),
    "getTask": ("project reader", lambda w, who, fresh: get(f"/task/{w.task}")),
    "deleteTask": ("task owner", lambda w, who, fresh: Call("DELETE", f"/task/{w.fresh_task() if fresh else w.task}")),
    # the caller's account and the user directory
    "getUsers": ("signed in", lambda w, who, fresh: get("/user")),
    "getUserAccount": ("signed in", lambda w, who, fresh: get("/user/account")),
    "patchUserAccount": ("signed in", lambda w, who, fresh: form("PATCH", "/user/account", private="false")),
    "getUserApiLog": ("signed in", lambda w, who, fresh: get("/user/api-log")),
    "getUserApiToken": ("signed in", lambda w, who, fresh: get("/user/token")),
    "getUserInventory": ("unit member or admin", lambda w, who, fresh: get(
        "/inventory/user", unit_id=w.owner.unit["unit_id"])),
    # workflows and their runs (alice's, in her Project)
    "getWorkflowEngineVersion": ("signed in", lambda w, who, fresh: get("/workflow-engine/version")),
    "getWorkflows": ("signed in", lambda w, who, fresh: get("/workflow")),
    "createWorkflow": ("signed in", lambda w, who, fresh: upload(
        "POST", "/workflow", name=w.name("Made"), scope="GLOBAL", definition=WORKFLOW.read_text())),
    "getWorkflow": ("workflow reader", lambda w, who, fresh: get(f"/workflow/{w.workflow}")),
    "getWorkflowDefinition": ("workflow reader", lambda w, who, fresh: get(f"/workflow/{w.workflow}/definition")),
    "updateWorkflow": ("workflow owner", lambda w, who, fresh: upload(
        "PATCH", f"/workflow/{w.fresh_workflow() if fresh else w.workflow}", name=w.name("Renamed"))),
    "deleteWorkflow": ("workflow owner", lambda w, who, fresh: Call(
        "DELETE", f"/workflow/{w.fresh_workflow() if fresh else w.workflow}")),
    "versionWorkflow": ("workflow owner", lambda w, who, fresh: form(
        "PUT", f"/workflow/{w.workflow}/version", version=w.name("v"))),
    "runWorkflow": ("workflow owner", lambda w, who, fresh: form(
        "POST", f"/workflow/{w.workflow}/run", project_id=w.project, as_name=w.name("Flow"),
        variables=json.dumps(WORKFLOW_VARIABLES))),
    "getRunningWorkflows": ("signed in", lambda w, who, fresh: get("/running-workflow")),
    "getRunningWorkflow": ("project reader", lambda w, who, fresh: get(f"/running-workflow/{w.running_workflow}")),
    "getRunningWorkflowSteps": ("project reader", lambda w, who, fresh: get(
        f"/running-workflow/{w.running_workflow}/steps")),
    "stopRunningWorkflow": ("project editor", lambda w, who, fresh: Call(
        "PUT", f"/running-workflow/{w.fresh_run() if fresh else w.running_workflow}/stop")),
    "deleteRunningWorkflow": ("project editor", lambda w, who, fresh: Call(
        "DELETE", f"/running-workflow/{w.fresh_run(finished=True) if fresh else w.finished_run}")),
    # administration
    "adminGetServiceErrors": ("admin", lambda w, who, fresh: get("/admin/service-error")),
    "adminPatchServiceError": ("admin", lambda w, who, fresh: Call(
        "PATCH", f"/admin/service-error/{w.fresh_service_error() if fresh else w.service_error}")),
    "adminDeleteServiceError": ("admin", lambda w, who, fresh: Call(
        "DELETE", f"/admin/service-error/{w.fresh_service_error() if fresh else w.service_error}")),
    "adminGetUsers": ("admin", lambda w, who, fresh: get("/admin/user")),
    "adminPutUser": ("admin", lambda w, who, fresh: Call("PUT", f"/admin/user/{w.name('user')}")),
    "adminPatchUser": ("admin", lambda w, who, fresh: form(
        "PATCH", f"/admin/user/{w.fresh_user() if fresh else BYSTANDER}", suspend_message="Matrix")),
    "adminDeleteUser": ("admin", lambda w, who, fresh: Call(
        "DELETE", f"/admin/user/{w.fresh_user() if fresh else BYSTANDER}")),
}


def variants(op_id: str) -> list[tuple[str, Builder]]:
    entry = OPERATIONS[op_id]
    return entry if isinstance(entry, list) else [entry]


def documented(document: dict) -> dict[str, tuple[str, str, bool]]:
    """operationId -> (method, path, needs a token), from the served document."""
    default = document.get("security", [])
    out = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                out[op["operationId"]] = (method.upper(), path, bool(op.get("security", default)))
    return out


def allowed(rule: str, role: str, needs_token: bool) -> bool:
    if needs_token and role in ("anonymous", "suspended"):
        return False
    return role in RULES[rule]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, tmp_path_factory):
    built, patch = build_world(request, request.param, tmp_path_factory)
    yield built
    from shared.services.background import wait_idle

    wait_idle()
    patch.undo()


def _send(who, call: Call):
    kw = {"query_string": call.query} if call.query else {}
    if call.data is not None:
        kw["data"] = call.data
        if call.multipart:
            kw["content_type"] = "multipart/form-data"
    return who.request(call.method, call.path, **kw)


def _judge(w, role: str, op_id: str, needs_token: bool, call: Call, resp, expect: bool) -> str | None:
    """What is wrong with one cell's answer, or None."""
    status, text = resp.status_code, resp.get_data()[:200].decode(errors="replace")
    where = f"{op_id} {call.method} {call.path} as {role}: {status} {text}"
    if expect:
        if not 200 <= status < 300:
            return f"{where} (expected success)"
        if op_id in ANSWERS:
            body = resp.get_json() if resp.mimetype == "application/json" else resp.get_data()
            if not ANSWERS[op_id](w, body):
                return f"{where} (unexpected answer)"
        if op_id in LISTED:
            rule, shows = LISTED[op_id]
            if shows(w, resp.get_json()) != (role in RULES[rule]):
                return f"{where} ({'hides' if role in RULES[rule] else 'shows'} alice's object)"
        return None
    if role == "anonymous" and needs_token:
        return None if status == 401 else f"{where} (expected 401)"
    if role == "suspended" and needs_token:
        return None if status == 403 and "suspended" in text else f"{where} (expected 403, suspended)"
    if status not in (403, 404):
        return f"{where} (expected 403 or 404)"
    return None


def _cell(w, role, op_id, method, path, needs_token, rule, build) -> list[str]:
    """Make one call as ``role``; what is wrong with it."""
    expect = allowed(rule, role, needs_token)
    call = build(w, w.callers[role], expect and method != "GET")
    assert call.method == method and re.fullmatch(re.sub(r"{[^}]+}", "[^/]+", path), call.path), op_id
    resp = _send(w.callers[role], call)
    problem = _judge(w, role, op_id, needs_token, call, resp, expect)
    out = [f"{problem} [{rule}]"] if problem else []
    if method != "GET":
        if expect:
            w.take_picture()
        else:
            changed = w.changes()
            if changed:
                out.append(f"{op_id} as {role}: refused, yet changed {', '.join(changed)} [{rule}]")
                w.take_picture()
    return out


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_every_served_operation_has_an_expectation(world):
    served = documented(world.document)
    assert set(served) - set(OPERATIONS) == set(), "served without an entry in OPERATIONS"
    assert set(OPERATIONS) - set(served) == set(), "entries for operations no longer served"
    assert len(served) * len(ROLES) >= 600  # the matrix stays as wide as the API
    for op_id, (_, _, needs_token) in served.items():  # what needs no token is open to all
        assert all((rule == "anyone") == (not needs_token) for rule, _ in variants(op_id)), op_id


def test_the_picture_sees_what_a_call_could_change(world):
    """The "nothing changed" check itself: a changed row, a new stored file, a launch are all seen."""
    from sqlalchemy import update

    from shared.db.models import Project
    from shared.db.session import transaction

    world.take_picture()
    with transaction(world.engine) as s:
        s.execute(update(Project).where(Project.id == world.project).values(size=Project.size + 1))
    world.api.services.storage.write("projects/stray.txt", iter([b"x"]))
    world.launcher.calls.append(("stop", world.instance))
    assert set(world.changes()) == {"projects", "storage", "launcher"}
    with transaction(world.engine) as s:
        s.execute(update(Project).where(Project.id == world.project).values(size=Project.size - 1))
    world.api.services.storage.delete("projects/stray.txt")
    world.launcher.calls.pop()
    assert world.changes() == []


@pytest.mark.parametrize("role", ROLES)
def test_authorisation_matrix(world, role):
    w = world
    w.set_admin_mode(role == "admin_mode")
    failures = []
    served = documented(w.document)
    for op_id, (method, path, needs_token) in served.items():
        if op_id not in OPERATIONS:
            failures.append(f"{op_id} {method} {path}: no expectation in OPERATIONS")
            continue
        for rule, build in variants(op_id):
            failures.extend(_cell(w, role, op_id, method, path, needs_token, rule, build))
    assert not failures, f"{len(failures)} cells are wrong:\n" + "\n".join(failures)


def test_the_owner_of_a_tasks_object_may_delete_it_and_admin_mode_may_not(world):
    """dm-api §3.13: the caller must own the task's object; bob placed a file, alice owns it."""
    from shared.db.session import transaction
    from shared.services import tasks

    with transaction(world.engine) as s:
        task = tasks.create(s, purpose="FILE", purpose_id=world.managed_file, owner="bob",
                            project_id=world.project)
        tasks.set_state(s, task.id, "SUCCESS")
    world.set_admin_mode(True)
    try:
        for role in ("observer", "admin_mode"):  # both see it
            assert world.callers[role].get(f"/task/{task.id}").status_code == 200
            assert world.callers[role].delete(f"/task/{task.id}").status_code == 403
    finally:
        world.set_admin_mode(False)
    assert world.owner.delete(f"/task/{task.id}").status_code == 204
    assert world.callers["editor"].get(f"/task/{task.id}").status_code == 404
