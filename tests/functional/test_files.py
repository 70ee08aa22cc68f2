"""Unmanaged files and directories through the api function."""

import io

import pytest


def upload(who, pid, name, data=b"hello", path=None, as_filename=None):
    form = {"file": (io.BytesIO(data), name)}
    if path is not None:
        form["path"] = path
    if as_filename is not None:
        form["as_filename"] = as_filename
    return who.put(f"/project/{pid}/file", data=form, content_type="multipart/form-data")


def listing(who, pid, path="/", **extra):
    return who.get("/file", query_string={"project_id": pid, "path": path, **extra})


@pytest.fixture(params=["local", "s3"])
def settings(request, settings):
    """Every file test runs on the local folder and on S3 (moto over HTTP)."""
    from tests.conftest import local_or_s3

    return local_or_s3(request, settings, "files")


@pytest.fixture
def pid(alice):
    return alice.create_project("Files")


def stored_files(storage, prefix=""):
    """Every file in the store below ``prefix`` (keys), walking its directories."""
    try:
        listing = storage.list_dir(prefix)
    except FileNotFoundError:
        return []
    keys = [f"{prefix}/{f.name}".lstrip("/") for f in listing.files]
    for d in listing.dirs:
        keys += stored_files(storage, f"{prefix}/{d}".lstrip("/"))
    return keys


def test_upload_list_download_delete(alice, pid):
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    resp = upload(alice, pid, "blob.bin", data, path="/data/raw")
    assert resp.status_code == 201 and resp.get_data() == b""
    body = listing(alice, pid, "/data/raw").get_json()
    assert body["project_id"] == pid and body["path"] == "/data/raw"
    assert body["count"] == 1 and body["paths"] == []
    (entry,) = body["files"]
    assert entry["file_name"] == "blob.bin" and entry["stat"]["size"] == len(data)
    assert entry["owner"] == "alice" and entry["stat"]["modified"].endswith("Z")
    assert listing(alice, pid, "/data").get_json()["paths"] == ["raw"]
    down = alice.get(f"/project/{pid}/file", query_string={"path": "/data/raw", "file": "blob.bin"})
    assert down.status_code == 200 and down.get_data() == data
    assert "attachment" in down.headers["Content-Disposition"]
    assert alice.get(f"/project/{pid}").get_json()["size"] == len(data)
    gone = alice.delete("/file", query_string={"project_id": pid, "path": "/data/raw", "file": "blob.bin"})
    assert gone.status_code == 204
    assert listing(alice, pid, "/data/raw").get_json()["count"] == 0
    assert alice.get(f"/project/{pid}").get_json()["size"] == 0


def test_upload_overwrites_and_renames(alice, pid):
    assert upload(alice, pid, "a.txt", b"one").status_code == 201
    assert upload(alice, pid, "a.txt", b"second").status_code == 201
    assert upload(alice, pid, "local.txt", b"renamed", as_filename="b.txt").status_code == 201
    names = {f["file_name"]: f["stat"]["size"] for f in listing(alice, pid).get_json()["files"]}
    assert names == {"a.txt": 6, "b.txt": 7}
    assert alice.get(f"/project/{pid}").get_json()["size"] == 13


def test_listing_a_missing_path_is_404(alice, pid):
    resp = listing(alice, pid, "/nowhere")
    assert resp.status_code == 404 and "does not exist" in resp.get_json()["error"]


def test_hidden_files_only_when_asked(alice, pid):
    upload(alice, pid, ".hidden", b"h")
    upload(alice, pid, "shown", b"s")
    upload(alice, pid, "x", b"x", path="/.secret")
    plain = listing(alice, pid, include_hidden="False").get_json()
    assert [f["file_name"] for f in plain["files"]] == ["shown"] and plain["paths"] == []
    everything = listing(alice, pid, include_hidden="True").get_json()
    assert [f["file_name"] for f in everything["files"]] == [".hidden", "shown"]
    assert everything["paths"] == [".secret"]


BAD_PATHS = ["/../x", "/a/../../b", "relative", "/a//b", "/a\\b", "/a\x00b", "/" + "p" * 261, "/./a"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_path_escapes_are_refused_and_touch_nothing(alice, pid, api, bad):
    storage = api.services.storage
    before = sorted(stored_files(storage))
    assert upload(alice, pid, "f.txt", b"x", path=bad).status_code == 400
    assert listing(alice, pid, bad).status_code == 400
    assert alice.put("/path", data={"project_id": pid, "path": bad}).status_code == 400
    assert alice.delete("/path", data={"project_id": pid, "path": bad}).status_code == 400
    assert sorted(stored_files(storage)) == before
    assert storage.list_dir(f"projects/{pid}").dirs == []


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "a\\b", "n" * 129, "\x01ctl"])
def test_bad_file_names_are_refused(alice, pid, bad):
    resp = upload(alice, pid, "good.txt", b"x", as_filename=bad)
    assert resp.status_code == 400
    assert "error" in resp.get_json()
    assert listing(alice, pid).get_json()["count"] == 0


def test_a_truncated_body_is_400_and_leaves_nothing(alice, pid, api):
    body = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\n\r\n' + b"1" * 5000
    resp = alice.put(f"/project/{pid}/file", data=body, headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert resp.status_code == 400 and "multipart" in resp.get_json()["error"]
    assert listing(alice, pid).get_json()["count"] == 0
    assert stored_files(api.services.storage) == []


def test_upload_without_a_file_part_is_400(alice, pid):
    resp = alice.put(f"/project/{pid}/file", data={"path": "/"}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "'file'" in resp.get_json()["error"]


def test_upload_needs_multipart(alice, pid):
    resp = alice.put(f"/project/{pid}/file", data={"path": "/"})
    assert resp.status_code == 400 and "multipart" in resp.get_json()["error"]


def test_oversize_upload_is_413_and_leaves_nothing(alice, pid, api):
    limit = api.settings.max_upload_bytes
    resp = upload(alice, pid, "big.bin", b"\0" * (limit + 1))
    assert resp.status_code == 413 and "limit" in resp.get_json()["error"]
    assert listing(alice, pid).get_json()["count"] == 0
    assert stored_files(api.services.storage) == []


def test_oversize_upload_without_content_length_is_413(alice, pid, api):
    """A chunked body has no Content-Length: the limit is enforced while streaming."""
    limit = api.settings.max_upload_bytes
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n".encode()
            + b"\1" * (limit + 10) + f"\r\n--{boundary}--\r\n".encode())
    resp = alice.put(f"/project/{pid}/file", input_stream=io.BytesIO(body),
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                     environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413
    assert listing(alice, pid).get_json()["count"] == 0


def test_a_file_in_the_way_of_a_directory(alice, pid):
    upload(alice, pid, "thing", b"x")
    resp = upload(alice, pid, "f.txt", b"y", path="/thing/below")
    assert resp.status_code == 400 and "in the way" in resp.get_json()["error"]
    assert alice.put("/path", data={"project_id": pid, "path": "/thing/x"}).status_code == 400


def test_move_file(alice, pid):
    upload(alice, pid, "a.txt", b"content")
    resp = alice.put("/file/move", query_string={"project_id": pid, "file": "a.txt", "dst_path": "/sub", "dst_file": "b.txt"})
    assert resp.status_code == 200 and resp.get_data() == b""
    assert listing(alice, pid).get_json()["count"] == 0
    assert [f["file_name"] for f in listing(alice, pid, "/sub").get_json()["files"]] == ["b.txt"]
    missing = alice.put("/file/move", query_string={"project_id": pid, "file": "a.txt", "dst_file": "c.txt"})
    assert missing.status_code == 404
    upload(alice, pid, "c.txt", b"c")
    clash = alice.put("/file/move", query_string={"project_id": pid, "file": "c.txt", "dst_path": "/sub", "dst_file": "b.txt"})
    assert clash.status_code == 400
    down = alice.get(f"/project/{pid}/file", query_string={"path": "/sub", "file": "b.txt"})
    assert down.get_data() == b"content"


def test_paths_create_move_delete(alice, pid):
    # the Python client sends a form body; the TypeScript client the query string
    assert alice.put("/path", data={"project_id": pid, "path": "/a/b/c"}).status_code == 201
    assert alice.put("/path", query_string={"project_id": pid, "path": "/a/b/c"}).status_code == 201
    upload(alice, pid, "f.txt", b"12345", path="/a/b/c")
    assert listing(alice, pid, "/a").get_json()["paths"] == ["b"]
    assert alice.put("/path/move", data={"project_id": pid, "src_path": "/a/b", "dst_path": "/z/y"}).status_code == 200
    assert listing(alice, pid, "/a/b").status_code == 404
    assert [f["file_name"] for f in listing(alice, pid, "/z/y/c").get_json()["files"]] == ["f.txt"]
    assert alice.put("/path/move", data={"project_id": pid, "src_path": "/z", "dst_path": "/z/y/q"}).status_code == 400
    assert alice.put("/path/move", data={"project_id": pid, "src_path": "/nope", "dst_path": "/q"}).status_code == 404
    assert alice.put("/path/move", data={"project_id": pid, "src_path": "/a", "dst_path": "/z"}).status_code == 400
    resp = alice.delete("/path", data={"project_id": pid, "path": "/z"})
    assert resp.status_code == 204
    assert listing(alice, pid, "/z").status_code == 404
    assert alice.get(f"/project/{pid}").get_json()["size"] == 0
    assert alice.delete("/path", data={"project_id": pid, "path": "/z"}).status_code == 404
    assert alice.delete("/path", data={"project_id": pid, "path": "/"}).status_code == 400


def test_download_missing_file_is_404(alice, pid):
    resp = alice.get(f"/project/{pid}/file", query_string={"file": "nope.txt"})
    assert resp.status_code == 404 and "does not exist" in resp.get_json()["error"]


def test_delete_missing_file_is_404(alice, pid):
    assert alice.delete("/file", query_string={"project_id": pid, "file": "nope"}).status_code == 404


def test_observers_download_but_cannot_change(alice, bob, pid):
    upload(alice, pid, "r.txt", b"read me")
    alice.patch(f"/project/{pid}", data={"private": "True"})
    alice.put(f"/project/{pid}/observer/bob")
    assert bob.get(f"/project/{pid}/file", query_string={"file": "r.txt"}).get_data() == b"read me"
    assert bob.delete("/file", query_string={"project_id": pid, "file": "r.txt"}).status_code == 403
    assert bob.put("/file/move", query_string={"project_id": pid, "file": "r.txt", "dst_file": "x"}).status_code == 403
    assert bob.put("/path", data={"project_id": pid, "path": "/x"}).status_code == 403
    assert upload(bob, pid, "w.txt").status_code == 403
    assert [f["file_name"] for f in listing(alice, pid).get_json()["files"]] == ["r.txt"]


def test_download_with_token(alice, pid, api, caller):
    from shared.db.base import utcnow
    from shared.db.models import ProjectToken
    from shared.db.session import transaction

    upload(alice, pid, "t.txt", b"by token")
    token = "A" * 11 + "b" * 11
    with transaction(api.services.engine) as s:
        s.add(ProjectToken(token=token, project_id=pid, created=utcnow()))
    anon = caller(None)
    ok = anon.get(f"/project/{pid}/file-with-token", query_string={"token": token, "file": "t.txt"})
    assert ok.status_code == 200 and ok.get_data() == b"by token"
    for bad in ("B" * 22, "short", token + "x"):
        resp = anon.get(f"/project/{pid}/file-with-token", query_string={"token": bad, "file": "t.txt"})
        assert resp.status_code == 403 and "error" in resp.get_json()
    other = alice.create_project("Other")
    upload(alice, other, "t.txt", b"other")
    wrong = anon.get(f"/project/{other}/file-with-token", query_string={"token": token, "file": "t.txt"})
    assert wrong.status_code == 403


def test_stale_staged_uploads_are_removed_by_housekeeping(api):
    """An upload a crash left in staging is removed once it is old; a fresh one is kept."""
    import os
    import time

    from shared.services import housekeeping

    storage = api.services.storage
    storage.write(f"{housekeeping.STAGING}/old", [b"left by a crash"])
    storage.write(f"{housekeeping.STAGING}/fresh", [b"still uploading"])
    if storage.local_path("x") is not None:  # age the old one on disk
        old = storage.local_path(f"{housekeeping.STAGING}/old")
        os.utime(old, (time.time() - 7 * 3600,) * 2)
        assert housekeeping.run("remove-stale-uploads", api.services.engine, storage) == 1
        assert [f.name for f in storage.list_dir(housekeeping.STAGING).files] == ["fresh"]
    else:  # S3 objects cannot be back-dated: everything older than 0 s is stale
        assert housekeeping.remove_stale_uploads(api.services.engine, storage, max_age_s=-1) == 2
        assert storage.list_dir(housekeeping.STAGING).files == []


def test_ranges_are_honoured_and_a_bad_range_is_416(alice, pid, api):
    upload(alice, pid, "r.bin", b"0123456789")
    q = {"file": "r.bin"}
    part = alice.get(f"/project/{pid}/file", query_string=q, headers={"Range": "bytes=2-4"})
    if api.services.storage.local_path("x") is None:
        assert part.status_code == 200 and part.get_data() == b"0123456789"  # S3 streams it whole
        return
    assert part.status_code == 206 and part.get_data() == b"234"
    bad = alice.get(f"/project/{pid}/file", query_string=q, headers={"Range": "bytes=50-60"})
    assert bad.status_code == 416 and bad.get_json()["error"]


def test_an_over_long_form_field_is_413(alice, pid):
    resp = alice.put(f"/project/{pid}/file", data={"path": "/" + "a" * 70000, "file": (io.BytesIO(b"x"), "f")},
                     content_type="multipart/form-data")
    assert resp.status_code == 413 and "'path' is too long" in resp.get_json()["error"]
    assert listing(alice, pid).get_json()["count"] == 0
