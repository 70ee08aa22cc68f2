"""A moto S3 server on a real HTTP port, for tests that need boto3 to talk over the network."""

from __future__ import annotations

from typing import Callable


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start moto in a thread on 127.0.0.1 and a free port; return its endpoint URL and a stop function."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: the OS picks
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop
