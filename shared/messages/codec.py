"""A message to and from its wire bytes, and its JSON form."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

CONTENT_TYPE = "application/protobuf"


def to_bytes(msg: Message) -> bytes:
    """The message's wire form."""
    return msg.SerializeToString()


def from_bytes(cls: type[M], data: bytes | bytearray | memoryview) -> M:
    """Parse wire bytes as a `cls` message (raises google.protobuf.message.DecodeError)."""
    return cls.FromString(bytes(data))


def to_json(msg: Message) -> str:
    """The JSON form: lowerCamelCase names, defaults omitted, 64-bit integers as strings."""
    return json_format.MessageToJson(msg, indent=None)
