"""Per-user inventory of an Account Server Unit or Organisation."""

from functions.api.router import Router
from shared.db.session import transaction
from shared.lazy import lazy

inventory = lazy("shared.services.inventory")

router = Router("inventory")


@router.get("/inventory/user")
def get_user_inventory(ctx):
    """Each user's Projects, Datasets and activity in a Unit or Organisation."""
    usernames = inventory.parse_usernames(ctx.param("usernames"))
    unit_id, org_id = ctx.param("unit_id") or None, ctx.param("org_id") or None
    with transaction(ctx.engine, readonly=True) as s:
        return inventory.user_inventory(s, ctx.user, ctx.settings, unit_id=unit_id, org_id=org_id,
                                        usernames=usernames)
