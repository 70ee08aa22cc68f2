"""The local stack: every part on one port with embedded defaults (``make run``).

``/data-manager-api`` is the api function as functions-framework serves it and
``/auth`` the development OpenID provider; state lives under ``DM_DATA_DIR``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from shared.config import API_PREFIX, Settings

log = logging.getLogger("dm.stack")
ROOT = Path(__file__).resolve().parent.parent


def prepare(settings: Settings, **more_facts) -> dict:
    """Create the data folder, migrate the database, seed the ledger; write and return the stack facts."""
    from shared.auth.users import load_users
    from shared.db import migrate
    from shared.db.session import dispose_engines, get_engine, transaction

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.sqlalchemy_url)
    dev_users = load_users(settings)
    facts = {
        "api_url": settings.base_url + API_PREFIX,
        "keycloak_url": settings.base_url + "/auth",
        "keycloak_realm": "squonk2",
        "keycloak_client_id": settings.oidc_audience,
        **more_facts,
        "users": {},
    }
    if not settings.account_server_url:
        from shared.account_server.ledger import LedgerAccountServer

        ledger = LedgerAccountServer(settings, get_engine(settings.sqlalchemy_url))
        with transaction(ledger.engine) as s:
            for user in dev_users:
                unit = ledger.ensure_personal_unit(s, user.username)
                facts["users"][user.username] = {"password": user.password, "admin": user.admin, **unit}
    dispose_engines()
    (settings.data_dir / "local-stack.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def create_wsgi_app(settings: Settings):
    """The api function (through functions-framework) with the OpenID provider under /auth."""
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from shared.auth.keys import key_path, load_or_create_signing_key
    from shared.auth.provider import create_provider_app
    from shared.auth.users import load_users

    api_app = functions_framework.create_app(target="api", source=str(ROOT / "main.py"), signature_type="http")
    key = load_or_create_signing_key(key_path(settings))
    provider = create_provider_app(settings, load_users(settings), key)
    return DispatcherMiddleware(api_app, {"/auth": provider})


def start_housekeeping(settings: Settings, stop: threading.Event) -> threading.Thread:
    """The monitor's jobs on a timer, as a cluster's schedules would run them."""
    from shared.services import housekeeping

    def loop() -> None:
        from shared.db.session import get_engine
        from shared.storage import create_storage

        engine = get_engine(settings.sqlalchemy_url)
        storage = create_storage(settings.storage_url, settings.s3_endpoint_url)
        while not stop.is_set():
            for name in housekeeping.JOBS:
                try:
                    housekeeping.run(name, engine, storage, settings)
                except Exception:
                    log.exception("Housekeeping job %s failed", name)
            stop.wait(settings.housekeeping_every_s)

    thread = threading.Thread(target=loop, name="dm-housekeeping", daemon=True)
    thread.start()
    return thread


def serve_broker(port: int, services: dict[str, str], data_dir: Path) -> int:
    """The local Broker: the Triggers in knative/ applied to the functions running here."""
    import signal

    from werkzeug.serving import make_server

    from shared.events.delivery import Router
    from shared.events.triggers import load_routing, service_resolver

    routing = load_routing(sorted((ROOT / "knative").glob("*.yaml")))
    router = Router(routing, service_resolver(services), dead_letter_file=Path(data_dir) / "dead-letters.jsonl")
    router.start()
    server = make_server("127.0.0.1", port, router.wsgi_app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("Broker on port %s, delivering to %s", port, services)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        router.stop(5)
    return 0


EVENT_FUNCTIONS = {"dm-upload": ("upload", 1), "dm-kew": ("kew", 3), "dm-pbc": ("pbc", 4)}  # name: (target, port offset)
BROKER_PORT_OFFSET = 2


def function_urls(port: int) -> dict[str, str]:
    """Where the local stack's event functions listen, by their Knative Service name."""
    return {name: f"http://127.0.0.1:{port + offset}" for name, (_, offset) in EVENT_FUNCTIONS.items()}


def stack_ports(port: int) -> list[int]:
    """Every port the stack listens on: the api's, then each event function's and the Broker's."""
    return [port] + [port + offset for _, offset in EVENT_FUNCTIONS.values()] + [port + BROKER_PORT_OFFSET]


def check_ports_free(ports: list[int]) -> None:
    """Refuse to start half a stack: every port must be free before anything starts."""
    import socket

    for port in ports:
        with socket.socket() as probe:
            # as the servers themselves bind: a port whose last connections linger in TIME_WAIT is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(f"Port {port} is in use: the local stack needs DM_PORT and the four ports "
                                 "after it (set DM_PORT to move it)") from None


class Children:
    """The event functions and the Broker, each its own process as in a cluster."""

    def __init__(self, settings: Settings, broker_url: str):
        import os
        import sys

        env = {**os.environ, "K_SINK": broker_url}
        services = [f"--service={name}={url}" for name, url in function_urls(settings.port).items()]
        self.commands = [
            ([sys.executable, "-m", "functions_framework", "--target", target, "--source", str(ROOT / "main.py"),
              "--host", "127.0.0.1", "--port", str(settings.port + offset)], settings.port + offset)
            for target, offset in EVENT_FUNCTIONS.values()]
        self.commands.append(([sys.executable, "-m", "shared.cli", "broker", "--port",
                               str(settings.port + BROKER_PORT_OFFSET), *services], settings.port + BROKER_PORT_OFFSET))
        self.env = env
        self.processes = [self._spawn(command) for command, _ in self.commands]

    def _spawn(self, command):
        import subprocess

        return subprocess.Popen(command, env=self.env, cwd=str(ROOT))

    def wait_listening(self, timeout: float = 30) -> None:
        """Return once every process listens on its port; one that exits stops the start."""
        import socket
        import time

        deadline = time.monotonic() + timeout
        for process, (_, port) in zip(self.processes, self.commands):
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"The process for port {port} exited with code {process.returncode} "
                                     "during start-up")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"Nothing listens on port {port} after {timeout:.0f} s") from None
                    time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        import subprocess

        for child in self.processes:
            if child.poll() is None:
                child.terminate()
        for child in self.processes:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()


def run(settings: Settings) -> int:
    import dataclasses
    import os

    from gunicorn.app.base import BaseApplication

    check_ports_free(stack_ports(settings.port))
    broker_url = f"http://127.0.0.1:{settings.port + BROKER_PORT_OFFSET}"
    urls = function_urls(settings.port)
    facts = prepare(settings, broker_url=broker_url, upload_url=urls["dm-upload"], kew_url=urls["dm-kew"],
                    pbc_url=urls["dm-pbc"])
    os.environ["K_SINK"] = broker_url  # the api function reads it, as from a SinkBinding
    settings = dataclasses.replace(settings, broker_url=broker_url)
    print("Local stack:")
    print(json.dumps(facts, indent=2), flush=True)
    stop = threading.Event()

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"127.0.0.1:{settings.port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 16)
            self.cfg.set("timeout", 0)  # large uploads may take long
            self.cfg.set("graceful_timeout", 5)
            self.cfg.set("control_socket_disable", True)  # one shared path would clash between stacks
            self.cfg.set("accesslog", "-")
            self.cfg.set("post_worker_init", lambda worker: start_housekeeping(settings, stop))

        def load(self):
            return create_wsgi_app(settings)

    children = Children(settings, broker_url)
    try:
        children.wait_listening()
        Server().run()
    finally:
        stop.set()
        children.stop()
    return 0
