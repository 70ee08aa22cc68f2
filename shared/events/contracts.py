"""Every event the platform sends or receives: one small typed class per event.

A contract names its CloudEvent ``type``, the ``source`` that sends it, its content type
and its payload's fields. Senders build one and queue it (``outbox.add``); receivers
get one back from the bytes (``Consumer.on``), so a missing or wrong field is found here,
in one place, and raised as a ``PermanentFailure`` (the broker dead-letters the event).
The Trigger manifests' tests check that every contract a function receives is routed to
it. Adding an event means adding one class here.

Nothing heavy is imported at module level: each event function imports this on its
first request.
"""

from __future__ import annotations

import dataclasses
import json
from types import UnionType
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from shared.errors import PermanentFailure

API_SOURCE = "/data-manager/api"
KEW_SOURCE = "/data-manager/kew"
MONITOR_SOURCE = "/data-manager/monitor"
APISERVER_RESOURCE = "dev.knative.apiserver.resource."  # ApiServerSource, Resource mode (knative.md §3)


class Contract:
    """What every event has: its CloudEvent type, source and content type, and its data."""

    TYPE: ClassVar[str]
    SOURCE: ClassVar[str]
    CONTENT_TYPE: ClassVar[str] = "application/json"

    @property
    def type(self) -> str:
        return self.TYPE

    @property
    def subject(self) -> str | None:
        return None

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes | None, event_type: str) -> "Contract":
        raise NotImplementedError

    @classmethod
    def types(cls) -> tuple[str, ...]:
        """The CloudEvent types this contract covers (one, but for the pod events' three)."""
        return (cls.TYPE,)


class JsonContract(Contract):
    """A contract whose data is a JSON object of the dataclass's fields.

    Fields are checked by their annotations: ``str`` (non-empty), ``int`` (or a string of
    digits), ``bool``; ``X | None`` may be absent; ``Any`` is passed through for the
    receiver to judge (e.g. a verdict it re-checks rather than trusts).
    """

    @classmethod
    def from_dict(cls, data: Any) -> "JsonContract":
        if not isinstance(data, Mapping):
            raise PermanentFailure(f"The {cls.TYPE} event's data is not a JSON object")
        values, problems = {}, []
        for field in dataclasses.fields(cls):
            hint = _hints(cls)[field.name]
            optional = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if field.name not in data or data[field.name] is None:
                if not optional:
                    problems.append(f"{field.name} is missing")
                continue
            try:
                values[field.name] = _coerce(data[field.name], hint)
            except ValueError as exc:
                problems.append(f"{field.name} {exc}")
        if problems:
            raise PermanentFailure(f"The {cls.TYPE} event is not usable: {'; '.join(problems)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The payload; absent optional fields are left out."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None, event_type: str) -> "JsonContract":
        try:
            decoded = json.loads(data or b"null")
        except ValueError:
            raise PermanentFailure(f"The {cls.TYPE} event's data is not JSON") from None
        return cls.from_dict(decoded)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotation asks, or ValueError saying what is wrong."""
    wanted = hint
    if typing.get_origin(hint) in (typing.Union, UnionType):  # X | None: absent was handled
        (wanted,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if wanted is Any:
        return value
    if wanted is bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if wanted is int:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
            value = int(value)  # ASCII only: str.isdigit() also takes other scripts' digits
        if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
            raise ValueError("must be a whole number of at most 64 bits")
        return value
    if wanted is str:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        return value
    raise TypeError(f"no rule for {wanted!r}")  # a contract with an unsupported field type


# --- the upload function's events (sent by the api) -----------------------------------------


@dataclass(frozen=True)
class _DatasetVersionEvent(JsonContract):
    """The fields every event about one dataset version has."""

    task_id: str
    dataset_id: str
    version: int

    @property
    def subject(self) -> str:
        return f"{self.dataset_id}/{self.version}"


@dataclass(frozen=True)
class DatasetUpload(_DatasetVersionEvent):
    """A file staged by the api, to become a dataset version; ``checked`` is the api's verdict
    on the content as it arrived (size, digest, records, error), when it could check it."""

    TYPE: ClassVar[str] = "dm.dataset.upload.v1"
    SOURCE: ClassVar[str] = API_SOURCE
    staged_key: str
    checked: Any = None


@dataclass(frozen=True)
class DatasetImport(_DatasetVersionEvent):
    """A project file to copy into the dataset store as a new version (the file stays)."""

    TYPE: ClassVar[str] = "dm.dataset.import.v1"
    SOURCE: ClassVar[str] = API_SOURCE
    source_key: str


@dataclass(frozen=True)
class DatasetDelete(_DatasetVersionEvent):
    """A deleted version whose content (and managed copies, unless kept) is to be removed."""

    TYPE: ClassVar[str] = "dm.dataset.delete.v1"
    SOURCE: ClassVar[str] = API_SOURCE
    keep_project_files: bool = False


@dataclass(frozen=True)
class FileAttach(JsonContract):
    """A dataset version to copy into a project as a managed file."""

    TYPE: ClassVar[str] = "dm.file.attach.v1"
    SOURCE: ClassVar[str] = API_SOURCE
    task_id: str
    file_id: str
    source_key: str

    @property
    def subject(self) -> str:
        return self.file_id


# --- pods (ApiServerSource to kew) and PodMessages (kew to pbc) -----------------------------


@dataclass(frozen=True)
class PodChange(Contract):
    """A Pod added, updated or deleted, as an ApiServerSource in Resource mode sends it: the
    whole Pod as JSON (knative.md §3); what it means for an instance is kew's to read."""

    ACTIONS: ClassVar[tuple[str, ...]] = ("add", "update", "delete")
    TYPE: ClassVar[str] = APISERVER_RESOURCE + "update"
    SOURCE: ClassVar[str] = "https://kubernetes.default.svc"
    action: str
    pod: Mapping[str, Any]

    @property
    def type(self) -> str:
        return APISERVER_RESOURCE + self.action

    @property
    def subject(self) -> str:
        meta = self.pod.get("metadata") or {}
        return f"/apis/v1/namespaces/{meta.get('namespace') or 'default'}/pods/{meta.get('name') or ''}"

    @classmethod
    def types(cls) -> tuple[str, ...]:
        return tuple(APISERVER_RESOURCE + action for action in cls.ACTIONS)

    def to_bytes(self) -> bytes:
        return json.dumps(self.pod, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None, event_type: str) -> "PodChange":
        action = event_type[len(APISERVER_RESOURCE):] if event_type.startswith(APISERVER_RESOURCE) else ""
        if action not in cls.ACTIONS:
            raise PermanentFailure(f"{event_type!r} is not a pod event")
        try:
            pod = json.loads(data or b"null")
        except ValueError:
            pod = None
        if not isinstance(pod, dict) or pod.get("kind") != "Pod":
            raise PermanentFailure("The event's data is not a Pod")
        return cls(action, pod)

    @property
    def deleted(self) -> bool:
        return self.action == "delete"

    @property
    def labels(self) -> Mapping[str, str]:
        return (self.pod.get("metadata") or {}).get("labels") or {}


class ProtobufContract(Contract):
    """A contract whose data is one protobuf message (``MESSAGE``: "module:Class" under
    ``shared.messages``, imported on first use)."""

    CONTENT_TYPE: ClassVar[str] = "application/protobuf"
    MESSAGE: ClassVar[str]
    message: Any

    @classmethod
    def message_class(cls) -> Any:
        import importlib

        module, name = cls.MESSAGE.split(":")
        return getattr(importlib.import_module(f"shared.messages.{module}"), name)

    def to_bytes(self) -> bytes:
        return self.message.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes | None, event_type: str) -> "ProtobufContract":
        name = cls.MESSAGE.split(":")[1]
        try:
            message = cls.message_class().FromString(data or b"")
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise PermanentFailure(f"The event's data is not a {name}") from None
        missing = cls.missing(message)
        if missing:
            raise PermanentFailure(f"The {name} {missing}")
        return cls(message)

    @classmethod
    def missing(cls, message: Any) -> str | None:
        """What makes a decoded message unusable, if anything."""
        return None


@dataclass(frozen=True)
class PodMessageEvent(ProtobufContract):
    """A pod's phase and exit as a Squonk2 ``PodMessage`` protobuf (reference/jobs.md), kew to pbc."""

    TYPE: ClassVar[str] = "dm.pod.message.v1"
    SOURCE: ClassVar[str] = KEW_SOURCE
    MESSAGE: ClassVar[str] = "pod_message_pb2:PodMessage"
    message: Any

    @property
    def subject(self) -> str:
        return self.message.instance

    @classmethod
    def missing(cls, message: Any) -> str | None:
        return None if message.instance and message.task else "names no instance or no task"


@dataclass(frozen=True)
class ProcessingCharge(ProtobufContract):
    """Coins an instance spent (as-api.md §4), the monitor to the Account Server's receiver."""

    TYPE: ClassVar[str] = "dm.charge.processing.v1"
    SOURCE: ClassVar[str] = MONITOR_SOURCE
    MESSAGE: ClassVar[str] = "merchant_processing_charge_message_pb2:MerchantProcessingChargeMessage"
    message: Any

    @property
    def subject(self) -> str:
        return f"{self.message.auth_code}/{self.message.sqn}"

    @classmethod
    def missing(cls, message: Any) -> str | None:
        return None if message.auth_code else "has no auth_code"


@dataclass(frozen=True)
class StorageCharge(ProtobufContract):
    """Bytes a project or dataset holds (as-api.md §4), the monitor to the Account Server's receiver."""

    TYPE: ClassVar[str] = "dm.charge.storage.v1"
    SOURCE: ClassVar[str] = MONITOR_SOURCE
    MESSAGE: ClassVar[str] = "merchant_storage_charge_message_pb2:MerchantStorageChargeMessage"
    message: Any

    @property
    def subject(self) -> str:
        return self.message.product or self.message.unit or self.message.name

    @classmethod
    def missing(cls, message: Any) -> str | None:
        return None if message.product or message.unit or message.organisation else "names no payer"


@dataclass(frozen=True)
class WorkflowMessageEvent(ProtobufContract):
    """Start or stop a Running Workflow: a Squonk2 ``WorkflowMessage`` (action START or STOP), the
    api to pbc, whose workflow engine acts on it."""

    ACTIONS: ClassVar[tuple[str, ...]] = ("START", "STOP")
    TYPE: ClassVar[str] = "dm.workflow.v1"
    SOURCE: ClassVar[str] = API_SOURCE
    MESSAGE: ClassVar[str] = "workflow_message_pb2:WorkflowMessage"
    message: Any

    @property
    def subject(self) -> str:
        return self.message.running_workflow  # one lane per run: a STOP never overtakes its START

    @classmethod
    def missing(cls, message: Any) -> str | None:
        if not message.running_workflow:
            return "names no running workflow"
        return None if message.action in cls.ACTIONS else f"has an unknown action {message.action!r}"


# --- schedules (PingSource to the monitor) ---------------------------------------------------


@dataclass(frozen=True)
class ScheduleTick(JsonContract):
    """A PingSource's tick naming the monitor job it is due for (knative.md, PingSource); the
    local stack sends the same ticks on timers."""

    TYPE: ClassVar[str] = "dev.knative.sources.ping"
    SOURCE: ClassVar[str] = "/data-manager/schedule"
    job: str

    @property
    def subject(self) -> str:
        return self.job


ALL: tuple[type[Contract], ...] = (DatasetUpload, DatasetImport, DatasetDelete, FileAttach, PodChange,
                                   PodMessageEvent, ProcessingCharge, StorageCharge, WorkflowMessageEvent,
                                   ScheduleTick)


def contract_for(event_type: str) -> type[Contract] | None:
    """The contract that covers a CloudEvent type, if any."""
    for contract in ALL:
        if event_type in contract.types():
            return contract
    return None
