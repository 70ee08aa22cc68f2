"""Dataset and version metadata (labels, annotations, descriptions) and the version schema."""

import json

import pytest

from tests.functional.test_datasets import SDF, finish, post_dataset, upload_fn  # noqa: F401

META_KEYS = {"dataset_name", "dataset_id", "dataset_version", "description", "created", "last_updated",
             "created_by", "metadata_version", "annotations", "labels"}

FIELDS = {
    "type": "FieldsDescriptorAnnotation",
    "origin": "test",
    "description": "Calculated properties",
    "fields": {
        "smiles": {"type": "string", "description": "The molecule", "required": True},
        "mw": {"type": "Number", "description": "Molecular weight"},
        "old": {"type": "integer", "description": "Gone", "active": False},
    },
}
SERVICE = {
    "type": "ServiceExecutionAnnotation",
    "service": "rdkit-props", "service_version": "1.0", "service_user": "alice",
    "service_name": "Properties", "service_ref": "https://example.org/props",
    "service_parameters": {"n": 3},
    "fields": {"mw": {"type": "number", "description": "MW (Da)"}, "logp": {"type": "number"}},
}


@pytest.fixture
def dataset(alice, api, upload_fn):  # noqa: F811
    """A dataset of alice's with one finished version."""
    body = post_dataset(alice, SDF, "ethanol.sdf", "chemical/x-mdl-sdfile").get_json()
    finish(api, upload_fn)
    return body["dataset_id"]


def meta(who, dataset_id, version=None):
    resp = who.get(f"/dataset/{dataset_id}/meta" + (f"/{version}" if version else ""))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def post_meta(who, dataset_id, version=None, **fields):
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return who.post(f"/dataset/{dataset_id}/meta" + (f"/{version}" if version else ""), data=data)


def names(labels):
    return [(label["label"], label["value"]) for label in labels]


# --- Dataset level ----------------------------------------------------------------------------


def test_dataset_metadata_starts_empty(alice, dataset):
    body = meta(alice, dataset)
    assert set(body) == META_KEYS
    assert body["dataset_id"] == dataset and body["dataset_name"] == "ethanol.sdf"
    assert body["created_by"] == "alice" and body["metadata_version"] == "1"
    assert body["description"] == "" and body["labels"] == [] and body["annotations"] == []
    assert body["created"].endswith("Z") and body["last_updated"].endswith("Z")


def test_dataset_description_and_labels_round_trip(alice, dataset):
    before = meta(alice, dataset)
    resp = post_meta(alice, dataset, meta_properties={"description": "Small alcohols"},
                     labels=[{"label": "Origin", "value": "vendor-a"}, {"label": "checked", "value": None}])
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["description"] == "Small alcohols"
    assert names(body["labels"]) == [("origin", "vendor-a"), ("checked", None)]  # names are lower-cased
    for label in body["labels"]:
        assert label["type"] == "LabelAnnotation" and label["active"] is True and label["created"].endswith("Z")
        assert label["annotation_version"] and label["reference"] is None
    assert body["annotations"] == [] and body["last_updated"] > before["last_updated"]
    assert meta(alice, dataset) == body
    # the version's metadata shows the dataset's labels but keeps its own description
    version = meta(alice, dataset, 1)
    assert version["labels"] == body["labels"] and version["description"] == ""


def test_labels_replace_by_name_and_inactive_labels_are_removed(alice, dataset):
    post_meta(alice, dataset, labels=[{"label": "a", "value": "1"}, {"label": "b", "value": "2"},
                                      {"label": "c", "value": "3"}])
    first = meta(alice, dataset)
    resp = post_meta(alice, dataset, labels=[{"label": "B", "value": "two"}, {"label": "a", "active": False},
                                             {"label": "zz", "active": False}, {"label": "d", "value": None}])
    assert resp.status_code == 201, resp.get_json()
    body = meta(alice, dataset)
    assert names(body["labels"]) == [("b", "two"), ("c", "3"), ("d", None)]  # replaced in place
    assert body["labels"][1] == first["labels"][2]  # untouched labels are kept as they were
    # the last change of a label in one request wins
    post_meta(alice, dataset, labels=[{"label": "e", "value": "x"}, {"label": "e", "value": "y"}])
    assert names(meta(alice, dataset)["labels"])[-1] == ("e", "y")


def test_labels_read_back_can_be_posted_back_unchanged(alice, dataset):
    post_meta(alice, dataset, labels=[{"label": "#hash", "value": "v", "reference": "ref-1"}])
    body = meta(alice, dataset)
    assert body["labels"][0]["reference"] == "ref-1"
    resp = post_meta(alice, dataset, labels=body["labels"])
    assert resp.status_code == 201, resp.get_json()
    assert meta(alice, dataset) == body  # nothing changed, not even last_updated


def test_a_post_without_changes_changes_nothing(alice, dataset):
    post_meta(alice, dataset, meta_properties={"description": "d"})
    before = meta(alice, dataset)
    for fields in ({}, {"labels": "", "meta_properties": ""}, {"labels": "null"}, {"meta_properties": {}},
                   {"meta_properties": {"description": "d"}}, {"labels": []}):
        resp = post_meta(alice, dataset, **fields)
        assert resp.status_code == 201, (fields, resp.get_json())
        assert resp.get_json() == before
    assert meta(alice, dataset) == before


GOOD_LABELS = [{"label": "fine", "value": "ok"}]


@pytest.mark.parametrize("fields, message", [
    ({"labels": "[{"}, "not valid JSON"),
    ({"labels": "not json"}, "not valid JSON"),
    ({"labels": {"label": "a", "value": "b"}}, "must be a JSON list"),
    ({"labels": "\"a\""}, "must be a JSON list"),
    ({"labels": "3"}, "must be a JSON list"),
    ({"labels": ["a"]}, "must be a JSON object"),
    ({"labels": GOOD_LABELS + [{"value": "b"}]}, "'label' is required"),
    ({"labels": GOOD_LABELS + [{"label": "x" * 65, "value": "b"}]}, "1 to 64"),
    ({"labels": [{"label": "", "value": "b"}]}, "1 to 64"),
    ({"labels": [{"label": 7, "value": "b"}]}, "'label' must be a string"),
    ({"labels": [{"label": "a\tb", "value": "b"}]}, "control characters"),
    ({"labels": [{"label": "a", "value": 5}]}, "'value' must be a string or null"),
    ({"labels": [{"label": "a", "value": "v" * 256}]}, "0 to 255"),
    ({"labels": [{"label": "a", "value": "b", "active": "no"}]}, "'active' must be true or false"),
    ({"labels": [{"label": "a", "value": "b", "colour": "red"}]}, "'colour'"),
    ({"labels": [{"label": "a", "value": "b", "type": "FieldsDescriptorAnnotation"}]}, "LabelAnnotation"),
    ({"labels": '[{"label": "a", "value": "b\\u0000"}]'}, "NUL"),
    ({"labels": '[{"label": "a", "value": NaN}]'}, "not valid JSON"),
    ({"labels": "[" * 5000 + "]" * 5000}, "nested too deeply"),
    ({"labels": [{"label": f"l{i}", "value": "v"} for i in range(101)]}, "at most 100"),
    ({"meta_properties": "{'description': 'x'}"}, "not valid JSON"),
    ({"meta_properties": ["description"]}, "must be a JSON object"),
    ({"meta_properties": {"description": "x", "dataset_name": "y"}}, "'dataset_name'"),
    ({"meta_properties": {"created_by": "bob"}}, "'created_by'"),
    ({"meta_properties": {"description": 5}}, "'description' must be a string"),
    ({"meta_properties": {"description": None}}, "'description' must be a string"),
    ({"meta_properties": {"description": "x" * 4001}}, "0 to 4000"),
    ({"meta_properties": {"description": "new"}, "labels": "[oops]"}, "not valid JSON"),
    ({"labels": GOOD_LABELS, "meta_properties": {"description": "new", "x": 1}}, "'x'"),
    ({"labels": GOOD_LABELS, "annotations": [FIELDS]}, "'annotations' parameter is not accepted"),
])
def test_bad_dataset_metadata_is_refused_and_changes_nothing(alice, dataset, fields, message):
    post_meta(alice, dataset, meta_properties={"description": "before"}, labels=[{"label": "keep", "value": "1"}])
    before = meta(alice, dataset)
    resp = post_meta(alice, dataset, **fields)
    assert resp.status_code == 400, resp.get_json()
    assert message in resp.get_json()["error"]
    assert meta(alice, dataset) == before


def test_too_many_labels_in_total_are_refused(alice, dataset):
    assert post_meta(alice, dataset, labels=[{"label": f"a{i}", "value": "v"} for i in range(60)]).status_code == 201
    before = meta(alice, dataset)
    resp = post_meta(alice, dataset, labels=[{"label": f"b{i}", "value": "v"} for i in range(41)])
    assert resp.status_code == 400 and "at most 100" in resp.get_json()["error"]
    assert meta(alice, dataset) == before
    # replacing and removing keep within the limit
    changes = [{"label": "a0", "active": False}] + [{"label": f"a{i}", "value": "w"} for i in range(1, 60)]
    assert post_meta(alice, dataset, labels=changes + [{"label": "b0", "value": "v"}]).status_code == 201
    assert len(meta(alice, dataset)["labels"]) == 60
    # one request may carry more than 100 changes as long as the result fits
    changes = [{"label": f"a{i}", "active": False} for i in range(60)] + [
        {"label": f"c{i}", "value": "v"} for i in range(50)]
    assert post_meta(alice, dataset, labels=changes).status_code == 201
    assert [label["label"] for label in meta(alice, dataset)["labels"]] == ["b0"] + [f"c{i}" for i in range(50)]


# --- version level ----------------------------------------------------------------------------


def test_version_description_and_annotations_round_trip(alice, dataset):
    post_meta(alice, dataset, meta_properties={"description": "dataset text"}, labels=[{"label": "x", "value": "1"}])
    before = meta(alice, dataset, 1)
    assert set(before) == META_KEYS and before["dataset_version"] == 1 and before["annotations"] == []
    assert before["created_by"] == "alice" and before["description"] == ""
    resp = post_meta(alice, dataset, 1, meta_properties={"description": "version text"}, annotations=[FIELDS])
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["description"] == "version text" and body["last_updated"] > before["last_updated"]
    (fields,) = body["annotations"]
    assert fields["type"] == "FieldsDescriptorAnnotation" and fields["created"].endswith("Z")
    assert fields["fields"]["mw"] == {"type": "number", "description": "Molecular weight", "required": False,
                                      "active": True}
    assert fields["fields"]["smiles"]["required"] is True and fields["fields"]["old"]["active"] is False
    assert names(body["labels"]) == [("x", "1")]  # the dataset's labels
    assert meta(alice, dataset, 1) == body
    # appended, in order
    label_note = {"type": "LabelAnnotation", "label": "Note", "value": "kept with the version"}
    change = {"type": "PropertyChangeAnnotation", "meta_property": "description", "previous_value": None}
    resp = post_meta(alice, dataset, 1, annotations=[SERVICE, label_note, change])
    assert resp.status_code == 201, resp.get_json()
    annotations = meta(alice, dataset, 1)["annotations"]
    assert [a["type"] for a in annotations] == ["FieldsDescriptorAnnotation", "ServiceExecutionAnnotation",
                                                "LabelAnnotation", "PropertyChangeAnnotation"]
    assert annotations[0] == fields
    assert annotations[1]["service_parameters"] == {"n": 3} and annotations[1]["service"] == "rdkit-props"
    assert annotations[2]["label"] == "note"
    # the dataset level is untouched by version changes
    dataset_meta = meta(alice, dataset)
    assert dataset_meta["description"] == "dataset text" and dataset_meta["annotations"] == []
    assert names(dataset_meta["labels"]) == [("x", "1")]


def test_annotations_read_back_can_be_appended_again(alice, dataset):
    post_meta(alice, dataset, 1, annotations=[FIELDS, SERVICE])
    first = meta(alice, dataset, 1)["annotations"]
    resp = post_meta(alice, dataset, 1, annotations=first)
    assert resp.status_code == 201, resp.get_json()
    again = meta(alice, dataset, 1)["annotations"]
    strip = [{k: v for k, v in a.items() if k != "created"} for a in first]
    assert [{k: v for k, v in a.items() if k != "created"} for a in again] == strip + strip


@pytest.mark.parametrize("fields, message", [
    ({"annotations": "[{"}, "not valid JSON"),
    ({"annotations": FIELDS}, "must be a JSON list"),
    ({"annotations": "\"FieldsDescriptorAnnotation\""}, "must be a JSON list"),
    ({"annotations": [FIELDS, 3]}, "must be a JSON object"),
    ({"annotations": [{"origin": "x"}]}, "'type' must be one of"),
    ({"annotations": [{"type": "MadeUpAnnotation"}]}, "'type' must be one of"),
    ({"annotations": [{**FIELDS, "colour": "red"}]}, "'colour'"),
    ({"annotations": [{**FIELDS, "fields": ["smiles"]}]}, "'fields' must be a JSON object"),
    ({"annotations": [{**FIELDS, "fields": {"a": {"description": "no type"}}}]}, "'type' is required"),
    ({"annotations": [{**FIELDS, "fields": {"a": {"type": "float"}}}]}, "'type' must be one of"),
    ({"annotations": [{**FIELDS, "fields": {"a": {"type": "string", "required": "yes"}}}]}, "'required'"),
    ({"annotations": [{**FIELDS, "fields": {"a": {"type": "string", "expression": "{{x}}"}}}]}, "'expression'"),
    ({"annotations": [{**FIELDS, "fields": {"x" * 51: {"type": "string"}}}]}, "1 to 50"),
    ({"annotations": [{**FIELDS, "origin": 5}]}, "'origin' must be a string"),
    ({"annotations": [{**FIELDS, "description": "d" * 256}]}, "0 to 255"),
    ({"annotations": [{k: v for k, v in SERVICE.items() if k != "service_ref"}]}, "'service_ref' is required"),
    ({"annotations": [{**SERVICE, "service": ""}]}, "1 to 80"),
    ({"annotations": [{**SERVICE, "service_parameters": [1]}]}, "must be a JSON object"),
    ({"annotations": [{"type": "LabelAnnotation", "label": "y" * 65}]}, "1 to 64"),
    ({"annotations": [{"type": "PropertyChangeAnnotation", "meta_property": 3}]}, "'meta_property'"),
    ({"annotations": [FIELDS], "meta_properties": {"name": "x"}}, "'name'"),
    ({"annotations": [FIELDS], "meta_properties": "nope"}, "not valid JSON"),
    ({"annotations": [FIELDS], "labels": [{"label": "a", "value": "b"}]}, "'labels' parameter is not accepted"),
    ({"annotations": [FIELDS] * 501}, "at most 500"),
])
def test_bad_version_metadata_is_refused_and_changes_nothing(alice, dataset, fields, message):
    post_meta(alice, dataset, 1, meta_properties={"description": "before"}, annotations=[FIELDS])
    before = meta(alice, dataset, 1)
    before_dataset = meta(alice, dataset)
    resp = post_meta(alice, dataset, 1, **fields)
    assert resp.status_code == 400, resp.get_json()
    assert message in resp.get_json()["error"]
    assert meta(alice, dataset, 1) == before
    assert meta(alice, dataset) == before_dataset


def test_too_many_annotations_in_total_are_refused(alice, dataset):
    assert post_meta(alice, dataset, 1, annotations=[FIELDS] * 300).status_code == 201
    before = meta(alice, dataset, 1)
    resp = post_meta(alice, dataset, 1, annotations=[FIELDS] * 201)
    assert resp.status_code == 400 and "at most 500" in resp.get_json()["error"]
    assert meta(alice, dataset, 1) == before


def test_annotation_text_is_bounded(alice, dataset):
    big = {**SERVICE, "service_parameters": {"blob": "x" * 230_000}}
    resp = post_meta(alice, dataset, 1, annotations=[big, big])
    assert resp.status_code == 400 and "longer than" in resp.get_json()["error"]
    for _ in range(4):
        assert post_meta(alice, dataset, 1, annotations=[big]).status_code == 201
    before = meta(alice, dataset, 1)
    resp = post_meta(alice, dataset, 1, annotations=[big])
    assert resp.status_code == 400 and "at most 1048576 characters" in resp.get_json()["error"]
    assert meta(alice, dataset, 1) == before


# --- schema -----------------------------------------------------------------------------------


def test_schema_without_field_descriptions_is_empty(alice, dataset):
    resp = alice.get(f"/dataset/{dataset}/schema/1")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["type"] == "object" and body["required"] == [] and body["properties"] == {}
    assert body["title"] == "ethanol.sdf" and body["description"] == ""


def test_schema_from_field_descriptor_annotations(alice, dataset):
    post_meta(alice, dataset, meta_properties={"description": "Alcohols"}, labels=[{"label": "src", "value": "a"}])
    post_meta(alice, dataset, 1, annotations=[FIELDS])
    body = alice.get(f"/dataset/{dataset}/schema/1").get_json()
    assert body["properties"] == {"smiles": {"type": "string", "description": "The molecule"},
                                  "mw": {"type": "number", "description": "Molecular weight"}}
    assert body["required"] == ["smiles"] and body["type"] == "object"
    assert body["description"] == "Alcohols" and body["labels"] == {"src": "a"}
    assert body["fields"] == body["properties"]
    # later definitions win; inactive fields drop out
    drop = {"type": "FieldsDescriptorAnnotation", "fields": {"smiles": {"type": "string", "active": False}}}
    post_meta(alice, dataset, 1, meta_properties={"description": "Version one"}, annotations=[SERVICE, drop])
    body = alice.get(f"/dataset/{dataset}/schema/1").get_json()
    assert body["properties"] == {"mw": {"type": "number", "description": "MW (Da)"},
                                  "logp": {"type": "number", "description": ""}}
    assert body["required"] == [] and body["description"] == "Version one"
    # a redefined field keeps its place
    mass = {"type": "FieldsDescriptorAnnotation", "fields": {"mw": {"type": "number", "description": "Mass"}}}
    post_meta(alice, dataset, 1, annotations=[mass])
    body = alice.get(f"/dataset/{dataset}/schema/1").get_json()
    assert list(body["properties"].items()) == [("mw", {"type": "number", "description": "Mass"}),
                                                ("logp", {"type": "number", "description": ""})]


# --- access -----------------------------------------------------------------------------------


def test_strangers_get_404_and_editors_get_access(alice, bob, dataset):
    post_meta(alice, dataset, labels=[{"label": "a", "value": "1"}])
    before, before_version = meta(alice, dataset), meta(alice, dataset, 1)
    assert bob.get(f"/dataset/{dataset}/meta").status_code == 404
    assert bob.get(f"/dataset/{dataset}/meta/1").status_code == 404
    assert bob.get(f"/dataset/{dataset}/schema/1").status_code == 404
    assert post_meta(bob, dataset, meta_properties={"description": "mine"}).status_code == 404
    assert post_meta(bob, dataset, 1, annotations=[FIELDS]).status_code == 404
    assert meta(alice, dataset) == before and meta(alice, dataset, 1) == before_version
    # as an editor bob may read and write
    assert alice.put(f"/dataset/{dataset}/editor/bob").status_code == 201
    assert meta(bob, dataset) == before
    assert bob.get(f"/dataset/{dataset}/schema/1").status_code == 200
    assert post_meta(bob, dataset, meta_properties={"description": "bob's"}).status_code == 201
    assert post_meta(bob, dataset, 1, annotations=[FIELDS]).status_code == 201
    assert meta(alice, dataset)["description"] == "bob's"
    assert len(meta(alice, dataset, 1)["annotations"]) == 1


def test_admins_in_admin_mode_read_but_do_not_write(alice, admin, dataset):
    assert admin.get(f"/dataset/{dataset}/meta").status_code == 404
    assert admin.patch("/user/account", data={"become_admin": "true"}).status_code == 204
    assert admin.get(f"/dataset/{dataset}/meta").status_code == 200
    assert admin.get(f"/dataset/{dataset}/meta/1").status_code == 200
    assert post_meta(admin, dataset, meta_properties={"description": "admin"}).status_code == 404
    assert post_meta(admin, dataset, 1, annotations=[FIELDS]).status_code == 404
    assert meta(alice, dataset)["description"] == "" and meta(alice, dataset, 1)["annotations"] == []


def test_missing_datasets_and_versions_are_404(alice, dataset):
    other = "dataset-00000000-0000-0000-0000-000000000000"
    for path in ("meta", "meta/1", "schema/1"):
        assert alice.get(f"/dataset/{dataset}/{path}").status_code == 200
        assert alice.get(f"/dataset/{other}/{path}").status_code == 404
        assert alice.get(f"/dataset/not-a-dataset/{path}").status_code == 404
    for path in ("meta/2", "schema/2", "meta/0", "schema/0"):
        assert alice.get(f"/dataset/{dataset}/{path}").status_code == 404
    assert post_meta(alice, other, meta_properties={"description": "x"}).status_code == 404
    assert post_meta(alice, other, 1, annotations=[FIELDS]).status_code == 404
    assert post_meta(alice, dataset, 2, annotations=[FIELDS]).status_code == 404
    assert alice.post(f"/dataset/{dataset}/meta/0", data={"annotations": "[]"}).status_code == 404
    assert meta(alice, dataset, 1)["annotations"] == []


def test_deleted_versions_have_no_metadata(alice, api, upload_fn, dataset):  # noqa: F811
    assert alice.delete(f"/dataset/{dataset}/1").status_code == 200
    assert alice.get(f"/dataset/{dataset}/meta/1").status_code == 404
    assert post_meta(alice, dataset, 1, annotations=[FIELDS]).status_code == 404
    assert alice.get(f"/dataset/{dataset}/schema/1").status_code == 404
    assert alice.get(f"/dataset/{dataset}/meta").status_code == 200


def test_a_version_still_uploading_is_403(alice, api):
    body = post_dataset(alice, SDF, "e.sdf", "chemical/x-mdl-sdfile").get_json()  # never delivered
    dataset = body["dataset_id"]
    resp = post_meta(alice, dataset, 1, meta_properties={"description": "early"}, annotations=[FIELDS])
    assert resp.status_code == 403 and "still being uploaded" in resp.get_json()["error"]
    assert alice.get(f"/dataset/{dataset}/meta/1").status_code == 403
    assert alice.get(f"/dataset/{dataset}/schema/1").status_code == 403
    # the dataset itself already exists: its metadata can be read and written
    assert post_meta(alice, dataset, meta_properties={"description": "ok"}).status_code == 201
    assert meta(alice, dataset)["description"] == "ok"
    from sqlalchemy import select

    from shared.db.models import DatasetVersion
    from shared.db.session import transaction

    with transaction(api.services.engine) as s:
        version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset))
        assert version.description == "" and version.annotations == "[]"


def test_metadata_needs_a_token(caller, dataset):
    anonymous = caller(None)
    assert anonymous.get(f"/dataset/{dataset}/meta").status_code == 401
    assert post_meta(anonymous, dataset, meta_properties={"description": "x"}).status_code == 401
