"""`shared.http_server` on a real socket for unit tests: a server in a thread, and an echo app."""

from __future__ import annotations

import contextlib
import threading


def echo(environ, start_response):
    """Answers 200 with the request body."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def serving(app, limits, **options):
    """`create_server(app, …)` on a free port, run in a thread until the block ends."""
    from waitress import wasyncore

    from shared.http_server import create_server

    running = create_server(app, "127.0.0.1", 0, limits, **options)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.task_dispatcher.shutdown(timeout=2)
        running.trigger.pull_trigger(lambda: wasyncore.close_all(running._map))
        thread.join(5)
