from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StorageBytesMessage(_message.Message):
    __slots__ = ("timestamp", "bytes", "subject", "username", "product", "unit")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    bytes: str
    subject: str
    username: str
    product: str
    unit: str
    def __init__(self, timestamp: _Optional[str] = ..., bytes: _Optional[str] = ..., subject: _Optional[str] = ..., username: _Optional[str] = ..., product: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...
