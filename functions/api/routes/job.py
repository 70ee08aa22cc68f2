"""Jobs, their exchange rates, and the manifests admins load them from."""

from functions.api.router import Router
from shared.db import integers
from shared.db.session import transaction
from shared.errors import Forbidden
from shared.lazy import lazy

jobs = lazy("shared.services.jobs")
definitions = lazy("shared.jobs.definitions")

router = Router("job")


@router.get("/job")
def get_jobs(ctx):
    """The jobs that can be run."""
    with transaction(ctx.engine, readonly=True) as s:
        items = jobs.list_jobs(s)
    return {"count": len(items), "jobs": items}


@router.get("/job/<int:job_id>")
def get_job(ctx, job_id):
    """One job, with its variables and image."""
    with transaction(ctx.engine, readonly=True) as s:
        return jobs.job_detail(s, jobs.get(s, job_id))


@router.get("/job/get-by-version")
def get_job_by_version(ctx):
    """One job by collection, job and version."""
    collection, job, version = (ctx.param(n, required=True) for n in ("collection", "job", "version"))
    with transaction(ctx.engine, readonly=True) as s:
        return jobs.job_detail(s, jobs.by_version(s, collection, job, version))


@router.get("/job/<int:job_id>/exchange-rate")
def get_job_exchange_rates(ctx, job_id):
    """A job's exchange-rate history, newest first."""
    from sqlalchemy import select

    from shared.db.base import iso
    from shared.db.models import JobExchangeRate

    with transaction(ctx.engine, readonly=True) as s:
        job = jobs.get(s, job_id)
        query = select(JobExchangeRate).where(JobExchangeRate.job_id == job.id).order_by(JobExchangeRate.id.desc())
        rates = list(s.scalars(query.limit(1) if ctx.flag("current") else query))
    items = [{"id": r.id, "rate": r.rate, "created": iso(r.created), "user_id": r.user,
              **({"comment": r.comment} if r.comment else {})} for r in rates]
    return {"id": job.id, "count": len(items), "exchange_rates": items}


@router.put("/job/<int:job_id>/exchange-rate", status=204)
def set_job_exchange_rate(ctx, job_id):
    """Set a job's exchange rate (admins)."""
    with transaction(ctx.engine) as s:
        jobs.set_rate(s, ctx.user, job_id, ctx.param("rate", required=True), ctx.param("comment"))


@router.get("/job-exchange-rates")
def get_all_exchange_rates(ctx):
    """The current rate of every job (or, with only_undefined, the jobs without one)."""
    from sqlalchemy import select

    from shared.db.models import Job

    only_undefined = ctx.flag("only_undefined")
    items = []
    with transaction(ctx.engine, readonly=True) as s:
        rates = jobs.current_rates(s)
        for job in s.scalars(select(Job).order_by(Job.id)):
            rate = rates.get(job.id)
            if (rate is None) != only_undefined:
                continue
            item = {"id": job.id, "collection": job.collection, "job": job.job, "version": job.version}
            if rate is not None:
                item["rate"] = rate
            items.append(item)
    return {"only_undefined": only_undefined, "count": len(items), "exchange_rates": items}


# --- admin: manifests ------------------------------------------------------------------------


@router.get("/admin/job-manifest")
def get_job_manifests(ctx):
    """The registered job manifests (admins)."""
    jobs.require_admin(ctx.user)
    with transaction(ctx.engine, readonly=True) as s:
        items = [jobs.manifest_out(m) for m in jobs.manifests(s)]
    return {"count": len(items), "job_manifests": items}


@router.put("/admin/job-manifest", status=200)
def put_job_manifest(ctx):
    """Register (or update) a manifest and load its jobs at once (admins)."""
    jobs.require_admin(ctx.user)
    location = definitions.check_location(ctx.param("url", required=True))
    header_text, params_text = ctx.param("header") or "", ctx.param("params") or ""
    header = definitions.parse_json_object("header", header_text)
    params = definitions.parse_json_object("params", params_text)
    with transaction(ctx.engine) as s:
        manifest_id = jobs.put_manifest(s, ctx.user, location, header_text, params_text).id
    report = definitions.read_manifest(location, header, params)  # outside a transaction: it may be slow
    with transaction(ctx.engine) as s:
        loaded = jobs.record_load(s, manifest_id, report)
    return jobs.load_report_out(report, loaded)


@router.put("/admin/job-manifest/load", status=200)
def load_job_manifests(ctx):
    """Re-read every registered manifest (admins, development mode)."""
    jobs.require_admin(ctx.user)
    if ctx.settings.mode != "DEVELOPMENT":
        raise Forbidden("Manifests can only be reloaded in DEVELOPMENT mode")
    with transaction(ctx.engine, readonly=True) as s:
        known = [(m.id, m.url, m.header, m.params) for m in jobs.manifests(s)]
    total, loaded = definitions.LoadReport(), 0
    for manifest_id, location, header, params in known:
        report = definitions.read_manifest(location, definitions.parse_json_object("header", header),
                                           definitions.parse_json_object("params", params))
        with transaction(ctx.engine) as s:
            loaded += jobs.record_load(s, manifest_id, report)
        total.merge(report)
    return jobs.load_report_out(total, loaded)


@router.delete("/admin/job-manifest/<job_manifest_id>", status=204)
def delete_job_manifest(ctx, job_manifest_id):
    """Forget a manifest; ``purge`` removes its jobs too (admins, development mode)."""
    jobs.require_admin(ctx.user)
    if ctx.settings.mode != "DEVELOPMENT":
        raise Forbidden("Manifests can only be deleted in DEVELOPMENT mode")
    number = integers.id_of("job manifest", job_manifest_id)  # not a number: 400, as documented
    with transaction(ctx.engine) as s:
        jobs.delete_manifest(s, number, purge=ctx.flag("purge"))
