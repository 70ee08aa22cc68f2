"""The Services and Ingresses of the Kubernetes API stand-in (`tests.k8s_standin`): an application's
way in, stored, validated and answered as the API server does (real objects, real Status errors)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

from shared.launchers import pods

# an application's Service and Ingress: create, read, delete
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_OBJECTS = re.compile(r"^/(?P<group>api/v1|apis/networking\.k8s\.io/v1)/namespaces/(?P<ns>[^/]+)/"
                      r"(?P<kind>services|ingresses)(?:/(?P<name>[^/]+))?/?$")
_KINDS = {"services": ("api/v1", "v1", "Service"), "ingresses": ("apis/networking.k8s.io/v1", "networking.k8s.io/v1",
                                                                 "Ingress")}


def _group(kind: str) -> str:
    return "networking.k8s.io" if kind == "ingresses" else ""


def _object_not_found(kind: str, name: str) -> Exception:
    group = _group(kind)
    qualified = f"{kind}.{group}" if group else kind
    return _api_error(status_object(404, "NotFound", f'{qualified} "{name}" not found',
                                  {"name": name, "group": group, "kind": kind} if group else {"name": name, "kind": kind}))


def _validate_object(kind: str, obj: dict[str, Any]) -> None:
    """What the API server checks of the Services and Ingresses the launcher sends."""
    name = (obj.get("metadata") or {}).get("name") or ""
    spec = obj.get("spec") or {}
    kind_name = _KINDS[kind][2]
    causes: list[tuple[str, str]] = []
    if kind == "services":  # a Service's name is a DNS-1035 label
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
            causes.append(("metadata.name", f'Invalid value: "{name}": a DNS-1035 label must consist of lower case '
                                            "alphanumeric characters or '-', start with an alphabetic character"))
        if not spec.get("ports"):
            causes.append(("spec.ports", "Required value"))
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port.get("port"), int) or not 0 < port["port"] < 65536:
                causes.append((f"spec.ports[{i}].port", f"Invalid value: {port.get('port')}: must be between 1 and "
                                                        "65535, inclusive"))
        if spec.get("type", "ClusterIP") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(("spec.type", f'Unsupported value: "{spec.get("type")}"'))
    else:
        if not name or len(name) > 253 or not _SUBDOMAIN.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain'))
        for i, rule in enumerate(spec.get("rules") or []):
            for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
                where = f"spec.rules[{i}].http.paths[{j}]"
                if path.get("pathType") not in ("Exact", "Prefix", "ImplementationSpecific"):
                    causes.append((f"{where}.pathType", f'Unsupported value: "{path.get("pathType")}"'))
                if not str(path.get("path", "")).startswith("/"):
                    causes.append((f"{where}.path", f'Invalid value: "{path.get("path")}": must be an absolute path'))
                service = (path.get("backend") or {}).get("service") or {}
                if not service.get("name") or not (service.get("port") or {}).get("number"):
                    causes.append((f"{where}.backend", "Required value: a service name and port number"))
    if causes:
        text = ", ".join(f"{field}: {message}" for field, message in causes)
        raise _api_error(status_object(422, "Invalid", f'{kind_name} "{name}" is invalid: {text}', {
            "name": name, "group": _group(kind), "kind": kind_name,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]}))


def match_object(path: str) -> tuple[str, str, str | None] | None:
    """(kind, namespace, name or None) of a Service or Ingress path; None for any other."""
    m = _OBJECTS.match(path)
    if m is None or _KINDS[m["kind"]][0] != m["group"]:
        return None
    return m["kind"], m["ns"], m["name"]


def _api_error(status: dict[str, Any]) -> Exception:
    from tests.k8s_standin import ApiError

    return ApiError(status)


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    from tests.k8s_standin import status_object as status

    return status(code, reason, message, details)


class ObjectStore:
    """The stand-in's Services and Ingresses (its ``_cond`` and ``_version`` are shared with the pods)."""

    _objects: dict[tuple[str, str, str], dict[str, Any]]
    _cluster_ips = 0

    def service(self, name: str, namespace: str) -> dict[str, Any] | None:
        with self._cond:
            return copy.deepcopy(self._objects.get(("services", namespace, name)))

    def ingress(self, name: str, namespace: str) -> dict[str, Any] | None:
        with self._cond:
            return copy.deepcopy(self._objects.get(("ingresses", namespace, name)))

    def create_object(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        _, api_version, kind_name = _KINDS[kind]
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            raise _api_error(status_object(400, "BadRequest", "the namespace of the provided object does not match "
                                                             "the namespace sent on the request"))
        if obj.get("kind") != kind_name or obj.get("apiVersion") != api_version:
            raise _api_error(status_object(400, "BadRequest", f"the object is not a {api_version} {kind_name}"))
        _validate_object(kind, obj)
        name = meta["name"]
        with self._cond:
            if (kind, namespace, name) in self._objects:
                raise _api_error(status_object(409, "AlreadyExists", f'{kind}.{_group(kind)} "{name}" already exists',
                                             {"name": name, "group": _group(kind), "kind": kind}))
            self._version += 1
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=str(self._version),
                        creationTimestamp=pods.timestamp(), generation=1)
            if kind == "services":
                self._cluster_ips += 1
                address = f"10.96.{self._cluster_ips // 250}.{self._cluster_ips % 250 + 2}"
                obj["spec"].update(clusterIP=address, clusterIPs=[address], ipFamilies=["IPv4"],
                                   ipFamilyPolicy="SingleStack", sessionAffinity="None",
                                   internalTrafficPolicy="Cluster")
            obj["status"] = {"loadBalancer": {}}
            self._objects[(kind, namespace, name)] = obj
            return copy.deepcopy(obj)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            obj = self._objects.get((kind, namespace, name))
            if obj is None:
                raise _object_not_found(kind, name)
            return copy.deepcopy(obj)

    def delete_object(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """As the API server: the deleted Service itself; a Success Status for an Ingress."""
        with self._cond:
            obj = self._objects.pop((kind, namespace, name), None)
        if obj is None:
            raise _object_not_found(kind, name)
        if kind == "services":
            return obj
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": _group(kind), "kind": kind, "uid": obj["metadata"]["uid"]}}


class ObjectRoutes:
    """The handler's part for them."""

    @property
    def api_error(self):
        from tests.k8s_standin import ApiError

        return ApiError

    def _object(self, method: str, kind: str, ns: str, name: str | None, raw: bytes) -> None:
        try:
            if method == "POST" and name is None:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise _api_error(status_object(400, "BadRequest", "the body is not JSON")) from None
                return self._send_json(201, self.api.create_object(kind, ns, body))
            if method == "GET" and name is not None:
                return self._send_json(200, self.api.get_object(kind, ns, name))
            if method == "DELETE" and name is not None:
                return self._send_json(200, self.api.delete_object(kind, ns, name))
            raise _api_error(status_object(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                                   "requested resource"))
        except self.api_error as exc:
            return self._send_json(exc.status["code"], exc.status)
