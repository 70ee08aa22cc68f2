"""The im-protobuf side of the interoperability test, run in its own interpreter.

    python im_protobuf_peer.py < requests.json > answers.json

It imports only the `im-protobuf` package (`informaticsmatters.protobuf...`), never
`shared.messages`: both register the same .proto file names in protobuf's default
descriptor pool, so they cannot be compared inside one process.

stdin holds a JSON list of requests; stdout gets a JSON list with one answer each.
A message is named by its .proto file and full name, e.g.
`{"file": "informaticsmatters/protobuf/datamanager/pod_message.proto",
"message": "informaticsmatters.protobuf.datamanager.PodMessage"}`, plus:

- `"op": "version"` → `{"version": "8.2.1", "protobuf": "6.x.y"}`
- `"op": "descriptor"` → `{"descriptor": hex}`, the serialized FileDescriptorProto
- `"op": "decode", "hex": ...` → `{"fields": {number: [name, value]}, "unknown": hex}`:
  every field of the message (enums as numbers) and any bytes it did not recognise
- `"op": "encode", "fields": {name: value}` → `{"hex": ...}`, the serialised message
"""

from __future__ import annotations

import importlib
import json
import sys
from importlib.metadata import version

from google.protobuf import descriptor_pb2


def message_class(request: dict):
    file_name: str = request["file"]
    module = importlib.import_module(file_name.removesuffix(".proto").replace("/", ".") + "_pb2")
    package = module.DESCRIPTOR.package
    full_name: str = request["message"]
    if not full_name.startswith(package + "."):
        raise ValueError(f"{full_name} is not in package {package}")
    return getattr(module, full_name[len(package) + 1:])


def fields_of(msg) -> dict[str, list]:
    return {str(f.number): [f.name, getattr(msg, f.name)] for f in msg.DESCRIPTOR.fields}


def unknown_bytes(msg) -> bytes:
    """What is left of the message once every field it knows is cleared."""
    rest = type(msg)()
    rest.CopyFrom(msg)
    for field in msg.DESCRIPTOR.fields:
        rest.ClearField(field.name)
    return rest.SerializeToString()


def answer(request: dict) -> dict:
    op = request["op"]
    if op == "version":
        return {"version": version("im-protobuf"), "protobuf": version("protobuf")}
    cls = message_class(request)
    if op == "descriptor":
        proto = descriptor_pb2.FileDescriptorProto()
        cls.DESCRIPTOR.file.CopyToProto(proto)
        return {"descriptor": proto.SerializeToString().hex()}
    if op == "decode":
        msg = cls.FromString(bytes.fromhex(request["hex"]))
        return {"fields": fields_of(msg), "unknown": unknown_bytes(msg).hex()}
    if op == "encode":
        return {"hex": cls(**request["fields"]).SerializeToString().hex()}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    answers = [answer(request) for request in json.load(sys.stdin)]
    if "shared.messages" in sys.modules:
        raise RuntimeError("the im-protobuf side must not load shared.messages")
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
