"""Projects and their membership."""

from functions.api.router import Router
from shared.account_server.base import check_product_id
from shared.db.session import transaction
from shared.lazy import lazy
from shared.services.background import after_response

projects = lazy("shared.services.projects")

router = Router("project")


@router.get("/project")
def get_projects(ctx):
    """The Projects the caller can see."""
    name = ctx.param("project_name")
    with transaction(ctx.engine, readonly=True) as s:
        items = projects.list_visible(s, ctx.user, name)
    return {"count": len(items), "projects": items}


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
        return projects.detail(s, projects.load(s, ctx.user, project_id))


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
