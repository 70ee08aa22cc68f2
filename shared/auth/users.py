"""Development users and clients for the built-in OpenID provider (DM_USERS_FILE)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from shared.config import ConfigError, Settings

# Equivalent to Keycloak's ^\w(?:\w*(?:[@.-]\w+)?)*$ without its nested quantifiers,
# which backtrack exponentially on a long name with a bad last character.
USERNAME_RE = re.compile(r"\w+(?:[@.-]\w+)*")
USERNAME_MIN, USERNAME_MAX = 3, 80


@dataclasses.dataclass(frozen=True)
class DevUser:
    """A user the development provider signs in."""

    username: str
    password: str = dataclasses.field(repr=False)
    admin: bool = False
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    roles: tuple[str, ...] = ()  # realm roles besides those every user or admin gets

    @property
    def email_address(self) -> str:
        return self.email or (self.username if "@" in self.username else f"{self.username}@example.com")

    @property
    def given_name(self) -> str:
        return self.first_name if self.first_name is not None else self.username.split("@")[0].capitalize()

    @property
    def family_name(self) -> str:
        return self.last_name if self.last_name is not None else "User"

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.given_name, self.family_name) if part)


@dataclasses.dataclass(frozen=True)
class DevClient:
    """A client of the development provider: public without a secret, else confidential."""

    client_id: str
    secret: str | None = dataclasses.field(default=None, repr=False)
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.secret is None


DEFAULT_USERS = (
    DevUser("alice", "alice"),
    DevUser("bob", "bob"),
    DevUser("carol", "carol"),
    DevUser("admin", "admin", admin=True),
)


# The web UI's development client (a Next.js server on port 3000); the secret is for local use only.
UI_CLIENT_ID = "data-manager-ui"
UI_CLIENT_SECRET = "data-manager-ui-development-secret"
UI_ORIGINS = ("http://localhost:3000", "http://127.0.0.1:3000")


def default_clients(settings: Settings) -> list[DevClient]:
    """The public API client (its redirect URI is Swagger UI's) and the web UI's confidential client."""
    from shared.config import API_PREFIX

    bases = [settings.base_url]
    # The same local stack is reached as 127.0.0.1 or localhost.
    for one, other in (("//127.0.0.1:", "//localhost:"), ("//localhost:", "//127.0.0.1:")):
        if one in settings.base_url:
            bases.append(settings.base_url.replace(one, other, 1))
    return [
        DevClient(settings.oidc_audience,
                  redirect_uris=tuple(f"{base}{API_PREFIX}/api/oauth2-redirect.html" for base in bases),
                  post_logout_redirect_uris=tuple(f"{base}{API_PREFIX}/api" for base in bases)),
        DevClient(UI_CLIENT_ID, UI_CLIENT_SECRET,
                  redirect_uris=tuple(f"{o}/data-manager-ui/api/auth/callback" for o in UI_ORIGINS),
                  post_logout_redirect_uris=tuple(f"{o}/data-manager-ui" for o in UI_ORIGINS)),
    ]


def valid_username(name: object) -> bool:
    """True for a name the Data Manager accepts as a username."""
    return (
        isinstance(name, str)
        and USERNAME_MIN <= len(name) <= USERNAME_MAX
        and USERNAME_RE.fullmatch(name) is not None
    )


def _read_file(settings: Settings) -> object:
    import yaml  # only the provider reads users; keep it off other cold starts

    path = Path(settings.users_file)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"DM_USERS_FILE {str(path)!r} cannot be read: {exc}") from None


def _optional_text(entry: dict, name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{where}: {name} must be a non-empty string")
    return value


def _text_list(entry: dict, name: str, where: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {name} must be a list of non-empty strings")
    return tuple(value)


def load_users(settings: Settings) -> list[DevUser]:
    """The users from DM_USERS_FILE (YAML or JSON), or the four defaults."""
    if not settings.users_file:
        return list(DEFAULT_USERS)
    path = Path(settings.users_file)
    doc = _read_file(settings)
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"DM_USERS_FILE {str(path)!r} must hold a non-empty 'users' list")
    users: list[DevUser] = []
    for n, entry in enumerate(entries):
        where = f"DM_USERS_FILE {str(path)!r} users[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        name, password, admin = entry.get("username"), entry.get("password"), entry.get("admin", False)
        if not valid_username(name):
            raise ConfigError(
                f"{where}: username {name!r} must be {USERNAME_MIN}-{USERNAME_MAX} word characters,"
                " optionally joined by single '@', '.' or '-'"
            )
        if not isinstance(password, str) or not password:
            raise ConfigError(f"{where}: password must be a non-empty string")
        if not isinstance(admin, bool):
            raise ConfigError(f"{where}: admin must be true or false")
        if any(u.username == name for u in users):
            raise ConfigError(f"{where}: username {name!r} appears twice")
        users.append(DevUser(name, password, admin, email=_optional_text(entry, "email", where),
                             first_name=_optional_text(entry, "first_name", where),
                             last_name=_optional_text(entry, "last_name", where),
                             roles=_text_list(entry, "roles", where)))
    return users


def load_clients(settings: Settings) -> list[DevClient]:
    """The default clients, with those of DM_USERS_FILE's optional 'clients' list added (one with a
    default client's id replaces it)."""
    clients = {c.client_id: c for c in default_clients(settings)}
    if not settings.users_file:
        return list(clients.values())
    doc = _read_file(settings)
    entries = doc.get("clients", []) if isinstance(doc, dict) else []
    if not isinstance(entries, list):
        raise ConfigError(f"DM_USERS_FILE {settings.users_file!r}: clients must be a list")
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        where = f"DM_USERS_FILE {settings.users_file!r} clients[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        client_id = entry.get("client_id")
        if not isinstance(client_id, str) or not re.fullmatch(r"[\w.-]{1,80}", client_id):
            raise ConfigError(f"{where}: client_id must be 1-80 word characters, '.' or '-'")
        if client_id in seen:
            raise ConfigError(f"{where}: client_id {client_id!r} appears twice")
        seen.add(client_id)
        redirect_uris = _text_list(entry, "redirect_uris", where)
        for uri in redirect_uris + _text_list(entry, "post_logout_redirect_uris", where):
            if not re.match(r"https?://[^/?#]+", uri) or "#" in uri:
                raise ConfigError(f"{where}: {uri!r} is not an absolute http(s) URI without a fragment")
        clients[client_id] = DevClient(client_id, _optional_text(entry, "secret", where), redirect_uris,
                                       _text_list(entry, "post_logout_redirect_uris", where))
    return list(clients.values())
