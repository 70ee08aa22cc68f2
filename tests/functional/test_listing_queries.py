"""Listings make the same number of SQL statements for 5 items as for 50: related rows are loaded
in bulk (one query per relation), never once per item. Items are written straight into the
database (and the files of GET /file on disk), all of them alice's."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import event, insert, text

from shared.db.base import new_id
from shared.db.models import (Dataset, DatasetEditor, DatasetVersion, Instance, Job, Project, ProjectFile,
                              ProjectMember, Task)
from shared.db.session import transaction

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class Items:
    """alice's items of one kind, topped up by `grow`; every 2nd with a related row where it can have one."""

    def __init__(self, api, alice, kind: str):
        self.engine, self.kind, self.count = api.services.engine, kind, 0
        self.unit = alice.unit
        self.project_id = alice.create_project("Listing home")
        self.storage = api.services.storage
        self.path = "/data-manager-api" + (f"/file?project_id={self.project_id}&path=/many"
                                           if kind == "file" else f"/{kind}")

    def grow(self, n: int) -> None:
        with transaction(self.engine) as s:
            getattr(self, f"_{self.kind}")(s, range(self.count, n))
        self.count = n

    def changed(self) -> None:
        """A change as far as the listing caches know (GET /project's): the next request builds it."""
        with transaction(self.engine) as s:
            s.execute(text("UPDATE change_counters SET value = value + 1"))

    def listed(self, body: dict) -> int:
        return body["count"] - (1 if self.kind == "project" else 0)  # the Project the files live in

    def _project(self, s, span):
        rows = [dict(id=new_id("project"), name=f"P{i}", name_key=f"P{i}", creator="alice",
                     created=START + dt.timedelta(seconds=i), private=bool(i % 2),
                     product_id=self.unit["project_tier_product_id"], unit_id=self.unit["unit_id"], size=i)
                for i in span]
        s.execute(insert(Project), rows)
        s.execute(insert(ProjectMember), [dict(project_id=r["id"], username=u, role=role) for r in rows
                                          for u, role in (("alice", "administrator"), ("alice", "editor"),
                                                          ("bob", "observer"))])

    def _dataset(self, s, span):
        for i in span:
            did = new_id("dataset")
            s.execute(insert(Dataset).values(id=did, owner="alice", unit_id=self.unit["unit_id"],
                                             created=START + dt.timedelta(seconds=i), name=f"d{i}.sdf",
                                             last_updated=START, labels=json.dumps([{"label": "n", "value": str(i)}])))
            for version in (1, 2):
                s.execute(insert(DatasetVersion).values(
                    dataset_id=did, version=version, owner="alice", file_name=f"d{i}.sdf", source_ref="x",
                    mime_type="chemical/x-mdl-sdfile", processing_stage="DONE", size=10, storage_key=f"k{i}",
                    task_id=new_id("task"), created=START, last_updated=START))
            if i % 2:
                s.execute(insert(DatasetEditor).values(dataset_id=did, username="bob"))
                s.execute(insert(ProjectFile).values(
                    id=new_id("file"), project_id=self.project_id, path="placed", name=f"d{i}.sdf", dataset_id=did,
                    dataset_version=1, mime_type="chemical/x-mdl-sdfile", owner="alice", processing_stage="DONE",
                    task_id=new_id("task"), created=START))

    def _file(self, s, span):
        self.storage.make_dirs(f"projects/{self.project_id}/many")
        for i in span:
            name = f"f{i:03d}.sdf"
            self.storage.write(f"projects/{self.project_id}/many/{name}", [b"x" * i])
            if i % 2:
                s.execute(insert(ProjectFile).values(
                    id=new_id("file"), project_id=self.project_id, path="many", name=name, dataset_id=new_id("dataset"),
                    dataset_version=1, mime_type="chemical/x-mdl-sdfile", owner="alice", processing_stage="DONE",
                    task_id=new_id("task"), created=START))

    def _instance(self, s, span):
        s.execute(insert(Instance), [dict(
            id=new_id("instance"), name=f"Run {i}", project_id=self.project_id, owner="alice",
            application_id="datamanagerjobs.squonk.it", application_version="v1", application_type="JOB",
            job_collection="c", job_job="j", job_version="1.0.0", phase="COMPLETED",
            launched=START + dt.timedelta(seconds=i), started=START, stopped=START + dt.timedelta(seconds=i),
            outputs=json.dumps({"out": f"o{i}"}), task_id=new_id("task")) for i in span])

    def _task(self, s, span):
        s.execute(insert(Task), [dict(
            id=new_id("task"), purpose="INSTANCE", purpose_id=new_id("instance"), owner="alice",
            project_id=self.project_id, created=START + dt.timedelta(seconds=i), state="SUCCESS", done=True,
            exit_code=0) for i in span])

    def _job(self, s, span):
        s.execute(insert(Job), [dict(
            collection="c", job=f"j{i:03d}", version="1.0.0", definition_file="d.yaml", name=f"J{i}",
            keywords='["k"]', image_name="busybox", image_tag="1", image_project_directory="/data",
            image_working_directory="/data", command="true", definition="{}", created=START, updated=START,
            replaces=json.dumps([{"collection": "c", "job": f"j{i - 1:03d}"}]) if i % 2 else "[]") for i in span])


def statements(engine, request) -> tuple[int, dict]:
    """The SQL statements one request makes in this thread, and its JSON body."""
    me, count = threading.get_ident(), [0]

    def on_execute(*_a, **_k):
        if threading.get_ident() == me:  # not background work of other threads
            count[0] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        resp = request()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return count[0], resp.get_json()


@pytest.mark.parametrize("kind", ["project", "dataset", "file", "instance", "task", "job"])
def test_a_listing_makes_as_many_statements_for_50_items_as_for_5(api, alice, kind):
    items = Items(api, alice, kind)
    get = lambda: alice.client.open(items.path, headers=alice.headers)  # noqa: E731 - the path has its query
    items.grow(5)
    statements(items.engine, get)  # once first: a first visit of the day is recorded
    items.changed()
    few, body = statements(items.engine, get)
    assert items.listed(body) == 5
    items.grow(50)
    items.changed()
    many, body = statements(items.engine, get)
    assert items.listed(body) == 50
    assert many == few, f"GET /{kind}: {few} statements for 5 items, {many} for 50"
