"""The Kubernetes API stand-in and a real `kubernetes` client on it, for the launcher's tests."""

from __future__ import annotations

import threading

import pytest

from tests.k8s_standin import KubernetesStandIn


@pytest.fixture
def standin():
    before = set(threading.enumerate())
    server = KubernetesStandIn().start()
    yield server
    server.stop()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def api_client(standin):
    from kubernetes import client

    api = client.ApiClient(client.Configuration(host=standin.url))
    yield api
    api.close()
    api.rest_client.pool_manager.clear()
