"""Projects and their membership."""

import collections
import json
import threading

from werkzeug.wrappers import Response

from functions.api.router import Router
from shared.account_server.base import check_product_id
from shared.db.session import transaction
from shared.lazy import lazy
from shared.services.background import after_response

projects = lazy("shared.services.projects")
counters = lazy("shared.services.counters")
users = lazy("shared.services.users")
managed_files = lazy("shared.services.managed_files")


class ListingCache:
    """Built listings by (user, filter, admin view), valid while the projects counter is unchanged.

    Listing is the hottest read; rebuilding 100 Projects per request costs far more
    than the one-row counter read that proves the cached body still current.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self.entries: collections.OrderedDict[tuple, tuple[int, bytes]] = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, version: int | None) -> bytes | None:
        with self.lock:
            hit = self.entries.get(key)
            if hit is None or version is None or hit[0] != version:
                return None
            self.entries.move_to_end(key)
            return hit[1]

    def put(self, key: tuple, version: int | None, body: bytes) -> None:
        if version is None:
            return
        with self.lock:
            self.entries[key] = (version, body)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


listing_cache = ListingCache()

router = Router("project")


@router.get("/project")
def get_projects(ctx):
    """The Projects the caller can see."""
    name = ctx.param("project_name")
    if not ctx.user.is_admin:  # the hot path: a listing unchanged since it was built, for a user who
        # sees what they are a member of (an admin's view depends on their admin mode, read below)
        body = listing_cache.get((ctx.engine, ctx.user.username, name, False),
                                 counters.read_now(ctx.engine, counters.PROJECTS))
        if body is not None:
            return Response(body, mimetype="application/json")
    with transaction(ctx.engine, readonly=True) as s:
        # the counter first: a listing built after it can only be newer, never staler
        version = counters.read(s, counters.PROJECTS)
        sees_everything = users.sees_everything(s, ctx.user)
        key = (ctx.engine, ctx.user.username, name, sees_everything)
        body = listing_cache.get(key, version)
        if body is None:
            items = projects.list_visible(s, ctx.user, name, sees_everything=sees_everything)
            body = json.dumps({"count": len(items), "projects": items}, separators=(",", ":")).encode()
            listing_cache.put(key, version, body)
    return Response(body, mimetype="application/json")


@router.post("/project", status=201)
def create_project(ctx):
    """Create a Project on a project-tier product the caller may use."""
    name = projects.check_name(ctx.param("name", required=True))
    product_id = check_product_id(ctx.param("tier_product_id", required=True))
    private = ctx.flag("private")
    grant = ctx.account_server.authorise_project_tier(ctx.user, product_id)
    with transaction(ctx.engine) as s:
        project = projects.create(s, ctx.user, name=name, private=private, grant=grant)
    ctx.storage.make_dirs(f"projects/{project.id}")
    return {"project_id": project.id}


@router.get("/project/<project_id>")
def get_project(ctx, project_id):
    """One Project."""
    with transaction(ctx.engine, readonly=True) as s:
        project = projects.load(s, ctx.user, project_id)
        # the files are added here: managed_files builds on projects, not the other way round
        return {**projects.detail(s, project), "files": managed_files.of_project(s, project.id)}


@router.patch("/project/<project_id>", status=200)
def patch_project(ctx, project_id):
    """Rename a Project or change its privacy."""
    name = ctx.param("name")
    private = ctx.flag("private") if ctx.param("private") not in (None, "") else None
    with transaction(ctx.engine) as s:
        projects.patch(s, ctx.user, project_id, name=name, private=private)


@router.delete("/project/<project_id>", status=200)
def delete_project(ctx, project_id):
    """Delete a Project: it disappears at once; a task removes its storage."""
    with transaction(ctx.engine) as s:
        task_id = projects.mark_deleted(s, ctx.user, project_id)
    after_response(ctx.services, "purge-projects")
    return {"task_id": task_id}


def _member_routes(role: str) -> None:
    @router.put(f"/project/<project_id>/{role}/<user_id>", status=201)
    def add(ctx, project_id, user_id):
        with transaction(ctx.engine) as s:
            projects.add_member(s, ctx.user, project_id, role, user_id)

    @router.delete(f"/project/<project_id>/{role}/<user_id>", status=204)
    def remove(ctx, project_id, user_id):
        with transaction(ctx.engine) as s:
            projects.remove_member(s, ctx.user, project_id, role, user_id)

    add.__doc__ = f"Add a Project {role}."
    remove.__doc__ = f"Remove a Project {role}."


for _role in ("administrator", "editor", "observer"):
    _member_routes(_role)
