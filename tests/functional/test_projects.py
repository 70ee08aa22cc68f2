"""Projects and membership through the api function, on SQLite and PostgreSQL."""

import pytest

from shared.account_server.base import TEST_PRODUCT_ID


def test_create_project_answers_201_with_its_id(alice):
    resp = alice.post("/project", data={"name": "Fragments", "tier_product_id": alice.unit["project_tier_product_id"]})
    assert resp.status_code == 201
    body = resp.get_json()
    assert set(body) == {"project_id"}
    assert body["project_id"].startswith("project-")


def test_project_detail_has_the_reference_fields(alice):
    pid = alice.create_project("Detail")
    body = alice.get(f"/project/{pid}").get_json()
    assert body["project_id"] == pid
    assert body["name"] == "Detail"
    assert body["creator"] == "alice"
    assert body["administrators"] == ["alice"]
    assert body["editors"] == ["alice"]
    assert body["observers"] == []
    assert body["private"] is False
    assert body["product_id"] == alice.unit["project_tier_product_id"]
    assert body["unit_id"] == alice.unit["unit_id"]
    assert body["organisation_id"] == alice.unit["organisation_id"]
    assert body["product_flavour"] == "BRONZE"
    assert body["size"] == 0
    assert body["created"].endswith("Z")


def test_list_filters_by_name(alice):
    a = alice.create_project("One")
    alice.create_project("Two")
    body = alice.get("/project", query_string={"project_name": "One"}).get_json()
    assert body["count"] == 1 and body["projects"][0]["project_id"] == a


@pytest.mark.parametrize(
    "form, status, text",
    [
        ({"name": None}, 400, "name"),
        ({"tier_product_id": None}, 400, "tier_product_id"),
        ({"name": "x"}, 400, "2 to 80"),
        ({"name": "y" * 81}, 400, "2 to 80"),
        ({"tier_product_id": "product-nope"}, 400, "product id"),
        ({"tier_product_id": "product-00000000-0000-0000-0000-000000000000"}, 404, "does not exist"),
        ({"private": "maybe"}, 400, "true or false"),
    ],
)
def test_bad_project_creation_is_refused_and_creates_nothing(alice, form, status, text):
    data = {"name": "Good name", "tier_product_id": alice.unit["project_tier_product_id"]}
    data.update(form)
    data = {k: v for k, v in data.items() if v is not None}
    resp = alice.post("/project", data=data)
    assert resp.status_code == status
    assert text in resp.get_json()["error"]
    assert alice.get("/project").get_json()["count"] == 0


def test_product_of_another_users_unit_is_forbidden(alice, bob):
    resp = alice.post("/project", data={"name": "Borrowed", "tier_product_id": bob.unit["project_tier_product_id"]})
    assert resp.status_code == 403
    assert "not a member" in resp.get_json()["error"]


def test_storage_product_is_not_a_project_tier(alice):
    resp = alice.post("/project", data={"name": "Wrong", "tier_product_id": alice.unit["dataset_storage_product_id"]})
    assert resp.status_code == 415


def test_test_product_is_for_admins_only(alice, admin):
    assert alice.post("/project", data={"name": "Test", "tier_product_id": TEST_PRODUCT_ID}).status_code == 403
    resp = admin.post("/project", data={"name": "Admin test", "tier_product_id": TEST_PRODUCT_ID})
    assert resp.status_code == 201


def test_names_are_unique_within_a_unit_until_deleted(alice, bob):
    pid = alice.create_project("Same")
    dup = alice.post("/project", data={"name": "Same", "tier_product_id": alice.unit["project_tier_product_id"]})
    assert dup.status_code == 400 and "already exists" in dup.get_json()["error"]
    bob.create_project("Same")  # another unit: fine
    assert alice.delete(f"/project/{pid}").status_code == 200
    alice.create_project("Same")  # free again once deleted


def test_private_project_is_invisible_to_strangers(alice, bob):
    pid = alice.create_project("Secret", private=True)
    public = alice.create_project("Open")
    assert [p["project_id"] for p in bob.get("/project").get_json()["projects"]] == [public]
    resp = bob.get(f"/project/{pid}")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == f"Project {pid} does not exist"
    # the same answer as for a project that never existed: nothing leaks
    ghost = "project-00000000-0000-0000-0000-000000000000"
    assert bob.get(f"/project/{ghost}").get_json()["error"] == f"Project {ghost} does not exist"
    assert bob.put(f"/project/{pid}/editor/bob").status_code == 404
    assert bob.delete(f"/project/{pid}").status_code == 404


def test_patch_renames_and_changes_privacy(alice, bob):
    pid = alice.create_project("Before")
    resp = alice.patch(f"/project/{pid}", data={"name": "After", "private": "True"})
    assert resp.status_code == 200
    body = alice.get(f"/project/{pid}").get_json()
    assert body["name"] == "After" and body["private"] is True
    assert bob.get(f"/project/{pid}").status_code == 404
    assert alice.patch(f"/project/{pid}", data={"name": "z"}).status_code == 400
    assert alice.get(f"/project/{pid}").get_json()["name"] == "After"


# --- the role matrix ------------------------------------------------------------------

ROLES = ["owner", "administrator", "editor", "observer", "stranger", "admin"]


@pytest.fixture
def team(alice, bob, carol, admin, caller):
    """A private project owned by alice; bob is administrator, carol editor, dave observer."""
    pid = alice.create_project("Team", private=True)
    for role, user in (("administrator", "bob"), ("editor", "carol"), ("observer", "dave")):
        assert alice.put(f"/project/{pid}/{role}/{user}").status_code == 201
    return pid, {"owner": alice, "administrator": bob, "editor": carol, "observer": None,
                 "stranger": None, "admin": admin}


@pytest.fixture
def as_role(team, caller, token_for, identity):
    """The caller for a role; dave and erin are signed in through a users file."""
    pid, people = team

    def get(role):
        if people[role] is not None:
            return people[role]
        return caller({"observer": "dave", "stranger": "erin"}[role])

    return pid, get


EXPECTED = {
    # role: (read, write (editor work), manage members / delete)
    "owner": (200, 201, 201),
    "administrator": (200, 201, 201),
    "editor": (200, 201, 403),
    "observer": (200, 403, 403),
    "stranger": (404, 404, 404),
    "admin": (404, 404, 404),  # not in admin mode: an admin is a stranger to private projects
}


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(as_role, role):
    pid, get = as_role
    who = get(role)
    read, write, manage = EXPECTED[role]
    assert who.get(f"/project/{pid}").status_code == read
    assert who.get("/file", query_string={"project_id": pid}).status_code == read
    upload = who.put(f"/project/{pid}/file", data={"path": "/", "file": (__import__("io").BytesIO(b"x"), "r.txt")},
                     content_type="multipart/form-data")
    assert upload.status_code == write
    assert who.put(f"/project/{pid}/observer/frank").status_code == manage
    patch = who.patch(f"/project/{pid}", data={"name": "Team renamed"})
    assert patch.status_code == (200 if manage == 201 else manage)


def test_admin_mode_sees_private_projects(team, admin):
    pid, _ = team
    assert admin.patch("/user/account", data={"become_admin": "True"}).status_code == 204
    assert admin.get(f"/project/{pid}").status_code == 200
    assert pid in [p["project_id"] for p in admin.get("/project").get_json()["projects"]]
    # reading is all admin mode gives
    assert admin.put(f"/project/{pid}/editor/admin").status_code == 403


def test_non_admins_cannot_enter_admin_mode(alice):
    resp = alice.patch("/user/account", data={"become_admin": "True"})
    assert resp.status_code == 403
    assert alice.get("/user/account").get_json()["user"]["become_admin"] is False


def test_membership_add_and_remove(alice, bob):
    pid = alice.create_project("Members")
    for role in ("administrator", "editor", "observer"):
        assert alice.put(f"/project/{pid}/{role}/bob").status_code == 201
        assert alice.put(f"/project/{pid}/{role}/bob").status_code == 201  # idempotent
    body = alice.get(f"/project/{pid}").get_json()
    assert body["administrators"] == ["alice", "bob"]
    assert body["editors"] == ["alice", "bob"]
    assert body["observers"] == ["bob"]
    for role in ("administrator", "editor", "observer"):
        resp = alice.delete(f"/project/{pid}/{role}/bob")
        assert resp.status_code == 204 and resp.get_data() == b""
    body = alice.get(f"/project/{pid}").get_json()
    assert (body["administrators"], body["editors"], body["observers"]) == (["alice"], ["alice"], [])
    assert alice.delete(f"/project/{pid}/observer/bob").status_code == 404


def test_last_administrator_and_last_editor_stay(alice):
    pid = alice.create_project("Keep")
    for role in ("administrator", "editor"):
        resp = alice.delete(f"/project/{pid}/{role}/alice")
        assert resp.status_code == 400
        assert "at least one" in resp.get_json()["error"]
    body = alice.get(f"/project/{pid}").get_json()
    assert body["administrators"] == ["alice"] and body["editors"] == ["alice"]


@pytest.mark.parametrize("bad", ["x", "a/b", "no spaces", "é" * 81, "bad..name"])
def test_bad_usernames_are_refused(alice, bad):
    pid = alice.create_project("Names")
    resp = alice.put(f"/project/{pid}/editor/{bad}")
    assert resp.status_code in (400, 404)  # a '/' makes it another path
    assert alice.get(f"/project/{pid}").get_json()["editors"] == ["alice"]


def test_delete_is_a_task_and_the_project_disappears_at_once(alice, api):
    import io

    from shared.services.background import wait_idle

    pid = alice.create_project("Doomed")
    alice.put(f"/project/{pid}/file", data={"file": (io.BytesIO(b"data"), "d.txt")}, content_type="multipart/form-data")
    resp = alice.delete(f"/project/{pid}")
    assert resp.status_code == 200
    task_id = resp.get_json()["task_id"]
    assert alice.get(f"/project/{pid}").status_code == 404
    assert pid not in [p["project_id"] for p in alice.get("/project").get_json()["projects"]]
    assert wait_idle()
    task = alice.get(f"/task/{task_id}").get_json()
    assert task["done"] is True and task["exit_code"] == 0
    assert task["purpose"] == "PROJECT" and task["purpose_id"] == pid and task["removal"] is True
    assert [s["state"] for s in task["states"]] == ["PENDING", "STARTED", "SUCCESS"]
    assert not api.services.storage.is_dir(f"projects/{pid}")
    assert alice.delete(f"/project/{pid}").status_code == 404


def test_purge_finishes_work_interrupted_by_a_crash(alice, api):
    """A deletion whose background run never happened is finished by the housekeeping job."""
    import io

    from shared.db.session import transaction
    from shared.services import housekeeping, projects

    pid = alice.create_project("Crashy")
    alice.put(f"/project/{pid}/file", data={"file": (io.BytesIO(b"data"), "d.txt")}, content_type="multipart/form-data")
    with transaction(api.services.engine) as s:  # what DELETE commits before its background step
        task_id = projects.mark_deleted(s, alice_principal(alice, api), pid)
    assert api.services.storage.is_dir(f"projects/{pid}")
    assert housekeeping.run("purge-projects", api.services.engine, api.services.storage) == 1
    assert not api.services.storage.is_dir(f"projects/{pid}")
    assert alice.get(f"/task/{task_id}").get_json()["done"] is True
    assert housekeeping.run("purge-projects", api.services.engine, api.services.storage) == 0


def alice_principal(alice, api):
    return api.services.verifier.verify(alice.headers["Authorization"])


def test_cached_listings_follow_every_change(alice, bob):
    """The listing cache never serves a stale view: each kind of change shows at once."""
    names = lambda who: sorted(p["name"] for p in who.get("/project").get_json()["projects"])  # noqa: E731
    pid = alice.create_project("Cached", private=True)
    assert names(alice) == ["Cached"] and names(bob) == []
    alice.put(f"/project/{pid}/observer/bob")
    assert names(bob) == ["Cached"]
    alice.patch(f"/project/{pid}", data={"name": "Renamed"})
    assert names(bob) == ["Renamed"]
    alice.delete(f"/project/{pid}/observer/bob")
    assert names(bob) == []
    import io

    alice.put(f"/project/{pid}/file", data={"file": (io.BytesIO(b"12345"), "f")}, content_type="multipart/form-data")
    assert alice.get("/project").get_json()["projects"][0]["size"] == 5
    alice.delete(f"/project/{pid}")
    assert names(alice) == []


def test_a_lost_counter_row_is_made_again_and_never_goes_back(api):
    """Without its row a counter reads None (nothing may be cached); the next change makes it."""
    from sqlalchemy import delete

    from shared.db.models import ChangeCounter
    from shared.db.session import transaction
    from shared.services import counters

    with transaction(api.services.engine) as s:
        before = counters.read(s, counters.PROJECTS)
        s.execute(delete(ChangeCounter).where(ChangeCounter.name == counters.PROJECTS))
        assert counters.read(s, counters.PROJECTS) is None
        counters.bump(s, counters.PROJECTS)
        assert counters.read(s, counters.PROJECTS) == 1
        s.rollback()  # leave the real counter as it was: cached listings rely on it only growing
    with transaction(api.services.engine) as s:
        assert counters.read(s, counters.PROJECTS) == before
