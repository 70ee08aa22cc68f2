from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessingCostMessage(_message.Message):
    __slots__ = ("timestamp", "cost", "sqn", "instance", "eoc")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    SQN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    EOC_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    cost: str
    sqn: int
    instance: str
    eoc: bool
    def __init__(self, timestamp: _Optional[str] = ..., cost: _Optional[str] = ..., sqn: _Optional[int] = ..., instance: _Optional[str] = ..., eoc: bool = ...) -> None: ...
