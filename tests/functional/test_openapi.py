"""The OpenAPI document describes exactly the routes the api function serves, and the
documentation routes (document, Swagger UI and its assets) answer without a token."""

from __future__ import annotations

import functools
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = ROOT / "functions" / "api" / "openapi.yaml"
PREFIX = "/data-manager-api"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Downloads from local-folder storage honour Range requests: 206 besides their 200.
PARTIAL_CONTENT_OPS = {"getProjectFile", "getProjectFileWithToken", "downloadDataset", "downloadFile"}
REQUIRED_SCHEMAS = (
    "ProjectDetail ProjectsGetResponse ProjectPostResponse FilesGetResponse FilePathFile FileStat "
    "TaskIdentity TaskSummary TasksGetResponse TaskGetResponse TaskState TaskEvent UsersGetResponse "
    "UserAccountDetail UserDetail VersionGetResponse ModeGetResponse AccountServerGetNamespaceResponse "
    "AccountServerGetRegistrationResponse DmError"
).split()


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    return yaml.safe_load(SPEC_FILE.read_text())


@functools.lru_cache(maxsize=1)
def routes():
    from functions.api.app import Api
    from shared.config import Settings

    return tuple(Api(Settings()).routes)


def template(werkzeug_path: str) -> str:
    """``/data-manager-api/project/<project_id>`` -> ``/project/{project_id}``."""
    assert werkzeug_path.startswith(PREFIX)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", werkzeug_path[len(PREFIX):])


def operations():
    """(method, path template, operation) for every operation in the document."""
    for path, item in spec()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def operation(method: str, path: str) -> dict:
    return spec()["paths"][path][method.lower()]


def resolve(node: dict) -> dict:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target = spec()
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def route_operations():
    for route in routes():
        for method in route.methods:
            yield route, method, template(route.path)


# --- (a) the document ------------------------------------------------------------------


def test_document_parses_and_is_openapi_30():
    document = spec()
    assert re.fullmatch(r"3\.0\.\d+", document["openapi"])
    assert document["servers"] == [{"url": PREFIX}]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
    }
    assert document["security"] == [{"bearerAuth": []}]
    for name in REQUIRED_SCHEMAS:
        assert name in document["components"]["schemas"], name


def test_document_validates():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec())


def test_document_version_is_the_service_version():
    from shared.config import VERSION

    assert spec()["info"]["version"] == VERSION


def test_operations_are_named_tagged_and_summarised():
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)), "duplicate operationId"
    tags = {t["name"] for t in spec()["tags"]}
    for method, path, op in operations():
        assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"]), (method, path)
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, (method, path)
        assert op.get("summary"), (method, path)
        templated = set(re.findall(r"{([^}]+)}", path))
        in_path = {resolve(p)["name"] for p in op.get("parameters", []) if resolve(p)["in"] == "path"}
        assert templated == in_path, (method, path)


# --- (b) the same routes, both ways ------------------------------------------------------


def test_documented_operations_are_the_registered_routes():
    served = {(method, path) for _, method, path in route_operations()}
    documented = {(method, path) for method, path, _ in operations()}
    assert documented - served == set(), "documented but not served"
    assert served - documented == set(), "served but not documented"


# --- (c) success codes -------------------------------------------------------------------


def test_success_code_is_the_route_status():
    for route, method, path in route_operations():
        op = operation(method, path)
        success = {code for code in op["responses"] if str(code).startswith("2")}
        if "206" in success:
            assert op["operationId"] in PARTIAL_CONTENT_OPS, (method, path)
            success.discard("206")
        assert success == {str(route.status)}, (method, path, success, route.status)


def test_error_responses_carry_a_dm_error():
    for method, path, op in operations():
        for code, response in op["responses"].items():
            if int(code) >= 400:
                schema = resolve(response)["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/DmError"}, (method, path, code)


# --- (d) authentication ------------------------------------------------------------------


def test_authenticated_operations_document_401_and_the_others_need_no_token():
    for route, method, path in route_operations():
        op = operation(method, path)
        if route.auth:
            assert "security" not in op or op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"], (method, path)
            assert "503" in op["responses"], (method, path)  # identity provider unreachable
        else:
            assert op.get("security") == [], (method, path)
            assert "401" not in op["responses"], (method, path)


# --- patterns agree with the code's checks -----------------------------------------------


def _agrees(schema_name: str, accepts, samples):
    schema = resolve(spec()["components"]["schemas"][schema_name])
    pattern = re.compile(schema["pattern"])
    for sample in samples:
        documented = (
            bool(pattern.search(sample))
            and len(sample) <= schema.get("maxLength", len(sample))
            and len(sample) >= schema.get("minLength", 0)
        )
        assert documented == accepts(sample), (schema_name, sample)


def _accepts(check):
    from shared.errors import BadRequest

    def accepts(value):
        try:
            check(value)
        except BadRequest:
            return False
        return True

    return accepts


def test_path_and_name_patterns_match_the_checks():
    from shared.services import datasets, files, managed_files, projects, users
    from shared.account_server.base import check_product_id, check_unit_id

    paths = ["", "/", "/a", "/a/", "/a/b", "/a/b/", "//", "/a//b", "a", "a/b", "/./a", "/a/.", "/a/..",
             "/../x", "/..a", "/a/...", "/.hidden", "/a\\b", "/" + "x" * 259, "/" + "x" * 260, "/a b/c"]
    _agrees("ProjectPath", _accepts(files.check_path), paths)
    names = ["a", "a.csv", ".", "..", "...", ".x", "a/b", "a\\b", "a\tb", "x" * 128, "x" * 129,
             "x" * 260, "x" * 261, "a b", "é.txt"]
    _agrees("FileName", _accepts(files.check_name), names)
    _agrees("UploadFileName", _accepts(lambda n: files.check_name(n, limit=files.MAX_UPLOAD_NAME)), names)
    usernames = ["al", "alice", "a.b", "a-b@c.d", "a..b", "-ab", "ab-", "a b", "x" * 80, "x" * 81]
    _agrees("Username", _accepts(users.check_username), usernames)
    uuid = "12345678-9abc-def0-1234-56789abcdef0"
    ids = [f"project-{uuid}", f"project-{uuid.upper()}", f"project-{uuid}x", "project-1", f"x-{uuid}"]
    _agrees("ProjectId", lambda v: bool(projects.PROJECT_ID.fullmatch(v)), ids)
    products = [f"product-{uuid}", f"product-{uuid}0", f"project-{uuid}"]
    _agrees("ProductId", _accepts(check_product_id), products)
    units = ["", f"unit-{uuid}", f"unit-{uuid.upper()}", f"unit-{uuid}0"]
    _agrees("UnitId", _accepts(check_unit_id), units)
    _agrees("UnitIdOrEmpty", _accepts(lambda v: check_unit_id(v or f"unit-{uuid}")), units)  # PUT /dataset
    file_ids = [f"file-{uuid}", f"file-{uuid.upper()}", f"file-{uuid}x", "file-1", f"dataset-{uuid}"]
    _agrees("FileId", lambda v: bool(managed_files.FILE_ID.fullmatch(v)), file_ids)
    dataset_ids = ["", f"dataset-{uuid}", f"dataset-{uuid.upper()}", f"dataset-{uuid}x", "dataset-1"]
    _agrees("DatasetIdOrEmpty", _accepts(datasets.check_dataset_id), dataset_ids)
    _agrees("DatasetId", lambda v: bool(datasets.DATASET_ID.fullmatch(v)), dataset_ids)
    digests = ["a" * 64, "A" * 64, "a" * 63, "a" * 65, "g" * 64]
    _agrees("DatasetDigest", lambda v: bool(datasets.DIGEST.fullmatch(v)), digests)


def test_callback_token_pattern_is_the_routes():
    from functions.api.routes.file_and_path import CALLBACK_TOKEN

    op = operation("GET", "/project/{project_id}/file-with-token")
    (token,) = [p for p in op["parameters"] if resolve(p)["name"] == "token"]
    assert token["schema"]["pattern"] == f"^{CALLBACK_TOKEN.pattern}$"


# --- (e) the Swagger UI page ------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.icons = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        elif tag == "link" and attrs.get("rel") == "stylesheet":
            self.styles.append(attrs["href"])
        elif tag == "link" and attrs.get("href"):
            self.icons.append(attrs["href"])


def test_swagger_ui_page_uses_only_local_assets(caller):
    anonymous = caller(None)
    resp = anonymous.get("/api")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    assert f'url: "{PREFIX}/openapi.yaml"' in html
    assert "validatorUrl: null" in html  # no call to the public validator service
    found = _Assets()
    found.feed(html)
    assert found.scripts and found.styles
    expected = {"script": ("text/javascript", "application/javascript"), "style": ("text/css",),
                "icon": ("image/png",)}
    for kind, urls in (("script", found.scripts), ("style", found.styles), ("icon", found.icons)):
        for url in urls:
            assert url.startswith(f"{PREFIX}/api/"), url
            asset = anonymous.get(url[len(PREFIX):])
            assert asset.status_code == 200, url
            assert asset.mimetype in expected[kind], (url, asset.mimetype)
            assert asset.get_data(), url


def test_swagger_ui_assets_are_cacheable(caller):
    anonymous = caller(None)
    resp = anonymous.get("/api/swagger-ui-bundle.js")
    assert resp.status_code == 200
    assert "max-age" in resp.headers["Cache-Control"]
    again = anonymous.get("/api/swagger-ui-bundle.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304
    # Range is not honoured (and an unsatisfiable one is no error)
    ranged = anonymous.get("/api/swagger-ui.css", headers={"Range": "bytes=999999999-"})
    assert ranged.status_code == 200


# --- (f) the document without a token, and no way out of the assets folder ---------------


def test_document_is_served_without_a_token(caller):
    anonymous = caller(None)
    as_yaml = anonymous.get("/openapi.yaml")
    assert as_yaml.status_code == 200 and as_yaml.mimetype == "application/yaml"
    assert yaml.safe_load(as_yaml.get_data()) == spec()
    as_json = anonymous.get("/openapi.json")
    assert as_json.status_code == 200 and as_json.mimetype == "application/json"
    assert json.loads(as_json.get_data()) == spec()
    again = anonymous.get("/openapi.yaml", headers={"If-None-Match": as_yaml.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", [
    "/api/../../etc/passwd",
    "/api/%2e%2e/x",
    "/api/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/api/..%2f..%2f..%2fetc%2fpasswd",
    "/api//etc/passwd",
    "/api/",
    "/api/no-such-file.js",
    "/api/vendor",
])
def test_no_file_outside_the_swagger_ui_folder(caller, path):
    resp = caller(None).get(path)
    assert resp.status_code == 404
    assert resp.get_json()["error"]


@pytest.mark.parametrize("asset", ["../../etc/passwd", "..", "../__init__.py", "/etc/passwd",
                                   "./../__init__.py", "a/../../__init__.py"])
def test_asset_view_refuses_paths_leaving_its_folder(asset):
    from functions.api.routes import docs
    from shared.errors import NotFound

    with pytest.raises(NotFound):
        docs.get_swagger_ui_asset(None, asset)


# --- the server's answers match the document ---------------------------------------------


def _conforms(resp, method: str, path: str) -> None:
    """The response's status is documented for the operation, and its body fits the schema."""
    from openapi_schema_validator import OAS30Validator, oas30_format_checker

    op = operation(method, path)
    code = str(resp.status_code)
    assert code in op["responses"], (method, path, code, resp.get_data(as_text=True))
    documented = resolve(op["responses"][code])
    content = documented.get("content")
    if not content:
        assert resp.get_data() == b"", (method, path, code)
        return
    if "application/json" not in content:
        assert resp.mimetype != "application/json", (method, path, code)
        return
    assert resp.mimetype == "application/json", (method, path, code)
    schema = {**content["application/json"]["schema"], "components": spec()["components"]}
    errors = [e.message for e in OAS30Validator(schema, format_checker=oas30_format_checker)
              .iter_errors(resp.get_json())]
    assert errors == [], (method, path, code, errors)


def test_answers_fit_the_document(caller):
    alice, bob, anonymous = caller("alice"), caller("bob"), caller(None)
    _conforms(anonymous.get("/version"), "GET", "/version")
    _conforms(anonymous.get("/mode"), "GET", "/mode")
    _conforms(anonymous.get("/project"), "GET", "/project")
    _conforms(alice.get("/account-server/namespace"), "GET", "/account-server/namespace")
    _conforms(alice.get("/account-server/registration"), "GET", "/account-server/registration")

    resp = alice.post("/project", data={"name": "Documented",
                                        "tier_product_id": alice.unit["project_tier_product_id"]})
    _conforms(resp, "POST", "/project")
    pid = resp.get_json()["project_id"]
    _conforms(alice.post("/project", data={"name": "x", "tier_product_id": "nope"}), "POST", "/project")
    _conforms(alice.post("/project", data={"name": "Wrong type",
                                           "tier_product_id": alice.unit["dataset_storage_product_id"]}),
              "POST", "/project")
    _conforms(alice.get("/project"), "GET", "/project")
    _conforms(alice.get(f"/project/{pid}"), "GET", "/project/{project_id}")
    _conforms(alice.get("/project/project-nope"), "GET", "/project/{project_id}")
    _conforms(alice.patch(f"/project/{pid}", data={"name": "Documented too"}), "PATCH", "/project/{project_id}")
    _conforms(bob.patch(f"/project/{pid}", data={"private": "true"}), "PATCH", "/project/{project_id}")

    member = "/project/{project_id}/observer/{user_id}"
    _conforms(alice.put(f"/project/{pid}/observer/bob"), "PUT", member)
    _conforms(alice.put(f"/project/{pid}/observer/b"), "PUT", member)
    _conforms(alice.delete(f"/project/{pid}/observer/bob"), "DELETE", member)
    _conforms(alice.delete(f"/project/{pid}/observer/bob"), "DELETE", member)
    _conforms(alice.delete(f"/project/{pid}/editor/alice"), "DELETE", "/project/{project_id}/editor/{user_id}")

    _conforms(alice.put("/path", data={"project_id": pid, "path": "/in"}), "PUT", "/path")
    upload = {"file": (io.BytesIO(b"a,b\n1,2\n"), "t.csv"), "path": "/in"}
    _conforms(alice.put(f"/project/{pid}/file", data=upload, content_type="multipart/form-data"),
              "PUT", "/project/{project_id}/file")
    _conforms(alice.put(f"/project/{pid}/file", data={"path": "/in"}, content_type="multipart/form-data"),
              "PUT", "/project/{project_id}/file")
    _conforms(alice.get("/file", query_string={"project_id": pid, "path": "/in"}), "GET", "/file")
    _conforms(alice.get("/file", query_string={"project_id": pid, "path": "/none"}), "GET", "/file")
    _conforms(alice.get("/file", query_string={"path": "/"}), "GET", "/file")
    download = alice.get(f"/project/{pid}/file", query_string={"path": "/in", "file": "t.csv"})
    assert download.get_data() == b"a,b\n1,2\n"
    _conforms(download, "GET", "/project/{project_id}/file")
    _conforms(alice.get(f"/project/{pid}/file", query_string={"path": "/in", "file": "t.csv"},
                        headers={"Range": "bytes=0-2"}), "GET", "/project/{project_id}/file")
    _conforms(anonymous.get(f"/project/{pid}/file-with-token",
                            query_string={"token": "x" * 22, "path": "/in", "file": "t.csv"}),
              "GET", "/project/{project_id}/file-with-token")
    _conforms(alice.put("/file/move", query_string={"project_id": pid, "src_path": "/in", "file": "t.csv",
                                                    "dst_file": "u.csv"}), "PUT", "/file/move")
    _conforms(alice.put("/path/move", data={"project_id": pid, "src_path": "/in", "dst_path": "/out"}),
              "PUT", "/path/move")
    _conforms(bob.delete("/file", query_string={"project_id": pid, "path": "/out", "file": "u.csv"}),
              "DELETE", "/file")
    _conforms(alice.delete("/file", query_string={"project_id": pid, "path": "/out", "file": "u.csv"}),
              "DELETE", "/file")
    _conforms(alice.delete("/path", data={"project_id": pid, "path": "/"}), "DELETE", "/path")
    _conforms(alice.delete("/path", data={"project_id": pid, "path": "/out"}), "DELETE", "/path")

    resp = alice.delete(f"/project/{pid}")
    _conforms(resp, "DELETE", "/project/{project_id}")
    task_id = resp.get_json()["task_id"]
    _conforms(alice.get("/task"), "GET", "/task")
    _conforms(alice.get("/task", query_string={"purpose": "NOPE"}), "GET", "/task")
    _conforms(alice.get(f"/task/{task_id}"), "GET", "/task/{task_id}")
    _conforms(alice.get(f"/task/{task_id}", query_string={"event_limit": "-1"}), "GET", "/task/{task_id}")
    _conforms(bob.delete(f"/task/{task_id}"), "DELETE", "/task/{task_id}")

    _conforms(alice.get("/user"), "GET", "/user")
    _conforms(alice.get("/user/account"), "GET", "/user/account")
    _conforms(alice.patch("/user/account", data={"private": "false"}), "PATCH", "/user/account")
    _conforms(alice.patch("/user/account", data={"become_admin": "true"}), "PATCH", "/user/account")
