from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class MerchantProcessingChargeMessage(_message.Message):
    __slots__ = ("timestamp", "merchant_kind", "merchant_name", "merchant_id", "auth_code", "name", "coins", "sqn", "eoc", "user", "product", "unit", "organisation", "additional_data")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_KIND_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COINS_FIELD_NUMBER: _ClassVar[int]
    SQN_FIELD_NUMBER: _ClassVar[int]
    EOC_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_DATA_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    merchant_kind: str
    merchant_name: str
    merchant_id: int
    auth_code: int
    name: str
    coins: str
    sqn: int
    eoc: bool
    user: str
    product: str
    unit: str
    organisation: str
    additional_data: str
    def __init__(self, timestamp: _Optional[str] = ..., merchant_kind: _Optional[str] = ..., merchant_name: _Optional[str] = ..., merchant_id: _Optional[int] = ..., auth_code: _Optional[int] = ..., name: _Optional[str] = ..., coins: _Optional[str] = ..., sqn: _Optional[int] = ..., eoc: bool = ..., user: _Optional[str] = ..., product: _Optional[str] = ..., unit: _Optional[str] = ..., organisation: _Optional[str] = ..., additional_data: _Optional[str] = ...) -> None: ...
