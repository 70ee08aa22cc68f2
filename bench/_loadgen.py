"""A small HTTP/1.1 keep-alive load generator, run as its own process by requests_per_second.py.

``_loadgen.py URL --connections 8 --warmup 2 --duration 10 [--header 'K: V'] [--expect-count N]``
prints one JSON object: requests and rate inside the measured window, status codes,
latency percentiles, and (with --expect-count) how many sampled bodies had that ``count``.
Raw sockets, one thread per connection: cheap enough per request that the client is not
what limits a one-worker server.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

SAMPLE_EVERY = 25  # JSON-decode every 25th body of each connection


class Connection:
    def __init__(self, host: str, port: int, request: bytes):
        self.addr, self.request = (host, port), request
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _recv(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def get(self) -> tuple[int, bytes]:
        """One request; (status, body). Reconnects when the server closed the connection."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(self.request)
                while (end := self.buf.find(b"\r\n\r\n")) < 0:
                    self._recv()
                break
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run(url: str, headers: list[str], connections: int, warmup: float, duration: float,
        expect_count: int | None) -> dict:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n" + "".join(h + "\r\n" for h in headers)
               + "\r\n").encode("latin-1")
    start = time.perf_counter() + warmup
    stop = start + duration
    statuses: Counter = Counter()
    latencies: list[float] = []
    checked = [0, 0]  # sampled bodies, of which wrong
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = Connection(parts.hostname, parts.port, request)
        my_status: Counter = Counter()
        my_lat: list[float] = []
        n = ok = bad = 0
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    break
                status, body = conn.get()
                t1 = time.perf_counter()
                if t0 >= start and t1 < stop:  # completed inside the measured window
                    my_status[status] += 1
                    my_lat.append(t1 - t0)
                    n += 1
                    if expect_count is not None and n % SAMPLE_EVERY == 0:
                        ok += 1
                        if status != 200 or json.loads(body).get("count") != expect_count:
                            bad += 1
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        with lock:
            statuses.update(my_status)
            latencies.extend(my_lat)
            checked[0] += ok
            checked[1] += bad

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    total = sum(statuses.values())

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "requests": total, "seconds": duration, "rps": total / duration,
        "statuses": {str(k): v for k, v in statuses.items()},
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99)},
        "checked": checked[0], "check_failures": checked[1], "errors": errors[:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--expect-count", type=int)
    a = ap.parse_args()
    print(json.dumps(run(a.url, a.header, a.connections, a.warmup, a.duration, a.expect_count)))


if __name__ == "__main__":
    main()
