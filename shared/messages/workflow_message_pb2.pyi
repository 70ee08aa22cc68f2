from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowMessage(_message.Message):
    __slots__ = ("timestamp", "action", "running_workflow")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    action: str
    running_workflow: str
    def __init__(self, timestamp: _Optional[str] = ..., action: _Optional[str] = ..., running_workflow: _Optional[str] = ...) -> None: ...
