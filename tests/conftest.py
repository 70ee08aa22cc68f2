"""Fixtures shared by every test: databases (SQLite and PostgreSQL), the OpenID provider
on real HTTP, the api function in functions-framework, and signed-in callers."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("DM_TEST_POSTGRES_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/test")
USERS = ("alice", "bob", "carol", "admin")  # each has a personal unit in the ledger
ALL_USERS = USERS + ("dave", "erin")
_pg_reason: list[str] = []


def postgres_available() -> bool:
    """Whether a PostgreSQL server answers; the reason it does not is reported loudly."""
    if _pg_reason:
        return _pg_reason[0] == ""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        _pg_reason.append("")
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        _pg_reason.append(f"{type(exc).__name__}: {exc}")
    return _pg_reason[0] == ""


def pytest_report_header(config):
    if postgres_available():
        return f"PostgreSQL: {PG_ADMIN_URL.split('@')[-1]} answers; the PostgreSQL suite runs"
    return f"!!! PostgreSQL at {PG_ADMIN_URL.split('@')[-1]} does not answer ({_pg_reason[0]}): PostgreSQL tests SKIPPED !!!"


def pytest_terminal_summary(terminalreporter):
    if not postgres_available():
        terminalreporter.write_sep("!", "PostgreSQL tests were SKIPPED: no server answered", red=True, bold=True)


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch):
    """Tests never see (or leak) DM_* variables of the shell that runs them."""
    for name in list(os.environ):
        if name.startswith("DM_"):
            monkeypatch.delenv(name)


# --- databases --------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    from shared.db import migrate

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'dm.sqlite3'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url():
    if not postgres_available():
        pytest.skip(f"PostgreSQL does not answer: {_pg_reason[0]}")
    import sqlalchemy as sa

    from shared.db import migrate

    name = f"dm_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    yield url
    from shared.db.session import dispose_engines

    dispose_engines()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    """Each test that uses the database runs on SQLite and on PostgreSQL, from empty tables."""
    url = request.getfixturevalue(f"{request.param}_url")
    _empty_tables(url)
    return url


def _empty_tables(url: str) -> None:
    from sqlalchemy import text

    from shared.db.base import Base
    from shared.db.session import get_engine, transaction
    import shared.db.models  # noqa: F401
    from shared.services import users

    with transaction(get_engine(url)) as s:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "change_counters":  # they only grow, as in a real database
                s.execute(table.delete())
        s.execute(text("UPDATE change_counters SET value = value + 1"))  # emptying is a change too
    users.forget_visits()


# --- S3 through moto in server mode ---------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    from tests.moto_server import start_moto_server

    endpoint, stop = start_moto_server()
    yield endpoint
    stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path) -> None:
    """Dummy credentials, and no user AWS config that could point boto3 elsewhere."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


# --- identity ---------------------------------------------------------------------


class _Server:
    """A WSGI app on a real HTTP server in a thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="session")
def identity(tmp_path_factory):
    """The development OpenID provider under /auth on a real HTTP server."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.wrappers import Response

    from shared.auth.keys import load_or_create_signing_key
    from shared.auth.provider import create_provider_app
    from shared.auth.users import load_users
    from shared.config import Settings

    data_dir = tmp_path_factory.mktemp("identity")
    users_file = data_dir / "users.yaml"  # the defaults plus two more, through a users file
    users_file.write_text("users:\n" + "".join(
        f"  - {{username: {u}, password: {u}, admin: {str(u == 'admin').lower()}}}\n" for u in ALL_USERS))
    holder = {}
    root = DispatcherMiddleware(Response("not here", 404), {"/auth": lambda e, s: holder["app"](e, s)})
    server = _Server(root)
    settings = Settings(public_url=server.url, data_dir=data_dir, users_file=str(users_file))
    key = load_or_create_signing_key(data_dir / "key.pem")
    holder["app"] = create_provider_app(settings, load_users(settings), key)
    server.settings = settings
    server.key = key
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_for(identity):
    """A real access token for a development user, from the provider's password grant."""
    import requests

    cache: dict[str, str] = {}

    def get(username: str) -> str:
        if username not in cache:
            resp = requests.post(
                f"{identity.settings.issuer}/protocol/openid-connect/token",
                data={"client_id": "data-manager-api", "grant_type": "password",
                      "username": username, "password": username},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            cache[username] = resp.json()["access_token"]
        return cache[username]

    return get


# --- the api function ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ff_app():
    """The api target as functions-framework builds it from main.py."""
    import functions_framework

    return functions_framework.create_app(target="api", source=str(ROOT / "main.py"), signature_type="http")


@pytest.fixture
def settings(db_url, identity, tmp_path):
    from shared.config import Settings

    return Settings(
        database_url=db_url,
        project_volume=str(tmp_path / "store" / "projects"),
        dataset_store=str(tmp_path / "store"),
        data_dir=tmp_path,
        public_url=identity.url,
        max_upload_bytes=4 * 1024 * 1024,
    )


def local_or_s3(request, settings, bucket_prefix: str):
    """``settings`` as they are (request.param "local") or with the dataset store on a fresh bucket of
    the moto server ("s3"); project files stay on the project volume, a folder."""
    import dataclasses

    if request.param == "local":
        return settings
    request.getfixturevalue("aws_env")
    return dataclasses.replace(settings, dataset_store=f"s3://{bucket_prefix}-{uuid.uuid4().hex[:12]}/dm",
                               s3_endpoint_url=request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def api(settings, ff_app, monkeypatch):
    """The api function on ``settings``, with the ledger seeded for the development users."""
    from functions.api import app as api_module
    from shared.account_server.ledger import LedgerAccountServer
    from shared.db.session import transaction

    instance = api_module.Api(settings)
    monkeypatch.setattr(api_module, "get_api", lambda: instance)
    ledger = LedgerAccountServer(settings, instance.services.engine)
    with transaction(ledger.engine) as s:
        instance.units = {u: ledger.ensure_personal_unit(s, u) for u in USERS}
    yield instance
    from shared.services.background import wait_idle

    assert wait_idle(), "a background job did not finish"


class Caller:
    """One signed-in user talking to the api function (paths below the API prefix)."""

    def __init__(self, client, username: str | None, token: str | None, units: dict):
        self.client = client
        self.username = username
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.unit = units.get(username, {})

    def request(self, method: str, path: str, **kw):
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.open("/data-manager-api" + path, method=method, headers=headers, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def create_project(self, name: str = "Test project", private: bool = False) -> str:
        data = {"name": name, "tier_product_id": self.unit["project_tier_product_id"]}
        if private:
            data["private"] = "True"
        resp = self.post("/project", data=data)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.get_json()["project_id"]


@pytest.fixture
def caller(api, ff_app, token_for):
    """``caller("alice")`` is alice signed in; ``caller(None)`` sends no token."""
    client = ff_app.test_client()

    def make(username: str | None) -> Caller:
        return Caller(client, username, token_for(username) if username else None, api.units)

    return make


@pytest.fixture
def alice(caller):
    return caller("alice")


@pytest.fixture
def bob(caller):
    return caller("bob")


@pytest.fixture
def carol(caller):
    return caller("carol")


@pytest.fixture
def admin(caller):
    return caller("admin")
