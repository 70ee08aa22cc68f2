"""The upload function: dataset versions stored, removed and placed in projects.

Each handler hands its event to ``shared.services.dataset_store``, which does the long
work in short transactions and records the event (its inbox claim) as it finishes.
"""

from __future__ import annotations

from shared.events.consumer import Consumer, Received
from shared.events.contracts import DatasetDelete, DatasetImport, DatasetUpload, FileAttach
from shared.process_services import ProcessServices
from shared.services import dataset_store

consumer = Consumer("upload")
services = ProcessServices()  # settings from the environment, collaborators on first use


@consumer.on(DatasetUpload)
def on_dataset_upload(event: DatasetUpload, received: Received) -> None:
    dataset_store.store_upload(services.engine, services.storage, event, received.claim)


@consumer.on(DatasetImport)
def on_dataset_import(event: DatasetImport, received: Received) -> None:
    dataset_store.store_import(services.engine, services.storage, event, received.claim)


@consumer.on(DatasetDelete)
def on_dataset_delete(event: DatasetDelete, received: Received) -> None:
    dataset_store.remove_version(services.engine, services.storage, event, received.claim)


@consumer.on(FileAttach)
def on_file_attach(event: FileAttach, received: Received) -> None:
    dataset_store.attach_file(services.engine, services.storage, event, received.claim)


def handle(request):
    return consumer.handle(request)
