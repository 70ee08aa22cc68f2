"""A 512 MiB upload through PUT /data-manager-api/project/{id}/file vs a plain file copy.

The source file (random bytes) and both destinations live on one filesystem (the temp
DM_DATA_DIR). Each of 7 rounds: sync, time ``shutil.copyfile``; sync, time the upload
(multipart ``path`` field then ``file`` part, streamed from the file with a precomputed
Content-Length); check the stored file's size and SHA-256; delete both outputs. Round 0 is
an untimed warm-up: in a VM the first writes of 512 MiB touch fresh memory and are slow
for whichever goes first; later rounds reuse the freed pages. Meanwhile
psutil samples the RSS of the api's process (``python -m shared.stack --target api``, one process:
its server reads the body, spooling it to a temporary file, and serves the request in a worker
thread) every 10 ms: peak RSS minus the baseline taken after a warm-up upload.

Two floors are timed in each round too, to show what the machine allows: the same file sent by a
client process as the upload's client sends it (1 MiB reads, ``sendall``) over a bare loopback TCP
connection into ``recv_into`` and dropped (``bare_tcp``), and the same received into a file by the
store's own writer (``shared.storage.local._FileWriter``: ``os.write``, writeback started every 8 MiB)
and fsynced (``bare_tcp_store``: what any upload that survives a crash must do, without HTTP or
multipart).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _common as c
import _system as system

SIZE = 512 * 1024**2
ROUNDS = 7  # the VM's disk makes single rounds noisy: a median of 7 is steadier
TARGET_SPEED_RATIO, TARGET_RSS_MIB = 0.6, 100
BLOCK = 1024**2
MiB = 1024**2


def make_source(path: Path, size: int) -> str:
    """Random bytes; their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            chunk = os.urandom(8 * MiB)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


SENDER = """
import socket, sys
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "rb") as f:
    while block := f.read(int(sys.argv[3])):
        conn.sendall(block)
conn.close()
"""


def bare_transfer(source: Path, store_to: Path | None = None) -> float:
    """Seconds to send ``source`` from a client process over loopback TCP (1 MiB reads, as the upload's
    client) into ``recv_into``: dropped, or written to ``store_to`` and fsynced. No HTTP, no parsing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(listener.getsockname()[1]), str(source),
                                   str(BLOCK)])
        conn, _ = listener.accept()
    from shared.storage.local import _FileWriter

    buf = bytearray(4 * MiB)
    view = memoryview(buf)
    fd = os.open(store_to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if store_to else None
    writer = _FileWriter(fd) if fd is not None else None  # the store's writer: writeback started as it goes
    try:
        with conn:
            t0 = time.perf_counter()
            while n := conn.recv_into(view):
                if writer is not None:
                    writer.write(view[:n])
            if writer is not None:
                writer.flush()
                os.fsync(fd)
            elapsed = time.perf_counter() - t0
    finally:
        if fd is not None:
            os.close(fd)
            os.unlink(store_to)
        sender.wait(60)
    return elapsed


class MultipartBody:
    """A file-like multipart/form-data body: text fields, then one file part read lazily."""

    def __init__(self, fields: dict[str, str], field: str, path: Path, filename: str):
        self.boundary = f"bench-{uuid.uuid4().hex}"
        b = self.boundary
        head = "".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
        head += (f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n")
        self._parts = [head.encode(), open(path, "rb"), f"\r\n--{b}--\r\n".encode()]
        self.length = len(self._parts[0]) + os.path.getsize(path) + len(self._parts[2])
        self.content_type = f"multipart/form-data; boundary={b}"

    def read(self, n: int = -1) -> bytes:
        while self._parts:
            part = self._parts[0]
            if isinstance(part, bytes):
                data, rest = (part, b"") if n < 0 else (part[:n], part[n:])
                self._parts[0] = rest
            else:
                data = part.read(n)
            if data:
                return data
            if not isinstance(part, bytes):
                part.close()
            self._parts.pop(0)
        return b""


def upload(api: c.Function, token: str, project_id: str, source: Path, name: str) -> dict:
    body = MultipartBody({"path": "/"}, "file", source, name)
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=600, blocksize=BLOCK)
    try:
        conn.request("PUT", f"/data-manager-api/project/{project_id}/file", body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": body.content_type,
            "Content-Length": str(body.length)})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
    finally:
        conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload answered {resp.status}: {text[:300]}")
    return json.loads(text) if text else {}


def delete(api: c.Function, token: str, project_id: str, name: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    conn.request("DELETE", f"/data-manager-api/file?project_id={project_id}&path=/&file={name}",
                 headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 204:
        raise RuntimeError(f"delete answered {resp.status}")


def main() -> c.Report:
    report = c.Report("upload")
    with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        identity = c.Identity(tmp)
        facts = c.prepare_data_dir(data, identity.issuer)
        token = identity.token("alice")
        source = data / "source.bin"
        print(f"creating a {SIZE // MiB} MiB source file ...", flush=True)
        source_sha = make_source(source, SIZE)
        small = data / "small.bin"
        make_source(small, 8 * MiB)

        copies, uploads, growths, bare, bare_store = [], [], [], [], []
        with c.api_function(data, identity.issuer) as api:
            api.wait_200(c.API_VERSION)
            [pid] = c.create_projects(api.url, token, facts["users"]["alice"]["project_tier_product_id"], 1)
            upload(api, token, pid, small, "warm-up.bin")  # imports and buffers in place
            time.sleep(0.2)
            baseline = system.RssSampler(api, interval=0.010).rss()
            stored = data / "store" / "projects" / pid / "big.bin"
            for i in range(ROUNDS + 1):
                copy_to = data / "copy.bin"
                os.sync()
                t0 = time.perf_counter()
                shutil.copyfile(source, copy_to)
                copied = time.perf_counter() - t0
                copy_to.unlink()
                os.sync()
                floor = bare_transfer(source)
                os.sync()
                floor_store = bare_transfer(source, data / "bare.bin")

                os.sync()
                with system.RssSampler(api, interval=0.010) as sampler:
                    t0 = time.perf_counter()
                    upload(api, token, pid, source, "big.bin")
                    uploaded = time.perf_counter() - t0
                if i:
                    copies.append(copied)
                    uploads.append(uploaded)
                    growths.append(sampler.peak - baseline)
                    bare.append(floor)
                    bare_store.append(floor_store)
                ok = stored.stat().st_size == SIZE and sha256_of(stored) == source_sha
                if not ok:
                    raise RuntimeError("the stored file differs from the source")
                delete(api, token, pid, "big.bin")
                print(f"  round {i}: copy {copied:.2f} s, bare TCP {floor:.2f} s, bare TCP + write + fsync "
                      f"{floor_store:.2f} s, upload {uploaded:.2f} s, "
                      f"peak RSS growth {(sampler.peak - baseline) / MiB:.1f} MiB ({sampler.samples} samples), "
                      f"size and SHA-256 match{'' if i else ' (warm-up)'}", flush=True)
        identity.stop()

    copy_s, upload_s = c.median(copies), c.median(uploads)
    copy_rate, upload_rate = SIZE / MiB / copy_s, SIZE / MiB / upload_s
    growth = max(growths) / MiB
    print("medians:")
    report.figure("copy_mib_s", copy_rate, f"shutil.copyfile: {copy_s:.2f} s = {copy_rate:.0f} MiB/s")
    report.figure("upload_mib_s", upload_rate, f"upload: {upload_s:.2f} s = {upload_rate:.0f} MiB/s")
    report.figure("speed_ratio", upload_rate / copy_rate, f"upload / copy speed: {upload_rate / copy_rate:.2f}")
    bare_s, bare_store_s = c.median(bare), c.median(bare_store)
    report.figure("bare_tcp_s", bare_s, f"floor: the file over bare loopback TCP, dropped: {bare_s:.2f} s "
                  f"= {copy_s / bare_s:.2f}x copy speed")
    report.figure("bare_tcp_store_s", bare_store_s, f"floor: the same, written to a file and fsynced: "
                  f"{bare_store_s:.2f} s = {copy_s / bare_store_s:.2f}x copy speed; the upload takes "
                  f"{upload_s / bare_store_s:.2f}x this floor's time")
    report.figure("baseline_rss_mib", baseline / MiB, f"api process RSS after warm-up: {baseline / MiB:.0f} MiB")
    report.figure("peak_rss_growth_mib", growth, f"peak RSS growth during upload (max of {ROUNDS}): {growth:.1f} MiB")
    report.figures["rounds_s"] = {"copy": [round(x, 3) for x in copies], "upload": [round(x, 3) for x in uploads],
                                  "bare_tcp": [round(x, 3) for x in bare],
                                  "bare_tcp_store": [round(x, 3) for x in bare_store]}
    report.target("upload speed vs copy", upload_rate / copy_rate, ">=", TARGET_SPEED_RATIO, "x")
    report.target("peak RSS growth", growth, "<", TARGET_RSS_MIB, " MiB")
    report.save()
    return report


if __name__ == "__main__":
    main()
