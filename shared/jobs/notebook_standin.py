"""What the local stack runs for a Jupyter notebook: the project folder (its working directory)
served under the instance's base path, and a WebSocket endpoint that echoes what it gets, as a
notebook's kernels talk over WebSockets. The standard library only: it runs as a plain script.

    python3 notebook_standin.py --port 8888 --base-path /<instance-id>/
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.server
import os
import struct
import sys

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_FRAME = 16 * 1024 * 1024
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame (a server's frames are never masked)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def read_frame(stream) -> tuple[int, bytes] | None:
    """(opcode, payload) of the next frame; None at the end of the stream. Fragments are taken as
    they come: each is echoed as it is."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    masked = head[1] & 0x80
    if length == 126:
        length = struct.unpack("!H", stream.read(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", stream.read(8))[0]
    if length > MAX_FRAME:
        return None
    mask = stream.read(4) if masked else b""
    payload = stream.read(length)
    if len(payload) < length:
        return None
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class Handler(http.server.SimpleHTTPRequestHandler):
    base_path = "/"

    def _local(self) -> str | None:
        """The request's path below the base path; None when it is not below it."""
        path = self.path.split("?", 1)[0]
        if path + "/" == self.base_path:
            return None
        return path[len(self.base_path) - 1:] if path.startswith(self.base_path) else None

    def translate_path(self, path):
        local = self._local()
        return super().translate_path(local if local is not None else "/")

    def _routed(self) -> bool:
        path = self.path.split("?", 1)[0]
        if path + "/" == self.base_path:
            self.send_response(301)
            self.send_header("Location", self.base_path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        if self._local() is None:
            self.send_error(404, "Not below this notebook's base path")
            return False
        return True

    def do_GET(self):  # noqa: N802 - the base class's naming
        if not self._routed():
            return
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        if self._routed():
            super().do_HEAD()

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.send_error(400, "No Sec-WebSocket-Key")
            return
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            got = read_frame(self.rfile)
            if got is None:
                return
            opcode, payload = got
            if opcode == CLOSE:
                self.wfile.write(frame(CLOSE, payload[:2]))
                return
            if opcode == PING:
                self.wfile.write(frame(PONG, payload))
            elif opcode in (TEXT, BINARY, 0x0):
                self.wfile.write(frame(opcode or TEXT, payload))
            self.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-path", default="/")
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)
    base = "/" + args.base_path.strip("/") + "/" if args.base_path.strip("/") else "/"
    handler = type("BoundHandler", (Handler,), {"base_path": base})
    server = http.server.ThreadingHTTPServer((args.bind, args.port), handler)
    server.daemon_threads = True
    print(f"Notebook stand-in serving {os.getcwd()} at http://{args.bind}:{args.port}{base}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
