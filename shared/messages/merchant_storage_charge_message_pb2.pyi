from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StorageReasonEnum(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORAGE_REASON_ENUM_UNSPECIFIED: _ClassVar[StorageReasonEnum]
    STORAGE_REASON_ENUM_DATASET: _ClassVar[StorageReasonEnum]
    STORAGE_REASON_ENUM_PROJECT: _ClassVar[StorageReasonEnum]
STORAGE_REASON_ENUM_UNSPECIFIED: StorageReasonEnum
STORAGE_REASON_ENUM_DATASET: StorageReasonEnum
STORAGE_REASON_ENUM_PROJECT: StorageReasonEnum

class MerchantStorageChargeMessage(_message.Message):
    __slots__ = ("timestamp", "merchant_kind", "merchant_name", "merchant_id", "reason", "auth_code", "name", "bytes", "user", "product", "unit", "organisation", "additional_data")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_KIND_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AUTH_CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_DATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    merchant_kind: str
    merchant_name: str
    merchant_id: int
    reason: StorageReasonEnum
    auth_code: int
    name: str
    bytes: str
    user: str
    product: str
    unit: str
    organisation: str
    additional_data: str
    def __init__(self, timestamp: _Optional[str] = ..., merchant_kind: _Optional[str] = ..., merchant_name: _Optional[str] = ..., merchant_id: _Optional[int] = ..., reason: _Optional[_Union[StorageReasonEnum, str]] = ..., auth_code: _Optional[int] = ..., name: _Optional[str] = ..., bytes: _Optional[str] = ..., user: _Optional[str] = ..., product: _Optional[str] = ..., unit: _Optional[str] = ..., organisation: _Optional[str] = ..., additional_data: _Optional[str] = ...) -> None: ...
