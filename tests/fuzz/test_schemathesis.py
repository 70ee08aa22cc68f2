"""Every operation of the served OpenAPI document, fuzzed by schemathesis with real ids of real
objects, signed in, on SQLite and on PostgreSQL: no 5xx, every error a JSON ``DmError``, every
answer as the document says (status code, content type, body schema).

Each operation gets up to ``EXAMPLES`` generated requests (valid ones, and ones breaking the
document), reproducible (derandomized). Its failures are collected, not stopped at: the test
reports each distinct failure once, with a request that reproduces it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from tests.conftest import ROOT
from tests.fuzz.conftest import SPARE_USERS

EXAMPLES = 100
SPEC_FILE = ROOT / "functions" / "api" / "openapi.yaml"
PREFIX = "/data-manager-api"
METHODS = ("get", "put", "post", "delete", "patch")
ADMIN_ONLY = re.compile(r"^(/admin/|/job/\{job_id\}/exchange-rate$)")
ADMIN_USER_OPS = {("PATCH", "/admin/user/{user_id}"), ("DELETE", "/admin/user/{user_id}"),
                  ("PUT", "/admin/user/{user_id}")}
# How often (in tenths) a real value replaces a generated one (path, query and body alike).
REAL = 8


def _spoils(method: str, path: str) -> bool:
    """Whether the operation may remove, move, hide or suspend seeded objects: the next needs a new seed."""
    return method in ("DELETE", "PATCH") or path in ("/file/move", "/path/move", "/admin/job-manifest")


def _documented() -> list[tuple[str, str]]:
    document = yaml.safe_load(SPEC_FILE.read_text())
    return [(method.upper(), path) for path, item in document["paths"].items() for method in METHODS
            if method in item]


OPERATIONS = _documented()


@pytest.fixture(scope="module")
def schema(world):
    """The document as the api serves it (the same as the file, checked), loaded by schemathesis."""
    import schemathesis
    from werkzeug.test import Client

    served = Client(world.app).get(f"{PREFIX}/openapi.json")
    assert served.status_code == 200 and served.get_json() == yaml.safe_load(SPEC_FILE.read_text())
    # The callers' real tokens are sent with every request: no generated or removed Authorization header.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    return schemathesis.openapi.from_wsgi(f"{PREFIX}/openapi.json", world.app, config=config)


def test_every_documented_operation_is_fuzzed():
    from tests.functional.test_openapi import route_operations

    served = {(method, path) for _, method, path in route_operations()}
    assert set(OPERATIONS) == served and len(OPERATIONS) == len(set(OPERATIONS))


def _strategy(operation):
    """Valid requests, and (where the operation takes any input) requests that break the document."""
    from schemathesis import GenerationMode

    valid = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    definition = operation.definition.raw
    if not (definition.get("parameters") or definition.get("requestBody")):
        return valid
    return st.one_of(valid, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))


def _callers(method: str, path: str) -> st.SearchStrategy[str | None]:
    if ADMIN_ONLY.match(path):
        return st.sampled_from(["admin"] * 4 + ["alice"])
    return st.sampled_from(["alice"] * 6 + ["bob", "carol", "admin", None])


def _real(data, values: list, tenths: int, generated):
    if values and data.draw(st.integers(0, 9)) < tenths:
        return data.draw(st.sampled_from(values))
    return generated


def _substitute(data, case, values: dict, method: str, path: str) -> None:
    """Put real ids and names in place of generated ones, most of the time."""
    pool = dict(values)
    if (method, path) in ADMIN_USER_OPS:
        pool["user_id"] = list(SPARE_USERS)
    for fields in (case.path_parameters, case.query, case.body):
        if not isinstance(fields, dict):
            continue
        for name, generated in list(fields.items()):
            fields[name] = _real(data, pool.get(name, []), REAL, generated)
        name = "file" if "file" in fields else "file_name" if "file_name" in fields else None
        if name:  # a file that exists, in its own directory
            where = _real(data, pool.get("files", []), REAL, None)
            if where:
                fields[name] = where[1]
                fields["src_path" if path == "/file/move" else "path"] = where[0]


def _dm_error(response) -> str | None:
    """Why an error response is not a JSON ``DmError``, or None."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith("application/json"):
        return f"error with content type {content_type!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "error body is not JSON"
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
        return f"error body is not a DmError: {response.content[:200]!r}"
    return None


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _reproducer(case, user, response=None) -> str:
    """The request (method, path, query, body, caller) and what came back."""
    from schemathesis.core import NOT_SET

    body = "" if case.body is NOT_SET else f" body={_short(case.body)} ({case.media_type})"
    request = f"{case.method} {PREFIX}{case.formatted_path} query={_short(case.query)}{body} as {user}"
    if response is None:
        return request
    content_type = response.headers.get("content-type", ["-"])[0]
    return (f"{request} -> {response.status_code} {content_type} "
            f"{_short(response.content.decode('utf-8', 'replace'), 400)}")


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_as_documented(seeded, schema, method, path):
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operation = schema[path][method]
    strategy, callers = _strategy(operation), _callers(method, path)
    failures: dict[str, str] = {}
    counts: Counter = Counter()
    statuses: Counter = Counter()

    def record(kind: str, case, user, response=None) -> None:
        counts[kind] += 1
        failures.setdefault(kind, _reproducer(case, user, response))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        case = data.draw(strategy)
        user = data.draw(callers)
        _substitute(data, case, seeded.values, method, path)
        headers = seeded.headers(user) if user else {}
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # noqa: BLE001 - an app that raises instead of answering is a failure too
            record(f"raised {type(exc).__name__}: {str(exc)[:120]}", case, user)
            return
        statuses[response.status_code] += 1
        problem = _dm_error(response)
        if problem:
            record(f"{response.status_code}: {problem}", case, user, response)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                record(f"{response.status_code}: {failure.title}", case, user, response)
        except Failure as failure:
            record(f"{response.status_code}: {failure.title}", case, user, response)

    started, cpu = time.monotonic(), time.process_time()
    try:
        fuzz()
    finally:
        seeded.spoilt = seeded.spoilt or _spoils(method, path)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    print(f"\n{seeded.db} {method} {path}: {sum(statuses.values())} requests in {elapsed:.1f}s ({cpu:.1f}s CPU), "
          f"statuses {dict(sorted(statuses.items()))}")
    report = "\n".join(f"- [{counts[kind]}x] {kind}\n    {failures[kind]}" for kind in sorted(failures))
    assert not failures, f"{seeded.db} {method} {path}: {len(failures)} kind(s) of failure\n{report}"
    assert any(200 <= code < 300 for code in statuses), (
        f"{seeded.db} {method} {path}: no request succeeded, so the real ids never reached the operation: {statuses}")
