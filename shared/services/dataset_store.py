"""The dataset store's long work, done by the upload function: versions stored from staged
uploads and project files, deleted versions' content removed, versions placed in projects.

Streaming cannot sit in one short transaction, so the row being worked on is the lease:
a version is stored only while it is COPYING and a managed file filled only while it is
COPYING, and finishing is a guarded UPDATE. A redelivered event finds the row past that
stage and does nothing twice. ``claim`` records the event in the consumer's inbox in the
transaction that finishes the work.
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from shared.datasets.checks import StreamCheck
from shared.datasets.content import validator_for
from shared.db.base import utcnow
from shared.db.models import DatasetVersion, ProjectFile, Task
from shared.db.session import transaction
from shared.errors import PermanentFailure
from shared.events.inbox import Claim, no_claim
from shared.services import managed_files, projects, tasks

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.events.contracts import DatasetDelete, DatasetImport, DatasetUpload, FileAttach
    from shared.storage.base import Storage

log = logging.getLogger("dm.dataset_store")
def store_upload(engine: "Engine", storage: "Storage", event: "DatasetUpload", claim: Claim = no_claim) -> None:
    """An uploaded file, staged by the api: store it, then remove the staged copy."""
    _store_version(engine, storage, event, event.staged_key, claim, discard_source=True,
                   checked=_checked_facts(event.checked))


def store_import(engine: "Engine", storage: "Storage", event: "DatasetImport", claim: Claim = no_claim) -> None:
    """A project file becoming a dataset version: copy it, leave the file in its project."""
    _store_version(engine, storage, event, event.source_key, claim, discard_source=False, checked=None)


def _store_version(engine: "Engine", storage: "Storage", event: "DatasetUpload | DatasetImport", source: str,
                   claim: Claim, *, discard_source: bool, checked: dict | None) -> None:
    task_id, dataset_id, number = event.task_id, event.dataset_id, event.version
    with transaction(engine) as s:
        version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id,
                                                        DatasetVersion.version == number))
        if version is None:
            raise PermanentFailure(f"Dataset {dataset_id} has no version {number}")
        if version.processing_stage != "COPYING":
            claim(s)
            return  # handled before: a redelivery
        if tasks.state_of(s, task_id) == "PENDING":  # a redelivery after a crash is already STARTED
            tasks.set_state(s, task_id, "STARTED", None)
        tasks.add_event(s, task_id, f"Copying {version.file_name} into the dataset store")
        key, mime, file_name = version.storage_key, version.mime_type, version.file_name

    # A staged upload is moved into place: a rename on a local store. A redelivery after
    # the move finds it at its new place.
    if discard_source and not storage.exists(source) and storage.exists(key):
        source, discard_source, moving = key, False, False
    else:
        moving = discard_source
    if checked is not None:
        info = storage.stat(source)
        if info is not None and info.size != checked["size"]:
            log.warning("Staged %s is %s bytes, not the %s checked on arrival: checking it again",
                        source, info.size, checked["size"])
            checked = None  # what is stored is not what was checked: trust only a fresh read
    try:
        if checked is None:  # not seen as it arrived: read it once now (beside the copy, for an import)
            check = StreamCheck(validator_for(mime, file_name))
            if moving or source == key:
                for _ in check.tee(storage.open(source)):
                    pass
            else:
                storage.write(key, check.tee(storage.open(source)))
            checked = check.finish().facts()
        if checked["error"] is None and moving:
            storage.move(source, key)
    except FileNotFoundError:
        _fail(engine, task_id, dataset_id, number, "The file to store was gone before it could be stored")
        return
    if checked["error"] is not None:
        _discard(storage, key)
        _fail(engine, task_id, dataset_id, number, f"{file_name} is not a valid {mime} file: {checked['error']}")
        if discard_source:
            _discard(storage, source)
        return
    size, digest = checked["size"], checked["digest"]
    with transaction(engine) as s:
        now = utcnow()
        moved = s.execute(update(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == number,
            DatasetVersion.processing_stage == "COPYING").values(
            processing_stage="DONE", size=size, digest=digest, records=checked["records"],
            published=now, last_updated=now)).rowcount
        if moved:
            tasks.add_event(s, task_id, f"Stored {size} bytes, SHA-256 {digest}")
            tasks.set_state(s, task_id, "SUCCESS", None, exit_code=0)
            s.execute(update(Task).where(Task.id == task_id).values(processing_stage="DONE"))
        claim(s)


def _checked_facts(checked: Any) -> dict | None:
    """The api's verdict on staged content, when it checked it on arrival (and the verdict is whole)."""
    if not isinstance(checked, dict):
        return None
    size, digest, error = checked.get("size"), checked.get("digest"), checked.get("error")
    if (type(size) is not int or size < 0 or not isinstance(digest, str) or len(digest) != 64
            or not (error is None or isinstance(error, str))):
        return None  # malformed: read the content again rather than trust it
    records = checked.get("records")
    return {"size": size, "digest": digest, "error": error,
            "records": records if type(records) is int else None}


def remove_version(engine: "Engine", storage: "Storage", event: "DatasetDelete", claim: Claim = no_claim) -> None:
    """Remove a deleted version's content and its managed files, then finish its removal task."""
    task_id, dataset_id, number = event.task_id, event.dataset_id, event.version
    with transaction(engine, readonly=True) as s:
        version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id,
                                                        DatasetVersion.version == number))
    if version is None or version.deleted is None:
        raise PermanentFailure(f"Dataset {dataset_id} has no deleted version {number}")
    keep = event.keep_project_files
    with transaction(engine, readonly=True) as s:
        placed = list(s.scalars(select(ProjectFile).where(ProjectFile.dataset_id == dataset_id,
                                                          ProjectFile.dataset_version == number)))
    # content first, then the records: a crash in between repeats harmless deletes
    if not keep:  # keep_project_files: they stay as unmanaged files
        for f in placed:
            _discard(storage, managed_files.key_of(f))
    _discard(storage, version.storage_key)
    with transaction(engine) as s:
        for f in placed:
            if not keep:
                projects.add_size(s, f.project_id, -(f.size or 0))
            s.execute(delete(ProjectFile).where(ProjectFile.id == f.id))
        s.execute(update(Task).where(Task.id == task_id).values(processing_stage="DONE"))
        tasks.set_state(s, task_id, "SUCCESS", "The version's content is removed", exit_code=0)
        claim(s)


def attach_file(engine: "Engine", storage: "Storage", event: "FileAttach", claim: Claim = no_claim) -> None:
    """Copy a dataset version into a project (gzip-compressed when asked) as a managed file."""
    task_id, file_id, source = event.task_id, event.file_id, event.source_key
    with transaction(engine) as s:
        managed = s.get(ProjectFile, file_id)
        if managed is None or managed.processing_stage != "COPYING":
            claim(s)
            return  # detached meanwhile, or handled before
        if tasks.state_of(s, task_id) == "PENDING":
            tasks.set_state(s, task_id, "STARTED", None)
        key = managed_files.key_of(managed)
        compress = managed.compressed and not source.lower().endswith(".gz")

    def content():
        if not compress:
            yield from storage.open(source)
            return
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip stream
        for chunk in storage.open(source):
            out = packer.compress(chunk)
            if out:
                yield out
        yield packer.flush()

    try:
        size = storage.write(key, content())
    except FileNotFoundError:
        with transaction(engine) as s:  # nothing was placed: the task tells what happened
            s.execute(delete(ProjectFile).where(ProjectFile.id == file_id))
            tasks.set_state(s, task_id, "FAILURE", "The dataset version's content is gone", exit_code=1)
        return
    with transaction(engine) as s:
        moved = s.execute(update(ProjectFile).where(ProjectFile.id == file_id, ProjectFile.processing_stage == "COPYING")
                          .values(processing_stage="DONE", size=size)).rowcount
        if moved:
            projects.add_size(s, managed.project_id, size)
            s.execute(update(Task).where(Task.id == task_id).values(processing_stage="DONE"))
            tasks.set_state(s, task_id, "SUCCESS", None, exit_code=0)
        claim(s)


def _fail(engine: "Engine", task_id: str, dataset_id: str, number: int, reason: str) -> None:
    log.info("Upload of %s/%s failed: %s", dataset_id, number, reason)
    with transaction(engine) as s:
        s.execute(update(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == number,
            DatasetVersion.processing_stage == "COPYING").values(processing_stage="FAILED"))
        s.execute(update(Task).where(Task.id == task_id).values(processing_stage="FAILED"))
        tasks.set_state(s, task_id, "FAILURE", reason, exit_code=1)


def _discard(storage: "Storage", key: str) -> None:
    try:
        storage.delete(key)
    except FileNotFoundError:
        pass
