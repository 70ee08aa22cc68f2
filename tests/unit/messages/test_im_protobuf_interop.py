"""Our messages and the real `im-protobuf` package (8.2.1) agree on the wire, field by field.

Our modules and im-protobuf register the same .proto file names in protobuf's default
descriptor pool: when the two definitions differ the second import fails, and when they
agree the runtime hands back the classes already built, so a round trip inside one
process would compare a class with itself. The im-protobuf side therefore runs in its
own interpreter (`im_protobuf_peer.py`), which reads and writes hex-encoded bytes and
reports each field as `{number: [name, value]}` in JSON.

For every message, with every field set to a non-default value: our bytes decode in
im-protobuf to the same fields, im-protobuf's bytes decode in ours to the same fields,
and the two serialisations are byte-identical. The descriptors themselves (names,
numbers, types, labels, enum values) are compared too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format
from google.protobuf.descriptor import FieldDescriptor as F

from shared.messages.merchant_authority_request_response_message_pb2 import (
    AuthorityResponseEnum,
    MerchantAuthorityRequestResponseMessage,
)
from shared.messages.merchant_processing_charge_message_pb2 import MerchantProcessingChargeMessage
from shared.messages.merchant_storage_charge_message_pb2 import (
    MerchantStorageChargeMessage,
    StorageReasonEnum,
)
from shared.messages.pod_event_message_pb2 import PodEventMessage
from shared.messages.pod_message_pb2 import PodMessage
from shared.messages.processing_cost_message_pb2 import ProcessingCostMessage
from shared.messages.storage_bytes_message_pb2 import StorageBytesMessage
from shared.messages.workflow_message_pb2 import WorkflowMessage

try:
    IM_PROTOBUF_VERSION = version("im-protobuf")
except PackageNotFoundError:
    pytest.skip("im-protobuf is not installed (it is in the test extra: pip install -e '.[test]')",
                allow_module_level=True)

PEER = Path(__file__).resolve().parent / "im_protobuf_peer.py"
MESSAGES = [PodMessage, PodEventMessage, ProcessingCostMessage, StorageBytesMessage,
            MerchantProcessingChargeMessage, MerchantStorageChargeMessage,
            MerchantAuthorityRequestResponseMessage, WorkflowMessage]

UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# Realistic values, with the integers at their largest.
TYPICAL = {
    PodMessage: {
        "timestamp": "2026-03-14T15:09:26.535897Z",
        "pod_name": "instance-7f3c2a1e-5d4b-4c3a-9e8f-0a1b2c3d4e5f",
        "task": "task-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5",
        "purpose": UINT32_MAX,
        "phase": "CrashLoopBackOff",
        "start_timestamp": "2026-03-14T15:00:00Z",
        "finish_timestamp": "2026-03-14T15:09:26Z",
        "has_exit_code": True,
        "exit_code": UINT32_MAX,
        "instance": "instance-7f3c2a1e-5d4b-4c3a-9e8f-0a1b2c3d4e5f",
    },
    PodEventMessage: {
        "timestamp": "2026-03-14T15:09:26+00:00",
        "task": "task-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5",
        "level": "WARNING",
        "content": "Processed 100 records (µ = 2.5 Å, 3 skipped) ✓",
        "replace_prior_content": True,
    },
    ProcessingCostMessage: {
        "timestamp": "2026-03-14T15:09:26+00:00",
        "cost": "+2.5",
        "sqn": INT64_MAX,
        "instance": "instance-7f3c2a1e-5d4b-4c3a-9e8f-0a1b2c3d4e5f",
        "eoc": True,
    },
    StorageBytesMessage: {
        "timestamp": "2026-03-14T15:09:26Z",
        "bytes": "123,456,789,012",
        "subject": "dataset-2b9f7a30-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "username": "dmit-user-a",
        "product": "product-11111111-2222-3333-4444-555555555555",
        "unit": "unit-66666666-7777-8888-9999-000000000000",
    },
    MerchantProcessingChargeMessage: {
        "timestamp": "2026-03-14T15:09:26Z",
        "merchant_kind": "DATA_MANAGER",
        "merchant_name": "Squonk2 Data Manager",
        "merchant_id": UINT32_MAX,
        "auth_code": UINT32_MAX,
        "name": "instance-7f3c2a1e-5d4b-4c3a-9e8f-0a1b2c3d4e5f",
        "coins": "12.345",
        "sqn": UINT32_MAX,
        "eoc": True,
        "user": "dmit-user-a",
        "product": "product-11111111-2222-3333-4444-555555555555",
        "unit": "unit-66666666-7777-8888-9999-000000000000",
        "organisation": "org-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "additional_data": '{"job": "fragmentor", "collection": "im-test"}',
    },
    MerchantStorageChargeMessage: {
        "timestamp": "2026-03-14T15:09:26Z",
        "merchant_kind": "DATA_MANAGER",
        "merchant_name": "Squonk2 Data Manager",
        "merchant_id": UINT32_MAX,
        "reason": StorageReasonEnum.STORAGE_REASON_ENUM_PROJECT,
        "auth_code": UINT32_MAX,
        "name": "project-9a8b7c6d-5e4f-3a2b-1c0d-ef0123456789",
        "bytes": "-4,096",
        "user": "dmit-user-a",
        "product": "product-11111111-2222-3333-4444-555555555555",
        "unit": "unit-66666666-7777-8888-9999-000000000000",
        "organisation": "org-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "additional_data": '{"dataset": "dataset-2b9f7a30", "version": 3}',
    },
    # Request and response fields together (a real request leaves 10-12 unset); the edge
    # case sets response to GRANTED (1), this one to DENIED (2).
    MerchantAuthorityRequestResponseMessage: {
        "timestamp": "2026-03-14T15:09:26Z",
        "merchant_kind": "DATA_MANAGER",
        "merchant_name": "Squonk2 Data Manager",
        "merchant_id": UINT32_MAX,
        "action_operation": "dataset-upload",
        "action_value": "123,456,789",
        "action_reference_name": "compounds.sdf.gz",
        "action_reference_id": "dataset-2b9f7a30-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "response": AuthorityResponseEnum.AUTHORITY_RESPONSE_ENUM_DENIED,
        "authorisation_code": UINT32_MAX,
        "reason": "Product product-11111111-2222-3333-4444-555555555555 is at its coin limit",
        "user": "dmit-user-a",
        "product": "product-11111111-2222-3333-4444-555555555555",
        "unit": "unit-66666666-7777-8888-9999-000000000000",
        "organisation": "org-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    },
    WorkflowMessage: {
        "timestamp": "2026-03-14T15:09:26.535897Z",
        "action": "START",
        "running_workflow": "r-workflow-7f3c2a1e-5d4b-4c3a-9e8f-0a1b2c3d4e5f",
    },
}


def edge_values(cls) -> dict:
    """Other corners of each type: long non-ASCII strings (multi-byte length prefixes),
    uint32 with the top bit set, the most negative int64 (a ten-byte varint), enum 1."""
    values = {}
    for field in cls.DESCRIPTOR.fields:
        if field.type == F.TYPE_STRING:
            values[field.name] = f"{field.name}: ünïcödé ✓ 𝛼 " * 12
        elif field.type == F.TYPE_UINT32:
            values[field.name] = 2**31 + field.number
        elif field.type == F.TYPE_INT64:
            values[field.name] = INT64_MIN
        elif field.type == F.TYPE_BOOL:
            values[field.name] = True
        elif field.type == F.TYPE_ENUM:
            values[field.name] = field.enum_type.values_by_number[1].number
        else:
            raise AssertionError(f"no edge value for {cls.__name__}.{field.name}")
    return values


CASES = [pytest.param(cls, TYPICAL[cls], id=f"{cls.__name__}-typical") for cls in MESSAGES] + [
    pytest.param(cls, edge_values(cls), id=f"{cls.__name__}-edge") for cls in MESSAGES]


def peer(*requests: dict) -> list[dict]:
    """Ask the im-protobuf side (a separate interpreter) to answer the requests."""
    result = subprocess.run([sys.executable, str(PEER)], input=json.dumps(list(requests)),
                            capture_output=True, text=True, timeout=120, cwd=PEER.parent)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert len(answers) == len(requests)
    return answers


def named(cls) -> dict:
    return {"file": cls.DESCRIPTOR.file.name, "message": cls.DESCRIPTOR.full_name}


def typed(fields: dict) -> dict:
    """{number: [name, value]} with each value's type, so True and 1 are told apart."""
    return {number: [name, type(value).__name__, value]
            for number, (name, value) in fields.items()}


def fields_of(msg) -> dict:
    return {str(f.number): [f.name, getattr(msg, f.name)] for f in msg.DESCRIPTOR.fields}


def unknown_bytes(msg) -> bytes:
    rest = type(msg)()
    rest.CopyFrom(msg)
    for field in msg.DESCRIPTOR.fields:
        rest.ClearField(field.name)
    return rest.SerializeToString()


def test_the_peer_is_im_protobuf_8_2_1():
    (answer,) = peer({"op": "version"})
    assert answer["version"] == IM_PROTOBUF_VERSION == "8.2.1"
    assert answer["protobuf"].split(".")[0] == "6"  # im-protobuf 8.2.1 needs protobuf < 7


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_descriptors_are_the_same(cls):
    (answer,) = peer({"op": "descriptor", **named(cls)})
    theirs = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(answer["descriptor"]))
    ours = descriptor_pb2.FileDescriptorProto()
    cls.DESCRIPTOR.file.CopyToProto(ours)
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)
    assert ours == theirs


@pytest.mark.parametrize(("cls", "values"), CASES)
def test_round_trip_field_by_field(cls, values):
    descriptor = cls.DESCRIPTOR
    assert set(values) == set(descriptor.fields_by_name), "every field must be set"
    for name, value in values.items():
        assert value != descriptor.fields_by_name[name].default_value, f"{name} is the default"
    expected = typed({str(descriptor.fields_by_name[name].number): [name, value]
                      for name, value in values.items()})

    ours = cls(**values).SerializeToString()
    decoded, encoded = peer({"op": "decode", "hex": ours.hex(), **named(cls)},
                            {"op": "encode", "fields": values, **named(cls)})

    # Ours -> im-protobuf.
    assert typed(decoded["fields"]) == expected
    assert decoded["unknown"] == ""

    # im-protobuf -> ours.
    theirs = bytes.fromhex(encoded["hex"])
    msg = cls.FromString(theirs)
    assert typed(fields_of(msg)) == expected
    assert unknown_bytes(msg) == b""

    # The same bytes either way.
    assert theirs == ours
