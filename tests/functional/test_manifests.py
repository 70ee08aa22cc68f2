"""The cluster manifests as kustomize builds them: knative/ (the base) and overlays/example.

Every object is checked against its schema (Knative kinds against the CRD schemas copied into
tests/data/schemas/knative, core kinds with kubernetes-validate, strictly), then the objects
against each other and against the code: the project claim's mounts, the service accounts'
rights for the Kubernetes calls the launcher makes, every setting the code reads, the
Triggers' subscribers, the image. Each check returns its problems, so a mutated copy of the
build shows that it can fail.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import shutil
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest
import yaml

from shared.config import VARIABLES, VERSION
from shared.launchers import pods
from shared.launchers.base import PURPOSE_LABEL, LaunchSpec
from tests.unit.events.test_knative_schemas import strict  # one strictness for every CRD check

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "knative"
OVERLAY = ROOT / "overlays" / "example"
SCHEMAS = ROOT / "tests" / "data" / "schemas" / "knative"
KUBECTL = shutil.which("kubectl")
K8S_VERSIONS = ("1.33", "1.37")  # the oldest Kubernetes release the targeted Knative supports, and the newest schema
NAMESPACE = "data-manager"
SERVING = "serving.knative.dev/v1"
CRD_FILES = {("serving.knative.dev", "Service"): "service.yaml", ("eventing.knative.dev", "Broker"): "broker.yaml",
             ("eventing.knative.dev", "Trigger"): "trigger.yaml",
             ("eventing.knative.dev", "RabbitmqBrokerConfig"): "rabbitmqbrokerconfig.yaml",
             ("sources.knative.dev", "ApiServerSource"): "apiserversource.yaml",
             ("sources.knative.dev", "PingSource"): "pingsource.yaml",
             ("sources.knative.dev", "SinkBinding"): "sinkbindings.yaml"}
CORE_GROUPS = {"v1", "batch", "networking.k8s.io", "rbac.authorization.k8s.io"}  # "v1": the core group
CORE_KINDS = {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding",
              "NetworkPolicy", "Job", "CronJob", "Service", "Ingress"}
# The roles that read or write project files (functions/api, functions/upload; the monitor's
# purge-projects and storage-charges jobs in shared/services): they mount the project claim.
STORAGE_ROLES = {"api", "upload", "monitor", "pbc"}  # pbc: a workflow step's hard links
# Which role runs the code in each file that calls the launcher; a new caller must be added here.
CALLER_ROLES = {"functions/api/": "api", "shared/services/instance_pods.py": "kew",
                "shared/services/reconcile.py": "monitor", "shared/services/workflow_host/": "pbc"}
# Read besides shared.config.VARIABLES: functions-framework and the image's command (shared/stack.py).
RUNTIME_VARIABLES = {"FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "THREADS", "PORT"}
KNATIVE_INJECTED = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
LIBRARY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # boto3 reads them
ACCOUNT_SERVER = {"apiVersion": "v1", "kind": "Service", "name": "account-server"}  # the operator's, see monitor.yaml

if KUBECTL is None:
    warnings.warn("kubectl is not installed: the cluster manifests in knative/ are NOT checked", stacklevel=1)
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: knative/ and overlays/ NOT checked")


@functools.lru_cache(maxsize=None)
def _build(folder: Path) -> tuple[dict, ...]:
    out = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def build(folder: Path) -> list[dict]:
    """A fresh copy of the built objects (the checks' mutated copies must not leak)."""
    return copy.deepcopy(list(_build(folder)))


@pytest.fixture(params=["base", "overlay"])
def docs(request) -> list[dict]:
    return build(BASE if request.param == "base" else OVERLAY)


def of_kind(docs: list[dict], kind: str, api: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (api is None or d["apiVersion"] == api)]


def named(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def config(docs: list[dict]) -> dict[str, str]:
    return named(docs, "ConfigMap", "dm-config")["data"]


def pod_specs(docs: list[dict]):
    """(what, pod spec) of every workload: the Knative Services and the Jobs."""
    for doc in docs:
        if doc["kind"] == "Service" and doc["apiVersion"] == SERVING or doc["kind"] == "Job":
            yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        if doc["kind"] == "CronJob":
            yield f"CronJob {doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def services_by_role(docs: list[dict]) -> dict[str, dict]:
    roles = {}
    for service in of_kind(docs, "Service", SERVING):
        (container,) = service["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        roles[env["FUNCTION_TARGET"]] = service
    return roles


# --- 1. every object against its schema -------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _crd_validator(api_version: str, kind: str):
    import jsonschema

    group, version = api_version.split("/")
    (crd,) = [d for d in yaml.safe_load_all((SCHEMAS / CRD_FILES[(group, kind)]).read_text()) if d]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    schema = served["schema"]["openAPIV3Schema"]
    for name in ("apiVersion", "kind"):
        schema.setdefault("properties", {}).setdefault(name, {"type": "string"})
    schema["properties"].setdefault("metadata", {"type": "object"})
    return jsonschema.Draft7Validator(strict(schema))


def schema_problems(docs: list[dict]) -> list[str]:
    import kubernetes_validate

    problems = []
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata'].get('name')}"
        key = (doc["apiVersion"].split("/")[0], doc["kind"])
        if key in CRD_FILES:
            problems += [f"{what}: {'/'.join(map(str, e.path))}: {e.message}"
                         for e in _crd_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc)]
        elif doc["kind"] in CORE_KINDS and key[0] in CORE_GROUPS:
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    problems.append(f"{what} (Kubernetes {version}): {'/'.join(map(str, exc.path))}: {exc.message}")
        else:
            problems.append(f"{what}: no schema to check a {doc['apiVersion']} {doc['kind']} against")
    return problems


def test_every_object_has_a_schema_and_passes_it(docs):
    assert {d["kind"] for d in docs} >= {"Service", "Trigger", "PingSource", "ApiServerSource", "Broker", "Role",
                                         "RoleBinding", "ServiceAccount", "NetworkPolicy", "PersistentVolumeClaim",
                                         "Job", "Ingress", "ConfigMap", "Secret", "Namespace", "SinkBinding"}
    assert schema_problems(docs) == []


def test_the_schema_check_fails_on_bad_objects():
    docs = build(BASE)
    claim = named(docs, "PersistentVolumeClaim", "project")
    claim["spec"]["acessModes"] = ["ReadWriteMany"]  # a typo: strict validation refuses it
    role = named(docs, "Role", "dm-kew")
    role["rules"][0]["verbs"] = "get"  # not a list
    service = named(docs, "Service", "dm-api")
    service["spec"]["template"]["spec"]["containerConcurency"] = 10
    trigger = of_kind(docs, "Trigger")[0]
    trigger["spec"]["delivery"]["retry"] = "5"
    docs.append({"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}})
    problems = "\n".join(schema_problems(docs))
    for expected in ("PersistentVolumeClaim project", "Role dm-kew", "Service dm-api", "Trigger", "Widget w"):
        assert expected in problems


# --- 2. the project claim --------------------------------------------------------------------


def claim_problems(docs: list[dict]) -> list[str]:
    settings = config(docs)
    claim_name, mount_path = settings["DM_PROJECT_CLAIM"], settings["DM_PROJECT_VOLUME"]
    problems = []
    claims = [c for c in of_kind(docs, "PersistentVolumeClaim") if c["metadata"]["name"] == claim_name]
    if not claims or "ReadWriteMany" not in claims[0]["spec"].get("accessModes", []):
        problems.append(f"no ReadWriteMany PersistentVolumeClaim {claim_name} (DM_PROJECT_CLAIM)")
    mounting = set()
    for what, spec in pod_specs(docs):
        volumes = {v["name"] for v in spec.get("volumes") or []
                   if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim_name}
        for container in spec["containers"] + spec.get("initContainers", []):
            for mount in container.get("volumeMounts") or []:
                if mount["name"] in volumes:
                    mounting.add(what)
                    if mount["mountPath"] != mount_path or mount.get("subPath") or mount.get("readOnly"):
                        problems.append(f"{what} mounts the claim at {mount['mountPath']}, not {mount_path} "
                                        "(DM_PROJECT_VOLUME), whole and writable")
    for role, service in services_by_role(docs).items():
        if role in STORAGE_ROLES and f"Service {service['metadata']['name']}" not in mounting:
            problems.append(f"the {role} role reads project files but its Service does not mount {claim_name}")
    if mounting:
        flags = named(docs, "ConfigMap", "config-features")
        if flags["metadata"]["namespace"] != "knative-serving" or any(
                flags["data"].get(f"kubernetes.podspec-persistent-volume-{f}") != "enabled" for f in ("claim", "write")):
            problems.append("Knative Services mount a claim but config-features does not enable it")
    return problems


def test_the_project_claim_is_mounted_where_the_configuration_says(docs):
    assert claim_problems(docs) == []
    assert config(docs)["DM_PROJECT_VOLUME"] == "/data-manager/projects"


def test_the_claim_check_fails_on_a_wrong_mount():
    docs = build(BASE)
    spec = named(docs, "Service", "dm-upload")["spec"]["template"]["spec"]
    spec["containers"][0]["volumeMounts"][0]["mountPath"] = "/projects"
    assert any("dm-upload mounts the claim at /projects" in p for p in claim_problems(docs))
    docs = build(BASE)
    del named(docs, "Service", "dm-monitor")["spec"]["template"]["spec"]["volumes"]
    assert any("monitor role" in p for p in claim_problems(docs))
    docs = build(BASE)
    del named(docs, "ConfigMap", "config-features")["data"]["kubernetes.podspec-persistent-volume-write"]
    assert any("config-features" in p for p in claim_problems(docs))


def test_the_overlay_sets_the_storage_class_and_the_domain():
    base, overlay = build(BASE), build(OVERLAY)
    assert "storageClassName" not in named(base, "PersistentVolumeClaim", "project")["spec"]
    assert named(overlay, "PersistentVolumeClaim", "project")["spec"]["storageClassName"]
    host = named(overlay, "Ingress", "dm-api")["spec"]["rules"][0]["host"]
    assert host != named(base, "Ingress", "dm-api")["spec"]["rules"][0]["host"]
    assert config(overlay)["DM_PUBLIC_URL"] == f"https://{host}"


# --- 3. service accounts and the Kubernetes calls the code makes --------------------------------


_API_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<resource>[^/?]+)"
                       r"(?:/(?P<name>[^/?]+)(?:/(?P<sub>[^/?]+))?)?/?(?:\?(?P<query>.*))?$")


def rbac_request(method: str, path: str) -> tuple[str, str, str]:
    """(API group, resource, verb) that the API server authorises a request as."""
    match = _API_PATH.match(path)
    assert match, f"not a namespaced API path: {path}"
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    if method == "GET":
        verb = "get" if match["name"] else ("watch" if "watch=true" in (match["query"] or "").lower() else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if match["name"] else "deletecollection"}[method]
    return match["group"] or "", resource, verb


@functools.lru_cache(maxsize=1)
def launcher_calls() -> dict[str, frozenset[tuple[str, str, str]]]:
    """What each Launcher method asks of the API server, recorded against the stand-in."""
    from kubernetes import client

    from shared.launchers import create_launcher
    from tests.k8s_standin import KubernetesStandIn

    def spec(is_job: bool) -> LaunchSpec:
        return LaunchSpec(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}",
                          project_id=f"project-{uuid.uuid4()}", owner="alice", image="busybox:1.36",
                          command=["true"], is_job=is_job)

    calls: dict[str, frozenset] = {}
    with KubernetesStandIn() as standin:
        api = client.ApiClient(client.Configuration(host=standin.url))
        launcher = create_launcher("kubernetes", namespace=NAMESPACE, api_client=api)
        job, app = spec(True), spec(False)

        def record(method: str, *args_list) -> None:
            before = len(standin.requests)
            for args in args_list:
                try:
                    getattr(launcher, method)(*args)
                except Exception:  # noqa: BLE001 - a call the stand-in does not serve was still made
                    pass
            calls[method] = frozenset(rbac_request(m, p) for m, p in standin.requests[before:])

        # every public method, each with arguments of its first parameter's kind; stop comes last
        methods = sorted((m for m in dir(launcher) if not m.startswith("_") and callable(getattr(launcher, m))),
                         key=lambda m: (m == "stop", m))
        for method in methods:
            first = next(iter(inspect.signature(getattr(launcher, method)).parameters), None)
            if first == "spec":
                record(method, (job,), (app,))
                for instance in (job, app):
                    standin.set_phase(instance.instance_id, "Running")
            elif first == "instance_id":
                record(method, (job.instance_id,), (app.instance_id,))
            elif first == "instance_ids":
                record(method, ([job.instance_id, app.instance_id],))
        api.close()
    return calls


def role_methods() -> dict[str, set[str]]:
    """The Launcher methods each role calls, found in the code (CALLER_ROLES says whose code it is)."""
    methods: dict[str, set[str]] = {}
    for folder in ("functions", "shared"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("shared/launchers/"):
                continue
            called = set(re.findall(r"\blauncher\.(\w+)\(", path.read_text()))
            if not called:
                continue
            roles = [role for prefix, role in CALLER_ROLES.items() if relative.startswith(prefix)]
            assert roles, f"{relative} calls the launcher: say in CALLER_ROLES which role runs it"
            methods.setdefault(roles[0], set()).update(called)
    return methods


def _allows(rule: dict, group: str, resource: str, verb: str) -> bool:
    return (not rule.get("resourceNames") and any(g in ("*", group) for g in rule.get("apiGroups", []))
            and any(r in ("*", resource) for r in rule.get("resources", []))
            and any(v in ("*", verb) for v in rule.get("verbs", [])))


def rules_of(docs: list[dict], account: str) -> list[dict]:
    """The rules the namespace's Roles grant a ServiceAccount through RoleBindings."""
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "Role")}
    rules = []
    for binding in of_kind(docs, "RoleBinding"):
        if any(s["kind"] == "ServiceAccount" and s["name"] == account
               and s.get("namespace", binding["metadata"]["namespace"]) == NAMESPACE for s in binding["subjects"]):
            role = roles.get(binding["roleRef"]["name"]) if binding["roleRef"]["kind"] == "Role" else None
            rules += (role or {}).get("rules", [])
    return rules


def rbac_problems(docs: list[dict], needs: dict[str, set[tuple[str, str, str]]]) -> list[str]:
    problems = []
    accounts = {a["metadata"]["name"] for a in of_kind(docs, "ServiceAccount")}
    used = [(what, spec.get("serviceAccountName")) for what, spec in pod_specs(docs)]
    used += [(f"ApiServerSource {s['metadata']['name']}", s["spec"].get("serviceAccountName", "default"))
             for s in of_kind(docs, "ApiServerSource")]
    for what, account in used:
        if account and account not in accounts:
            problems.append(f"{what} runs as {account}, which does not exist")
    for role, service in services_by_role(docs).items():
        account = service["spec"]["template"]["spec"].get("serviceAccountName", "default")
        rules = rules_of(docs, account)
        for group, resource, verb in sorted(needs.get(role, ())):
            if not any(_allows(r, group, resource, verb) for r in rules):
                problems.append(f"the {role} role ({account}) may not {verb} {group or 'core'} {resource}")
    for source in of_kind(docs, "ApiServerSource"):
        rules = rules_of(docs, source["spec"].get("serviceAccountName", "default"))
        for watched in source["spec"]["resources"]:
            group = watched["apiVersion"].rpartition("/")[0]
            resource = watched["kind"].lower() + "s"
            for verb in ("get", "list", "watch"):
                if not any(_allows(r, group, resource, verb) for r in rules):
                    problems.append(f"ApiServerSource {source['metadata']['name']} may not {verb} {resource}")
    return problems


def needed_calls() -> dict[str, set[tuple[str, str, str]]]:
    calls = launcher_calls()
    return {role: set().union(*(calls[m] for m in methods)) for role, methods in role_methods().items()}


def test_the_recording_sees_the_launcher_calls():
    calls = launcher_calls()
    assert ("", "pods", "create") in calls["launch"]
    assert ("", "pods/log", "get") in calls["read_log_since"]
    assert ("", "pods", "list") in calls["pods"]
    assert ("", "pods", "delete") in calls["stop"]
    methods = role_methods()
    assert methods["api"] >= {"launch", "stop"} and "stop" in methods["kew"] and "pods" in methods["monitor"]
    assert set().union(*methods.values()) <= set(calls), "a role calls a Launcher method the recording skips"


def test_every_role_may_make_its_kubernetes_calls(docs):
    assert rbac_problems(docs, needed_calls()) == []


def test_the_rbac_check_fails_on_missing_rights():
    docs = build(BASE)
    kew = named(docs, "Role", "dm-kew")
    kew["rules"] = [r for r in kew["rules"] if r["resources"] != ["pods/log"]]
    named(docs, "Service", "dm-monitor")["spec"]["template"]["spec"]["serviceAccountName"] = "dm-nobody"
    named(docs, "Role", "dm-pod-watcher")["rules"][0]["verbs"] = ["get", "list"]
    problems = rbac_problems(docs, needed_calls())
    assert any("kew role (dm-kew) may not get core pods/log" in p for p in problems)
    assert any("dm-nobody, which does not exist" in p for p in problems)
    assert any("may not watch pods" in p for p in problems)
    assert rbac_problems(build(BASE), {"upload": {("", "pods", "create")}})  # upload runs as the default account


# --- 4. every setting the code reads ------------------------------------------------------------


def documented_defaults() -> set[str]:
    """Variables knative/config.yaml's comments name as left to their defaults or set elsewhere."""
    comments = [line for line in (BASE / "config.yaml").read_text().splitlines() if line.lstrip().startswith("#")]
    return set(re.findall(r"\b(?:DM_[A-Z0-9_]+|K_SINK|FUNCTION_[A-Z_]+|THREADS)\b", "\n".join(comments)))


def image_variables() -> set[str]:
    return {name for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")
            for name in re.findall(r"(\w+)=", line)}


def _selected(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def settings_problems(docs: list[dict], documented: set[str]) -> list[str]:
    problems = []
    maps = {d["metadata"]["name"]: set((d.get("data") or {}) | (d.get("stringData") or {}))
            for d in of_kind(docs, "ConfigMap") + of_kind(docs, "Secret")}
    needed = set(VARIABLES) | RUNTIME_VARIABLES
    for what, spec in pod_specs(docs):
        for container in spec["containers"]:
            names = {e["name"] for e in container.get("env") or []} | image_variables()
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef") or source.get("secretRef")
                if ref["name"] not in maps:
                    problems.append(f"{what} takes its environment from {ref['name']}, which does not exist")
                names |= maps.get(ref["name"], set())
            if not what.startswith("Service"):
                continue
            names |= KNATIVE_INJECTED
            service = named(docs, "Service", what.split(" ", 1)[1])
            if any(_selected(b["spec"]["subject"].get("selector") or {}, service["metadata"].get("labels") or {})
                   for b in of_kind(docs, "SinkBinding")):
                names.add("K_SINK")
            for missing in sorted(needed - names - documented):
                problems.append(f"{what}: {missing} is neither set nor documented as left to its default")
    for name, keys in maps.items():
        if name in ("dm-config", "dm-secrets"):
            for key in sorted(keys - set(VARIABLES) - LIBRARY_VARIABLES):
                problems.append(f"{name} sets {key}, which nothing reads")
    return problems


def test_every_setting_is_set_or_documented(docs):
    assert settings_problems(docs, documented_defaults()) == []
    targets = {role for role in services_by_role(docs)}
    assert targets == {"api", "upload", "kew", "pbc", "monitor"}


def test_the_settings_check_fails_on_a_missing_or_stale_setting():
    docs = build(BASE)
    del config(docs)["DM_LAUNCHER"]
    config(docs)["DM_STORGE"] = "s3://typo"
    named(docs, "Job", "dm-db-upgrade")["spec"]["template"]["spec"]["containers"][0]["envFrom"][1] = {
        "secretRef": {"name": "dm-secret"}}
    problems = settings_problems(docs, documented_defaults())
    assert any("Service dm-api: DM_LAUNCHER is neither set" in p for p in problems)
    assert any("DM_STORGE, which nothing reads" in p for p in problems)
    assert any("dm-secret, which does not exist" in p for p in problems)
    unbound = [d for d in build(BASE) if d["kind"] != "SinkBinding"]
    assert any("K_SINK" in p for p in settings_problems(unbound, documented_defaults() - {"K_SINK"}))


# --- 5. routing ---------------------------------------------------------------------------------


def routing_problems(docs: list[dict]) -> list[str]:
    problems = []
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service", SERVING)}
    brokers = {b["metadata"]["name"] for b in of_kind(docs, "Broker")}
    for trigger in of_kind(docs, "Trigger"):
        spec, name = trigger["spec"], trigger["metadata"]["name"]
        if spec["broker"] not in brokers:
            problems.append(f"Trigger {name} listens to Broker {spec['broker']}, which does not exist")
        for what, destination in (("subscriber", spec["subscriber"]),
                                  ("dead-letter sink", (spec.get("delivery") or {}).get("deadLetterSink"))):
            if destination is None:
                continue
            ref = destination["ref"]
            if ref == ACCOUNT_SERVER:  # the operator points it at the Account Server
                continue
            if (ref["apiVersion"], ref["kind"]) != (SERVING, "Service") or ref["name"] not in services:
                problems.append(f"Trigger {name}'s {what} {ref['name']} is no Service here")
    for source in of_kind(docs, "PingSource") + of_kind(docs, "ApiServerSource") + of_kind(docs, "SinkBinding"):
        ref = source["spec"]["sink"]["ref"]
        if ref["kind"] != "Broker" or ref["name"] not in brokers:
            problems.append(f"{source['kind']} {source['metadata']['name']} sends to {ref['name']}, no Broker here")
    return problems


def test_every_trigger_and_source_names_something_that_exists(docs):
    assert routing_problems(docs) == []


def test_the_routing_check_fails_on_a_missing_service():
    docs = build(BASE)
    of_kind(docs, "Trigger")[0]["spec"]["subscriber"]["ref"]["name"] = "dm-uplaod"
    of_kind(docs, "PingSource")[0]["spec"]["sink"]["ref"]["name"] = "nowhere"
    problems = routing_problems(docs)
    assert any("dm-uplaod is no Service here" in p for p in problems)
    assert any("sends to nowhere" in p for p in problems)


# --- 6. the image -------------------------------------------------------------------------------


def images(docs: list[dict]) -> dict[str, str]:
    return {f"{what} {c.get('name', '')}".strip(): c["image"] for what, spec in pod_specs(docs)
            for c in spec["containers"] + spec.get("initContainers", [])}


def overlay_image() -> str:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == "data-manager"]
    return f"{entry['newName']}:{entry['newTag']}"


def image_problems(docs: list[dict], image: str) -> list[str]:
    return [f"{what} runs {found}, not {image}" for what, found in images(docs).items() if found != image]


def test_the_overlay_sets_the_image_everywhere():
    base, overlay = build(BASE), build(OVERLAY)
    assert len(images(base)) == 6  # five Services and the migration Job
    assert image_problems(base, f"data-manager:{VERSION}") == []  # what `make image` tags
    assert image_problems(overlay, overlay_image()) == []
    assert overlay_image() != f"data-manager:{VERSION}"


def test_the_image_check_fails_on_an_image_the_overlay_missed():
    docs = build(OVERLAY)
    named(docs, "Job", "dm-db-upgrade")["spec"]["template"]["spec"]["containers"][0]["image"] = "data-manager"
    assert image_problems(docs, overlay_image()) == [f"Job dm-db-upgrade migrate runs data-manager, not "
                                                     f"{overlay_image()}"]


def test_the_functions_run_unprivileged(docs):
    for what, spec in pod_specs(docs):
        pod_context = spec.get("securityContext") or {}
        for container in spec["containers"]:
            context = {**pod_context, **(container.get("securityContext") or {})}
            assert context.get("runAsNonRoot") is True and context.get("runAsUser", 0) != 0, what
            assert context.get("allowPrivilegeEscalation") is False, what
            assert context.get("capabilities", {}).get("drop") == ["ALL"], what
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, what


# --- 7. the instance pods' network ------------------------------------------------------------


def instance_pod(is_job: bool) -> dict:
    spec = LaunchSpec(instance_id=f"instance-{uuid.uuid4()}", task_id=f"task-{uuid.uuid4()}",
                      project_id=f"project-{uuid.uuid4()}", owner="alice", image="busybox:1.36", command=["true"],
                      is_job=is_job)
    return pods.pod_manifest(spec, NAMESPACE)


def _selects(selector: dict, labels: dict) -> bool:
    if not _selected(selector, labels):
        return False
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        if expression["operator"] == "Exists" and not present or expression["operator"] == "DoesNotExist" and present:
            return False
        if expression["operator"] == "In" and labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def network_policies_for(docs: list[dict], pod: dict) -> list[dict]:
    return [p for p in of_kind(docs, "NetworkPolicy")
            if _selects(p["spec"]["podSelector"], pod["metadata"]["labels"])]


def test_instance_pods_are_isolated_but_for_dns_the_allow_list_and_the_ingress_controller(docs):
    for is_job in (True, False):
        pod = instance_pod(is_job)
        assert pod["metadata"]["labels"][PURPOSE_LABEL] == "INSTANCE"
        policies = network_policies_for(docs, pod)
        types = {t for p in policies for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}  # both directions closed by default
        ingress = [rule for p in policies for rule in p["spec"].get("ingress") or []]
        if is_job:
            assert ingress == []
        else:
            assert ingress and all(peer.get("namespaceSelector") for rule in ingress for peer in rule["from"])
        egress = [rule for p in policies for rule in p["spec"].get("egress") or []]
        dns = [rule for rule in egress if {port["port"] for port in rule.get("ports") or []} == {53}]
        assert dns and all(rule["to"] for rule in egress)  # no rule opens everything
    allow_list = named(docs, "NetworkPolicy", "dm-instances-egress-allow-list")["spec"]["egress"]
    assert (allow_list == []) == (docs == build(BASE))  # empty in the base, extended by the overlay
