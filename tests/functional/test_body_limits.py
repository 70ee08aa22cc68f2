"""Form bodies are bounded where they are parsed into memory: each text field, the number of parts and
all text fields together. Past a limit the answer is 413 naming the field, nothing is created, and the
rest of the body is read and dropped a buffer at a time (never held whole)."""

from __future__ import annotations

import io
import os
import tracemalloc
from urllib.parse import quote

import pytest

from functions.api.multipart import FORM, UPLOAD_FORM

MiB = 1 << 20
BOUNDARY = "limitsboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED = "application/x-www-form-urlencoded"
SDF = (
    "ethanol\n  RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
    "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
    "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n$$$$\n"
).encode()


@pytest.fixture
def settings(settings):
    """Uploads far larger than a limit of the form, yet within the file size limit."""
    import dataclasses

    return dataclasses.replace(settings, max_upload_bytes=256 * MiB)


class LazyBody(io.RawIOBase):
    """A request body made as it is read, from (prefix, size, fill) pieces: large bodies cost no memory."""

    def __init__(self, pieces):
        self.pieces = list(pieces)
        self.length = sum(len(prefix) + size for prefix, size, _ in self.pieces)
        self._gen = self._chunks()
        self._pending = b""
        self.consumed = 0

    def _chunks(self):
        for prefix, size, fill in self.pieces:
            yield prefix
            block = fill * (MiB // len(fill))
            while size > 0:
                yield block[:size]
                size -= len(block)

    def readable(self):
        return True

    # werkzeug's test client measures a stream by seeking to its end and back before it sends it
    def seekable(self):
        return True

    def tell(self):
        return self._position if hasattr(self, "_position") else self.consumed

    def seek(self, offset, whence=0):
        self._position = self.length if whence == 2 else offset
        if whence == 0 and offset == self.consumed:
            del self._position
        return self.tell()

    def readinto(self, target):
        while not self._pending:
            try:
                self._pending = next(self._gen)
            except StopIteration:
                return 0
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.consumed += n
        return n


def part(name: str, filename: str | None = None) -> bytes:
    extra = f'; filename="{filename}"' if filename is not None else ""
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode()


def multipart(*pieces) -> LazyBody:
    """pieces: (name, value) text fields, (name, filename, content) files, and (name, filename or None,
    size, fill) parts made as they are read."""
    out = []
    for piece in pieces:
        head = (b"\r\n" if out else b"") + part(piece[0], piece[1] if len(piece) > 2 else None)
        if len(piece) == 4:
            out.append((head, piece[2], piece[3]))
        else:
            out.append((head + piece[-1], 0, b"x"))
    out.append((f"\r\n--{BOUNDARY}--\r\n".encode(), 0, b"x"))
    return LazyBody(out)


def send(who, method, path, body: LazyBody, content_type: str):
    return who.request(method, path, input_stream=body, content_length=body.length, content_type=content_type)


def peak_of(call):
    """The response and the peak of Python memory allocated while it was made."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        resp = call()
        return resp, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def created(api) -> dict:
    """What an upload could have left: rows, events, staged and half-written files."""
    from sqlalchemy import func, select

    from shared.db.models import Dataset, OutboxEvent, Task
    from shared.db.session import transaction
    from shared.services.housekeeping import STAGING
    from shared.storage.local import STAGING as TEMPORARY

    storage = api.services.storage
    with transaction(api.services.engine) as s:
        rows = {model.__name__: s.scalar(select(func.count()).select_from(model))
                for model in (Dataset, Task, OutboxEvent)}
    staged = [f.name for f in storage.list_dir(STAGING).files] if storage.is_dir(STAGING) else []
    partial = os.listdir(os.path.join(storage.projects.root, TEMPORARY))  # uploads are staged on the volume
    return {**rows, "staged": staged, "partial": partial}


NOTHING = {"Dataset": 0, "Task": 0, "OutboxEvent": 0, "staged": [], "partial": []}


def upload_fields(who) -> list:
    return [("dataset_type", b"chemical/x-mdl-sdfile"), ("unit_id", who.unit["unit_id"].encode())]


# --- the upload forms (the streaming parser) -------------------------------------------------


def test_an_upload_form_within_the_limits_is_accepted(alice, api):
    body = multipart(*upload_fields(alice), ("as_filename", b"a.sdf"),
                     *[(f"extra{i}", b"y" * 1000) for i in range(UPLOAD_FORM.parts - 4)],
                     ("dataset_file", "a.sdf", SDF))
    resp = send(alice, "POST", "/dataset", body, MULTIPART)
    assert resp.status_code == 201, resp.get_json()


def test_many_text_fields_are_refused_in_bounded_memory(alice, api):
    """About 80 MB of 60 KiB fields: refused at the limit of all fields together, the rest dropped."""
    small = multipart(*upload_fields(alice), *[(f"f{i}", b"z") for i in range(40)])
    assert send(alice, "POST", "/dataset", small, MULTIPART).status_code == 413  # warms the route up
    body = multipart(*upload_fields(alice), *[(f"f{i}", None, 60 * 1024, b"z") for i in range(1400)],
                     ("dataset_file", "a.sdf", SDF))
    assert body.length > 80 * 10**6
    resp, peak = peak_of(lambda: send(alice, "POST", "/dataset", body, MULTIPART))
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert f"larger than {UPLOAD_FORM.fields_bytes} bytes" in error and "'f4'" in error
    assert body.consumed == body.length  # read to its end, through the parser's buffer
    assert peak < 24 * MiB, f"{peak / MiB:.1f} MiB held for an {body.length / MiB:.0f} MiB body"
    assert created(api) == NOTHING


def test_too_many_parts_are_refused_naming_the_first_one_too_many(alice, api):
    body = multipart(*upload_fields(alice), *[(f"f{i}", b"1") for i in range(UPLOAD_FORM.parts)],
                     ("dataset_file", "a.sdf", SDF))
    resp = send(alice, "POST", "/dataset", body, MULTIPART)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == f"The form has more than {UPLOAD_FORM.parts} parts (refused at 'f30')"
    assert created(api) == NOTHING


@pytest.mark.parametrize("file_first", [False, True])
def test_a_long_field_is_refused_and_no_staged_file_is_left(alice, api, file_first):
    """Before the file it is refused before anything is stored; after it, the staged file is removed."""
    long_field = ("format_extra_variables", None, UPLOAD_FORM.field_bytes + 1, b"{")
    file_part = ("dataset_file", "a.sdf", 3 * MiB, b"C")
    pieces = [*upload_fields(alice), file_part, long_field] if file_first else \
        [*upload_fields(alice), long_field, file_part]
    resp = send(alice, "POST", "/dataset", multipart(*pieces), MULTIPART)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == \
        f"The form field 'format_extra_variables' is too long: at most {UPLOAD_FORM.field_bytes} bytes"
    assert created(api) == NOTHING


def test_a_refused_upload_is_dropped_as_it_arrives_not_held(alice, api):
    """A bad type is refused at the file part; the 60 MiB behind it is read through, not kept."""
    def body():
        return multipart(("dataset_type", b"chemical/x-nope"), ("unit_id", alice.unit["unit_id"].encode()),
                         ("dataset_file", "a.sdf", 60 * MiB, b"C"))

    assert send(alice, "POST", "/dataset", body(), MULTIPART).status_code == 415  # warms the route up
    big = body()
    resp, peak = peak_of(lambda: send(alice, "POST", "/dataset", big, MULTIPART))
    assert resp.status_code == 415 and big.consumed == big.length
    assert peak < 24 * MiB, f"{peak / MiB:.1f} MiB held for a {big.length / MiB:.0f} MiB body"
    assert created(api) == NOTHING


def test_a_body_refused_before_it_is_read_is_dropped_not_held(alice, api):
    """Refused before the form is read at all (no such project): the body is still read through, not kept."""
    def body(size):
        return multipart(("file", "f.bin", size, b"f"))

    missing = "/project/project-00000000-0000-0000-0000-000000000000/file"
    assert send(alice, "PUT", missing, body(MiB), MULTIPART).status_code == 404  # warms the route up
    big = body(60 * MiB)
    resp, peak = peak_of(lambda: send(alice, "PUT", missing, big, MULTIPART))
    assert resp.status_code == 404 and big.consumed == big.length
    assert peak < 24 * MiB, f"{peak / MiB:.1f} MiB held for a {big.length / MiB:.0f} MiB body"


def test_a_project_file_upload_with_a_long_field_leaves_nothing(alice, api):
    pid = alice.create_project("Limits")
    body = multipart(("file", "f.txt", MiB, b"t"), ("as_filename", None, UPLOAD_FORM.field_bytes + 1, b"n"))
    resp = send(alice, "PUT", f"/project/{pid}/file", body, MULTIPART)
    assert resp.status_code == 413 and "'as_filename' is too long" in resp.get_json()["error"]
    assert alice.get("/file", query_string={"project_id": pid, "path": "/"}).get_json()["count"] == 0
    assert created(api)["staged"] == [] and created(api)["partial"] == []


# --- every other form (request.form) --------------------------------------------------------


def project_form(who, **extra) -> dict:
    return {"name": "Bounded", "tier_product_id": who.unit["project_tier_product_id"], **extra}


def urlencoded(fields: dict) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items()).encode()


def projects(who) -> int:
    return len(who.get("/project").get_json()["projects"])


@pytest.mark.parametrize("extra, message", [
    ({"name": "n" * (FORM.field_bytes + 1)}, f"The form field 'name' is too long: at most {FORM.field_bytes} bytes"),
    ({f"f{i}": "1" for i in range(FORM.parts)}, f"The form has more than {FORM.parts} fields (refused at 'f62')"),
    ({f"f{i}": "1" * 900_000 for i in range(5)},
     f"The form's fields together are larger than {FORM.fields_bytes} bytes (refused at 'f4')"),
])
def test_a_urlencoded_form_over_a_limit_is_413_naming_the_field(alice, api, extra, message):
    before = projects(alice)
    resp = alice.post("/project", data=urlencoded(project_form(alice, **extra)), content_type=URLENCODED)
    assert resp.status_code == 413 and resp.get_json()["error"] == message
    assert projects(alice) == before


def test_a_percent_encoded_field_counts_by_its_decoded_size(alice, api):
    """"é" is six bytes on the wire and two decoded: a field near the limit decoded still fits."""
    name = "é" * (FORM.field_bytes // 2 - 64)
    resp = alice.post("/project", data=urlencoded(project_form(alice, name=name)), content_type=URLENCODED)
    # parsed whole (about 3 MiB sent, 1 MiB decoded); the name is then refused for its own rules
    assert resp.status_code == 400 and "2 to 80 characters" in resp.get_json()["error"]


def test_a_huge_urlencoded_body_is_refused_in_bounded_memory(alice, api):
    def body(size):
        return LazyBody([(urlencoded(project_form(alice)) + b"&big=", size, b"%41")])

    assert send(alice, "POST", "/project", body(8 * MiB), URLENCODED).status_code == 413  # warm-up
    big = body(81 * MiB)
    resp, peak = peak_of(lambda: send(alice, "POST", "/project", big, URLENCODED))
    assert resp.status_code == 413 and "'big' is too long" in resp.get_json()["error"]
    assert big.consumed == big.length
    assert peak < 24 * MiB, f"{peak / MiB:.1f} MiB held for an {big.length / MiB:.0f} MiB body"


def test_a_multipart_form_on_another_route_is_read_with_the_same_kind_of_limits(alice, api):
    fields = project_form(alice)
    ok = multipart(*[(k, v.encode()) for k, v in fields.items()], ("ignored", "x.bin", 2 * MiB, b"b"))
    resp = send(alice, "POST", "/project", ok, MULTIPART)
    assert resp.status_code == 201, resp.get_json()
    before = projects(alice)
    long = multipart(("name", None, FORM.field_bytes + 1, b"n"),
                     ("tier_product_id", fields["tier_product_id"].encode()))
    resp = send(alice, "POST", "/project", long, MULTIPART)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == f"The form field 'name' is too long: at most {FORM.field_bytes} bytes"
    assert projects(alice) == before


def test_an_empty_or_malformed_form_reads_as_empty_as_before(alice, api):
    """As werkzeug's parser did: a GET that names a form type without a body, or a broken body, has no fields."""
    assert alice.get("/project", content_type=MULTIPART).status_code == 200
    assert alice.get("/project", content_type="multipart/form-data").status_code == 200  # no boundary
    broken = alice.post("/project", data=b"--limitsboundary\r\nnonsense", content_type=MULTIPART)
    assert broken.status_code == 400 and broken.get_json()["error"] == "The 'name' parameter is required"


@pytest.mark.parametrize("body", [
    b"a=1&b=%E2%9C%93&c&&d=x+y&e=%ff&=z&f=1&f=2", b"", b"&&", b"k=v=w", "ü=ö".encode(), b"a%20b=%",
])
def test_a_urlencoded_body_decodes_as_werkzeug_decodes_it(body):
    from werkzeug.formparser import FormDataParser

    from functions.api.multipart import parse_urlencoded

    _, expected, _ = FormDataParser().parse(io.BytesIO(body), URLENCODED, len(body))
    assert parse_urlencoded(io.BytesIO(body).read, FORM) == list(expected.items(multi=True))
