"""Who may open an application instance's URL (``<base>/<instance-id>/``): the one check behind the
local stack's proxy, its WebSocket tunnel and, in a cluster, the Ingress's ``auth-url``.

Let in: the instance's owner and its project's administrators and editors. Observers are not: a
notebook runs code with write access to the project's files, which an observer does not have
through the API either. An admin in admin mode sees every instance through the API, but opening
one is not a read of it: admins get in only as members. The credential is an access token, as
the API takes it: an ``Authorization: Bearer`` header, or the instance's cookie (set from a
``?token=`` on a browser's first visit, see `cookie_header`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import select

from shared.db.models import Instance, ProjectMember
from shared.errors import Forbidden, NotFound, Unauthorized, Unavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.auth.verify import Principal, TokenVerifier
    from shared.config import Settings

ROLES = ("administrator", "editor")
COOKIE = "dm-instance-token"
QUERY_TOKEN = "token"
RETRY_AFTER_S = 2
_ID = r"instance-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# an instance's URL path: /<instance-id>, then anything below it
INSTANCE_PATH = re.compile(rf"^/({_ID})(/.*)?$", re.DOTALL)
INSTANCE_ID = re.compile(rf"^{_ID}$")


def instance_url(settings: "Settings", instance_id: str) -> str | None:
    """Where a browser opens an application: on the ingress host in a cluster (None without one:
    no Ingress is made), else on the stack's own port."""
    base = settings.base_url
    if settings.launcher == "kubernetes":
        if not settings.ingress_host:
            return None
        scheme = "https" if base.startswith("https://") else "http"
        base = f"{scheme}://{settings.ingress_host}"
    return f"{base.rstrip('/')}/{instance_id}/"


@dataclass(frozen=True)
class Access:
    """An allowed visit: who, and to which instance."""

    instance_id: str
    project_id: str
    username: str


def token_of(authorization: str | None, cookie_header: str | None) -> str | None:
    """The access token of a request: its bearer header, else its instance cookie (None: neither)."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else authorization  # the verifier names the fault
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def check(engine: "Engine", verifier: "TokenVerifier", instance_id: str, token: str | None) -> Access:
    """The visit if allowed; otherwise Unauthorized (401: no or a bad token), NotFound (404: no such
    application instance, or deleted or ended), Forbidden (403: not a member who may open it) or
    Unavailable (503 with Retry-After: not started yet)."""
    from shared.db.session import transaction
    from shared.services import users

    if not token:
        raise Unauthorized("An instance's URL needs an access token: 'Authorization: Bearer <token>', "
                           f"or ?{QUERY_TOKEN}=<token> on the first visit")
    principal: "Principal" = verifier.verify(f"Bearer {token}")
    users.check_not_suspended(engine, principal)
    if not INSTANCE_ID.fullmatch(instance_id or ""):
        raise NotFound(f"Instance {instance_id[:80]} does not exist")
    with transaction(engine, readonly=True) as s:
        row = s.execute(select(Instance.project_id, Instance.owner, Instance.phase, Instance.application_type)
                        .where(Instance.id == instance_id, Instance.deleted.is_(False))).first()
        if row is None or row.application_type != "APPLICATION":
            raise NotFound(f"Instance {instance_id} does not exist")
        allowed = row.owner == principal.username or s.scalar(select(ProjectMember.role).where(
            ProjectMember.project_id == row.project_id, ProjectMember.username == principal.username,
            ProjectMember.role.in_(ROLES)).limit(1)) is not None
    if not allowed:
        raise Forbidden(f"Only the owner and the project's editors and administrators may open instance {instance_id}")
    if row.phase == "PENDING":
        raise Unavailable(f"Instance {instance_id} has not started yet", retry_after=RETRY_AFTER_S)
    if row.phase != "RUNNING":
        raise NotFound(f"Instance {instance_id} is no longer running")
    return Access(instance_id, row.project_id, principal.username)


def without_token(query: str) -> str:
    """The query string without its ``token`` parameter (for the redirect after the cookie is set)."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != QUERY_TOKEN]
    return urlencode(kept)


def query_token(query: str) -> str | None:
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == QUERY_TOKEN:
            return value
    return None


def cookie_header(instance_id: str, token: str, secure: bool) -> str:
    """The Set-Cookie value that carries ``token`` to this instance's path only, out of scripts' reach
    (a session cookie: once the token expires the visit gets 401 and a new ``?token=`` renews it)."""
    parts = [f"{COOKIE}={token}", f"Path=/{instance_id}/", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
