"""Listings at scale: GET /project, /dataset, /file (one folder), /instance, /task and /job with
1,000 and 10,000 items each, on SQLite and on PostgreSQL.

The API has no pagination (as in the reference), so each listing returns everything. The items
are written straight into the database (bulk inserts; the files of GET /file on disk, every
10th of them a managed file), all of them alice's, then the api, as the product serves it
(``python -m shared.stack --target api``, THREADS=8), answers alice over HTTP. Each figure is
the median of ``ROUNDS`` requests after one warm-up request. GET /project keeps built listings
while its change counter stands still, so the bench bumps that counter before every request:
the figure is the time to build the listing, not a cache hit.

Targets, for each listing and database: 10,000 items in under 1 s, at most 12x the time for
1,000 items, and the api process's peak RSS growth while it answers 10,000 under 100 MiB.
PostgreSQL must answer on 127.0.0.1:5432 (``DM_TEST_POSTGRES_URL`` if set); without it only
SQLite runs, and that is said loudly.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
from pathlib import Path

import _common as c
import _system as system

SIZES = (1_000, 10_000)
ROUNDS = 5
KINDS = ("project", "dataset", "file", "instance", "task", "job")
TARGET_S = 1.0
TARGET_RATIO = 12.0
TARGET_RSS_MIB = 100.0
BATCH = 1_000
MiB = 1024 * 1024


class Seeder:
    """alice's items of every kind, written in bulk; `grow` tops each kind up to a count."""

    def __init__(self, settings, facts: dict):
        from shared.db.session import get_engine
        from shared.storage import create_routed_storage

        self.engine = get_engine(settings.sqlalchemy_url)
        self.storage = create_routed_storage(str(settings.project_volume_path), settings.dataset_store_url)
        self.unit = facts["users"]["alice"]
        self.start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        self.counts = dict.fromkeys(KINDS, 0)
        self.dataset_ids: list[str] = []
        self.project_id = ""

    def _insert(self, s, model, rows: list[dict]) -> None:
        from sqlalchemy import insert

        for i in range(0, len(rows), BATCH):
            s.execute(insert(model), rows[i:i + BATCH])

    def grow(self, n: int) -> None:
        from sqlalchemy import text

        from shared.db.session import transaction

        with transaction(self.engine) as s:
            for kind in KINDS:
                if kind != "file":
                    getattr(self, f"_{kind}s")(s, range(self.counts[kind], n))
                    self.counts[kind] = n
            self._files(s, n)  # a folder of its own for each size, placing datasets made above
            s.execute(text("UPDATE change_counters SET value = value + 1"))

    def _when(self, i: int) -> dt.datetime:
        return self.start + dt.timedelta(seconds=i)

    def _projects(self, s, span: range) -> None:
        from shared.db.base import new_id
        from shared.db.models import Project, ProjectMember

        rows, members = [], []
        for i in span:
            pid = new_id("project")
            rows.append(dict(id=pid, name=f"Bench {i:05d}", name_key=f"Bench {i:05d}", creator="alice",
                             created=self._when(i), private=bool(i % 2), product_id=self.unit["project_tier_product_id"],
                             product_flavour="BRONZE", unit_id=self.unit["unit_id"],
                             organisation_id=self.unit["organisation_id"], size=i))
            members += [dict(project_id=pid, username="alice", role=r) for r in ("administrator", "editor")]
            if i % 3 == 0:
                members.append(dict(project_id=pid, username="bob", role="observer"))
        self._insert(s, Project, rows)
        self._insert(s, ProjectMember, members)
        if not self.project_id:
            self.project_id = rows[0]["id"]

    def _datasets(self, s, span: range) -> None:
        from shared.db.base import new_id
        from shared.db.models import Dataset, DatasetEditor, DatasetVersion

        rows, versions, editors = [], [], []
        for i in span:
            did = new_id("dataset")
            self.dataset_ids.append(did)
            rows.append(dict(id=did, owner="alice", unit_id=self.unit["unit_id"], created=self._when(i),
                             name=f"data-{i:05d}.sdf", description="", last_updated=self._when(i),
                             labels=json.dumps([{"label": "bench", "value": str(i % 7), "active": True}])))
            for version in (1, 2) if i % 5 == 0 else (1,):
                versions.append(dict(dataset_id=did, version=version, owner="alice", file_name=f"data-{i:05d}.sdf",
                                     source_ref=f"data-{i:05d}.sdf", mime_type="chemical/x-mdl-sdfile",
                                     processing_stage="DONE", size=1000 + i, storage_key=f"datasets/{did}/{version}",
                                     task_id=new_id("task"), created=self._when(i), published=self._when(i),
                                     last_updated=self._when(i), description="", annotations="[]"))
            if i % 2:
                editors.append(dict(dataset_id=did, username="bob"))
        self._insert(s, Dataset, rows)
        self._insert(s, DatasetVersion, versions)
        self._insert(s, DatasetEditor, editors)

    def _files(self, s, n: int) -> None:
        """``n`` files in the folder /n<n> of the first Project; every 10th a managed file of a dataset."""
        from shared.db.base import new_id
        from shared.db.models import ProjectFile

        folder = f"n{n}"
        key = f"projects/{self.project_id}/{folder}"
        self.storage.make_dirs(key)
        root = Path(self.storage.local_path(key))
        managed = []
        for i in range(n):
            name = f"file-{i:05d}.sdf" if i % 10 else f"data-{i // 10:05d}.sdf"
            (root / name).write_bytes(b"x" * (i % 100))
            if i % 10 == 0:
                managed.append(dict(id=new_id("file"), project_id=self.project_id, path=folder, name=name,
                                    dataset_id=self.dataset_ids[i // 10], dataset_version=1,
                                    mime_type="chemical/x-mdl-sdfile", compressed=False, immutable=True,
                                    owner="alice", processing_stage="DONE", size=i % 100, task_id=new_id("task"),
                                    created=self._when(i)))
        self._insert(s, ProjectFile, managed)
        self.counts["file"] = n

    def _instances(self, s, span: range) -> None:
        from shared.db.base import new_id
        from shared.db.models import Instance

        rows = []
        for i in span:
            rows.append(dict(id=new_id("instance"), name=f"Run {i:05d}", project_id=self.project_id, owner="alice",
                             application_id="datamanagerjobs.squonk.it", application_version="v1",
                             application_type="JOB", specification='{"collection": "bench"}',
                             job_collection="bench", job_job=f"job-{i % 50}", job_version="1.0.0",
                             job_name="Bench job", job_image_type="SIMPLE", image="busybox:1", command="true",
                             outputs=json.dumps({"outputFile": f"out-{i}.txt"}), phase="COMPLETED",
                             launched=self._when(i), started=self._when(i), stopped=self._when(i + 30),
                             task_id=new_id("task"), cost="1.5", coins="0.1", error_message=None))
        self._insert(s, Instance, rows)

    def _tasks(self, s, span: range) -> None:
        from shared.db.base import new_id
        from shared.db.models import Task

        rows = []
        for i in span:
            rows.append(dict(id=new_id("task"), purpose=("INSTANCE", "DATASET", "FILE")[i % 3],
                             purpose_id=new_id("instance"), purpose_version=1 if i % 3 == 1 else None,
                             owner="alice", project_id=self.project_id if i % 3 != 1 else None,
                             created=self._when(i), removal=False, state="SUCCESS", done=True, exit_code=0,
                             image="busybox:1" if i % 3 == 0 else None))
        self._insert(s, Task, rows)

    def _jobs(self, s, span: range) -> None:
        from shared.db.models import Job

        rows = []
        for i in span:
            replaces = json.dumps([{"collection": "bench", "job": f"job-{i - 1:05d}"}]) if i % 100 == 1 else "[]"
            rows.append(dict(collection="bench", job=f"job-{i:05d}", version="1.0.0", manifest_id=None,
                             definition_file="bench.yaml", name=f"Bench job {i}", description="A job of the bench",
                             category="comp chem", keywords=json.dumps(["bench", f"k{i % 10}"]),
                             doc_url="https://example.org/doc", image_name="busybox", image_tag="1",
                             image_type="SIMPLE", image_project_directory="/data", image_working_directory="/data",
                             command="echo {{ x }}", command_encoding="JINJA2_3_0",
                             definition=json.dumps({"name": f"Bench job {i}", "variables": {}}),
                             required_assets="[]", replaces=replaces, created=self._when(i), updated=self._when(i)))
        self._insert(s, Job, rows)

    def bump_projects(self) -> None:
        """A change of the Projects counter: the next GET /project builds its listing anew."""
        from shared.db.session import transaction
        from shared.services import counters

        with transaction(self.engine) as s:
            counters.bump(s, counters.PROJECTS)


def path_of(kind: str, seeder: Seeder, n: int) -> str:
    if kind == "file":
        return f"/file?project_id={seeder.project_id}&path=/n{n}"
    return f"/{kind}"


def measure(api: c.Function, client: c.ApiClient, seeder: Seeder, kind: str, n: int) -> tuple[float, int]:
    """(median seconds of ROUNDS requests, peak RSS growth in bytes) for one listing of ``n`` items."""
    path = path_of(kind, seeder, n)
    times = []
    sampler = system.RssSampler(api)
    with sampler:
        base = sampler.peak
        for r in range(ROUNDS + 1):
            if kind == "project":
                seeder.bump_projects()
            t0 = time.perf_counter()
            status, data = client.call("GET", path)
            took = time.perf_counter() - t0
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {data[:300]!r}")
            got = json.loads(data)["count"]
            if got != n:
                raise RuntimeError(f"GET {path} listed {got} items, not {n}")
            if r:  # the first is a warm-up
                times.append(took)
    return c.median(times), sampler.peak - base


def run_database(label: str, url: str | None, tmp: Path, identity: c.Identity) -> dict:
    """{kind: {n: (seconds, rss growth)}} on one database (``url`` None: SQLite in the data folder)."""
    from shared.config import Settings
    from shared.db.session import dispose_engines
    from shared.stack import prepare

    data_dir = tmp / f"data-{label}"
    settings = Settings(data_dir=data_dir, oidc_issuer=identity.issuer,
                        **({"database_url": url} if url else {}))
    facts = prepare(settings)
    seeder = Seeder(settings, facts)
    token = identity.token("alice")
    out: dict[str, dict[int, tuple[float, int]]] = {k: {} for k in KINDS}
    extra = {"DM_DATABASE_URL": url} if url else {}
    with c.api_function(data_dir, identity.issuer, **extra) as api:
        api.wait_200(c.API_VERSION)
        client = c.ApiClient(api.port, token)
        for n in SIZES:
            t0 = time.perf_counter()
            seeder.grow(n)
            print(f"  {label}: seeded {n:,} of each kind in {time.perf_counter() - t0:.1f} s", flush=True)
            for kind in KINDS:
                seconds, growth = measure(api, client, seeder, kind, n)
                out[kind][n] = (seconds, growth)
                print(f"    GET /{kind:<8} {n:>6,} items: {seconds * 1000:8.1f} ms "
                      f"(peak RSS growth {growth / MiB:.1f} MiB)", flush=True)
        client.close()
    dispose_engines()
    return out


def main() -> c.Report:
    report = c.Report("listings")
    url, reasons = system.postgres_admin_url()
    databases: list[tuple[str, str | None]] = [("sqlite", None)]
    pg_name = None
    admin = None
    if url is None:
        print("!" * 78 + "\n!!! PostgreSQL does not answer: listings run on SQLite only\n"
              + "".join(f"!!!   {r}\n" for r in reasons) + "!" * 78, flush=True)
    else:
        import sqlalchemy as sa

        pg_name = f"dm_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {pg_name}")
        databases.append(("postgres", url.rsplit("/", 1)[0] + f"/{pg_name}"))
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="dm-bench-") as tmp:
            identity = c.Identity(Path(tmp))
            for label, db_url in databases:
                results[label] = run_database(label, db_url, Path(tmp), identity)
            identity.stop()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
            admin.dispose()

    small, large = SIZES
    print("results:")
    for label, by_kind in results.items():
        for kind, figures in by_kind.items():
            t_small, t_large, growth = figures[small][0], figures[large][0], figures[large][1]
            ratio = t_large / t_small if t_small else 0.0
            report.figure(f"{label}_{kind}", {"ms_1k": round(t_small * 1000, 2), "ms_10k": round(t_large * 1000, 2),
                                              "ratio": round(ratio, 2), "rss_growth_mib_10k": round(growth / MiB, 2)},
                          f"{label} GET /{kind}: {t_small * 1000:.1f} ms for {small:,}, {t_large * 1000:.1f} ms for "
                          f"{large:,} ({ratio:.1f}x); peak RSS growth {growth / MiB:.1f} MiB")
            report.target(f"{label} GET /{kind} {large:,} items", t_large, "<", TARGET_S, " s")
            report.target(f"{label} GET /{kind} {large:,}/{small:,} time", ratio, "<=", TARGET_RATIO, "x")
            report.target(f"{label} GET /{kind} peak RSS growth ({large:,})", growth / MiB, "<", TARGET_RSS_MIB,
                          " MiB")
    report.save()
    return report


if __name__ == "__main__":
    main()
