"""Reading job manifests and job-definition files, checked with the Squonk2 job decoder.

A manifest is named by an http(s) URL or a local path; the definition files it lists are
resolved beside it (the same folder), as the real Data Manager does with a manifest's URL.
A file that fails validation is reported and the rest of the manifest still loads.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import BadRequest

FETCH_TIMEOUT_S = 30
MAX_FILE_BYTES = 4 * 1024 * 1024
IMAGE_TYPES = {"simple": "SIMPLE", "nextflow": "NEXTFLOW"}


@dataclass
class JobFound:
    """One job of a definition file, ready to record."""

    collection: str
    job: str
    version: str
    definition_file: str
    definition: dict[str, Any]
    doc_url: str | None


@dataclass
class LoadReport:
    manifests_inspected: int = 0
    files_inspected: int = 0
    jobs_inspected: int = 0
    jobs: list[JobFound] = field(default_factory=list)
    manifest_failures: list[str] = field(default_factory=list)
    file_failures: list[str] = field(default_factory=list)
    job_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.manifest_failures or self.file_failures or self.job_failures)

    def merge(self, other: "LoadReport") -> None:
        self.manifests_inspected += other.manifests_inspected
        self.files_inspected += other.files_inspected
        self.jobs_inspected += other.jobs_inspected
        self.jobs += other.jobs
        self.manifest_failures += other.manifest_failures
        self.file_failures += other.file_failures
        self.job_failures += other.job_failures

    def status_text(self) -> str:
        if self.ok:
            return "SUCCESS"
        return "; ".join(self.manifest_failures + self.file_failures + self.job_failures)[:4000]


def check_location(location: str) -> str:
    """A manifest location: an http(s) URL, a file: URL or an absolute local path."""
    location = (location or "").strip()
    if not location:
        raise BadRequest("A manifest 'url' is required")
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            raise BadRequest(f"{location} is not a usable URL")
        return location
    if parsed.scheme == "file":
        location = urllib.parse.unquote(parsed.path)
    elif parsed.scheme:
        raise BadRequest(f"Manifests are read over http(s) or from a local path, not {parsed.scheme}:")
    if not Path(location).is_absolute():
        raise BadRequest("A local manifest path must be absolute")
    return location


def parse_json_object(name: str, text: str | None) -> dict[str, str]:
    """The optional ``header`` / ``params`` fields: empty, or a JSON object of strings."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest(f"'{name}' must be a JSON object") from None
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
        raise BadRequest(f"'{name}' must be a JSON object of names to values")
    return {str(k): str(v) for k, v in value.items()}


def sibling(location: str, name: str) -> str:
    """A file named in a manifest: in the manifest's own folder."""
    if urllib.parse.urlparse(location).scheme in ("http", "https"):
        return urllib.parse.urljoin(location, name)
    return str(Path(location).parent / name)


def fetch(location: str, header: dict[str, str] | None = None, params: dict[str, str] | None = None) -> bytes:
    """The bytes at a URL or local path (at most MAX_FILE_BYTES). Raises OSError on failure."""
    if urllib.parse.urlparse(location).scheme in ("http", "https"):
        if params:
            glue = "&" if urllib.parse.urlparse(location).query else "?"
            location = location + glue + urllib.parse.urlencode(params)
        request = urllib.request.Request(location, headers=header or {})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            data = response.read(MAX_FILE_BYTES + 1)
    else:
        with open(location, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"{location} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _yaml(data: bytes) -> Any:
    import yaml

    return yaml.safe_load(data)


def read_manifest(location: str, header: dict[str, str] | None = None,
                  params: dict[str, str] | None = None) -> LoadReport:
    """Read a manifest and every definition file it lists; failures are collected, not raised."""
    from decoder import decoder

    report = LoadReport(manifests_inspected=1)
    try:
        manifest = _yaml(fetch(location, header, params))
    except Exception as exc:  # noqa: BLE001 - unreachable, unreadable or not YAML: reported
        report.manifest_failures.append(f"{location}: {_reason(exc)}")
        return report
    problem = decoder.validate_manifest_schema(manifest) if isinstance(manifest, dict) else "not a YAML mapping"
    if problem:
        report.manifest_failures.append(f"{location}: {problem}")
        return report
    for name in manifest["job-definition-files"]:
        report.files_inspected += 1
        file_location = sibling(location, name)
        try:
            definition = _yaml(fetch(file_location, header, params))
        except Exception as exc:  # noqa: BLE001
            report.file_failures.append(f"{name}: {_reason(exc)}")
            continue
        problem = decoder.validate_job_schema(definition) if isinstance(definition, dict) else "not a YAML mapping"
        if problem:
            report.file_failures.append(f"{name}: {problem}")
            continue
        collection = definition["collection"]
        for job_name, job in definition["jobs"].items():
            report.jobs_inspected += 1
            try:
                doc_url = decoder.get_job_doc_url("github", collection, job_name, job, location)
            except Exception:  # noqa: BLE001 - a documentation link is a nicety
                doc_url = job.get("doc-url")
            report.jobs.append(JobFound(collection=collection, job=job_name, version=str(job["version"]),
                                        definition_file=file_location, definition=job, doc_url=doc_url))
    return report


def _reason(exc: Exception) -> str:
    import yaml

    if isinstance(exc, yaml.YAMLError):
        return f"not valid YAML ({str(exc).splitlines()[0]})"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    return str(exc) or type(exc).__name__


def job_columns(found: JobFound) -> dict[str, Any]:
    """The columns of a Job row from a validated definition."""
    from decoder import decoder

    job = found.definition
    name, tag = decoder.get_image(job)
    image = job["image"]
    return {
        "definition_file": found.definition_file,
        "name": job["name"],
        "description": job.get("description"),
        "category": job.get("category"),
        "keywords": json.dumps(job.get("keywords") or []),
        "doc_url": found.doc_url,
        "image_name": name,
        "image_tag": str(tag),
        "image_type": IMAGE_TYPES.get(image.get("type", "simple"), "SIMPLE"),
        "image_project_directory": image["project-directory"],
        "image_working_directory": image["working-directory"],
        "command": job["command"],
        "command_encoding": job.get("command-encoding", "JINJA2_3_0"),
        "definition": json.dumps(job),
        "required_assets": json.dumps(sorted(decoder.get_asset_names(job) or [])),
        "replaces": json.dumps(job.get("replaces") or []),
    }
