"""Fixtures for the local Broker's tests: served WSGI apps, the dead-letter file, and a Router
built from manifests and served on its own port."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from shared.events.delivery import Router
from shared.events.triggers import load_routing, service_resolver
from tests.unit.events.broker_kit import SCALE, Server

@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(app: Callable) -> str:
        servers.append(Server(app))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dead_letter_file(tmp_path) -> Path:
    return tmp_path / "dead-letters.jsonl"


@pytest.fixture
def make_router(tmp_path, serve, dead_letter_file):
    """make_router(objects, services) -> (router, ingress URL): the objects written to a YAML
    file, read back by load_routing, the router started and its ingress served."""
    routers: list[Router] = []

    def make(objects: list[dict], services: dict[str, str], **options: Any) -> tuple[Router, str]:
        path = tmp_path / f"routing-{len(routers)}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        options.setdefault("time_scale", SCALE)
        router = Router(load_routing([path]), service_resolver(services), dead_letter_file=dead_letter_file,
                        **options)
        routers.append(router.start())
        return router, serve(router.wsgi_app)

    yield make
    for router in routers:
        assert router.stop(5)
