"""Dataset and version metadata (labels, annotations, descriptions) and the version schema.

The accepted JSON shapes are described in ``shared.services.metadata``.
"""

from __future__ import annotations

from functions.api.router import Router
from shared.db.session import transaction
from shared.errors import BadRequest
from shared.lazy import lazy

metadata = lazy("shared.services.metadata")

router = Router("metadata")


def _refuse(ctx, name: str, reason: str) -> None:
    if ctx.param(name) is not None:
        raise BadRequest(f"The '{name}' parameter is not accepted here: {reason}")


@router.get("/dataset/<dataset_id>/meta")
def get_metadata(ctx, dataset_id):
    """Get Dataset-level metadata (description and labels)."""
    with transaction(ctx.engine, readonly=True) as s:
        return metadata.dataset_meta(s, ctx.user, dataset_id)


@router.post("/dataset/<dataset_id>/meta", status=201)
def add_metadata(ctx, dataset_id):
    """Update Dataset-level metadata (description, labels)."""
    _refuse(ctx, "annotations", "annotations belong to a dataset version")
    changes = metadata.parse_meta_properties(ctx.param("meta_properties"))
    labels = metadata.parse_labels(ctx.param("labels"))
    with transaction(ctx.engine) as s:
        return metadata.update_dataset_meta(s, ctx.user, dataset_id, changes=changes, labels=labels)


@router.get("/dataset/<dataset_id>/meta/<int:dataset_version>")
def get_metadata_version(ctx, dataset_id, dataset_version):
    """Get version-level metadata (description, annotations and the Dataset's labels)."""
    with transaction(ctx.engine, readonly=True) as s:
        return metadata.version_meta(s, ctx.user, dataset_id, dataset_version)


@router.post("/dataset/<dataset_id>/meta/<int:dataset_version>", status=201)
def add_metadata_version(ctx, dataset_id, dataset_version):
    """Update version-level metadata (description, annotations)."""
    _refuse(ctx, "labels", "labels are set on the dataset (POST /dataset/{dataset_id}/meta)")
    changes = metadata.parse_meta_properties(ctx.param("meta_properties"))
    annotations = metadata.parse_annotations(ctx.param("annotations"))
    with transaction(ctx.engine) as s:
        return metadata.update_version_meta(s, ctx.user, dataset_id, dataset_version, changes=changes,
                                            annotations=annotations)


@router.get("/dataset/<dataset_id>/schema/<int:dataset_version>")
def get_schema(ctx, dataset_id, dataset_version):
    """Property schema of a Dataset version, from its field-describing annotations."""
    with transaction(ctx.engine, readonly=True) as s:
        return metadata.version_schema(s, ctx.user, dataset_id, dataset_version)
