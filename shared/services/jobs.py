"""Job manifests and the jobs they define (dm-api §2.5, §2.12, §3.2, §3.10)."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from shared.db import integers
from shared.db.base import iso, utcnow
from shared.db.models import Instance, Job, JobExchangeRate, JobManifest
from shared.errors import BadRequest, Forbidden, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.auth.verify import Principal
    from shared.jobs.definitions import LoadReport

JOB_APPLICATION = {"kind": "DataManagerJob", "group": "squonk.it", "application_id": "datamanagerjobs.squonk.it",
                   "latest_version": "v3"}
DEFAULT_EXCHANGE_RATE = "0"
RATE_SCALE = Decimal(1000)  # stored rates are divided by this when applied (dm-api §3.10)
RATE_DIGITS = 40  # the rate column's width


def require_admin(principal: "Principal") -> None:
    if not principal.is_admin:
        raise Forbidden("Only administrators can do this")


# --- manifests --------------------------------------------------------------------------


def put_manifest(s: "Session", principal: "Principal", location: str, header: str | None,
                 params: str | None) -> JobManifest:
    """Create or update the record of a manifest (its jobs are loaded separately)."""
    manifest = s.scalar(select(JobManifest).where(JobManifest.url == location))
    if manifest is None:
        manifest = JobManifest(url=location, created=utcnow(), creator=principal.username,
                               last_load_status="NOT LOADED")
        s.add(manifest)
    manifest.header, manifest.params = header or None, params or None
    s.flush()
    return manifest


def record_load(s: "Session", manifest_id: int, report: "LoadReport") -> int:
    """Record what one manifest's load found: create or replace its jobs; returns jobs loaded."""
    from shared.jobs.definitions import job_columns

    now = utcnow()
    manifest = s.get(JobManifest, manifest_id)
    if manifest is None:  # deleted while its files were being read
        return 0
    loaded = 0
    for found in report.jobs:
        columns = job_columns(found)
        job = s.scalar(select(Job).where(Job.collection == found.collection, Job.job == found.job,
                                         Job.version == found.version))
        if job is None:
            job = Job(collection=found.collection, job=found.job, version=found.version, created=now)
            s.add(job)
        for name, value in columns.items():
            setattr(job, name, value)
        job.manifest_id, job.updated = manifest.id, now
        loaded += 1
    manifest.last_load_time = now
    manifest.last_load_status = report.status_text()
    manifest.job_definition_files_loaded = report.files_inspected - len(report.file_failures)
    manifest.job_definitions_loaded = loaded
    if report.ok:
        manifest.last_successful_load_time = now
    s.flush()
    return loaded


def load_report_out(report: "LoadReport", loaded: int, purged: int | None = None) -> dict:
    out = {
        "status": report.ok,
        "num_manifest_files_inspected": report.manifests_inspected,
        "num_job_definition_files_inspected": report.files_inspected,
        "num_jobs_inspected": report.jobs_inspected,
        "num_jobs_loaded": loaded,
        "manifest_file_failures": report.manifest_failures,
        "job_definition_file_failures": report.file_failures,
        "job_definition_failures": report.job_failures,
    }
    if purged is not None:
        out["num_jobs_purged"] = purged
    return out


def manifests(s: "Session") -> list[JobManifest]:
    return list(s.scalars(select(JobManifest).order_by(JobManifest.id)))


def manifest_out(m: JobManifest) -> dict:
    out = {"id": m.id, "url": m.url, "created": iso(m.created), "last_load_status": m.last_load_status}
    for name in ("header", "params", "creator", "job_definition_files_loaded", "job_definitions_loaded"):
        if getattr(m, name) is not None:
            out[name] = getattr(m, name)
    for name in ("last_successful_load_time", "last_load_time"):
        if getattr(m, name) is not None:
            out[name] = iso(getattr(m, name))
    return out


def delete_manifest(s: "Session", manifest_id: int, *, purge: bool) -> int:
    """Forget a manifest; with ``purge`` its jobs go too (unless an instance still names them)."""
    manifest = s.get(JobManifest, manifest_id) if integers.fits(manifest_id) else None
    if manifest is None:
        raise NotFound(f"Job manifest {manifest_id} does not exist")
    purged = 0
    if purge:
        used = select(Instance.job_id).where(Instance.job_id.is_not(None))
        purged = s.execute(delete(Job).where(Job.manifest_id == manifest_id, Job.id.not_in(used))).rowcount
    s.delete(manifest)
    return purged


# --- jobs -------------------------------------------------------------------------------


def get(s: "Session", job_id: int) -> Job:
    job = s.get(Job, job_id) if integers.fits(job_id) else None
    if job is None:
        raise NotFound(f"Job {job_id} does not exist")
    return job


def by_version(s: "Session", collection: str, job: str, version: str) -> Job:
    found = s.scalar(select(Job).where(Job.collection == collection, Job.job == job, Job.version == version))
    if found is None:
        raise NotFound(f"There is no job {collection}/{job} version {version}")
    return found


def current_rate(s: "Session", job_id: int) -> str | None:
    return s.scalar(select(JobExchangeRate.rate).where(JobExchangeRate.job_id == job_id)
                    .order_by(JobExchangeRate.id.desc()).limit(1))


def _replacements(s: "Session") -> dict[tuple[str, str], list[dict]]:
    """Which jobs name each (collection, job) in their ``replaces``: one query for every job."""
    out: dict[tuple[str, str], list[dict]] = {}
    for collection, name, replaces in s.execute(select(Job.collection, Job.job, Job.replaces)
                                                .where(Job.replaces != "[]")):
        for r in json.loads(replaces):
            by = {"collection": collection, "job": name}
            entries = out.setdefault((r.get("collection"), r.get("job")), [])
            if by not in entries:
                entries.append(by)
    return out


def job_summary(job: Job, replacements: dict[tuple[str, str], list[dict]]) -> dict:
    out = {
        "id": job.id,
        "collection": job.collection,
        "job": job.job,
        "version": job.version,
        "name": job.name,
        "image_type": job.image_type,
        "keywords": json.loads(job.keywords),
        "required_assets": json.loads(job.required_assets),
        "disabled": False,
    }
    for name in ("category", "description", "doc_url"):
        if getattr(job, name):
            out[name] = getattr(job, name)
    replaces = json.loads(job.replaces)
    if replaces:
        out["replaces"] = replaces
    replaced_by = replacements.get((job.collection, job.job))
    if replaced_by:
        out["replaced_by"] = replaced_by
    return out


def job_detail(s: "Session", job: Job) -> dict:
    definition = json.loads(job.definition)
    out = job_summary(job, _replacements(s))
    out.update({
        "application": JOB_APPLICATION,
        "command": job.command,
        "command_encoding": job.command_encoding,
        "image_name": job.image_name,
        "image_tag": job.image_tag,
        "image_project_directory": job.image_project_directory,
        "image_working_directory": job.image_working_directory,
        "exchange_rate": current_rate(s, job.id) or DEFAULT_EXCHANGE_RATE,
    })
    if definition.get("variables"):
        out["variables"] = definition["variables"]
    return out


def list_jobs(s: "Session") -> list[dict]:
    replacements = _replacements(s)
    # plain rows of what job_summary reads: not the definitions and commands of every job
    rows = s.execute(select(*_SUMMARY_COLUMNS).order_by(Job.collection, Job.job, Job.id))
    return [job_summary(job, replacements) for job in rows]


_SUMMARY_COLUMNS = (Job.id, Job.collection, Job.job, Job.version, Job.name, Job.image_type, Job.keywords,
                    Job.required_assets, Job.category, Job.description, Job.doc_url, Job.replaces)


def current_rates(s: "Session") -> dict[int, str]:
    """Every job's current exchange rate (its newest), in one query."""
    return {job_id: rate for job_id, rate in s.execute(select(JobExchangeRate.job_id, JobExchangeRate.rate)
                                                       .order_by(JobExchangeRate.id))}


def check_rate(text: str | None) -> str:
    """The rate as stored: plain decimal text (no exponent) that fits its column."""
    try:
        rate = Decimal(text or "") if (text or "").isascii() else None  # Decimal() takes any script's digits
    except InvalidOperation:
        rate = None
    if rate is None:
        raise BadRequest("'rate' must be a decimal number")
    if not rate.is_finite() or rate < 0:
        raise BadRequest("'rate' must be a decimal number of at least 0")
    stored = format(rate, "f") if -RATE_DIGITS <= rate.adjusted() <= RATE_DIGITS else ""
    if not stored or len(stored) > RATE_DIGITS:
        raise BadRequest(f"'rate' must be a decimal number of at most {RATE_DIGITS} characters")
    return stored


def set_rate(s: "Session", principal: "Principal", job_id: int, rate: str, comment: str | None) -> None:
    require_admin(principal)
    get(s, job_id)
    if comment and len(comment) > 80:
        raise BadRequest("'comment' is at most 80 characters")
    s.add(JobExchangeRate(job_id=job_id, rate=check_rate(rate), comment=comment, user=principal.username,
                          created=utcnow()))
