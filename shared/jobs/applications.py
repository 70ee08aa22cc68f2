"""The applications the platform offers: the job runner and long-running services.

In a cluster each is an operator's custom resource; here each is described once, with
what the local launcher runs in its place (a long-running process in the project folder).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import BadRequest, NotFound

JOB_APPLICATION_ID = "datamanagerjobs.squonk.it"
JUPYTER_APPLICATION_ID = "jupyternotebooks.squonk.it"
MEMORY = re.compile(r"^[1-9][0-9]?Gi$")


@dataclass(frozen=True)
class Application:
    id: str
    kind: str
    group: str
    version: str
    is_job: bool
    image: str = ""
    template: str = ""
    cost: str = "0"
    cost_unit: str | None = None
    cost_period: str | None = None
    local_command: tuple[str, ...] = field(default=())
    port: int | None = None  # where an application listens in its container

    def summary(self) -> dict:
        return {"kind": self.kind, "group": self.group, "application_id": self.id, "latest_version": self.version}

    def detail(self, instance_ids: list[str]) -> dict:
        out = {"id": self.id, "kind": self.kind, "group": self.group, "versions": [self.version],
               "template": self.template, "instances": instance_ids, "cost": self.cost}
        if self.cost_unit:
            out.update(cost_unit=self.cost_unit, cost_period=self.cost_period, cost_pro_rata=True)
        if not self.is_job:
            out["image_variants"] = {"public": [{"name": "minimal", "image": self.image}]}
        return out


APPLICATIONS = {
    JOB_APPLICATION_ID: Application(
        id=JOB_APPLICATION_ID, kind="DataManagerJob", group="squonk.it", version="v3", is_job=True,
        template=json.dumps({"collection": "", "job": "", "version": "", "variables": {}})),
    JUPYTER_APPLICATION_ID: Application(
        id=JUPYTER_APPLICATION_ID, kind="JupyterNotebook", group="squonk.it", version="v2", is_job=False,
        image="jupyter/minimal-notebook:notebook-6.3.0",
        template=json.dumps({"variables": {"image": "jupyter/minimal-notebook:notebook-6.3.0", "cpu": 1,
                                           "memory": "1Gi"}}),
        cost="1", cost_unit="PxGi", cost_period="1 hour",
        port=8888,
        # locally a notebook server is stood in for by a file server of the project folder with a
        # WebSocket echo (stdlib only); the launcher puts in its port and base path
        local_command=(sys.executable, str(Path(__file__).with_name("notebook_standin.py")),
                       "--port", "{port}", "--base-path", "{base_path}")),
}


def get(application_id: str) -> Application:
    try:
        return APPLICATIONS[application_id]
    except KeyError:
        raise NotFound(f"There is no application {application_id}") from None


def check_variables(application: Application, variables: dict) -> None:
    if not isinstance(variables, dict):
        raise BadRequest("'variables' must be a JSON object")
    unknown = sorted(set(variables) - {"image", "cpu", "memory"})
    if unknown:
        raise BadRequest(f"{application.kind} takes no variables {', '.join(unknown)}")
    memory = variables.get("memory")
    if memory is not None and not (isinstance(memory, str) and MEMORY.match(memory)):
        raise BadRequest("'memory' is a number of Gi, e.g. '2Gi'")
    cpu = variables.get("cpu")
    if cpu is not None and not (isinstance(cpu, (int, float)) and 0 < cpu <= 16):
        raise BadRequest("'cpu' is a number of processors from 1 to 16")


def local_argv(application: Application) -> list[str]:
    return list(application.local_command)
