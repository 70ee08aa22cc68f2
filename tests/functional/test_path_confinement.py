"""Every path a user can name stays in its project: job variables, launched processes and file routes.

Each refusal is checked three ways: the status, the JSON ``error`` (naming what was refused) and
the real file system (nothing outside the project read or written, nothing recorded). The store
is a local folder here, so a symbolic link in a project folder can point out of it.
"""

import io
import json
import os
from pathlib import Path

import pytest

from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401
from tests.functional.test_jobs import TEST_MANIFEST, load

JOB_APP = "datamanagerjobs.squonk.it"
SECRET = "top secret, outside every project\n"
# a job whose path variables are typed every way a definition can type them (shared/jobs/variables.py)
PATH_JOBS = """\
kind: DataManagerJobDefinition
kind-version: '2021.1'
collection: dm-paths
jobs:
  write:
    name: Write
    version: '1.0.0'
    image: {name: x/y, tag: '1', project-directory: /data, working-directory: /data}
    command: >-
      python3 -c 'import sys; [open(p, "w").write("x") for p in sys.argv[1:3]]'
      '{{ outputFile }}' '{{ outputBaseName }}.png' '{{ scratchDir }}' '{{ message }}'
      {% if CODE_DIRECTORY is defined %}'{{ CODE_DIRECTORY }}'{% endif %}
    variables:
      outputs:
        type: object
        properties:
          outputFile: {title: Out, creates: '{{ outputFile }}', type: file}
          plot: {title: Plot, creates: '{{ outputBaseName }}.png', type: file}
      options:
        type: object
        required: [outputBaseName, scratchDir, message]
        properties:
          outputBaseName: {title: Base name, type: string}
          scratchDir: {title: Scratch folder, type: string}
          message: {title: Free text, type: string}
"""


@pytest.fixture
def jobs(admin, tmp_path):
    folder = tmp_path / "jobdefs"
    folder.mkdir()
    (folder / "manifest.yaml").write_text("kind: DataManagerManifest\nkind-version: '2021.1'\n"
                                          "job-definition-files:\n- paths.yaml\n")
    (folder / "paths.yaml").write_text(PATH_JOBS)
    assert load(admin, folder / "manifest.yaml").get_json()["num_jobs_loaded"] == 1
    assert load(admin, TEST_MANIFEST).get_json()["num_jobs_loaded"] == 3


@pytest.fixture
def pid(alice):
    return alice.create_project("Confined")


@pytest.fixture
def project_dir(api, pid) -> Path:
    folder = api.settings.project_volume_path / pid
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside every project, with a secret in it; the tests check it is never touched."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(resp, *words, status=400):
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    for word in words:
        assert word in error, error
    return error


# --- jobs: every path-typed variable, at launch ------------------------------------------------------


def form(pid, collection, job, variables, **extra):
    return {"application_id": JOB_APP, "project_id": pid, "as_name": "Confined run",
            "specification": json.dumps({"collection": collection, "job": job, "version": "1.0.0",
                                         "variables": variables, **extra})}


def event_and_cost(pid, **variables):
    return form(pid, "dm-test", "event-and-cost", {"outputFile": "o.txt", "count": 1, "cost": "1", **variables})


def write_job(pid, extra=None, **variables):
    values = {"outputFile": "out.txt", "outputBaseName": "plot", "scratchDir": "tmp", "message": "hi", **variables}
    return form(pid, "dm-paths", "write", values, **(extra or {}))


def assert_nothing_launched(alice, project_dir, outside, before):
    assert alice.get("/instance").get_json()["count"] == 0
    assert alice.get("/task").get_json()["count"] == 0
    assert not [p for p in project_dir.iterdir() if p.name.startswith(".instance-")]
    assert snapshot(outside) == before


def escapes(outside: Path, project_dir: Path) -> list[str]:
    relative = os.path.relpath(outside, project_dir)  # ../../../outside
    return [f"{outside}/x.txt", f"{relative}/x.txt", f"a/../{relative}/x.txt", f"/data/../{relative}/x.txt",
            "a//x.txt", "x.txt\n", "/etc/passwd"]


@pytest.mark.parametrize("endpoint", ["/instance", "/instance/dry-run"])
def test_output_options_that_leave_the_project_are_refused(api, alice, jobs, pid, project_dir, outside, endpoint):
    """The attack that was found: an outputFile of /tmp/x or ../../tmp/x wrote there."""
    before = snapshot(outside)
    for bad in escapes(outside, project_dir):
        refused(alice.post(endpoint, data=event_and_cost(pid, outputFile=bad)), "outputFile")
        assert_nothing_launched(alice, project_dir, outside, before)
        assert not (outside / "x.txt").exists()


@pytest.mark.parametrize("name, value", [
    ("outputFile", "/tmp/dm-confinement/x.txt"),  # an output declared only under outputs
    ("outputBaseName", "../../plot"),  # an option an output's `creates` uses
    ("scratchDir", "/var/tmp"),  # an option whose name says it is a folder
    ("outputBaseName", "a\\..\\..\\plot"),  # backslashes
    ("scratchDir", "tmp\x00x"),  # NUL
    ("scratchDir", "tmp\nrm"),  # newline
])
def test_every_path_typed_variable_is_confined(api, alice, jobs, pid, project_dir, outside, name, value):
    before = snapshot(outside)
    refused(alice.post("/instance", data=write_job(pid, **{name: value})), name)
    assert_nothing_launched(alice, project_dir, outside, before)


def test_inputs_and_sub_paths_are_confined(api, alice, jobs, pid, project_dir, outside):
    before = snapshot(outside)
    secret = str(outside / "secret.txt")
    for bad in (secret, os.path.relpath(secret, project_dir), "/data/../etc/passwd", "in\\..\\x.sdf"):
        refused(alice.post("/instance", data=event_and_cost(pid, inputFile=bad)), "inputFile")
    for bad in ("../x", "/tmp", "a/../../x", "a\x00b"):
        refused(alice.post("/instance", data=write_job(pid, extra={"sub_path": bad})), "sub_path")
    assert_nothing_launched(alice, project_dir, outside, before)


def test_undeclared_variables_the_command_uses_are_refused(api, alice, jobs, pid, project_dir, outside):
    before = snapshot(outside)
    refused(alice.post("/instance", data=write_job(pid, CODE_DIRECTORY=str(outside))), "CODE_DIRECTORY")
    refused(alice.post("/instance", data=write_job(pid, DM_INSTANCE_DIRECTORY="..")), "DM_INSTANCE_DIRECTORY")
    assert_nothing_launched(alice, project_dir, outside, before)
    # one the command does not use is dropped, not passed on
    dry = alice.post("/instance/dry-run", data=write_job(pid, unused="/etc/passwd"))
    assert dry.status_code == 201 and "/etc/passwd" not in dry.get_json()["command"]


def test_paths_through_a_symbolic_link_out_of_the_project_are_refused(api, alice, jobs, pid, project_dir, outside):
    (project_dir / "link").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    refused(alice.post("/instance", data=event_and_cost(pid, outputFile="link/x.txt")), "outputFile",
            "symbolic link")
    refused(alice.post("/instance", data=event_and_cost(pid, inputFile="link/secret.txt")), "inputFile")
    refused(alice.post("/instance", data=write_job(pid, scratchDir="link")), "scratchDir")
    refused(alice.post("/instance", data=write_job(pid, extra={"sub_path": "link"})), "sub_path")
    assert_nothing_launched(alice, project_dir, outside, before)


def test_the_project_mount_form_and_plain_paths_are_kept_in_the_project(api, alice, jobs, pid, project_dir, outside):
    """The positive side: the same job writes its outputs, in the project folder and nowhere else."""
    dry = alice.post("/instance/dry-run", data=write_job(pid, outputFile="/data/res/out.txt", scratchDir="./tmp/"))
    assert dry.status_code == 201, dry.get_json()
    assert dry.get_json()["command"].endswith("'res/out.txt' 'plot.png' 'tmp' 'hi'")
    # a name that only looks encoded is a plain (odd) name in the project
    odd = alice.post("/instance/dry-run", data=write_job(pid, scratchDir="%2e%2e"))
    assert odd.status_code == 201 and odd.get_json()["command"].endswith("'plot.png' '%2e%2e' 'hi'")
    (project_dir / "res").mkdir()
    resp = alice.post("/instance", data=write_job(pid, outputFile="/data/res/out.txt"))
    assert resp.status_code == 201, resp.get_json()
    instance_id = resp.get_json()["instance_id"]
    assert api.services.launcher.wait(instance_id, timeout=30)
    assert (project_dir / "res" / "out.txt").read_text() == "x" and (project_dir / "plot.png").is_file()
    assert alice.get(f"/instance/{instance_id}").get_json()["outputs"] == {"outputFile": "res/out.txt",
                                                                           "plot": "plot.png"}
    assert snapshot(outside) == {"secret.txt": SECRET.encode()}


@pytest.mark.skipif(not (Path(__file__).resolve().parents[3] / "shared" / "data" / "jobs").is_dir(),
                    reason="the reference job definitions are not beside the repository")
def test_a_real_definition_output_base_name_is_confined(admin, alice, pid):
    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "jobs" / "virtual-screening"
    assert load(admin, real / "manifest-dmpk.yaml").get_json()["num_jobs_loaded"] == 1
    values = {"halfLife": 1, "absorption": 1, "dose": 1, "auc": 1, "time": 1}
    good = form(pid, "im-dmpk", "pk-tmax-cmax-sim", {**values, "outputBaseName": "pk/result"})
    assert alice.post("/instance/dry-run", data=good).status_code == 201
    for bad in ("/tmp/pk", "../../pk"):
        spec = form(pid, "im-dmpk", "pk-tmax-cmax-sim", {**values, "outputBaseName": bad})
        refused(alice.post("/instance/dry-run", data=spec), "outputBaseName")


# --- file routes: every path-typed parameter ---------------------------------------------------------


def upload(who, pid, name, data=b"hello", path="/"):
    return who.put(f"/project/{pid}/file", data={"path": path, "file": (io.BytesIO(data), name)},
                   content_type="multipart/form-data")


BAD_PATHS = ["/../x", "/a/../../x", "/a\\..\\x", "/a\x00b", "/a\nb", "/a\rb"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_every_file_route_refuses_escaping_paths(api, alice, pid, project_dir, outside, bad):
    assert upload(alice, pid, "f.txt").status_code == 201
    before, project_before = snapshot(outside), snapshot(project_dir)
    q = {"project_id": pid}
    checks = [
        alice.get("/file", query_string={**q, "path": bad}),
        alice.delete("/file", query_string={**q, "path": bad, "file": "f.txt"}),
        alice.put("/file/move", query_string={**q, "src_path": bad, "file": "f.txt"}),
        alice.put("/file/move", query_string={**q, "src_path": "/", "file": "f.txt", "dst_path": bad}),
        alice.put("/path", query_string={**q, "path": bad}),
        alice.delete("/path", query_string={**q, "path": bad}),
        alice.put("/path/move", query_string={**q, "src_path": bad, "dst_path": "/b"}),
        alice.put("/path/move", query_string={**q, "src_path": "/a", "dst_path": bad}),
        upload(alice, pid, "g.txt", path=bad),
        alice.get(f"/project/{pid}/file", query_string={"path": bad, "file": "f.txt"}),
        alice.put("/dataset", data={**q, "path": bad, "file_name": "f.txt", "dataset_type": "text/plain"}),
        alice.post("/file", data={**q, "path": bad, "dataset_id": "dataset-00000000-0000-0000-0000-000000000000",
                                  "dataset_version": "1", "as_type": "text/plain"}),
    ]
    for resp in checks:
        refused(resp, "path")
    assert snapshot(outside) == before and snapshot(project_dir) == project_before


@pytest.mark.parametrize("bad", ["..", "a/b", "..\\..\\x", "a\x00b", "a\nb"])
def test_file_names_cannot_name_another_folder(api, alice, pid, project_dir, outside, bad):
    assert upload(alice, pid, "f.txt").status_code == 201
    before, project_before = snapshot(outside), snapshot(project_dir)
    q = {"project_id": pid, "path": "/"}
    for resp in (alice.get(f"/project/{pid}/file", query_string={"path": "/", "file": bad}),
                 alice.delete("/file", query_string={**q, "file": bad}),
                 alice.put("/file/move", query_string={"project_id": pid, "file": "f.txt", "dst_file": bad}),
                 alice.put(f"/project/{pid}/file", data={"path": "/", "as_filename": bad,
                                                        "file": (io.BytesIO(b"x"), "g.txt")},
                           content_type="multipart/form-data")):
        assert resp.status_code == 400 and resp.get_json()["error"]
    assert snapshot(outside) == before and snapshot(project_dir) == project_before


def test_percent_encoding_is_decoded_once(api, alice, pid, project_dir, outside):
    """%2e%2e in a URL is '..' (refused); encoded twice it is a plain name inside the project."""
    url = f"/data-manager-api/project/{pid}/file?path=/%2e%2e/%2e%2e&file=secret.txt"
    refused(alice.client.get(url, headers=alice.headers), "path")
    made = alice.client.put(f"/data-manager-api/path?project_id={pid}&path=/%252e%252e", headers=alice.headers)
    assert made.status_code == 201
    assert (project_dir / "%2e%2e").is_dir() and snapshot(outside) == {"secret.txt": SECRET.encode()}


def test_a_symbolic_link_out_of_the_project_is_neither_read_nor_written(api, alice, pid, project_dir, outside):
    assert upload(alice, pid, "mine.txt").status_code == 201
    (project_dir / "link").symlink_to(outside, target_is_directory=True)
    (project_dir / "secret.txt").symlink_to(outside / "secret.txt")
    before = snapshot(outside)
    q = {"project_id": pid}
    reads = [
        alice.get(f"/project/{pid}/file", query_string={"path": "/link", "file": "secret.txt"}),
        alice.get(f"/project/{pid}/file", query_string={"path": "/", "file": "secret.txt"}),
        alice.get("/file", query_string={**q, "path": "/link"}),
        alice.put("/dataset", data={**q, "path": "/link", "file_name": "secret.txt", "dataset_type": "text/plain"}),
    ]
    writes = [
        upload(alice, pid, "planted.txt", path="/link"),
        upload(alice, pid, "secret.txt", b"overwritten"),
        alice.put("/path", query_string={**q, "path": "/link/made"}),
        alice.delete("/file", query_string={**q, "path": "/link", "file": "secret.txt"}),
        alice.delete("/path", query_string={**q, "path": "/link"}),
        alice.put("/file/move", query_string={**q, "src_path": "/link", "file": "secret.txt", "dst_path": "/"}),
        alice.put("/file/move", query_string={**q, "file": "mine.txt", "dst_path": "/link"}),
        alice.put("/path/move", query_string={**q, "src_path": "/link", "dst_path": "/moved"}),
    ]
    for resp in reads + writes:
        refused(resp, "outside its project")
        assert SECRET.encode() not in resp.get_data()
    assert snapshot(outside) == before
    listed = alice.get("/file", query_string={**q, "path": "/", "include_hidden": "true"}).get_json()
    assert listed["paths"] == [] and [f["file_name"] for f in listed["files"]] == ["mine.txt"]
    assert alice.get("/dataset").get_json()["count"] == 0
    assert (project_dir / "mine.txt").read_bytes() == b"hello"


def test_a_symbolic_link_within_the_project_is_followed(api, alice, pid, project_dir):
    assert upload(alice, pid, "a.txt", b"inside", path="/real").status_code == 201
    (project_dir / "alias").symlink_to(project_dir / "real", target_is_directory=True)
    got = alice.get(f"/project/{pid}/file", query_string={"path": "/alias", "file": "a.txt"})
    assert got.status_code == 200 and got.get_data() == b"inside"


def test_a_callback_token_reads_no_more_than_its_project(api, alice, jobs, pid, project_dir, outside):
    from shared.auth.verify import Principal
    from shared.db.session import transaction
    from shared.services import instances

    (project_dir / "link").symlink_to(outside, target_is_directory=True)
    principal = Principal("alice", frozenset(), False, "")
    with transaction(api.services.engine) as s:  # recorded, not run: the token is what matters
        launch = instances.check_launch(s, principal, api.services.storage,
                                        {**write_job(pid), "generate_callback_token": "true"})
        token = instances.record(s, principal, launch)[0].callback_token
    url = f"/data-manager-api/project/{pid}/file-with-token"
    for path, name in (("/link", "secret.txt"), ("/../..", "secret.txt"), ("/", "../outside/secret.txt")):
        got = alice.client.get(url, query_string={"token": token, "path": path, "file": name})
        assert got.status_code == 400 and got.get_json()["error"] and SECRET.encode() not in got.get_data()


def test_managed_files_are_not_placed_through_a_link(api, alice, pid, project_dir, outside, upload_fn):  # noqa: F811
    dataset = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile").get_json()["dataset_id"]
    finish(api, upload_fn)
    (project_dir / "link").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    resp = alice.post("/file", data={"dataset_id": dataset, "dataset_version": "1", "project_id": pid,
                                     "as_type": "chemical/x-mdl-sdfile", "path": "/link"})
    refused(resp, "outside its project")
    finish(api, upload_fn)
    assert snapshot(outside) == before
    assert alice.get(f"/project/{pid}").get_json()["files"] == []


def test_swagger_ui_assets_stay_in_their_folder(alice):
    for asset in ("../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc%2fpasswd"):
        got = alice.client.get(f"/data-manager-api/api/{asset}")
        assert got.status_code == 404 and b"root:" not in got.get_data()
