def test_version_needs_no_token(caller):
    resp = caller(None).get("/version")
    assert resp.status_code == 200
    assert resp.get_json()["version"]


def test_create_and_list(alice):
    pid = alice.create_project("Smoke")
    resp = alice.get("/project")
    assert resp.status_code == 200
    assert [p["project_id"] for p in resp.get_json()["projects"]] == [pid]
