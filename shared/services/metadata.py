"""Dataset metadata: descriptions, labels, annotations and the property schema (dm-api §2.3, §3.11).

Labels live on the Dataset, annotations on a version. Both are stored as JSON lists of
objects in the shapes of the ``data-manager-metadata`` library (InformaticsMatters), each
with ``type``, ``created`` (set here, UTC ISO-8601) and ``annotation_version``. Inputs are
validated here rather than with that library (it pulls in a Jinja-based decoder and only
allows 12-character label names).

Accepted input (JSON text in form fields; an empty field or JSON ``null`` means "no change"):

``meta_properties``
    An object whose only allowed key is ``description`` (a string of at most
    ``MAX_DESCRIPTION`` characters). Any other key is refused, naming it.

``labels`` (Dataset level only)
    A list of label objects: ``label`` (required, 1-64 characters, no control characters;
    compared and stored in lower case, as the library does), ``value`` (a string of at most
    255 characters, or ``null``; missing means ``null``), ``active`` (boolean, default
    ``true``), ``reference`` (string or ``null``). ``type`` may be given and must then be
    ``LabelAnnotation``; ``created`` and ``annotation_version`` are accepted and ignored,
    so labels read from a GET can be posted back. Labels are applied in order: one whose
    name the Dataset already has replaces it (in place), a new one is appended, and one
    with ``"active": false`` removes the label of that name (if any). A Dataset has at
    most ``MAX_LABELS`` labels.

``annotations`` (version level only)
    A list of annotation objects, appended to the version's. Each needs a ``type``:

    * ``FieldsDescriptorAnnotation``: ``origin``, ``description`` (strings of at most 255
      characters), ``fields``: an object mapping a field name (1-50 characters) to
      ``{type, description, required, active}`` where ``type`` is one of
      ``FIELD_TYPES`` (any case, stored in lower case) and is required, ``description``
      is a string of at most 255 characters, ``required`` (default false) and ``active``
      (default true) are booleans.
    * ``ServiceExecutionAnnotation``: the above plus ``service``, ``service_version``,
      ``service_user`` (1-80 characters), ``service_name``, ``service_ref`` (1-255
      characters), all required, and ``service_parameters`` (an object, default ``{}``).
    * ``LabelAnnotation``: as a label above (kept with the version; the Dataset's labels
      are not changed by it).
    * ``PropertyChangeAnnotation``: ``meta_property`` (1-80 characters) and
      ``previous_value`` (string or ``null``).

    Unknown keys are refused. A version holds at most ``MAX_ANNOTATIONS`` annotations
    and ``MAX_STORED_ANNOTATIONS`` characters of them.

Every string in any of these inputs is refused if it contains a NUL character, and
``NaN``/``Infinity`` are not JSON. Any refusal is a 400 and changes nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.db.base import iso, utcnow
from shared.errors import BadRequest, NotFound
from shared.services import datasets
from shared.storage import paths

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.db.models import Dataset, DatasetVersion

METADATA_VERSION = "1"
ANNOTATION_VERSION = "0.0.1"  # the data-manager-metadata library's annotation version
SCHEMA_URI = "http://json-schema.org/draft/2019-09/schema#"

MAX_JSON_TEXT = 256 * 1024  # characters in one form field
MAX_DESCRIPTION = 4000
MAX_LABELS = 100
MAX_LABEL_NAME = 64
MAX_LABEL_VALUE = 255
MAX_ANNOTATIONS = 500
MAX_STORED_ANNOTATIONS = 1024 * 1024
FIELD_TYPES = ("string", "number", "integer", "object", "array", "boolean", "null")
ANNOTATION_TYPES = (
    "FieldsDescriptorAnnotation", "ServiceExecutionAnnotation", "LabelAnnotation", "PropertyChangeAnnotation")
_IGNORED_KEYS = {"created", "annotation_version"}  # set by the server; accepted so GET output can be posted back


# --- parsing and validation (pure: nothing here touches the database) -----------------------


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(field: str, text: str | None) -> Any:
    """The JSON value of a form field, or None when the field is absent, empty or ``null``."""
    if text is None or text.strip() == "":
        return None
    if len(text) > MAX_JSON_TEXT:
        raise BadRequest(f"The '{field}' parameter is longer than {MAX_JSON_TEXT} characters")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"The '{field}' parameter is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(f"The '{field}' parameter is nested too deeply") from None
    _check_no_nul(field, value)
    return value


def _check_no_nul(field: str, value: Any, depth: int = 0) -> None:
    if depth > 64:
        raise BadRequest(f"The '{field}' parameter is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"The '{field}' parameter contains a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_no_nul(field, key, depth + 1)
            _check_no_nul(field, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_no_nul(field, item, depth + 1)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _string(where: str, key: str, value: Any, *, low: int = 0, high: int, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}: '{key}' must be a string{' or null' if nullable else ''}, not {_kind(value)}")
    if not low <= len(value) <= high:
        raise BadRequest(f"{where}: '{key}' must be {low} to {high} characters long, not {len(value)}")
    return value


def _boolean(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{where}: '{key}' must be true or false, not {_kind(value)}")
    return value


def _object(where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object, not {_kind(value)}")
    return value


def _list(field: str, value: Any) -> list:
    if not isinstance(value, list):
        raise BadRequest(f"The '{field}' parameter must be a JSON list, not {_kind(value)}")
    return value


def _check_keys(where: str, item: dict, allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed - _IGNORED_KEYS - {"type"})
    if unknown:
        raise BadRequest(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         + ", ".join(f"'{k[:64]}'" for k in unknown))


def parse_meta_properties(text: str | None) -> dict:
    """The property changes of ``meta_properties``: ``{}`` or ``{"description": ...}``."""
    value = parse_json("meta_properties", text)
    if value is None:
        return {}
    props = _object("The 'meta_properties' parameter", value)
    unknown = sorted(set(props) - {"description"})
    if unknown:
        raise BadRequest("Only 'description' can be changed in 'meta_properties', not "
                         + ", ".join(f"'{k[:64]}'" for k in unknown))
    if "description" in props:
        desc = _string("meta_properties", "description", props["description"], high=MAX_DESCRIPTION)
        return {"description": desc}
    return {}


def _label(where: str, item: Any) -> dict:
    """One label object, normalised (without ``created``); ``active`` tells add from remove."""
    item = _object(where, item)
    _check_keys(where, item, {"label", "value", "active", "reference"})
    if "type" in item and item["type"] != "LabelAnnotation":
        raise BadRequest(f"{where}: 'type' must be 'LabelAnnotation'")
    if "label" not in item:
        raise BadRequest(f"{where}: 'label' is required")
    name = _string(where, "label", item["label"], low=1, high=MAX_LABEL_NAME)
    if paths.has_control(name):
        raise BadRequest(f"{where}: 'label' must not contain control characters")
    value = _string(where, "value", item.get("value"), high=MAX_LABEL_VALUE, nullable=True)
    active = _boolean(where, "active", item.get("active", True))
    reference = _string(where, "reference", item.get("reference"), high=255, nullable=True)
    return {"type": "LabelAnnotation", "label": name.lower(), "value": value, "active": active,
            "reference": reference}


def parse_labels(text: str | None) -> list[dict] | None:
    """The label changes of a ``labels`` field, in order, or None when there are none."""
    value = parse_json("labels", text)
    if value is None:
        return None
    items = _list("labels", value)
    return [_label(f"Label {i + 1}", item) for i, item in enumerate(items)]


def _fields(where: str, value: Any) -> dict:
    if value is None:
        return {}
    fields = _object(f"{where}: 'fields'", value)
    out = {}
    for name, spec in fields.items():
        if not 1 <= len(name) <= 50:
            raise BadRequest(f"{where}: field names must be 1 to 50 characters long ('{name[:60]}')")
        at = f"{where}, field '{name}'"
        spec = _object(at, spec)
        unknown = sorted(set(spec) - {"type", "description", "required", "active"})
        if unknown:
            raise BadRequest(f"{at}: unknown key{'s' if len(unknown) > 1 else ''} "
                             + ", ".join(f"'{k[:64]}'" for k in unknown))
        if "type" not in spec:
            raise BadRequest(f"{at}: 'type' is required")
        kind = _string(at, "type", spec["type"], low=1, high=16).lower()
        if kind not in FIELD_TYPES:
            raise BadRequest(f"{at}: 'type' must be one of {', '.join(FIELD_TYPES)}")
        out[name] = {
            "type": kind,
            "description": _string(at, "description", spec.get("description"), high=255, nullable=True) or "",
            "required": _boolean(at, "required", spec.get("required", False)),
            "active": _boolean(at, "active", spec.get("active", True)),
        }
    return out


_DESCRIPTOR_KEYS = {"origin", "description", "fields"}
_SERVICE_KEYS = {"service": 80, "service_version": 80, "service_user": 80, "service_name": 255, "service_ref": 255}


def _annotation(where: str, item: Any) -> dict:
    item = _object(where, item)
    kind = item.get("type")
    if kind not in ANNOTATION_TYPES:
        shown = repr(kind)[:80] if isinstance(kind, str) else _kind(kind)
        raise BadRequest(f"{where}: 'type' must be one of {', '.join(ANNOTATION_TYPES)}, not {shown}")
    if kind == "LabelAnnotation":
        return _label(where, item)
    if kind == "PropertyChangeAnnotation":
        _check_keys(where, item, {"meta_property", "previous_value"})
        return {"type": kind,
                "meta_property": _string(where, "meta_property", item.get("meta_property"), low=1, high=80),
                "previous_value": _string(where, "previous_value", item.get("previous_value"),
                                          high=MAX_DESCRIPTION, nullable=True)}
    allowed = _DESCRIPTOR_KEYS | (set(_SERVICE_KEYS) | {"service_parameters"}
                                  if kind == "ServiceExecutionAnnotation" else set())
    _check_keys(where, item, allowed)
    out = {"type": kind,
           "origin": _string(where, "origin", item.get("origin", ""), high=255),
           "description": _string(where, "description", item.get("description", ""), high=255),
           "fields": _fields(where, item.get("fields"))}
    if kind == "ServiceExecutionAnnotation":
        for key, high in _SERVICE_KEYS.items():
            if key not in item:
                raise BadRequest(f"{where}: '{key}' is required")
            out[key] = _string(where, key, item[key], low=1, high=high)
        params = item.get("service_parameters")
        out["service_parameters"] = {} if params is None else _object(f"{where}: 'service_parameters'", params)
    return out


def parse_annotations(text: str | None) -> list[dict] | None:
    """The annotations of an ``annotations`` field (normalised, without ``created``), or None."""
    value = parse_json("annotations", text)
    if value is None:
        return None
    items = _list("annotations", value)
    return [_annotation(f"Annotation {i + 1}", item) for i, item in enumerate(items)]


# --- stored form ------------------------------------------------------------------------------


def _stamped(item: dict, created: str) -> dict:
    """An annotation as stored and shown: type, created and annotation_version first."""
    return {"type": item["type"], "created": created, "annotation_version": ANNOTATION_VERSION,
            **{k: v for k, v in item.items() if k != "type"}}


def _dump(items: list) -> str:
    return json.dumps(items, separators=(",", ":"))


def _merge_labels(current: list[dict], changes: list[dict], created: str) -> list[dict]:
    labels = [dict(label) for label in current]
    for change in changes:
        at = next((i for i, label in enumerate(labels) if label.get("label") == change["label"]), None)
        if not change["active"]:
            if at is not None:
                del labels[at]
            continue
        stamped = _stamped(change, created)
        if at is None:
            labels.append(stamped)
        elif {k: v for k, v in labels[at].items() if k != "created"} != {
                k: v for k, v in stamped.items() if k != "created"}:
            labels[at] = stamped  # an identical label keeps its creation time
    if len(labels) > MAX_LABELS:
        raise BadRequest(f"A dataset can have at most {MAX_LABELS} labels")
    return labels


# --- responses --------------------------------------------------------------------------------


def _meta(dataset: "Dataset", *, description: str, created, last_updated, created_by: str,
          annotations: list, version: int = 0) -> dict:
    return {
        "dataset_name": dataset.name,
        "dataset_id": dataset.id,
        "dataset_version": version,  # 0 at Dataset level, as the metadata library has it
        "description": description,
        "created": iso(created),
        "last_updated": iso(last_updated),
        "created_by": created_by,
        "metadata_version": METADATA_VERSION,
        "annotations": annotations,
        "labels": datasets.stored_list(dataset.labels),
    }


def _dataset_out(dataset: "Dataset") -> dict:
    return _meta(dataset, description=dataset.description or "", created=dataset.created,
                 last_updated=dataset.last_updated, created_by=dataset.owner, annotations=[])


def _version_out(dataset: "Dataset", version: "DatasetVersion") -> dict:
    return _meta(dataset, description=version.description or "", created=version.created,
                 last_updated=version.last_updated, created_by=version.owner,
                 annotations=datasets.stored_list(version.annotations), version=version.version)


# --- operations -------------------------------------------------------------------------------


def dataset_meta(s: "Session", principal: "Principal", dataset_id: str) -> dict:
    return _dataset_out(datasets.load(s, principal, dataset_id))


def update_dataset_meta(s: "Session", principal: "Principal", dataset_id: str, *, changes: dict,
                        labels: list[dict] | None) -> dict:
    """Apply parsed ``meta_properties`` changes and label changes to a Dataset the caller edits."""
    dataset = datasets.load(s, principal, dataset_id, edit=True)
    s.refresh(dataset, with_for_update=True)  # concurrent label changes do not lose each other
    now = utcnow()
    changed = False
    if "description" in changes and changes["description"] != (dataset.description or ""):
        dataset.description = changes["description"]
        changed = True
    if labels is not None:
        current = datasets.stored_list(dataset.labels)
        merged = _merge_labels(current, labels, iso(now))
        if merged != current:
            dataset.labels = _dump(merged)
            changed = True
    if changed:
        dataset.last_updated = now
    return _dataset_out(dataset)


def _version(s: "Session", principal: "Principal", dataset_id: str, number: int, *, edit: bool):
    dataset = datasets.load(s, principal, dataset_id, edit=edit)
    version = datasets.usable_version(s, principal, dataset_id, number)  # 404, or 403 while uploading
    return dataset, version


def version_meta(s: "Session", principal: "Principal", dataset_id: str, number: int) -> dict:
    return _version_out(*_version(s, principal, dataset_id, number, edit=False))


def update_version_meta(s: "Session", principal: "Principal", dataset_id: str, number: int, *,
                        changes: dict, annotations: list[dict] | None) -> dict:
    """Apply parsed ``meta_properties`` changes and append annotations to a version."""
    dataset, version = _version(s, principal, dataset_id, number, edit=True)
    s.refresh(version, with_for_update=True)
    if version.deleted is not None:  # deleted while we waited for the lock
        raise NotFound(f"Dataset {dataset_id} has no version {number}")
    now = utcnow()
    changed = False
    if "description" in changes and changes["description"] != (version.description or ""):
        version.description = changes["description"]
        changed = True
    if annotations:
        current = datasets.stored_list(version.annotations)
        merged = current + [_stamped(a, iso(now)) for a in annotations]
        if len(merged) > MAX_ANNOTATIONS:
            raise BadRequest(f"A dataset version can have at most {MAX_ANNOTATIONS} annotations")
        text = _dump(merged)
        if len(text) > MAX_STORED_ANNOTATIONS:
            raise BadRequest(f"A dataset version's annotations can take at most {MAX_STORED_ANNOTATIONS} characters")
        version.annotations = text
        changed = True
    if changed:
        version.last_updated = now
    return _version_out(dataset, version)


def compiled_fields(annotations: list) -> dict:
    """Field name -> definition from the FieldsDescriptor/ServiceExecution annotations, in order.

    A later definition of a field replaces an earlier one (the field keeps its place, as in the
    metadata library); inactive fields are left out.
    """
    fields: dict[str, dict] = {}
    for item in annotations:
        if not isinstance(item, dict) or item.get("type") not in (
                "FieldsDescriptorAnnotation", "ServiceExecutionAnnotation"):
            continue
        for name, spec in (item.get("fields") or {}).items():
            if isinstance(spec, dict):
                fields[name] = spec
    return {name: spec for name, spec in fields.items() if spec.get("active", True)}


def version_schema(s: "Session", principal: "Principal", dataset_id: str, number: int) -> dict:
    """A JSON-Schema-like description of a version's record properties, from its annotations.

    ``properties`` (JSON Schema's name) and ``fields`` (the metadata library's name) hold the
    same map; both are empty when no annotation describes fields. File content is not read.
    """
    dataset, version = _version(s, principal, dataset_id, number, edit=False)
    fields = compiled_fields(datasets.stored_list(version.annotations))
    properties = {name: {"type": spec.get("type", ""), "description": spec.get("description", "")}
                  for name, spec in fields.items()}
    labels = datasets.labels_map(dataset)
    return {
        "$schema": SCHEMA_URI,
        "title": dataset.name,
        "description": version.description or dataset.description or "",
        "version": version.version,
        "type": "object",
        "required": [name for name, spec in fields.items() if spec.get("required")],
        "properties": properties,
        "fields": properties,
        "labels": labels,
    }
