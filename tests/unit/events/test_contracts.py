"""Event contracts: every event's type, source and payload checked in one place."""

import json

import pytest

from shared.errors import PermanentFailure
from shared.events import contracts
from shared.events.contracts import (DatasetDelete, DatasetImport, DatasetUpload, FileAttach, PodChange,
                                     PodMessageEvent, contract_for)

JSON_EVENTS = [
    DatasetUpload(task_id="task-1", dataset_id="dataset-1", version=2, staged_key="uploads/x",
                  checked={"size": 3, "digest": "0" * 64, "error": None, "records": 1}),
    DatasetUpload(task_id="task-1", dataset_id="dataset-1", version=2, staged_key="uploads/x"),
    DatasetImport(task_id="task-2", dataset_id="dataset-1", version=3, source_key="projects/p/a.sdf"),
    DatasetDelete(task_id="task-3", dataset_id="dataset-1", version=1, keep_project_files=True),
    FileAttach(task_id="task-4", file_id="file-1", source_key="datasets/d/1/a.sdf"),
]


def pod_message(**fields):
    from shared.messages.pod_message_pb2 import PodMessage

    return PodMessage(**{"timestamp": "2026-01-01T00:00:00Z", "pod_name": "p", "task": "task-1",
                         "instance": "instance-1", "phase": "Running", **fields})


def test_every_type_belongs_to_one_contract():
    seen = {}
    for contract in contracts.ALL:
        for event_type in contract.types():
            assert event_type not in seen, f"{event_type} is claimed by {seen[event_type]} and {contract}"
            seen[event_type] = contract
            assert contract_for(event_type) is contract
    assert contract_for("dm.nothing.v1") is None
    # our own events are dm.-prefixed; Knative's sources name theirs
    assert all(t.startswith("dm.") for t in seen if not t.startswith("dev.knative."))


@pytest.mark.parametrize("event", JSON_EVENTS, ids=lambda e: type(e).__name__)
def test_json_events_round_trip(event):
    data = event.to_bytes()
    assert type(event).from_bytes(data, event.type) == event
    assert event.subject and event.CONTENT_TYPE == "application/json"


def test_absent_optional_fields_are_left_out():
    event = DatasetUpload(task_id="t", dataset_id="d", version=1, staged_key="k")
    assert json.loads(event.to_bytes()) == {"task_id": "t", "dataset_id": "d", "version": 1, "staged_key": "k"}
    assert event.subject == "d/1"


@pytest.mark.parametrize("payload, problem", [
    ({"dataset_id": "d", "version": 1, "staged_key": "k"}, "task_id is missing"),
    ({"task_id": "t", "dataset_id": "d", "version": "one", "staged_key": "k"}, "version must be a whole number"),
    ({"task_id": "t", "dataset_id": "d", "version": True, "staged_key": "k"}, "version must be a whole number"),
    ({"task_id": "t", "dataset_id": "d", "version": "\u0661", "staged_key": "k"}, "version must be a whole number"),
    ({"task_id": "t", "dataset_id": "d", "version": 2**63, "staged_key": "k"}, "version must be a whole number"),
    ({"task_id": "t", "dataset_id": "d", "version": "9" * 4000, "staged_key": "k"}, "version must be a whole number"),
    ({"task_id": "t", "dataset_id": 7, "version": 1, "staged_key": "k"}, "dataset_id must be a non-empty string"),
    ({"task_id": "", "dataset_id": "d", "version": 1, "staged_key": "k"}, "task_id must be a non-empty string"),
    ({"task_id": "t", "dataset_id": "d", "version": 1, "staged_key": None}, "staged_key is missing"),
])
def test_a_missing_or_wrong_field_is_a_permanent_failure(payload, problem):
    with pytest.raises(PermanentFailure, match=problem) as caught:
        DatasetUpload.from_dict(payload)
    assert caught.value.status == 422


def test_payloads_that_are_not_objects_are_refused():
    for data in (b"[1, 2]", b"null", b"", b"{not json", b"\xff\xfe"):
        with pytest.raises(PermanentFailure):
            FileAttach.from_bytes(data, FileAttach.TYPE)


def test_lenient_where_the_senders_were():
    """A version as a string of digits reads as a number; a verdict is left for the receiver to judge."""
    event = DatasetUpload.from_dict({"task_id": "t", "dataset_id": "d", "version": "12", "staged_key": "k",
                                     "checked": "not a verdict"})
    assert event.version == 12 and event.checked == "not a verdict"
    delete = DatasetDelete.from_dict({"task_id": "t", "dataset_id": "d", "version": 1})
    assert delete.keep_project_files is False
    with pytest.raises(PermanentFailure, match="keep_project_files must be true or false"):
        DatasetDelete.from_dict({"task_id": "t", "dataset_id": "d", "version": 1, "keep_project_files": "yes"})


def test_pod_changes():
    pod = {"kind": "Pod", "metadata": {"name": "p1", "namespace": "ns", "labels": {"a": "b"}}}
    types = PodChange.types()
    assert len(types) == 3
    for event_type in types:
        change = PodChange.from_bytes(json.dumps(pod).encode(), event_type)
        assert change.type == event_type and change.pod == pod and change.labels == {"a": "b"}
        assert change.deleted == event_type.endswith(".delete")
        assert change.subject == "/apis/v1/namespaces/ns/pods/p1"
    with pytest.raises(PermanentFailure, match="not a Pod"):
        PodChange.from_bytes(b'{"kind": "Service"}', types[0])
    with pytest.raises(PermanentFailure, match="not a Pod"):
        PodChange.from_bytes(b"\x00\x01", types[0])
    with pytest.raises(PermanentFailure, match="not a pod event"):
        PodChange.from_bytes(json.dumps(pod).encode(), types[0] + "d")


def test_pod_messages():
    message = pod_message(phase="Succeeded", has_exit_code=True, exit_code=3)
    event = PodMessageEvent(message)
    assert event.CONTENT_TYPE == "application/protobuf" and event.subject == "instance-1"
    back = PodMessageEvent.from_bytes(event.to_bytes(), PodMessageEvent.TYPE)
    assert back.message == message
    with pytest.raises(PermanentFailure, match="not a PodMessage"):
        PodMessageEvent.from_bytes(b"\xff\xff\xff\xff", PodMessageEvent.TYPE)
    with pytest.raises(PermanentFailure, match="names no instance"):
        PodMessageEvent.from_bytes(pod_message(instance="").SerializeToString(), PodMessageEvent.TYPE)


def test_the_readme_lists_every_event():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme[readme.index("## How events move"):]
    for contract in contracts.ALL:
        assert f"`{contract.__name__}`" in table, contract
        assert f"`{contract.types()[0]}`" in table, contract


def test_each_event_type_is_written_in_one_module():
    """Senders and receivers name events by their contract; the type strings live in contracts.py."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    sources = [p for folder in ("shared", "functions") for p in (root / folder).rglob("*.py")]
    strings = {t for c in contracts.ALL for t in c.types()} | {contracts.APISERVER_RESOURCE}
    for path in sources:
        text = path.read_text()
        written = sorted(t for t in strings if t in text)
        if path.name == "contracts.py" and path.parent.name == "events":
            assert written, "the contracts name no types?"
        else:
            assert not written, f"{path.relative_to(root)} writes {written}: use shared.events.contracts"
