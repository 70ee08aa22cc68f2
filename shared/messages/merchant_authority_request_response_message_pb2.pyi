from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthorityResponseEnum(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORITY_RESPONSE_ENUM_UNSPECIFIED: _ClassVar[AuthorityResponseEnum]
    AUTHORITY_RESPONSE_ENUM_GRANTED: _ClassVar[AuthorityResponseEnum]
    AUTHORITY_RESPONSE_ENUM_DENIED: _ClassVar[AuthorityResponseEnum]
AUTHORITY_RESPONSE_ENUM_UNSPECIFIED: AuthorityResponseEnum
AUTHORITY_RESPONSE_ENUM_GRANTED: AuthorityResponseEnum
AUTHORITY_RESPONSE_ENUM_DENIED: AuthorityResponseEnum

class MerchantAuthorityRequestResponseMessage(_message.Message):
    __slots__ = ("timestamp", "merchant_kind", "merchant_name", "merchant_id", "action_operation", "action_value", "action_reference_name", "action_reference_id", "response", "authorisation_code", "reason", "user", "product", "unit", "organisation")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_KIND_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_NAME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_OPERATION_FIELD_NUMBER: _ClassVar[int]
    ACTION_VALUE_FIELD_NUMBER: _ClassVar[int]
    ACTION_REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    AUTHORISATION_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    merchant_kind: str
    merchant_name: str
    merchant_id: int
    action_operation: str
    action_value: str
    action_reference_name: str
    action_reference_id: str
    response: AuthorityResponseEnum
    authorisation_code: int
    reason: str
    user: str
    product: str
    unit: str
    organisation: str
    def __init__(self, timestamp: _Optional[str] = ..., merchant_kind: _Optional[str] = ..., merchant_name: _Optional[str] = ..., merchant_id: _Optional[int] = ..., action_operation: _Optional[str] = ..., action_value: _Optional[str] = ..., action_reference_name: _Optional[str] = ..., action_reference_id: _Optional[str] = ..., response: _Optional[_Union[AuthorityResponseEnum, str]] = ..., authorisation_code: _Optional[int] = ..., reason: _Optional[str] = ..., user: _Optional[str] = ..., product: _Optional[str] = ..., unit: _Optional[str] = ..., organisation: _Optional[str] = ...) -> None: ...
