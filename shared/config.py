"""Every setting the functions read, named once, read from the environment in one place.

`Settings.from_env()` is the only reader of ``os.environ``; tests build `Settings(...)`
directly. A bad value raises `ConfigError` naming the variable, which stops start-up.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Mapping

API_PREFIX = "/data-manager-api"
VERSION = "0.1.0"


class ConfigError(ValueError):
    """A configuration variable holds a value the service cannot use."""


def _int(name: str, lo: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
        if lo is not None and value < lo:
            raise ConfigError(f"{name} must be at least {lo}, not {value}")
        return value

    return parse


def _bool(name: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")

    return parse


def _choice(name: str, *allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
        return raw

    return parse


def _database_url(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not (raw.startswith("sqlite") or raw.startswith("postgresql+pg8000://")):
            raise ConfigError(
                f"{name} must be a sqlite:// URL or a postgresql+pg8000:// URL, not {raw!r}"
            )
        return raw

    return parse


def _dataset_store(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.startswith("s3://"):
            if len(raw) <= len("s3://") or raw[len("s3://")] == "/":
                raise ConfigError(f"{name} must name a bucket: s3://bucket[/prefix], not {raw!r}")
        elif "://" in raw:
            raise ConfigError(f"{name} must be a folder or s3://bucket[/prefix], not {raw!r}")
        return raw

    return parse


def _project_volume(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if "://" in raw:
            raise ConfigError(
                f"{name} must be a folder path, not {raw!r}: project files must be on a file system "
                "that jobs mount; put datasets in an object store with DM_DATASET_STORE"
            )
        return raw

    return parse


def _check_storage(env: Mapping[str, str], values: dict[str, Any]) -> None:
    """Refuse the retired DM_STORAGE, and a cluster without the claim's mount path."""
    if "DM_STORAGE" in env:
        raise ConfigError(
            "DM_STORAGE is no longer read: it is replaced by DM_PROJECT_VOLUME (the folder holding "
            "each project's files, which jobs mount; in a cluster the mount path of the DM_PROJECT_CLAIM "
            "claim) and DM_DATASET_STORE (a folder or s3://bucket[/prefix] for dataset versions)"
        )
    if values.get("launcher") == "kubernetes" and not values.get("project_volume"):
        raise ConfigError(
            "DM_LAUNCHER=kubernetes needs DM_PROJECT_VOLUME set: the path where the claim named by "
            "DM_PROJECT_CLAIM is mounted, so that job pods see the project files"
        )


def _url(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw and not (raw.startswith("http://") or raw.startswith("https://")):
            raise ConfigError(f"{name} must be an http(s) URL, not {raw!r}")
        return raw.rstrip("/")

    return parse


@dataclasses.dataclass(frozen=True)
class Settings:
    """The whole configuration. Field defaults are the local stack's embedded defaults."""

    port: int = 8080
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file under data_dir
    # each project's folder is <project_volume>/<project-id>; in a cluster the mount path of
    # project_claim, so a pod's subPath (the project id) is the same folder. Empty: data_dir/store/projects
    project_volume: str = ""
    dataset_store: str = ""  # a folder or s3://bucket/prefix; empty: data_dir/store
    s3_endpoint_url: str = ""  # for S3-compatible stores (and moto in tests)
    oidc_issuer: str = ""  # empty: the local stack's development provider
    oidc_audience: str = "data-manager-api"
    admin_role: str = "data-manager-admin"
    max_upload_bytes: int = 10 * 1024**3
    mode: str = "DEVELOPMENT"
    account_server_url: str = ""  # empty: the built-in ledger
    account_server_namespace: str = ""
    users_file: str = ""  # development users; empty: alice, bob, carol and admin
    public_url: str = ""  # how clients reach the stack; empty: http://127.0.0.1:<port>
    log_level: str = "INFO"
    broker_url: str = ""  # where events go (K_SINK in a cluster); empty: kept in the outbox
    outbox_grace_s: int = 30  # undelivered events older than this are re-sent by `dm outbox redeliver`
    housekeeping_every_s: int = 0  # local stack: 0 = each monitor job's own interval; else every job's
    launcher: str = "local"  # where instances run: local processes, or pods through the Kubernetes API
    kubernetes_namespace: str = "data-manager"  # where instance pods are made
    project_claim: str = "project"  # the PersistentVolumeClaim holding every project (kubernetes)
    ingress_host: str = ""  # kubernetes: the host of applications' Ingresses (their URLs); empty: none made
    ingress_class: str = "nginx"  # kubernetes: the ingressClassName of applications' Ingresses
    api_log_days: int = 90  # API-log entries older than this many days are pruned by the monitor
    http_idle_timeout_s: int = 30  # a connection that sends nothing this long is closed
    http_header_timeout_s: int = 10  # a request's line and headers must arrive within this
    http_body_timeout_s: int = 30  # its body within this, plus a second per 64 KiB of it (shared.http_server)
    http_connection_limit: int = 1000  # open connections per server process; more wait to be accepted
    # shared by the senders of charges and the ledger (shared.events.signing); never printed
    event_signing_key: str = dataclasses.field(default="", repr=False)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.oidc_issuer or f"{self.base_url}/auth/realms/squonk2"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'dm.sqlite3').resolve()}"

    @property
    def pod_logs_dir(self) -> Path:
        """Where the local launcher keeps each instance's output (its pod log)."""
        return self.data_dir / "pod-logs"

    @property
    def project_volume_path(self) -> Path:
        return Path(self.project_volume or self.data_dir / "store" / "projects").resolve()

    @property
    def dataset_store_url(self) -> str:
        return self.dataset_store or str((self.data_dir / "store").resolve())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var, parse in _VARIABLES:
            raw = env.get(var)
            if raw is not None:
                values[field] = parse(raw)
        _check_storage(env, values)
        return cls(**values)


# (field, variable, parser): the complete list of what the service reads.
_VARIABLES: list[tuple[str, str, Callable[[str], Any]]] = [
    ("port", "DM_PORT", _int("DM_PORT", 1)),
    ("data_dir", "DM_DATA_DIR", Path),
    ("database_url", "DM_DATABASE_URL", _database_url("DM_DATABASE_URL")),
    ("project_volume", "DM_PROJECT_VOLUME", _project_volume("DM_PROJECT_VOLUME")),
    ("dataset_store", "DM_DATASET_STORE", _dataset_store("DM_DATASET_STORE")),
    ("s3_endpoint_url", "DM_S3_ENDPOINT_URL", _url("DM_S3_ENDPOINT_URL")),
    ("oidc_issuer", "DM_OIDC_ISSUER", _url("DM_OIDC_ISSUER")),
    ("oidc_audience", "DM_OIDC_AUDIENCE", str),
    ("admin_role", "DM_ADMIN_ROLE", str),
    ("max_upload_bytes", "DM_MAX_UPLOAD_BYTES", _int("DM_MAX_UPLOAD_BYTES", 1)),
    ("mode", "DM_MODE", _choice("DM_MODE", "DEVELOPMENT", "PRODUCTION")),
    ("account_server_url", "DM_ACCOUNT_SERVER_URL", _url("DM_ACCOUNT_SERVER_URL")),
    ("account_server_namespace", "DM_ACCOUNT_SERVER_NAMESPACE", str),
    ("users_file", "DM_USERS_FILE", str),
    ("public_url", "DM_PUBLIC_URL", _url("DM_PUBLIC_URL")),
    ("log_level", "DM_LOG_LEVEL", _choice("DM_LOG_LEVEL", "DEBUG", "INFO", "WARNING", "ERROR")),
    ("broker_url", "K_SINK", _url("K_SINK")),  # Knative's SinkBinding sets it
    ("outbox_grace_s", "DM_OUTBOX_GRACE_S", _int("DM_OUTBOX_GRACE_S", 0)),
    ("housekeeping_every_s", "DM_HOUSEKEEPING_EVERY_S", _int("DM_HOUSEKEEPING_EVERY_S", 0)),
    ("launcher", "DM_LAUNCHER", _choice("DM_LAUNCHER", "local", "kubernetes")),
    ("kubernetes_namespace", "DM_KUBERNETES_NAMESPACE", str),
    ("project_claim", "DM_PROJECT_CLAIM", str),
    ("ingress_host", "DM_INGRESS_HOST", str),
    ("ingress_class", "DM_INGRESS_CLASS", str),
    ("api_log_days", "DM_API_LOG_DAYS", _int("DM_API_LOG_DAYS", 1)),
    ("http_idle_timeout_s", "DM_HTTP_IDLE_TIMEOUT_S", _int("DM_HTTP_IDLE_TIMEOUT_S", 1)),
    ("http_header_timeout_s", "DM_HTTP_HEADER_TIMEOUT_S", _int("DM_HTTP_HEADER_TIMEOUT_S", 1)),
    ("http_body_timeout_s", "DM_HTTP_BODY_TIMEOUT_S", _int("DM_HTTP_BODY_TIMEOUT_S", 1)),
    ("http_connection_limit", "DM_HTTP_CONNECTION_LIMIT", _int("DM_HTTP_CONNECTION_LIMIT", 1)),
    ("event_signing_key", "DM_EVENT_SIGNING_KEY", str),
]

VARIABLES = [var for _, var, _ in _VARIABLES]


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings.from_env()
