"""The messages match the Squonk2 reference: wire bytes, JSON form and field tables."""

import json
import pickle

import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor as F

from shared.messages import codec
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

DM = "informaticsmatters.protobuf.datamanager"
AS = "informaticsmatters.protobuf.accountserver"

# Wire check values, serialised with the reference library (im-protobuf 8.2.1).
WIRE = [
    (PodMessage(timestamp="2026-01-01T00:00:00Z", pod_name="instance-1", task="task-1",
                phase="Succeeded", has_exit_code=True, exit_code=0, instance="instance-1"),
     "0a14323032362d30312d30315430303a30303a30305a120a696e7374616e63652d311a067461736b2d31"
     "2a0953756363656564656480010192010a696e7374616e63652d31"),
    (PodEventMessage(timestamp="2026-01-01T00:00:00+00:00", task="task-1", level="INFO",
                     content="Processed 100 records"),
     "0a19323032362d30312d30315430303a30303a30302b30303a303012067461736b2d311a04494e464f2215"
     "50726f63657373656420313030207265636f726473"),
    (ProcessingCostMessage(timestamp="2026-01-01T00:00:00+00:00", cost="+2.5", sqn=3,
                           instance="instance-1"),
     "0a19323032362d30312d30315430303a30303a30302b30303a303012042b322e351803220a696e7374616e"
     "63652d31"),
    (ProcessingCostMessage(timestamp="2026-01-01T00:00:00+00:00", instance="instance-1",
                           eoc=True),
     "0a19323032362d30312d30315430303a30303a30302b30303a3030220a696e7374616e63652d31800101"),
    # The action_* vocabulary is not specified by the reference: these values only exercise
    # the encoding.
    (MerchantAuthorityRequestResponseMessage(
        timestamp="2026-01-01T00:00:00Z", merchant_kind="DATA_MANAGER", merchant_name="dm",
        merchant_id=1, action_operation="RUN_JOB", action_reference_id="instance-1",
        response=AuthorityResponseEnum.AUTHORITY_RESPONSE_ENUM_GRANTED, authorisation_code=42,
        product="product-1"),
     "0a14323032362d30312d30315430303a30303a30305a120c444154415f4d414e414745521a02646d2001"
     "2a0752554e5f4a4f42420a696e7374616e63652d315001582a8a010970726f647563742d31"),
    (MerchantAuthorityRequestResponseMessage(
        timestamp="2026-01-01T00:00:00Z",
        response=AuthorityResponseEnum.AUTHORITY_RESPONSE_ENUM_DENIED, reason="At limit",
        unit="unit-1"),
     "0a14323032362d30312d30315430303a30303a30305a500262084174206c696d6974920106756e69742d31"),
    (WorkflowMessage(timestamp="2026-01-01T00:00:00Z", action="START", running_workflow="r-workflow-1"),
     "0a14323032362d30312d30315430303a30303a30305a120553544152541a0c722d776f726b666c6f772d31"),
]


@pytest.mark.parametrize(("msg", "wire"), WIRE, ids=["pod", "pod-event", "cost", "cost-eoc",
                                                     "authority-granted", "authority-denied", "workflow"])
def test_wire_check_values(msg, wire):
    expected = bytes.fromhex(wire)
    assert codec.to_bytes(msg) == expected
    assert msg.SerializeToString() == expected
    parsed = codec.from_bytes(type(msg), expected)
    assert parsed == msg
    assert codec.from_bytes(type(msg), memoryview(expected)) == msg


def test_json_form():
    msg = ProcessingCostMessage(timestamp="2026-01-01T00:00:00+00:00", cost="+2.5", sqn=3,
                                instance="instance-1")
    assert json_format.MessageToDict(msg) == {
        "timestamp": "2026-01-01T00:00:00+00:00", "cost": "+2.5", "sqn": "3",
        "instance": "instance-1"}  # int64 as a string, eoc (false) omitted
    assert json.loads(codec.to_json(msg)) == json_format.MessageToDict(msg)
    assert json_format.Parse(codec.to_json(msg), ProcessingCostMessage()) == msg

    pod = PodMessage(pod_name="instance-1", has_exit_code=True, exit_code=0, phase="Succeeded")
    assert json_format.MessageToDict(pod) == {
        "podName": "instance-1", "hasExitCode": True, "phase": "Succeeded"}

    charge = MerchantStorageChargeMessage(
        reason=StorageReasonEnum.STORAGE_REASON_ENUM_PROJECT, bytes="+4,096",
        additional_data="{}")
    assert json_format.MessageToDict(charge) == {
        "reason": "STORAGE_REASON_ENUM_PROJECT", "bytes": "+4,096", "additionalData": "{}"}

    authority = MerchantAuthorityRequestResponseMessage(
        merchant_id=1, action_reference_id="instance-1",
        response=AuthorityResponseEnum.AUTHORITY_RESPONSE_ENUM_GRANTED, authorisation_code=42)
    assert json_format.MessageToDict(authority) == {
        "merchantId": 1, "actionReferenceId": "instance-1",
        "response": "AUTHORITY_RESPONSE_ENUM_GRANTED", "authorisationCode": 42}
    assert json_format.Parse(codec.to_json(authority),
                             MerchantAuthorityRequestResponseMessage()) == authority


def test_storage_reason_enum():
    assert StorageReasonEnum.DESCRIPTOR.full_name == f"{AS}.StorageReasonEnum"
    assert dict(StorageReasonEnum.items()) == {
        "STORAGE_REASON_ENUM_UNSPECIFIED": 0,
        "STORAGE_REASON_ENUM_DATASET": 1,
        "STORAGE_REASON_ENUM_PROJECT": 2,
    }


def test_authority_response_enum():
    assert AuthorityResponseEnum.DESCRIPTOR.full_name == f"{AS}.AuthorityResponseEnum"
    assert dict(AuthorityResponseEnum.items()) == {
        "AUTHORITY_RESPONSE_ENUM_UNSPECIFIED": 0,
        "AUTHORITY_RESPONSE_ENUM_GRANTED": 1,
        "AUTHORITY_RESPONSE_ENUM_DENIED": 2,
    }


CHARGE_PAYER = [(16, "user", F.TYPE_STRING), (17, "product", F.TYPE_STRING),
                (18, "unit", F.TYPE_STRING), (19, "organisation", F.TYPE_STRING),
                (30, "additional_data", F.TYPE_STRING)]
MERCHANT = [(1, "timestamp", F.TYPE_STRING), (2, "merchant_kind", F.TYPE_STRING),
            (3, "merchant_name", F.TYPE_STRING), (4, "merchant_id", F.TYPE_UINT32)]

# The field tables of the reference, message by message: (number, name, type).
TABLES = {
    PodMessage: (DM, "pod_message.proto", [
        (1, "timestamp", F.TYPE_STRING), (2, "pod_name", F.TYPE_STRING),
        (3, "task", F.TYPE_STRING), (4, "purpose", F.TYPE_UINT32),
        (5, "phase", F.TYPE_STRING), (6, "start_timestamp", F.TYPE_STRING),
        (7, "finish_timestamp", F.TYPE_STRING), (16, "has_exit_code", F.TYPE_BOOL),
        (17, "exit_code", F.TYPE_UINT32), (18, "instance", F.TYPE_STRING)]),
    PodEventMessage: (DM, "pod_event_message.proto", [
        (1, "timestamp", F.TYPE_STRING), (2, "task", F.TYPE_STRING),
        (3, "level", F.TYPE_STRING), (4, "content", F.TYPE_STRING),
        (5, "replace_prior_content", F.TYPE_BOOL)]),
    ProcessingCostMessage: (DM, "processing_cost_message.proto", [
        (1, "timestamp", F.TYPE_STRING), (2, "cost", F.TYPE_STRING),
        (3, "sqn", F.TYPE_INT64), (4, "instance", F.TYPE_STRING), (16, "eoc", F.TYPE_BOOL)]),
    StorageBytesMessage: (DM, "storage_bytes_message.proto", [
        (1, "timestamp", F.TYPE_STRING), (2, "bytes", F.TYPE_STRING),
        (3, "subject", F.TYPE_STRING), (4, "username", F.TYPE_STRING),
        (5, "product", F.TYPE_STRING), (6, "unit", F.TYPE_STRING)]),
    MerchantProcessingChargeMessage: (AS, "merchant_processing_charge_message.proto", MERCHANT + [
        (6, "auth_code", F.TYPE_UINT32), (7, "name", F.TYPE_STRING),
        (8, "coins", F.TYPE_STRING), (9, "sqn", F.TYPE_UINT32), (10, "eoc", F.TYPE_BOOL),
        *CHARGE_PAYER]),
    MerchantStorageChargeMessage: (AS, "merchant_storage_charge_message.proto", MERCHANT + [
        (5, "reason", F.TYPE_ENUM), (6, "auth_code", F.TYPE_UINT32),
        (7, "name", F.TYPE_STRING), (8, "bytes", F.TYPE_STRING), *CHARGE_PAYER]),
    MerchantAuthorityRequestResponseMessage: (
        AS, "merchant_authority_request_response_message.proto", MERCHANT + [
            (5, "action_operation", F.TYPE_STRING), (6, "action_value", F.TYPE_STRING),
            (7, "action_reference_name", F.TYPE_STRING),
            (8, "action_reference_id", F.TYPE_STRING), (10, "response", F.TYPE_ENUM),
            (11, "authorisation_code", F.TYPE_UINT32), (12, "reason", F.TYPE_STRING),
            (16, "user", F.TYPE_STRING), (17, "product", F.TYPE_STRING),
            (18, "unit", F.TYPE_STRING), (19, "organisation", F.TYPE_STRING)]),
    WorkflowMessage: (DM, "workflow_message.proto", [
        (1, "timestamp", F.TYPE_STRING), (2, "action", F.TYPE_STRING),
        (3, "running_workflow", F.TYPE_STRING)]),
}

# The enum-typed fields, message by message: {field name: enum}, each enum defined in the
# message's own file.
ENUMS = {
    MerchantStorageChargeMessage: {"reason": StorageReasonEnum},
    MerchantAuthorityRequestResponseMessage: {"response": AuthorityResponseEnum},
}


@pytest.mark.parametrize("cls", list(TABLES), ids=lambda c: c.__name__)
def test_fields_match_the_reference_table(cls):
    package, file_name, table = TABLES[cls]
    desc = cls.DESCRIPTOR
    assert desc.full_name == f"{package}.{cls.__name__}"
    assert desc.file.package == package
    assert desc.file.name == f"{package.replace('.', '/')}/{file_name}"
    proto = descriptor_pb2.FileDescriptorProto()
    desc.file.CopyToProto(proto)
    assert proto.syntax == "proto3"
    assert list(desc.file.message_types_by_name) == [cls.__name__]
    assert list(desc.file.dependencies) == []
    assert not desc.nested_types and not desc.oneofs

    got = sorted((f.number, f.name, f.type) for f in desc.fields)
    assert got == sorted(table)
    for field in desc.fields:
        assert not field.is_repeated and not field.has_presence, field.name
    enums = ENUMS.get(cls, {})
    assert {f.name for f in desc.fields if f.type == F.TYPE_ENUM} == set(enums)
    for name, enum in enums.items():
        assert desc.fields_by_name[name].enum_type is enum.DESCRIPTOR
    assert list(desc.file.enum_types_by_name) == [e.DESCRIPTOR.name for e in enums.values()]


def test_messages_pickle():
    msg = MerchantProcessingChargeMessage(auth_code=7, coins="1.5", sqn=2, eoc=True)
    assert pickle.loads(pickle.dumps(msg)) == msg
    authority = MerchantAuthorityRequestResponseMessage(
        response=AuthorityResponseEnum.AUTHORITY_RESPONSE_ENUM_DENIED, reason="At limit")
    assert pickle.loads(pickle.dumps(authority)) == authority
