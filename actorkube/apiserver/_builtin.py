"""The built-in resources: one ``ResourceType`` entry each, with Kubernetes' defaulting
and validation for the fields the cluster's components rely on.

Rules of this file:

- Defaulting returns a new object and fills what Kubernetes' SetDefaults_* fill
  (restartPolicy, terminationGracePeriodSeconds, dnsPolicy, imagePullPolicy, service
  port protocols and target ports, Deployment strategy, ...). It never fails: a value
  of the wrong type is left for validation to report.
- Validation returns every FieldError it finds (never raises) with Kubernetes' paths
  and messages; ``old`` is None on create, the stored object on update (where some
  fields are immutable).
- Resources without rules of their own here still get metadata validation.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from ._registry import Registry, ResourceType
from ._selectors import InvalidSelector, Selector
from ._validation import (
    ErrorType,
    FieldError,
    Path,
    is_dns1123_label,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
    name_is_path_segment,
    validate_object_meta,
    validate_resource_requirements,
)

META = Path("metadata")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _not_supported(path: Path, value: Any, supported: tuple[str, ...]) -> FieldError:
    listed = ", ".join(f'"{s}"' for s in sorted(supported))
    return FieldError(ErrorType.NOT_SUPPORTED, str(path), value, f"supported values: {listed}")


def _duplicate(path: Path, value: Any) -> FieldError:
    return FieldError(ErrorType.DUPLICATE, str(path), value, "")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _meta_rule(namespaced: bool, name_rule=name_is_dns_subdomain):
    def validate(obj: dict, old: dict | None) -> list[FieldError]:
        return validate_object_meta(obj.get("metadata"), namespaced, META, validate_name=name_rule)

    return validate


def _with_meta(namespaced: bool, rule: Callable, name_rule=name_is_dns_subdomain):
    check_meta = _meta_rule(namespaced, name_rule)

    def validate(obj: dict, old: dict | None) -> list[FieldError]:
        return check_meta(obj, old) + rule(obj, old)

    return validate


# --- pods -----------------------------------------------------------------------------------


def default_container(c: Any) -> Any:
    if not isinstance(c, dict):
        return c
    c = dict(c)
    image = c.get("image", "")
    if "imagePullPolicy" not in c and isinstance(image, str):
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("ports"), list):
        c["ports"] = [
            {**p, "protocol": p.get("protocol", "TCP")} if isinstance(p, dict) else p
            for p in c["ports"]
        ]
    resources = c.get("resources")
    if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        # Requests default to the limits (SetDefaults_ResourceRequirements via the pod).
        requests = dict(_dict(resources.get("requests")))
        for name, value in resources["limits"].items():
            requests.setdefault(name, value)
        c["resources"] = {**resources, "requests": requests}
    return c


def default_pod_spec(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for field in ("containers", "initContainers"):
        if isinstance(spec.get(field), list):
            spec[field] = [default_container(c) for c in spec[field]]
    return spec


def default_pod(obj: dict) -> dict:
    new = {**obj, "spec": default_pod_spec(obj.get("spec"))}
    if "status" not in new:
        new["status"] = {"phase": "Pending"}
    return new


def validate_containers(containers: Any, path: Path, names: set[str], *, required: bool):
    errors: list[FieldError] = []
    if not isinstance(containers, list):
        if containers is not None or required:
            errors.append(
                FieldError.required(path)
                if containers is None
                else FieldError.type_invalid(path, containers, "array")
            )
        return errors
    if required and not containers:
        errors.append(FieldError.required(path))
    for i, c in enumerate(containers):
        at = path.index(i)
        if not isinstance(c, dict):
            errors.append(FieldError.type_invalid(at, c, "object"))
            continue
        name = c.get("name")
        if not name:
            errors.append(FieldError.required(at.child("name")))
        elif not isinstance(name, str):
            errors.append(FieldError.type_invalid(at.child("name"), name, "string"))
        else:
            for msg in is_dns1123_label(name):
                errors.append(FieldError.invalid(at.child("name"), name, msg))
            if name in names:
                errors.append(_duplicate(at.child("name"), name))
            names.add(name)
        if not c.get("image"):
            errors.append(FieldError.required(at.child("image")))
        policy = c.get("imagePullPolicy")
        if policy is not None and policy not in PULL_POLICIES:
            errors.append(_not_supported(at.child("imagePullPolicy"), policy, PULL_POLICIES))
        errors += _validate_container_ports(c.get("ports"), at.child("ports"))
        if "resources" in c:
            errors += validate_resource_requirements(c["resources"], at.child("resources"))
    return errors


def _validate_port(p: dict, at: Path, number_field: str, name_rule, names: set) -> list:
    """One port of a container or a service: its number, its name (unique among the
    ``names`` seen so far, valid for ``name_rule``) and its protocol."""
    errors: list[FieldError] = []
    number = p.get(number_field)
    if number is None:
        errors.append(FieldError.required(at.child(number_field)))
    elif not isinstance(number, int) or isinstance(number, bool):
        errors.append(FieldError.type_invalid(at.child(number_field), number, "integer"))
    else:
        errors += [FieldError.invalid(at.child(number_field), number, m)
                   for m in is_valid_port_num(number)]  # fmt: skip
    name = p.get("name")
    if name:
        errors += [FieldError.invalid(at.child("name"), name, m) for m in name_rule(str(name))]
        if name in names:
            errors.append(_duplicate(at.child("name"), name))
        names.add(name)
    protocol = p.get("protocol", "TCP")
    if protocol not in PROTOCOLS:
        errors.append(_not_supported(at.child("protocol"), protocol, PROTOCOLS))
    return errors


def _validate_container_ports(ports: Any, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, p in enumerate(_list(ports)):
        if isinstance(p, dict):
            errors += _validate_port(p, path.index(i), "containerPort", is_valid_port_name, seen)
        else:
            errors.append(FieldError.type_invalid(path.index(i), p, "object"))
    return errors


def validate_pod_spec(spec: Any, path: Path) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [
            FieldError.required(path)
            if spec is None
            else FieldError.type_invalid(path, spec, "object")
        ]
    names: set[str] = set()
    errors = validate_containers(
        spec.get("initContainers"), path.child("initContainers"), names, required=False
    )
    errors += validate_containers(
        spec.get("containers"), path.child("containers"), names, required=True
    )
    policy = spec.get("restartPolicy", "Always")
    if policy not in RESTART_POLICIES:
        errors.append(_not_supported(path.child("restartPolicy"), policy, RESTART_POLICIES))
    dns = spec.get("dnsPolicy", "ClusterFirst")
    if dns not in DNS_POLICIES:
        errors.append(_not_supported(path.child("dnsPolicy"), dns, DNS_POLICIES))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        errors.append(
            FieldError.invalid(
                path.child("terminationGracePeriodSeconds"),
                grace,
                "must be greater than or equal to 0",
            )
        )
    node = spec.get("nodeName")
    if node:
        for msg in name_is_dns_subdomain(str(node), False):
            errors.append(FieldError.invalid(path.child("nodeName"), node, msg))
    return errors


# Pod fields an update may change (ValidatePodUpdate): images, the deadline, the grace
# period (only to shorten it through a delete), and tolerations.
_MUTABLE_POD_FIELDS = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _pod_spec_for_compare(spec: dict) -> dict:
    spec = {k: v for k, v in spec.items() if k not in _MUTABLE_POD_FIELDS}
    for field in ("containers", "initContainers"):
        if isinstance(spec.get(field), list):
            spec[field] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in spec[field]
            ]
    return spec


def validate_pod(obj: dict, old: dict | None) -> list[FieldError]:
    errors = validate_pod_spec(obj.get("spec"), Path("spec"))
    if old is not None and not errors:
        before, after = _dict(old.get("spec")), _dict(obj.get("spec"))
        # A pod's node is set once, by a binding; after that the spec is fixed.
        if before.get("nodeName") and after.get("nodeName") != before.get("nodeName"):
            errors.append(
                FieldError.forbidden(Path("spec").child("nodeName"), "field is immutable")
            )
        # Binding sets the node once; compare the rest.
        before = {k: v for k, v in before.items() if k != "nodeName"}
        after = {k: v for k, v in after.items() if k != "nodeName"}
        if _pod_spec_for_compare(after) != _pod_spec_for_compare(before):
            errors.append(
                FieldError.forbidden(
                    Path("spec"),
                    (
                        "pod updates may not change fields other than `spec.containers[*].image`,"
                        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                        "`spec.tolerations` (only additions to existing tolerations),"
                        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                        "previously negative)"
                    ),
                )
            )
    return errors


def pod_fields(obj: dict) -> dict[str, str]:
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    return {
        "spec.nodeName": str(spec.get("nodeName", "")),
        "spec.restartPolicy": str(spec.get("restartPolicy", "")),
        "spec.schedulerName": str(spec.get("schedulerName", "")),
        "spec.serviceAccountName": str(spec.get("serviceAccountName", "")),
        "status.phase": str(status.get("phase", "")),
        "status.podIP": str(status.get("podIP", "")),
        "status.nominatedNodeName": str(status.get("nominatedNodeName", "")),
    }


def validate_controller_revision(obj: dict, old: dict | None) -> list[FieldError]:
    """A ControllerRevision (apps/v1): a revision number of at least 0, and data that
    never changes once written (ValidateControllerRevisionUpdate)."""
    errors: list[FieldError] = []
    revision = obj.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        errors.append(FieldError.invalid(Path("revision"), revision,
                                         "must be greater than or equal to 0"))  # fmt: skip
    if old is not None and obj.get("data") != old.get("data"):
        errors.append(FieldError.invalid(Path("data"), obj.get("data"), "field is immutable"))
    return errors


def event_fields(obj: dict) -> dict[str, str]:
    """The fields an Event list or watch selects on (Kubernetes' event
    GetAttrs), which ``kubectl describe`` uses to find an object's events."""
    involved = _dict(obj.get("involvedObject"))
    source = _dict(obj.get("source"))
    fields = {f"involvedObject.{name}": str(involved.get(name, ""))
              for name in ("kind", "namespace", "name", "uid", "apiVersion",
                           "resourceVersion", "fieldPath")}  # fmt: skip
    return {**fields, "reason": str(obj.get("reason", "")),
            "reportingComponent": str(obj.get("reportingComponent", "")),
            "source": str(source.get("component", "")), "type": str(obj.get("type", ""))}


# --- workloads (apps/v1) --------------------------------------------------------------------


def default_workload(obj: dict, *, replicas: bool, strategy: str) -> dict:
    spec = dict(_dict(obj.get("spec")))
    if replicas:
        spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    if strategy == "Deployment":
        spec.setdefault(
            "strategy",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
        )
        spec.setdefault("progressDeadlineSeconds", 600)
    elif strategy == "DaemonSet":
        spec.setdefault(
            "updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        )
    template = spec.get("template")
    if isinstance(template, dict):
        spec["template"] = {**template, "spec": default_pod_spec(template.get("spec"))}
    if strategy == "ReplicaSet":
        spec.pop("revisionHistoryLimit")
    return {**obj, "spec": spec}


def validate_workload(obj: dict, old: dict | None, *, replicas: bool) -> list[FieldError]:
    spec = obj.get("spec")
    path = Path("spec")
    if not isinstance(spec, dict):
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    if replicas:
        count = spec.get("replicas", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            errors.append(
                FieldError.invalid(
                    path.child("replicas"), count, "must be greater than or equal to 0"
                )
            )
    selector = spec.get("selector")
    template = _dict(spec.get("template"))
    labels = _dict(_dict(template.get("metadata")).get("labels"))
    if not isinstance(selector, dict):
        errors.append(FieldError.required(path.child("selector")))
    else:
        try:
            parsed = Selector.from_label_selector(selector)
        except InvalidSelector as e:
            errors.append(FieldError.invalid(path.child("selector"), selector, str(e)))
        else:
            if parsed.empty:
                errors.append(
                    FieldError.invalid(
                        path.child("selector"), selector, "empty selector is invalid for deployment"
                    )
                )
            elif not parsed.matches(labels):
                errors.append(
                    FieldError.invalid(
                        path.child("template", "metadata", "labels"),
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
        if old is not None and selector != _dict(old.get("spec")).get("selector"):
            errors.append(
                FieldError.invalid(path.child("selector"), selector, "field is immutable")
            )
    errors += validate_pod_spec(template.get("spec"), path.child("template", "spec"))
    return errors


# --- services -------------------------------------------------------------------------------


SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
IP_FAMILIES = ("IPv4", "IPv6")
DEFAULT_AFFINITY_TIMEOUT = 10800  # Kubernetes' DefaultClientIPServiceAffinitySeconds
MAX_AFFINITY_TIMEOUT = 86400


def default_service(obj: dict) -> dict:
    """SetDefaults_Service, and clusterIP / clusterIPs made one (as conversion does).
    The cluster IP, node ports and IP families are the allocator's (``_services``)."""
    spec = dict(_dict(obj.get("spec")))
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    kind = spec["type"]
    if spec["sessionAffinity"] == "ClientIP":
        config = _dict(spec.get("sessionAffinityConfig"))
        client = _dict(config.get("clientIP"))
        if "timeoutSeconds" not in client:
            client = {**client, "timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}
            spec["sessionAffinityConfig"] = {**config, "clientIP": client}
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    ips = spec.get("clusterIPs")
    if spec.get("clusterIP") and not ips:
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif isinstance(ips, list) and ips and isinstance(ips[0], str) and not spec.get("clusterIP"):
        spec["clusterIP"] = ips[0]
    if isinstance(spec.get("ports"), list):
        spec["ports"] = [
            {
                **p,
                "protocol": p.get("protocol", "TCP"),
                "targetPort": p.get("targetPort", p.get("port")),
            }
            if isinstance(p, dict)
            else p
            for p in spec["ports"]
        ]
    return {**obj, "spec": spec}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _validate_cluster_ips(spec: dict, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    ip = spec.get("clusterIP")
    ips = spec.get("clusterIPs")
    if ip is not None and not isinstance(ip, str):
        return [FieldError.type_invalid(path.child("clusterIP"), ip, "string")]
    if ips is not None and not isinstance(ips, list):
        return [FieldError.type_invalid(path.child("clusterIPs"), ips, "array")]
    ips = ips or ([ip] if ip else [])
    if ip and ips[0] != ip:
        errors.append(FieldError.invalid(path.child("clusterIPs"), ips,
                                         "first value must match `clusterIP`"))  # fmt: skip
    for i, value in enumerate(ips):
        at = path.child("clusterIPs").index(i)
        if value == "None" and i == 0:
            if len(ips) > 1:
                errors.append(FieldError.invalid(at, value, "must not be 'None' when multiple "
                                                 "values are specified"))  # fmt: skip
            continue
        if not isinstance(value, str) or not _is_ip(value):
            errors.append(FieldError.invalid(at, value, "must be a valid IP address, (e.g. "
                                             "10.9.8.7 or 2001:db8::ffff)"))  # fmt: skip
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName" and ips:
        errors.append(FieldError.forbidden(path.child("clusterIPs"),
                                           "may not be set for ExternalName services"))  # fmt: skip
    if kind in ("NodePort", "LoadBalancer") and ip == "None":
        why = f"may not be set to 'None' for {kind} services"
        errors.append(FieldError.invalid(path.child("clusterIPs").index(0), ip, why))
    return errors


def _validate_service_policies(spec: dict, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    for field, supported in (("internalTrafficPolicy", TRAFFIC_POLICIES),
                             ("externalTrafficPolicy", TRAFFIC_POLICIES),
                             ("ipFamilyPolicy", IP_FAMILY_POLICIES)):  # fmt: skip
        value = spec.get(field)
        if value is not None and value not in supported:
            errors.append(_not_supported(path.child(field), value, supported))
    families = spec.get("ipFamilies")
    for i, family in enumerate(_list(families)):
        if family not in IP_FAMILIES:
            errors.append(_not_supported(path.child("ipFamilies").index(i), family, IP_FAMILIES))
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in SESSION_AFFINITIES:
        errors.append(_not_supported(path.child("sessionAffinity"), affinity, SESSION_AFFINITIES))
    config = spec.get("sessionAffinityConfig")
    if affinity == "ClientIP":
        at = path.child("sessionAffinityConfig", "clientIP", "timeoutSeconds")
        timeout = _dict(_dict(config).get("clientIP")).get("timeoutSeconds")
        valid = isinstance(timeout, int) and not isinstance(timeout, bool)
        if not valid or not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
            errors.append(FieldError.invalid(at, timeout, "must be greater than 0 and less than "
                                             f"{MAX_AFFINITY_TIMEOUT}"))  # fmt: skip
    elif config:
        errors.append(FieldError.forbidden(path.child("sessionAffinityConfig"),
                                           f"must not be set when session affinity is "
                                           f"{affinity}"))  # fmt: skip
    return errors


def _validate_service_port(p: dict, at: Path, kind: str, dropped: bool) -> list[FieldError]:
    """A port's targetPort and nodePort (``dropped``: its node port is being let go of
    by a change of type, so it is not the caller's to have left in)."""
    errors: list[FieldError] = []
    target = p.get("targetPort")
    if isinstance(target, bool) or not isinstance(target, int | str | None):
        errors.append(FieldError.type_invalid(at.child("targetPort"), target, "integer or string"))
    elif isinstance(target, int):
        errors += [FieldError.invalid(at.child("targetPort"), target, m)
                   for m in is_valid_port_num(target)]  # fmt: skip
    elif isinstance(target, str):
        errors += [FieldError.invalid(at.child("targetPort"), target, m)
                   for m in is_valid_port_name(target)]  # fmt: skip
    node_port = p.get("nodePort")
    if node_port in (None, 0) or dropped:
        return errors
    if isinstance(node_port, bool) or not isinstance(node_port, int):
        errors.append(FieldError.type_invalid(at.child("nodePort"), node_port, "integer"))
    elif kind not in ("NodePort", "LoadBalancer"):
        errors.append(FieldError.forbidden(at.child("nodePort"),
                                           f"may not be used when `type` is '{kind}'"))  # fmt: skip
    else:
        errors += [FieldError.invalid(at.child("nodePort"), node_port, m)
                   for m in is_valid_port_num(node_port)]  # fmt: skip
    return errors


def _node_ports_dropped(spec: dict, old: dict | None) -> bool:
    """An update away from NodePort/LoadBalancer that left the node ports as they were:
    the allocator drops them (Kubernetes' dropTypeDependentFields)."""
    if old is None:
        return False
    before = _dict(old.get("spec"))
    if before.get("type") not in ("NodePort", "LoadBalancer"):
        return False
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        return False
    held = {p.get("nodePort") for p in _list(before.get("ports")) if isinstance(p, dict)}
    return all(p.get("nodePort") in held for p in _list(spec.get("ports")) if isinstance(p, dict))


def validate_service(obj: dict, old: dict | None) -> list[FieldError]:
    spec = obj.get("spec")
    path = Path("spec")
    if not isinstance(spec, dict):
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        errors.append(_not_supported(path.child("type"), kind, SERVICE_TYPES))
    if kind == "ExternalName" and not spec.get("externalName"):
        errors.append(FieldError.required(path.child("externalName")))
    ports = spec.get("ports")
    if kind != "ExternalName" and spec.get("clusterIP") != "None" and not ports:
        errors.append(FieldError.required(path.child("ports")))
    selector = spec.get("selector")
    if selector is not None and not isinstance(selector, dict):
        errors.append(FieldError.type_invalid(path.child("selector"), selector, "object"))
    names: set[str] = set()
    node_ports: set[tuple] = set()
    dropped = _node_ports_dropped(spec, old)
    for i, p in enumerate(_list(ports)):
        at = path.child("ports").index(i)
        if not isinstance(p, dict):
            errors.append(FieldError.type_invalid(at, p, "object"))
            continue
        if len(_list(ports)) > 1 and not p.get("name"):
            errors.append(FieldError.required(at.child("name")))
        errors += _validate_port(p, at, "port", is_dns1123_label, names)
        errors += _validate_service_port(p, at, kind, dropped)
        node_port = (str(p.get("protocol", "TCP")), p.get("nodePort"))
        if isinstance(node_port[1], int) and node_port[1]:
            if node_port in node_ports:
                errors.append(_duplicate(at.child("nodePort"), node_port[1]))
            node_ports.add(node_port)
    if kind == "ExternalName" and old is not None and _dict(old.get("spec")).get("type") != kind:
        # The allocator lets go of an IP the change of type left as it was.
        spec = {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")
                or v != _dict(old.get("spec")).get(k)}  # fmt: skip
    errors += _validate_cluster_ips(spec, path)
    errors += _validate_service_policies(spec, path)
    if old is not None:
        before = _dict(old.get("spec")).get("clusterIP")
        if before and spec.get("clusterIP") not in (None, "", before):
            errors.append(
                FieldError.invalid(
                    path.child("clusterIP"), spec.get("clusterIP"), "field is immutable"
                )
            )
    return errors


# --- config ---------------------------------------------------------------------------------


def validate_config_data(obj: dict, old: dict | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for field in ("data", "binaryData", "stringData"):
        data = obj.get(field)
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(FieldError.type_invalid(Path(field), data, "object"))
            continue
        for key in data:
            if not _CONFIG_KEY.fullmatch(key) or len(key) > 253:
                errors.append(
                    FieldError.invalid(
                        Path(field),
                        key,
                        (
                            "a valid config key must consist of alphanumeric characters, "
                            "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                            "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                        ),
                    )
                )
    return errors


def default_secret(obj: dict) -> dict:
    new = dict(obj)
    new.setdefault("type", "Opaque")
    string_data = new.pop("stringData", None)
    if isinstance(string_data, dict):
        data = dict(_dict(new.get("data")))
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        new["data"] = data
    return new


def default_namespace(obj: dict) -> dict:
    spec = dict(_dict(obj.get("spec")))
    spec.setdefault("finalizers", ["kubernetes"])
    status = dict(_dict(obj.get("status")))
    status.setdefault("phase", "Active")
    return {**obj, "spec": spec, "status": status}


def node_fields(obj: dict) -> dict[str, str]:
    unschedulable = _dict(obj.get("spec")).get("unschedulable", False)
    return {"spec.unschedulable": "true" if unschedulable else "false"}


def _requires(*fields: str) -> Callable[[dict, dict | None], list[FieldError]]:
    def validate(obj: dict, old: dict | None) -> list[FieldError]:
        errors = []
        for field in fields:
            node: Any = obj
            for part in field.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node in (None, "", [], {}):
                errors.append(FieldError.required(Path(field)))
        return errors

    return validate


def _role_ref_immutable(obj: dict, old: dict | None) -> list[FieldError]:
    errors = _requires("roleRef.kind", "roleRef.name")(obj, old)
    if old is not None and obj.get("roleRef") != old.get("roleRef"):
        errors.append(
            FieldError.invalid(Path("roleRef"), obj.get("roleRef"), "cannot change roleRef")
        )
    return errors


def _no_rules(obj: dict, old: dict | None) -> list[FieldError]:
    return []


# --- the registry ---------------------------------------------------------------------------

STATUS = frozenset({"status"})
RBAC = "rbac.authorization.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"


def builtin_registry() -> Registry:
    """Every resource of the API server (see docs/apiserver.md)."""

    def rt(
        group,
        kind,
        plural,
        namespaced,
        *,
        rule=_no_rules,
        name_rule=name_is_dns_subdomain,
        **options,
    ) -> ResourceType:
        return ResourceType(
            group,
            "v1",
            kind,
            plural,
            namespaced,
            validate=_with_meta(namespaced, rule, name_rule),
            **options,
        )

    def workload(kind, plural, short, replicas, subresources):
        return rt(
            "apps",
            kind,
            plural,
            True,
            short_names=(short,),
            categories=("all",),
            subresources=subresources,
            generation=True,
            rule=lambda o, old: validate_workload(o, old, replicas=replicas),
            default=lambda o: default_workload(o, replicas=replicas, strategy=kind),
        )

    def review(group, kind, plural, namespaced) -> ResourceType:
        # Asked, never stored: the server answers each create (see _reviews).
        return ResourceType(group, "v1", kind, plural, namespaced, verbs=("create",),
                            stored=False)  # fmt: skip

    return Registry(
        [
            rt(
                "",
                "Namespace",
                "namespaces",
                False,
                short_names=("ns",),
                subresources=STATUS,
                name_rule=name_is_dns_label,
                default=default_namespace,
            ),
            rt(
                "",
                "Node",
                "nodes",
                False,
                etcd_prefix="minions",
                short_names=("no",),
                subresources=STATUS,
                fields=node_fields,
                create_keeps_status=True,
            ),
            rt(
                "",
                "Pod",
                "pods",
                True,
                short_names=("po",),
                categories=("all",),
                subresources=frozenset({"status", "binding", "eviction", "log"}),
                graceful=True,
                rule=validate_pod,
                default=default_pod,
                fields=pod_fields,
            ),
            rt(
                "",
                "Service",
                "services",
                True,
                etcd_prefix="services/specs",
                short_names=("svc",),
                categories=("all",),
                subresources=STATUS,
                name_rule=name_is_dns1035_label,
                rule=validate_service,
                default=default_service,
            ),
            rt(
                "",
                "Endpoints",
                "endpoints",
                True,
                etcd_prefix="services/endpoints",
                short_names=("ep",),
            ),
            rt("", "ConfigMap", "configmaps", True, short_names=("cm",), rule=validate_config_data),
            rt(
                "",
                "Secret",
                "secrets",
                True,
                rule=validate_config_data,
                default=default_secret,
                fields=lambda o: {"type": str(o.get("type", ""))},
            ),
            rt("", "ServiceAccount", "serviceaccounts", True, short_names=("sa",)),
            rt(
                "",
                "Event",
                "events",
                True,
                short_names=("ev",),
                rule=_requires("involvedObject.kind", "involvedObject.name"),
                fields=event_fields,
            ),
            workload("Deployment", "deployments", "deploy", True, frozenset({"status", "scale"})),
            workload("ReplicaSet", "replicasets", "rs", True, frozenset({"status", "scale"})),
            workload("DaemonSet", "daemonsets", "ds", False, STATUS),
            rt("apps", "ControllerRevision", "controllerrevisions", True,
               rule=validate_controller_revision),
            rt("coordination.k8s.io", "Lease", "leases", True),
            rt(
                "policy",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                True,
                short_names=("pdb",),
                subresources=STATUS,
                generation=True,
            ),
            rt(
                "discovery.k8s.io",
                "EndpointSlice",
                "endpointslices",
                True,
                rule=_requires("addressType"),
            ),
            rt(RBAC, "Role", "roles", True, name_rule=name_is_path_segment),
            rt(RBAC, "ClusterRole", "clusterroles", False, name_rule=name_is_path_segment),
            rt(RBAC, "RoleBinding", "rolebindings", True, rule=_role_ref_immutable,
               name_rule=name_is_path_segment),
            rt(RBAC, "ClusterRoleBinding", "clusterrolebindings", False,
               rule=_role_ref_immutable, name_rule=name_is_path_segment),
            review(AUTHZ, "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
            review(AUTHZ, "SubjectAccessReview", "subjectaccessreviews", False),
            review(AUTHZ, "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
            review(AUTHZ, "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
            review(AUTHN, "SelfSubjectReview", "selfsubjectreviews", False),
            review(AUTHN, "TokenReview", "tokenreviews", False),
        ]
    )
