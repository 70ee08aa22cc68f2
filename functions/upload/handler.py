"""The upload function: stream staged content into the dataset store and finish the task.

Work that cannot sit in one short transaction (streaming), so the version row is the
lease: the work runs only while the version is COPYING, and finishing is a guarded
UPDATE. A redelivered event finds the version past COPYING and does nothing twice.
"""

from __future__ import annotations

import logging

from shared.process_services import ProcessServices
from shared.events.consumer import EventView, PermanentFailure, claim, handle as dispatch

log = logging.getLogger("dm.upload")
CONSUMER = "upload"


services = ProcessServices()  # settings from the environment, collaborators on first use


def on_dataset_upload(event: EventView) -> None:
    """An uploaded file, staged by the api: store it, then remove the staged copy."""
    _store_version(event, "staged_key", discard_source=True)


def on_dataset_import(event: EventView) -> None:
    """A project file becoming a dataset version: copy it, leave the file in its project."""
    _store_version(event, "source_key", discard_source=False)


def _store_version(event: EventView, source_field: str, *, discard_source: bool) -> None:
    from sqlalchemy import select, update

    from shared.datasets import types
    from shared.datasets.checks import StreamCheck
    from shared.db.base import utcnow
    from shared.db.models import DatasetVersion
    from shared.db.session import transaction
    from shared.services import tasks

    data = event.data if isinstance(event.data, dict) else {}
    try:
        task_id, dataset_id, number, source = (data["task_id"], data["dataset_id"], int(data["version"]),
                                               data[source_field])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure(f"The event lacks task_id, dataset_id, version or {source_field}") from None
    engine, storage = services.engine, services.storage
    with transaction(engine) as s:
        version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id,
                                                        DatasetVersion.version == number))
        if version is None:
            raise PermanentFailure(f"Dataset {dataset_id} has no version {number}")
        if version.processing_stage != "COPYING":
            claim(s, CONSUMER, event)
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
    checked = _checked_facts(data) if source_field == "staged_key" else None
    if checked is not None:
        info = storage.stat(source)
        if info is not None and info.size != checked["size"]:
            log.warning("Staged %s is %s bytes, not the %s checked on arrival: checking it again",
                        source, info.size, checked["size"])
            checked = None  # what is stored is not what was checked: trust only a fresh read
    try:
        if checked is None:  # not seen as it arrived: read it once now (beside the copy, for an import)
            check = StreamCheck(types.validator_for(mime, file_name))
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
            from shared.db.models import Task

            s.execute(update(Task).where(Task.id == task_id).values(processing_stage="DONE"))
        claim(s, CONSUMER, event)


def _checked_facts(data: dict) -> dict | None:
    """The api's verdict on staged content, when it checked it on arrival (and the event is whole)."""
    checked = data.get("checked")
    if not isinstance(checked, dict):
        return None
    size, digest, error = checked.get("size"), checked.get("digest"), checked.get("error")
    if (type(size) is not int or size < 0 or not isinstance(digest, str) or len(digest) != 64
            or not (error is None or isinstance(error, str))):
        return None  # malformed: read the content again rather than trust it
    records = checked.get("records")
    return {"size": size, "digest": digest, "error": error,
            "records": records if type(records) is int else None}


def on_dataset_delete(event: EventView) -> None:
    """Remove a deleted version's content and its managed files, then finish its removal task."""
    from sqlalchemy import delete, select, update

    from shared.db.models import DatasetVersion, ProjectFile, Task
    from shared.db.session import transaction
    from shared.services import managed_files, projects, tasks

    data = event.data if isinstance(event.data, dict) else {}
    try:
        task_id, dataset_id, number = data["task_id"], data["dataset_id"], int(data["version"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("The event lacks task_id, dataset_id or version") from None
    engine, storage = services.engine, services.storage
    with transaction(engine, readonly=True) as s:
        version = s.scalar(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id,
                                                        DatasetVersion.version == number))
    if version is None or version.deleted is None:
        raise PermanentFailure(f"Dataset {dataset_id} has no deleted version {number}")
    keep = bool(data.get("keep_project_files"))
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
        claim(s, CONSUMER, event)


def on_file_attach(event: EventView) -> None:
    """Copy a dataset version into a project (gzip-compressed when asked) as a managed file."""
    import zlib

    from sqlalchemy import delete, update

    from shared.db.models import ProjectFile, Task
    from shared.db.session import transaction
    from shared.services import managed_files, projects, tasks

    data = event.data if isinstance(event.data, dict) else {}
    try:
        task_id, file_id, source = data["task_id"], data["file_id"], data["source_key"]
    except (KeyError, TypeError):
        raise PermanentFailure("The event lacks task_id, file_id or source_key") from None
    engine, storage = services.engine, services.storage
    with transaction(engine) as s:
        managed = s.get(ProjectFile, file_id)
        if managed is None or managed.processing_stage != "COPYING":
            claim(s, CONSUMER, event)
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
        claim(s, CONSUMER, event)


def _fail(engine, task_id: str, dataset_id: str, number: int, reason: str) -> None:
    from sqlalchemy import update

    from shared.db.models import DatasetVersion, Task
    from shared.db.session import transaction
    from shared.services import tasks

    log.info("Upload of %s/%s failed: %s", dataset_id, number, reason)
    with transaction(engine) as s:
        s.execute(update(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == number,
            DatasetVersion.processing_stage == "COPYING").values(processing_stage="FAILED"))
        s.execute(update(Task).where(Task.id == task_id).values(processing_stage="FAILED"))
        tasks.set_state(s, task_id, "FAILURE", reason, exit_code=1)


def _discard(storage, key: str) -> None:
    try:
        storage.delete(key)
    except FileNotFoundError:
        pass


HANDLERS = {
    "dm.dataset.upload.v1": on_dataset_upload,
    "dm.dataset.import.v1": on_dataset_import,
    "dm.dataset.delete.v1": on_dataset_delete,
    "dm.file.attach.v1": on_file_attach,
}


def handle(request):
    return dispatch(request, HANDLERS)
