from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PodEventMessage(_message.Message):
    __slots__ = ("timestamp", "task", "level", "content", "replace_prior_content")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_PRIOR_CONTENT_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    task: str
    level: str
    content: str
    replace_prior_content: bool
    def __init__(self, timestamp: _Optional[str] = ..., task: _Optional[str] = ..., level: _Optional[str] = ..., content: _Optional[str] = ..., replace_prior_content: bool = ...) -> None: ...
