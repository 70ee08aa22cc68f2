"""Development users for the built-in OpenID provider."""

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


DEFAULT_USERS = (
    DevUser("alice", "alice"),
    DevUser("bob", "bob"),
    DevUser("carol", "carol"),
    DevUser("admin", "admin", admin=True),
)


def valid_username(name: object) -> bool:
    """True for a name the Data Manager accepts as a username."""
    return (
        isinstance(name, str)
        and USERNAME_MIN <= len(name) <= USERNAME_MAX
        and USERNAME_RE.fullmatch(name) is not None
    )


def load_users(settings: Settings) -> list[DevUser]:
    """The users from DM_USERS_FILE (YAML or JSON), or the four defaults."""
    if not settings.users_file:
        return list(DEFAULT_USERS)
    import yaml  # only the provider reads users; keep it off other cold starts

    path = Path(settings.users_file)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"DM_USERS_FILE {str(path)!r} cannot be read: {exc}") from None
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
        users.append(DevUser(name, password, admin))
    return users
