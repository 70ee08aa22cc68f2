"""Job manifests, job definitions (checked by the Squonk2 job decoder), exchange rates and dry runs."""

import io
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_MANIFEST = ROOT / "tests" / "data" / "jobs" / "manifest.yaml"
REAL_JOBS = ROOT.parent / "shared" / "data" / "jobs"  # the reference folder beside the repository


def load(who, location, **extra):
    return who.put("/admin/job-manifest", data={"url": str(location), **extra})


@pytest.fixture
def test_jobs(admin):
    resp = load(admin, TEST_MANIFEST)
    assert resp.status_code == 200, resp.get_json()
    return {j["job"]: j for j in admin.get("/job").get_json()["jobs"]}


def test_loading_a_manifest_records_its_jobs(admin, alice):
    body = load(admin, TEST_MANIFEST).get_json()
    assert body == {"status": True, "num_manifest_files_inspected": 1, "num_job_definition_files_inspected": 1,
                    "num_jobs_inspected": 3, "num_jobs_loaded": 3, "manifest_file_failures": [],
                    "job_definition_file_failures": [], "job_definition_failures": []}
    listed = alice.get("/job").get_json()
    assert listed["count"] == 3
    assert {(j["collection"], j["job"], j["version"]) for j in listed["jobs"]} == {
        ("dm-test", "event-and-cost", "1.0.0"), ("dm-test", "fail", "1.0.0"), ("dm-test", "sleep", "1.0.0")}
    (manifest,) = admin.get("/admin/job-manifest").get_json()["job_manifests"]
    assert manifest["url"] == str(TEST_MANIFEST) and manifest["last_load_status"] == "SUCCESS"
    assert manifest["job_definitions_loaded"] == 3 and manifest["creator"] == "admin"
    # loading again replaces, never duplicates
    assert load(admin, TEST_MANIFEST).get_json()["num_jobs_loaded"] == 3
    assert alice.get("/job").get_json()["count"] == 3
    assert admin.get("/admin/job-manifest").get_json()["count"] == 1


def test_one_job_in_full(alice, test_jobs):
    job_id = test_jobs["event-and-cost"]["id"]
    job = alice.get(f"/job/{job_id}").get_json()
    assert job["application"]["application_id"] == "datamanagerjobs.squonk.it"
    assert (job["image_name"], job["image_tag"], job["image_project_directory"]) == (
        "informaticsmatters/dm-test", "1.0.0", "/data")
    assert job["command_encoding"] == "JINJA2_3_0" and "{{ outputFile }}" in job["command"]
    assert job["variables"]["options"]["required"] == ["outputFile", "count", "cost"]
    assert job["exchange_rate"] == "0" and job["disabled"] is False and job["required_assets"] == []
    by_version = alice.get("/job/get-by-version", query_string={"collection": "dm-test", "job": "event-and-cost",
                                                                 "version": "1.0.0"})
    assert by_version.get_json() == job
    assert alice.get("/job/get-by-version", query_string={"collection": "dm-test", "job": "event-and-cost",
                                                           "version": "9"}).status_code == 404
    assert alice.get("/job/get-by-version", query_string={"collection": "dm-test"}).status_code == 400
    assert alice.get("/job/999999").status_code == 404


@pytest.mark.skipif(not REAL_JOBS.is_dir(), reason="the reference job definitions are not beside the repository")
def test_the_real_definitions_load_and_bad_files_are_reported(admin, alice):
    dmpk = load(admin, REAL_JOBS / "virtual-screening" / "manifest-dmpk.yaml").get_json()
    assert dmpk["status"] is True and dmpk["num_jobs_loaded"] == 1
    template = load(admin, REAL_JOBS / "data-manager-job-template" / "manifest.yaml").get_json()
    # decoder 2.8.0 refuses the template's echo job (its outputs carry a 'required' list)
    assert template["status"] is False and template["num_jobs_loaded"] == 0
    (failure,) = template["job_definition_file_failures"]
    assert failure.startswith("jobs.yaml:") and "required" in failure
    jobs = alice.get("/job").get_json()["jobs"]
    assert [(j["collection"], j["job"]) for j in jobs] == [("im-dmpk", "pk-tmax-cmax-sim")]
    statuses = {m["url"]: m["last_load_status"] for m in admin.get("/admin/job-manifest").get_json()["job_manifests"]}
    assert statuses[str(REAL_JOBS / "virtual-screening" / "manifest-dmpk.yaml")] == "SUCCESS"
    assert "required" in statuses[str(REAL_JOBS / "data-manager-job-template" / "manifest.yaml")]


def test_unreadable_manifests_are_reported_not_fatal(admin, tmp_path):
    missing = load(admin, tmp_path / "nope.yaml").get_json()
    assert missing["status"] is False and "not found" in missing["manifest_file_failures"][0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: DataManagerManifest\nkind-version: '2021.1'\n")
    assert "job-definition-files" in load(admin, bad).get_json()["manifest_file_failures"][0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    assert "not valid YAML" in load(admin, broken).get_json()["manifest_file_failures"][0]


@pytest.mark.parametrize("form, status", [
    ({"url": ""}, 400),
    ({"url": "relative/manifest.yaml"}, 400),
    ({"url": "ftp://example.org/manifest.yaml"}, 400),
    ({"url": "/x/manifest.yaml", "header": "[1]"}, 400),
    ({"url": "/x/manifest.yaml", "params": "not json"}, 400),
])
def test_bad_manifest_requests(admin, form, status):
    resp = admin.put("/admin/job-manifest", data=form)
    assert resp.status_code == status and resp.get_json()["error"]
    assert admin.get("/admin/job-manifest").get_json()["count"] == 0


def test_only_admins_manage_manifests_and_rates(alice, admin, test_jobs):
    assert load(alice, TEST_MANIFEST).status_code == 403
    assert alice.get("/admin/job-manifest").status_code == 403
    assert alice.put("/admin/job-manifest/load").status_code == 403
    job_id = test_jobs["fail"]["id"]
    assert alice.put(f"/job/{job_id}/exchange-rate", data={"rate": "1"}).status_code == 403


def test_reload_and_delete(admin, alice, test_jobs):
    reloaded = admin.put("/admin/job-manifest/load").get_json()
    assert reloaded["status"] is True and reloaded["num_jobs_loaded"] == 3
    (manifest,) = admin.get("/admin/job-manifest").get_json()["job_manifests"]
    assert admin.delete("/admin/job-manifest/x").status_code == 400
    assert admin.delete("/admin/job-manifest/999").status_code == 404
    assert admin.delete(f"/admin/job-manifest/{manifest['id']}", query_string={"purge": "true"}).status_code == 204
    assert alice.get("/job").get_json()["count"] == 0
    assert admin.get("/admin/job-manifest").get_json()["count"] == 0


def test_exchange_rates(admin, alice, test_jobs):
    job_id = test_jobs["event-and-cost"]["id"]
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "nope"}).status_code == 400
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "-1"}).status_code == 400
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "0.5", "comment": "first"}).status_code == 204
    assert admin.put(f"/job/{job_id}/exchange-rate", data={"rate": "2"}).status_code == 204
    history = alice.get(f"/job/{job_id}/exchange-rate").get_json()
    assert [r["rate"] for r in history["exchange_rates"]] == ["2", "0.5"]
    assert [r["rate"] for r in alice.get(f"/job/{job_id}/exchange-rate",
                                         query_string={"current": "true"}).get_json()["exchange_rates"]] == ["2"]
    assert alice.get(f"/job/{job_id}").get_json()["exchange_rate"] == "2"
    rates = alice.get("/job-exchange-rates").get_json()
    assert [(r["job"], r["rate"]) for r in rates["exchange_rates"]] == [("event-and-cost", "2")]
    undefined = alice.get("/job-exchange-rates", query_string={"only_undefined": "true"}).get_json()
    assert sorted(r["job"] for r in undefined["exchange_rates"]) == ["fail", "sleep"]


# --- dry runs: the checks of POST /instance, without launching ------------------------------------


def spec(job="event-and-cost", **variables):
    return json.dumps({"collection": "dm-test", "job": job, "version": "1.0.0", "variables": variables})


def dry_run(who, project_id, specification, **extra):
    return who.post("/instance/dry-run", data={"application_id": "datamanagerjobs.squonk.it",
                                               "project_id": project_id, "as_name": "My run",
                                               "specification": specification, **extra})


def test_a_dry_run_renders_the_command(alice, test_jobs):
    pid = alice.create_project("Runs")
    resp = dry_run(alice, pid, spec(outputFile="out/result.txt", count=2, cost="+0.5"))
    assert resp.status_code == 201, resp.get_json()
    command = resp.get_json()["command"]
    assert command.startswith("python3 -c 'import os, sys, datetime;") and "\n" not in command
    assert command.endswith("'out/result.txt' 2 '+0.5'")
    assert alice.get("/instance").get_json()["count"] == 0  # nothing launched
    assert alice.get("/task").get_json()["count"] == 0
    token = dry_run(alice, pid, spec(outputFile="o.txt", count=1, cost="1"),
                    generate_callback_token="true").get_json()["callback_token"]
    assert len(token) == 22


def test_a_dry_run_checks_input_files_in_the_project(alice, test_jobs):
    pid = alice.create_project("Runs")
    variables = dict(outputFile="o.txt", count=1, cost="1", inputFile="in/mols.sdf")
    resp = dry_run(alice, pid, spec(**variables))
    assert resp.status_code == 400 and "in/mols.sdf" in resp.get_json()["error"]
    alice.put(f"/project/{pid}/file", data={"path": "/in", "file": (io.BytesIO(b"x\n$$$$\n"), "mols.sdf")},
              content_type="multipart/form-data")
    resp = dry_run(alice, pid, spec(**variables))
    assert resp.status_code == 201 and resp.get_json()["command"].endswith("'in/mols.sdf'")


@pytest.mark.parametrize("variables, words", [
    ({"count": 1, "cost": "1"}, "outputFile"),  # a required option missing
    ({"outputFile": "o.txt", "count": "two", "cost": "1"}, "count"),  # the wrong type
    ({"outputFile": "o.txt", "count": 5000, "cost": "1"}, "count"),  # above its maximum
    ({"outputFile": "o; rm -rf /", "count": 1, "cost": "1"}, "outputFile"),  # against its pattern
    ({"outputFile": "{{ x }}", "count": 1, "cost": "1"}, "template"),  # template text in a value
    ({"outputFile": "o.txt", "count": 1, "cost": "1", "inputFile": "../../etc/passwd"}, "inputFile"),
    ({"outputFile": "o.txt", "count": 1, "cost": "1", "inputFile": "/etc/passwd"}, "inputFile"),
    ({"outputFile": "o.txt", "count": 1, "cost": "1", "inputFile": ["a.sdf", "b.sdf"]}, "one file"),
])
def test_bad_variables_are_refused(alice, test_jobs, variables, words):
    pid = alice.create_project("Runs")
    resp = dry_run(alice, pid, json.dumps({"collection": "dm-test", "job": "event-and-cost", "version": "1.0.0",
                                           "variables": variables}))
    assert resp.status_code == 400, resp.get_json()
    assert words.lower() in resp.get_json()["error"].lower() or resp.get_json()["error"]


@pytest.mark.parametrize("form, status", [
    ({"application_id": "nope.squonk.it"}, 404),
    ({"application_id": ""}, 400),
    ({"as_name": "x"}, 400),
    ({"as_name": "-bad-"}, 400),
    ({"specification": "not json"}, 400),
    ({"specification": "[]"}, 400),
    ({"specification": json.dumps({"collection": "dm-test", "job": "nope", "version": "1.0.0"})}, 404),
    ({"specification": json.dumps({"job": "fail"})}, 400),
    ({"project_id": "project-00000000-0000-0000-0000-000000000000"}, 404),
    ({"callback_token": "short"}, 400),
])
def test_bad_launch_requests(alice, test_jobs, form, status):
    pid = alice.create_project("Runs")
    data = {"application_id": "datamanagerjobs.squonk.it", "project_id": pid, "as_name": "My run",
            "specification": spec("fail", code=3), **form}
    resp = alice.post("/instance/dry-run", data=data)
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"]


def test_only_project_editors_launch(alice, bob, test_jobs):
    pid = alice.create_project("Runs")
    assert dry_run(bob, pid, spec("fail", code=3)).status_code == 403
    private = alice.create_project("Private", private=True)
    assert dry_run(bob, private, spec("fail", code=3)).status_code == 404


def test_applications(alice):
    apps = alice.get("/application").get_json()
    assert {a["application_id"] for a in apps["applications"]} == {"datamanagerjobs.squonk.it",
                                                                    "jupyternotebooks.squonk.it"}
    jupyter = alice.get("/application/jupyternotebooks.squonk.it").get_json()
    assert jupyter["kind"] == "JupyterNotebook" and jupyter["instances"] == [] and json.loads(jupyter["template"])
    assert alice.get("/application/nope").status_code == 404


def test_an_instance_callback_token_reads_project_files_until_revoked(api, alice, test_jobs):
    """Launch (recorded, not run) with a callback token: it opens file-with-token; revoking closes it."""
    from shared.auth.verify import Principal
    from shared.db.session import transaction
    from shared.services import instances

    pid = alice.create_project("Runs")
    alice.put(f"/project/{pid}/file", data={"path": "/", "file": (io.BytesIO(b"hello\n"), "a.txt")},
              content_type="multipart/form-data")
    form = {"application_id": "datamanagerjobs.squonk.it", "project_id": pid, "as_name": "Tokened",
            "specification": spec("fail", code=3), "generate_callback_token": "true"}
    principal = Principal("alice", frozenset(), False, "")
    with transaction(api.services.engine) as s:
        launch = instances.check_launch(s, principal, api.services.storage, form)
        row, _ = instances.record(s, principal, launch)
        instance_id, token = row.id, row.callback_token
    anonymous = alice.client
    url = f"/data-manager-api/project/{pid}/file-with-token"
    got = anonymous.get(url, query_string={"token": token, "file": "a.txt"})
    assert got.status_code == 200 and got.get_data() == b"hello\n"
    assert alice.get(f"/instance/{instance_id}").get_json()["has_valid_callback_token"] is True
    assert anonymous.delete(f"/data-manager-api/instance/{instance_id}/token/wrongtoken").status_code == 404
    assert anonymous.delete(f"/data-manager-api/instance/{instance_id}/token/{token}").status_code == 204
    assert anonymous.get(url, query_string={"token": token, "file": "a.txt"}).status_code == 403
    assert alice.get(f"/instance/{instance_id}").get_json()["has_valid_callback_token"] is False
    assert anonymous.delete(f"/data-manager-api/instance/{instance_id}/token/{token}").status_code == 404


# --- launching through the api (the local launcher runs the command as a process) -----------------


def test_a_launch_is_authorised_recorded_and_run(api, alice, test_jobs):
    pid = alice.create_project("Runs")
    resp = alice.post("/instance", data={"application_id": "datamanagerjobs.squonk.it", "project_id": pid,
                                         "as_name": "Quick", "specification": spec("fail", code=4)})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"instance_id", "task_id", "command"} and body["command"].endswith(" 4")
    instance = alice.get(f"/instance/{body['instance_id']}").get_json()
    assert isinstance(instance["authorisation_code"], int) and instance["authorisation_code"] > 0
    assert instance["phase"] == "PENDING" and instance["tasks"] == [{"id": body["task_id"], "purpose": "CREATE"}]
    assert instance["job_collection"] == "dm-test" and instance["launch_exchange_rate"] == "0"
    launcher = api.services.launcher
    assert launcher.wait(body["instance_id"], timeout=30)  # the process really ran, and ended
    assert b"Giving up" in launcher.read_log(body["instance_id"])
    listed = alice.get("/instance", query_string={"project_id": pid}).get_json()
    assert [i["id"] for i in listed["instances"]] == [body["instance_id"]]
    removal = alice.delete(f"/instance/{body['instance_id']}")
    assert removal.status_code == 200
    assert alice.get(f"/task/{removal.get_json()['task_id']}").get_json()["exit_code"] == 0
    assert alice.get(f"/instance/{body['instance_id']}").status_code == 404


def test_a_launch_the_account_server_refuses_records_nothing(api, alice, test_jobs):
    from sqlalchemy import delete

    from shared.db.models import LedgerProduct, Project
    from shared.db.session import transaction

    pid = alice.create_project("Runs")
    with transaction(api.services.engine) as s:  # the Project's product is gone from the ledger
        product_id = s.get(Project, pid).product_id
        s.execute(delete(LedgerProduct).where(LedgerProduct.id == product_id))
    resp = alice.post("/instance", data={"application_id": "datamanagerjobs.squonk.it", "project_id": pid,
                                         "as_name": "Refused", "specification": spec("fail", code=4)})
    assert resp.status_code == 404 and product_id in resp.get_json()["error"]
    assert alice.get("/instance").get_json()["count"] == 0
    assert alice.get("/task", query_string={"project_id": pid}).get_json()["count"] == 0


def test_an_instance_name_runs_once_at_a_time_and_others_cannot_touch_it(api, alice, bob, test_jobs):
    pid = alice.create_project("Runs")
    form = {"application_id": "datamanagerjobs.squonk.it", "project_id": pid, "as_name": "Long",
            "specification": spec("sleep", seconds=60)}
    first = alice.post("/instance", data=form).get_json()
    assert alice.post("/instance", data=form).status_code == 409
    instance_id = first["instance_id"]
    assert bob.get(f"/instance/{instance_id}").status_code == 404
    assert bob.delete(f"/instance/{instance_id}").status_code == 404
    assert bob.patch(f"/instance/{instance_id}", query_string={"archive": "true"}).status_code == 404
    assert alice.patch(f"/instance/{instance_id}", query_string={"archive": "true"}).status_code == 204
    assert alice.get(f"/instance/{instance_id}").get_json()["archived"] is True
    assert alice.delete(f"/instance/{instance_id}").status_code == 200
    assert api.services.launcher.wait(instance_id, timeout=30)  # stopped


def test_replacements_are_shown_both_ways(admin, alice, tmp_path):
    (tmp_path / "manifest.yaml").write_text("kind: DataManagerManifest\nkind-version: '2021.1'\n"
                                            "job-definition-files:\n- jobs.yaml\n")
    job = ("    name: {name}\n    version: '1.0.0'\n    image: {{name: x/y, tag: '1', project-directory: /data,"
           " working-directory: /data}}\n    command: echo {name}\n")
    (tmp_path / "jobs.yaml").write_text(
        "kind: DataManagerJobDefinition\nkind-version: '2021.1'\ncollection: dm-old\njobs:\n  old:\n"
        + job.format(name="old") + "  new:\n" + job.format(name="new")
        + "    replaces:\n    - {collection: dm-old, job: old}\n")
    assert load(admin, tmp_path / "manifest.yaml").get_json()["num_jobs_loaded"] == 2
    listed = {j["job"]: j for j in alice.get("/job").get_json()["jobs"]}
    assert listed["old"]["replaced_by"] == [{"collection": "dm-old", "job": "new"}] and "replaces" not in listed["old"]
    assert listed["new"]["replaces"] == [{"collection": "dm-old", "job": "old"}] and "replaced_by" not in listed["new"]
    assert alice.get(f"/job/{listed['old']['id']}").get_json()["replaced_by"] == listed["old"]["replaced_by"]
