"""The committed shared/messages/*_pb2 modules are what protos/generate.py makes."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "protos" / "generate.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("protos_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_passes_on_committed_modules():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_pair_of_modules_per_proto(gen):
    protos = gen.proto_files()
    assert len(protos) == 8
    names = set(gen.generate())
    expected = {Path(p).stem + suffix for p in protos for suffix in ("_pb2.py", "_pb2.pyi")}
    assert names == expected


def test_generation_is_deterministic(gen):
    assert gen.generate() == gen.generate()


def test_check_reports_differing_missing_and_stale_files(gen, tmp_path):
    generated = gen.generate()
    gen.write(generated, tmp_path)
    assert gen.differences(generated, tmp_path) == []

    (tmp_path / "pod_message_pb2.py").write_bytes(b"# edited\n")
    (tmp_path / "pod_event_message_pb2.pyi").unlink()
    (tmp_path / "old_message_pb2.py").write_bytes(b"")
    lines = gen.differences(generated, tmp_path)
    assert [line.split("/")[-1] for line in lines] == [
        "old_message_pb2.py: stale (no .proto makes it)",
        "pod_event_message_pb2.pyi: missing",
        "pod_message_pb2.py: differs",
    ]

    gen.write(generated, tmp_path)
    assert gen.differences(generated, tmp_path) == []
    assert not (tmp_path / "old_message_pb2.py").exists()


def test_modules_name_their_own_location():
    # in a fresh interpreter: once im-protobuf's modules are loaded (the workflow engine imports
    # them) the descriptor pool hands back the classes it built first, named after their module
    code = ("from shared.messages.merchant_storage_charge_message_pb2 import MerchantStorageChargeMessage as M; "
            "from shared.messages.pod_message_pb2 import PodMessage as P; print(P.__module__, M.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[3], check=True).stdout.split()
    assert out == ["shared.messages.pod_message_pb2", "shared.messages.merchant_storage_charge_message_pb2"]
