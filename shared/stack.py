"""The local stack: every part on its own port with embedded defaults (``make run``).

On DM_PORT, ``/data-manager-api`` is the api function as functions-framework builds it,
``/auth`` the development OpenID provider and ``/account-server-api`` the built-in ledger, in
one process served by `api_server` (``shared.http_server``); state lives under ``DM_DATA_DIR``.
The ports after it: upload (+1), the Broker (+2), kew (+3), pbc (+4) and the monitor (+5), each
its own process, kept running by ``dm functions`` (`serve_functions`, `shared.supervisor`), which
also sends the monitor's schedule ticks to the Broker as the cluster's PingSources do. ``dm run``
keeps the api process and ``dm functions`` running.
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
        "as_api_url": settings.base_url + "/account-server-api",
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
    """The api function (through functions-framework) with the OpenID provider under /auth and the
    ledger under /account-server-api, their HTML error pages answered as JSON; and application
    instances under /<instance-id>/ (`functions.api.instance_proxy`)."""
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from functions.api.instance_proxy import with_instance_routes
    from shared.account_server.rest import create_account_server_app
    from shared.auth.keys import key_path, load_or_create_signing_key
    from shared.auth.provider import create_provider_app
    from shared.auth.users import load_users
    from shared.http_server import json_errors
    from shared.landing import with_landing_page

    api_app = functions_framework.create_app(target="api", source=str(ROOT / "main.py"), signature_type="http")
    key = load_or_create_signing_key(key_path(settings))
    provider = create_provider_app(settings, load_users(settings), key)
    ledger = create_account_server_app(settings)

    def allowed(environ) -> list[str]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/account-server-api/"):
            return _allowed(ledger.url_map, path[len("/account-server-api"):])
        return api_allowed_methods(environ)

    # application instances under /<instance-id>/, beside the apps mounted by prefix; outside
    # json_errors: an instance's own error pages reach the browser as they are
    mounted = DispatcherMiddleware(api_app, {"/auth": provider, "/account-server-api": ledger})
    # GET / is the newcomer's page of pointers (`shared.landing`)
    return with_instance_routes(json_errors(with_landing_page(mounted, settings), allowed),
                                proxy_instances=settings.launcher == "local")


def api_allowed_methods(environ) -> list[str]:
    """The methods the api has for a path (the ``Allow`` of its 405s)."""
    path = environ.get("PATH_INFO", "")
    if not path.startswith(API_PREFIX + "/"):
        return []
    from functions.api.app import get_api

    return _allowed(get_api().url_map, path)


def _allowed(url_map, path: str) -> list[str]:
    return sorted(url_map.bind("localhost").allowed_methods(path))


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
    access_log = logging.getLogger("werkzeug")
    if access_log.getEffectiveLevel() > logging.DEBUG:  # a line per event (a tick every few seconds) is noise
        access_log.setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("Broker on port %s, delivering to %s", port, services)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        router.stop(5)
    return 0


EVENT_FUNCTIONS = {  # Knative Service name: (functions-framework target, port offset from DM_PORT)
    "dm-upload": ("upload", 1), "dm-kew": ("kew", 3), "dm-pbc": ("pbc", 4), "dm-monitor": ("monitor", 5)}
BROKER_PORT_OFFSET = 2


def function_urls(port: int) -> dict[str, str]:
    """Where the local stack's event functions listen, by their Knative Service name."""
    return {name: f"http://127.0.0.1:{port + offset}" for name, (_, offset) in EVENT_FUNCTIONS.items()}


def broker_services(port: int) -> dict[str, str]:
    """Every Service the Triggers in knative/ name, by where it runs here: the event functions, and
    ``account-server`` (the charges' subscriber, ``uri: /account-server-api/event``) on the api's
    port, whose ledger receives them."""
    return {**function_urls(port), "account-server": f"http://127.0.0.1:{port}"}


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
                raise SystemExit(f"Port {port} is in use: the local stack needs DM_PORT and the five ports "
                                 "after it (set DM_PORT to move it)") from None


# --- the schedules: ticks through the Broker, as the PingSources in knative/monitor.yaml send them ---


def tick_intervals(settings: Settings) -> dict[str, float]:
    """Seconds between two ticks of each monitor job: its own ``every_s``, or DM_HOUSEKEEPING_EVERY_S
    for every job when that is set."""
    from shared.services.monitor import JOBS

    override = settings.housekeeping_every_s
    return {name: float(override) if override else job.every_s for name, job in JOBS.items()}


def start_ticks(broker_url: str, intervals: dict[str, float], stop: threading.Event) -> threading.Thread:
    """Send each job's `ScheduleTick` to the Broker every its interval (the first one interval after the
    start, as a new PingSource does). The Trigger takes it to the monitor; a tick the Broker does not
    take is logged, and the job's next tick comes at its next interval."""
    import time

    from shared.events import outbox, wire
    from shared.events.contracts import ScheduleTick

    def loop() -> None:
        started = time.monotonic()
        due = {name: started + every for name, every in intervals.items()}
        while due:
            name = min(due, key=due.__getitem__)
            if stop.wait(max(0.0, due[name] - time.monotonic())):
                return
            try:
                outbox.post(broker_url, wire.event_of(ScheduleTick(job=name)))
            except Exception as exc:  # noqa: BLE001 - the timer outlives any one failed send
                log.warning("Schedule tick for %s not sent to %s: %s", name, broker_url, exc)
            now = time.monotonic()
            while due[name] <= now:
                due[name] += intervals[name]

    thread = threading.Thread(target=loop, name="dm-schedule-ticks", daemon=True)
    thread.start()
    return thread


# --- the processes --------------------------------------------------------------------------


def function_children(settings: Settings) -> list:
    """The event functions (each in the server their Knative Services run, see the Dockerfile) and the Broker."""
    import sys

    from shared.supervisor import Child

    port = settings.port
    children = [Child(name, [sys.executable, "-m", "shared.stack", "--target", target,
                             "--host", "127.0.0.1", "--port", str(port + offset)], (port + offset,))
                for name, (target, offset) in EVENT_FUNCTIONS.items()]
    services = [f"--service={name}={url}" for name, url in broker_services(port).items()]
    children.append(Child("broker", [sys.executable, "-m", "shared.cli", "broker", "--port",
                                     str(port + BROKER_PORT_OFFSET), *services], (port + BROKER_PORT_OFFSET,)))
    return children


def serve_functions(settings: Settings) -> int:
    """``dm functions`` (``dm run`` starts it): the event functions and the Broker, each its own process as
    in a cluster, restarted when one dies, and the monitor's schedule ticks. Stops on SIGTERM or SIGINT,
    and when the ``dm run`` that started it is gone."""
    import os
    import signal

    from shared.supervisor import POLL_S, Supervisor

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    broker_url = f"http://127.0.0.1:{settings.port + BROKER_PORT_OFFSET}"
    supervisor = Supervisor(function_children(settings), env={**os.environ, "K_SINK": broker_url}, cwd=str(ROOT))
    supervisor.start()
    try:
        supervisor.wait_listening(cancelled=stop.is_set)
        if not stop.is_set():
            start_ticks(broker_url, tick_intervals(settings), stop)
        while not stop.wait(POLL_S):
            if os.getppid() != parent:
                log.error("The process that started the functions (pid %s) has gone: stopping them", parent)
                break
            supervisor.check()
    finally:
        stop.set()
        supervisor.stop(timeout=5)
    return 0


def http_limits(settings: Settings, threads: int = 16):
    """The HTTP server's limits from the settings: a body may hold the largest upload."""
    from functions.api.multipart import MULTIPART_SLACK
    from shared.http_server import Limits

    return Limits(threads=threads, connection_limit=settings.http_connection_limit,
                  idle_timeout_s=settings.http_idle_timeout_s, header_timeout_s=settings.http_header_timeout_s,
                  body_timeout_s=settings.http_body_timeout_s,
                  max_body_bytes=settings.max_upload_bytes + MULTIPART_SLACK)


# Every operation that takes a body needs a token (tests/unit/test_architecture.py checks it), so a
# body sent without one is refused from the headers, before a byte of it is read.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def refuse_without_token(method: str, path: str, headers: dict) -> tuple[int, str] | None:
    """The api's early refusal (`shared.http_server.create_server`): a body for the API without a bearer token."""
    if method not in _BODY_METHODS or not path.startswith(API_PREFIX + "/"):
        return None
    scheme, _, token = headers.get("AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    return 401, "Missing Authorization header: send 'Authorization: Bearer <token>'"


GC_THRESHOLD = 10_000  # allocations between the collector's youngest-generation runs (Python: 700)


def api_server(port: int, load, access_log: bool = True, *, host: str = "127.0.0.1", limits=None,
               refuse_early=None, upgrade=None):
    """The HTTP server of the api process (and of each function): `shared.http_server`, 16 threads
    by default, keep-alive connections, deadlines and limits from `http_limits`. ``load()`` gives the
    WSGI app; ``run()`` serves until SIGTERM (see `serve_until_stopped`) or Ctrl-C."""
    import gc

    from shared.config import get_settings
    from shared.http_server import create_server

    # A listing of 10,000 items makes a few hundred thousand objects; at Python's default threshold
    # (a collection every 700 allocations) the collector walks the whole heap again and again while
    # it is built, which made long listings grow faster than their length
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    return create_server(load(), host, port, limits or http_limits(get_settings()), access=access_log,
                         refuse_early=refuse_early, upgrade=upgrade)


def serve_until_stopped(server, parent: int | None = None) -> int:
    """Run ``server`` until SIGTERM, Ctrl-C, or (given ``parent``) until that process has gone."""
    import os
    import signal
    import time

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if parent is not None:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.2)
            log.error("The process that started this one (pid %s) has gone: stopping", parent)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="dm-parent-watch", daemon=True).start()
    server.run()  # returns once SystemExit or KeyboardInterrupt stopped its loop
    return 0


def serve_api(settings: Settings) -> int:
    """The local stack's api process (``dm run`` starts it): the api, /auth and the ledger on DM_PORT."""
    import os

    from functions.api.instance_proxy import upgrade

    parent = os.getppid()
    server = api_server(settings.port, lambda: create_wsgi_app(settings), limits=http_limits(settings),
                        refuse_early=refuse_without_token,
                        upgrade=upgrade if settings.launcher == "local" else None)
    log.info("api on port %s (pid %s)", settings.port, os.getpid())
    return serve_until_stopped(server, parent)


def serve_function(settings: Settings, target: str, host: str, port: int) -> int:
    """One function as its Knative Service runs it (the image's command): FUNCTION_TARGET on PORT; in
    the local stack, each event function on its port (``--host 127.0.0.1``)."""
    import os

    import functions_framework

    from shared.http_server import json_errors

    signature = os.environ.get("FUNCTION_SIGNATURE_TYPE", "http")
    app = functions_framework.create_app(target=target, source=str(ROOT / "main.py"), signature_type=signature)
    app = json_errors(app, api_allowed_methods if target == "api" else None)
    if target == "api":  # and the check an Ingress asks before it lets a visit through to an instance
        from functions.api.instance_proxy import with_instance_routes

        app = with_instance_routes(app, proxy_instances=False)
    threads = int(os.environ.get("THREADS", "16"))
    server = api_server(port, lambda: app, access_log=False, host=host, limits=http_limits(settings, threads),
                        refuse_early=refuse_without_token if target == "api" else None)
    log.info("%s on %s:%s (pid %s)", target, host, port, os.getpid())
    parent = os.getppid()  # in the local stack `dm functions`; a container's first process has none to watch
    return serve_until_stopped(server, parent if parent > 1 else None)


def run(settings: Settings) -> int:
    """``dm run``: the api (and the OpenID provider and ledger) in one child process, the rest in ``dm
    functions``, another; each restarted when it dies, both stopped on Ctrl-C or SIGTERM."""
    import os
    import signal
    import sys

    from shared.supervisor import POLL_S, Child, Supervisor

    check_ports_free(stack_ports(settings.port))
    broker_url = f"http://127.0.0.1:{settings.port + BROKER_PORT_OFFSET}"
    urls = function_urls(settings.port)
    facts = prepare(settings, broker_url=broker_url, upload_url=urls["dm-upload"], kew_url=urls["dm-kew"],
                    pbc_url=urls["dm-pbc"], monitor_url=urls["dm-monitor"])
    os.environ["K_SINK"] = broker_url  # the api function reads it, as from a SinkBinding
    # glibc's default of an arena per thread lets each of a server's threads keep the memory of its
    # largest upload: with two, a 512 MiB dataset upload grows the api by tens of MiB, not 137
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    if not settings.event_signing_key:  # the monitor signs its charges with it, the ledger checks them
        from shared.events.signing import local_key

        os.environ["DM_EVENT_SIGNING_KEY"] = local_key(settings.data_dir)
    print("Local stack:")
    print(json.dumps(facts, indent=2))
    from shared.landing import startup_text

    print(startup_text(settings), flush=True)

    # Each child leads its own process group: a terminal's Ctrl-C reaches this process, which stops
    # them itself; and should one die, its whole group (the functions) is killed before the restart.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    children = Supervisor([Child("dm functions", [sys.executable, "-m", "shared.cli", "functions"],
                                 tuple(stack_ports(settings.port)[1:])),
                           Child("api", [sys.executable, "-m", "shared.stack", "--local-stack"],
                                 (settings.port,))],
                          env=os.environ, cwd=str(ROOT), own_groups=True)
    children.start()
    try:
        children.wait_listening(timeout=40, cancelled=stop.is_set)
        while not stop.wait(POLL_S):
            children.check()
    except KeyboardInterrupt:
        pass
    finally:
        children.stop(timeout=8)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.stack``: one function as its container runs it (FUNCTION_TARGET on PORT, every
    interface), or with ``--local-stack`` the local stack's api process, which ``dm run`` starts."""
    import argparse
    import os
    import sys

    from shared.config import ConfigError

    parser = argparse.ArgumentParser(prog="python -m shared.stack")
    parser.add_argument("--local-stack", action="store_true", help="the api, /auth and the ledger on DM_PORT")
    parser.add_argument("--target", default=os.environ.get("FUNCTION_TARGET", "api"))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.local_stack:
        return serve_api(settings)
    return serve_function(settings, args.target, args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
