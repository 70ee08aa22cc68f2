"""The engine's InstanceLauncher: each step is an ordinary instance of the platform, checked and
recorded by ``instances`` (its task, events, costs and charges as any other), owned by the running
user but launched under the platform's own identity (no user token, which may have expired).

A launch is idempotent on (run, step, replica): the step's row is inserted first, and a row that is
already there means the step was launched before; its instance is returned, never a second one.
The pods start after the host's commit (``starts``), so their events find the instance recorded.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from workflow.workflow_abc import InstanceLauncher, LaunchParameters, LaunchResult

from shared.db.base import new_id, utcnow
from shared.db.models import RunningWorkflow, RunningWorkflowStep
from shared.db.session import insert_new
from shared.errors import DmError
from shared.services import instances
from shared.services.workflow_host import starts
from shared.services.workflow_host.starts import Pending

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from shared.account_server.base import AccountServer
    from shared.config import Settings
    from shared.launchers.base import Launcher
    from shared.storage.base import Storage

log = logging.getLogger("dm.workflows")
RUNS, STEPS = RunningWorkflow.__table__, RunningWorkflowStep.__table__
_NAME_BAD = re.compile(r"[^A-Za-z0-9-_. ]")


class Collaborators(Protocol):
    """What the host needs of its process (pbc's ``ProcessServices``)."""

    settings: "Settings"
    engine: "Engine"
    storage: "Storage"
    launcher: "Launcher"
    account_server: "AccountServer"


def platform_principal(username: str):
    """The running user as the platform launches for them: no token, no roles; what they may do in
    the Project (edit it) is still checked."""
    from shared.auth.verify import Principal

    return Principal(username, frozenset(), False, "")


def instance_name(step_name: str, run_id: str, replica: int) -> str:
    """Unique among a Project's running instances (replicas of a step run at once)."""
    clean = _NAME_BAD.sub("-", step_name).strip("-_. ")[:50] or "step"
    return f"{clean} {run_id[-8:]}.{replica}"


class PlatformLauncher(InstanceLauncher):
    def __init__(self, s: "Session", services: Collaborators):
        self.s = s
        self.services = services
        self.pending: list[Pending] = []

    def launch(self, *, launch_parameters: LaunchParameters, **kwargs: Any) -> LaunchResult:
        lp = launch_parameters
        s = self.s
        run = s.execute(select(RUNS.c.id, RUNS.c.done).where(RUNS.c.id == lp.running_workflow_id)).first()
        if run is None or run.done:
            return LaunchResult(error_num=1, error_msg="The running workflow has ended")
        # the engine hands every replica the same dict, changed between launches
        variables = copy.deepcopy(lp.variables if lp.variables is not None
                                  else (lp.specification or {}).get("variables") or {})
        dependent = sorted(set(lp.step_dependent_instances or []))
        prior = s.scalar(select(STEPS.c.id).where(STEPS.c.instance_id.in_(dependent)).order_by(STEPS.c.replica)
                         .limit(1)) if dependent else None
        step_id = new_id("r-workflow-step")
        if not insert_new(s, STEPS, dict(
                id=step_id, running_workflow_id=run.id, name=lp.step_name or lp.name,
                replica=lp.step_replication_number, replicas=lp.total_number_of_replicas, prior_step_id=prior,
                variables=json.dumps(variables), outputs=json.dumps({"project": sorted(lp.step_project_outputs or [])}),
                status="RUNNING", done=False, success=False, error_num=0, started=utcnow())):
            return self._launched_before(run.id, lp)
        try:
            with s.begin_nested():  # a refusal leaves nothing of the instance behind
                pending, command = self._record(lp, run.id, step_id, variables, dependent)
        except DmError as exc:
            log.warning("Step %s of %s could not be launched: %s", lp.step_name, run.id, exc.message)
            return LaunchResult(error_num=1, error_msg=exc.message, running_workflow_step_id=step_id)
        starts.record(s, pending)
        self.pending.append(pending)
        return LaunchResult(running_workflow_step_id=step_id, instance_id=pending.spec.instance_id,
                            task_id=pending.spec.task_id, command=command)

    def _launched_before(self, run_id: str, lp: LaunchParameters) -> LaunchResult:
        row = self.s.execute(select(STEPS.c.id, STEPS.c.instance_id, STEPS.c.task_id).where(
            STEPS.c.running_workflow_id == run_id, STEPS.c.name == (lp.step_name or lp.name),
            STEPS.c.replica == lp.step_replication_number)).first()
        log.info("Step %s replica %s of %s was launched before: not again", lp.step_name, lp.step_replication_number,
                 run_id)
        return LaunchResult(running_workflow_step_id=row.id, instance_id=row.instance_id, task_id=row.task_id)

    def _record(self, lp: LaunchParameters, run_id: str, step_id: str, variables: dict,
                dependent: list[str]) -> tuple[Pending, str | None]:
        s = self.s
        principal = platform_principal(lp.launching_user_name)
        specification = {**copy.deepcopy(lp.specification or {}), "variables": variables}
        form = {"application_id": lp.application_id, "project_id": lp.project_id,
                "as_name": instance_name(lp.step_name or lp.name, run_id, lp.step_replication_number),
                "specification": json.dumps(specification), "debug": "1" if lp.debug else None}
        launch = instances.check_launch(s, principal, self.services.storage, form, check_inputs=False)
        # a step works in its own instance directory, where its prior steps' directories are linked
        launch.working_directory = f"{launch.project_directory.rstrip('/')}/.{launch.instance_id}"
        instance, task = instances.record(s, principal, launch, authorisation_code=self._authorise(principal, launch))
        pending = Pending(spec=instances.launch_spec(launch, task.id, principal.username), run_id=run_id,
                          step_id=step_id, step_name=lp.step_name or lp.name, dependent_instances=dependent,
                          project_inputs=sorted(lp.step_project_inputs or []))
        return pending, launch.command

    def _authorise(self, principal, launch: instances.Launch) -> int | None:  # noqa: ANN001 - a Principal
        """The built-in ledger grants without a token. The real Account Server is asked with a user's
        token, which a step does not carry: its grant travels on the merchant channel anyway (0)."""
        if self.services.settings.account_server_url:
            return 0
        return self.services.account_server.authorise_processing(principal, launch.product_id)
