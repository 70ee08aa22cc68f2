"""Regenerate the Python protobuf modules in shared/messages/ from protos/**/*.proto.

    python protos/generate.py           # rewrite shared/messages/*_pb2.py and *_pb2.pyi
    python protos/generate.py --check   # regenerate into a temporary directory and
                                        # exit 1, listing the files that differ

The compiler is the protoc bundled with grpcio-tools (`python -m grpc_tools.protoc`),
so the output depends only on the .proto files and the pinned grpcio-tools version.
protoc is run with `-I protos`, so each file keeps its upstream descriptor name
(`informaticsmatters/protobuf/<area>/<name>.proto`). The files import nothing, so
the output is flattened into one package, and the module name protoc writes into
each `*_pb2.py` is changed to `shared.messages.<name>_pb2` (where the module really
lives, so that e.g. pickling finds the classes).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_DIR = ROOT / "shared" / "messages"
OUT_PACKAGE = "shared.messages"
GENERATED = re.compile(r".+_pb2\.pyi?$")
VERSION_LINE = re.compile(rb"^# Protobuf Python Version: (\S+)$", re.MULTILINE)


def proto_files() -> list[str]:
    """The .proto files under protos/, as sorted paths relative to it."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def _protoc(*args: str, cwd: Path) -> str:
    try:
        import grpc_tools  # noqa: F401  (only to give a clear message when missing)
    except ImportError:
        sys.exit("grpcio-tools is not installed: pip install -e '.[test]' (or make install)")
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args],
                            cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"protoc failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.strip()


def protoc_version() -> str:
    return _protoc("--version", cwd=PROTO_ROOT)


def generate() -> dict[str, bytes]:
    """Compile every .proto; return {file name in shared/messages: content}."""
    sources = proto_files()
    if not sources:
        sys.exit(f"no .proto files under {PROTO_ROOT.name}/")
    with tempfile.TemporaryDirectory() as tmp:
        _protoc("-I", ".", f"--python_out={tmp}", f"--pyi_out={tmp}", *sources, cwd=PROTO_ROOT)
        generated: dict[str, bytes] = {}
        for source in sources:
            stem = source[: -len(".proto")]
            for suffix in ("_pb2.py", "_pb2.pyi"):
                path = Path(tmp) / f"{stem}{suffix}"
                name = path.name
                if name in generated:
                    sys.exit(f"two .proto files would both produce shared/messages/{name}")
                content = path.read_bytes()
                if suffix == "_pb2.py":
                    content = _relocate(content, stem)
                generated[name] = content
    return generated


def _relocate(content: bytes, stem: str) -> bytes:
    """Point the module name protoc wrote at the flattened module."""
    old = ("'" + stem.replace("/", ".") + "_pb2'").encode()
    new = ("'" + OUT_PACKAGE + "." + stem.rsplit("/", 1)[-1] + "_pb2'").encode()
    if content.count(old) != 1:
        sys.exit(f"unexpected protoc output for {stem}.proto: module name {old.decode()} "
                 "not found exactly once")
    return content.replace(old, new)


def existing(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*_pb2.py*"))
            if GENERATED.fullmatch(p.name)}


def differences(generated: dict[str, bytes], out_dir: Path) -> list[str]:
    """Lines describing each file of out_dir that is not what generate() makes."""
    current = existing(out_dir)
    rel = out_dir.relative_to(ROOT).as_posix() if out_dir.is_relative_to(ROOT) else str(out_dir)
    lines = []
    for name in sorted(set(generated) | set(current)):
        if name not in current:
            lines.append(f"{rel}/{name}: missing")
        elif name not in generated:
            lines.append(f"{rel}/{name}: stale (no .proto makes it)")
        elif current[name] != generated[name]:
            lines.append(f"{rel}/{name}: differs")
    return lines


def write(generated: dict[str, bytes], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in existing(out_dir):
        if name not in generated:
            (out_dir / name).unlink()
    for name, content in generated.items():
        (out_dir / name).write_bytes(content)


def _version_hint(generated: dict[str, bytes], out_dir: Path) -> str | None:
    def versions(files: dict[str, bytes]) -> set[str]:
        return {m.group(1).decode() for c in files.values() if (m := VERSION_LINE.search(c))}

    ours, theirs = versions(generated), versions(existing(out_dir))
    if theirs and ours != theirs:
        return (f"note: this protoc makes gencode {', '.join(sorted(ours))}, the committed files "
                f"were made with {', '.join(sorted(theirs))}: install the grpcio-tools version "
                "pinned in pyproject.toml")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 listing generated files that are out of date")
    args = parser.parse_args(argv)
    generated = generate()
    if args.check:
        lines = differences(generated, OUT_DIR)
        if lines:
            print("generated protobuf modules are out of date (run: make protos):")
            for line in lines:
                print(f"  {line}")
            if hint := _version_hint(generated, OUT_DIR):
                print(hint)
            return 1
        print(f"{len(generated)} generated files up to date ({protoc_version()})")
        return 0
    write(generated, OUT_DIR)
    print(f"wrote {len(generated)} files to {OUT_DIR.relative_to(ROOT).as_posix()}/ "
          f"({protoc_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
