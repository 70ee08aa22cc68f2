"""All tables; importing this module registers them on `Base.metadata`."""

from shared.db.models.counter import ChangeCounter
from shared.db.models.dataset import Dataset, DatasetEditor, DatasetVersion, ProjectFile
from shared.db.models.event import InboxEvent, OutboxEvent
from shared.db.models.job import Instance, InstanceCharge, InstanceLog, Job, JobExchangeRate, JobManifest
from shared.db.models.monitor import DeadLetter, MonitorLease, StorageUsage
from shared.db.models.operations import ApiLogEntry, ServiceError
from shared.db.models.ledger import (
    LedgerOrganisation,
    LedgerOrganisationMember,
    LedgerProcessingCharge,
    LedgerProduct,
    LedgerStorageCharge,
    LedgerUnit,
    LedgerUnitMember,
)
from shared.db.models.project import Project, ProjectMember, ProjectToken
from shared.db.models.task import Task, TaskEvent, TaskState
from shared.db.models.user import User
from shared.db.models.workflow import RunningWorkflow, RunningWorkflowStep, Workflow

__all__ = [
    "ApiLogEntry",
    "DeadLetter",
    "MonitorLease",
    "ServiceError",
    "StorageUsage",
    "ChangeCounter",
    "Dataset",
    "DatasetEditor",
    "DatasetVersion",
    "InboxEvent",
    "Instance",
    "InstanceCharge",
    "InstanceLog",
    "Job",
    "JobExchangeRate",
    "JobManifest",
    "OutboxEvent",
    "LedgerOrganisation",
    "LedgerOrganisationMember",
    "LedgerProcessingCharge",
    "LedgerProduct",
    "LedgerStorageCharge",
    "LedgerUnit",
    "LedgerUnitMember",
    "Project",
    "ProjectFile",
    "ProjectMember",
    "ProjectToken",
    "RunningWorkflow",
    "RunningWorkflowStep",
    "Task",
    "TaskEvent",
    "TaskState",
    "User",
    "Workflow",
]
