from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PodMessage(_message.Message):
    __slots__ = ("timestamp", "pod_name", "task", "purpose", "phase", "start_timestamp", "finish_timestamp", "has_exit_code", "exit_code", "instance")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    START_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    pod_name: str
    task: str
    purpose: int
    phase: str
    start_timestamp: str
    finish_timestamp: str
    has_exit_code: bool
    exit_code: int
    instance: str
    def __init__(self, timestamp: _Optional[str] = ..., pod_name: _Optional[str] = ..., task: _Optional[str] = ..., purpose: _Optional[int] = ..., phase: _Optional[str] = ..., start_timestamp: _Optional[str] = ..., finish_timestamp: _Optional[str] = ..., has_exit_code: bool = ..., exit_code: _Optional[int] = ..., instance: _Optional[str] = ...) -> None: ...
