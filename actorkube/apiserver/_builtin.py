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

import orjson

from ._autoscaling import DEFAULT_CPU_UTILIZATION, drop_round_trip_annotations, to_v1, to_v2
from ._csr import CERTIFICATES, csr_fields, validate_csr
from ._pdb import ALWAYS_ALLOW, IF_HEALTHY_BUDGET
from ._quantity import InvalidQuantity, Quantity
from ._registry import Conversion, Registry, ResourceType
from ._selectors import InvalidSelector, Selector
from ._validation import (
    FieldError,
    Path,
    as_dict,
    as_list,
    is_dns1123_label,
    is_qualified_name,
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
SPEC = Path("spec")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


_not_supported = FieldError.not_supported
_duplicate = FieldError.duplicate
_dict = as_dict
_list = as_list


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
        ports = c.get("ports")
        if ports:  # (nothing to check, nor a path to make, without any)
            errors += _validate_container_ports(ports, at.child("ports"))
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
        for m in is_valid_port_num(number):  # (a loop: nearly always nothing to report)
            errors.append(FieldError.invalid(at.child(number_field), number, m))
    name = p.get("name")
    if name:
        for m in name_rule(str(name)):
            errors.append(FieldError.invalid(at.child("name"), name, m))
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
    errors += _token_projection_errors(spec.get("volumes"), path.child("volumes"))
    return errors


def _token_projection_errors(volumes: Any, path: Path) -> list[FieldError]:
    """Kubernetes' checks of projected service-account tokens: a path, and a lifetime
    a TokenRequest would grant (10 minutes to 2^32 s)."""
    errors: list[FieldError] = []
    for i, volume in enumerate(volumes if isinstance(volumes, list) else ()):
        projected = volume.get("projected") if isinstance(volume, dict) else None
        sources = projected.get("sources") if isinstance(projected, dict) else None
        for j, source in enumerate(sources if isinstance(sources, list) else ()):
            token = source.get("serviceAccountToken") if isinstance(source, dict) else None
            if not isinstance(token, dict):
                continue
            at = path.index(i).child("projected", "sources").index(j).child("serviceAccountToken")
            seconds = token.get("expirationSeconds", 3600)
            if isinstance(seconds, int) and seconds < 600:
                errors.append(FieldError.invalid(at.child("expirationSeconds"), seconds,
                                                 "may not specify a duration less than 10 "
                                                 "minutes"))  # fmt: skip
            elif isinstance(seconds, int) and seconds > 2**32:
                errors.append(FieldError.invalid(at.child("expirationSeconds"), seconds,
                                                 "may not specify a duration larger than 2^32 "
                                                 "seconds"))  # fmt: skip
            if not token.get("path"):
                errors.append(FieldError.required(at.child("path")))
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


# The JSON of pod specs found valid lately: pods are made from a few templates, and a
# spec is validated again on every write of its pod (each status update).
_VALID_POD_SPECS: set[bytes] = set()
_MAX_VALID_POD_SPECS = 8192  # all are forgotten beyond that


def _pod_spec_errors(spec: Any) -> list[FieldError]:
    """``validate_pod_spec(spec, SPEC)``, answered at once for a spec whose JSON was
    found valid before. Validation is a function of the spec's content, which its JSON
    says exactly for what reaches validation (decoded bodies and stored objects: str
    keys, lists, no nulls; orjson refuses subclasses and big integers here, and writes
    NaN as null, so those are never remembered)."""
    try:
        key = orjson.dumps(spec, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    except TypeError:
        return validate_pod_spec(spec, SPEC)
    if key in _VALID_POD_SPECS:
        return []
    errors = validate_pod_spec(spec, SPEC)
    if not errors and b"null" not in key:
        if len(_VALID_POD_SPECS) >= _MAX_VALID_POD_SPECS:
            _VALID_POD_SPECS.clear()
        _VALID_POD_SPECS.add(key)
    return errors


def validate_pod(obj: dict, old: dict | None) -> list[FieldError]:
    errors = _pod_spec_errors(obj.get("spec"))
    # (A status update keeps the stored spec itself: then there is nothing to compare.)
    if old is not None and not errors and obj.get("spec") is not old.get("spec"):
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


_PERCENT = re.compile(r"[0-9]+%")
UNHEALTHY_POD_EVICTION_POLICIES = (ALWAYS_ALLOW, IF_HEALTHY_BUDGET)


def _int_or_percent_errors(value: object, path: Path) -> list[FieldError]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [FieldError.invalid(path, value, "a valid percent string must be a numeric "
                                       "string followed by an ending '%' (e.g. '1%',  or '93%', "
                                       "regex used for validation is '[0-9]+%')")]  # fmt: skip
        if int(value[:-1]) > 100:
            return [FieldError.invalid(path, value, "must not be greater than 100%")]
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [FieldError.invalid(path, value, "must be an integer or a percent string")]
    if value < 0:
        return [FieldError.invalid(path, value, "must be greater than or equal to 0")]
    return []


def validate_pdb(obj: dict, old: dict | None) -> list[FieldError]:
    """A PodDisruptionBudget (policy/v1 ValidatePodDisruptionBudgetSpec): minAvailable
    or maxUnavailable, not both, each a count or a percentage up to 100%; a valid
    selector; a known unhealthyPodEvictionPolicy."""
    path = Path("spec")
    spec = _dict(obj.get("spec"))
    errors: list[FieldError] = []
    given = [k for k in ("minAvailable", "maxUnavailable") if spec.get(k) is not None]
    if len(given) == 2:
        errors.append(FieldError.invalid(path, spec, "minAvailable and maxUnavailable cannot "
                                         "be both set"))  # fmt: skip
    for key in given:
        errors += _int_or_percent_errors(spec[key], path.child(key))
    selector = spec.get("selector")
    if selector is not None:
        try:
            Selector.from_label_selector(selector if isinstance(selector, dict) else {})
        except InvalidSelector as e:
            errors.append(FieldError.invalid(path.child("selector"), selector, str(e)))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        errors.append(FieldError.not_supported(path.child("unhealthyPodEvictionPolicy"), policy,
                                               UNHEALTHY_POD_EVICTION_POLICIES))  # fmt: skip
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


# --- namespaces -------------------------------------------------------------------------------

NAMESPACE_FINALIZER = "kubernetes"  # the namespace controller's
# Finalizer names that need no domain (Kubernetes' IsStandardFinalizerName).
STANDARD_FINALIZERS = frozenset({NAMESPACE_FINALIZER, "orphan", "foregroundDeletion"})


def default_namespace(obj: dict) -> dict:
    """Phase Active, and ``kubernetes`` among spec.finalizers, added if missing (the
    namespace strategy's PrepareForCreate: every namespace is emptied by the namespace
    controller before it goes)."""
    spec = dict(_dict(obj.get("spec")))
    finalizers = [f for f in _list(spec.get("finalizers"))]
    if NAMESPACE_FINALIZER not in finalizers:
        finalizers.append(NAMESPACE_FINALIZER)
    spec["finalizers"] = finalizers
    status = dict(_dict(obj.get("status")))
    status.setdefault("phase", "Active")
    return {**obj, "spec": spec, "status": status}


def keep_namespace_finalizers(new: dict, old: dict) -> dict:
    """An update of a namespace (not of its finalize subresource) keeps the stored
    spec.finalizers, as Kubernetes' namespace strategy PrepareForUpdate: only
    namespaces/finalize changes them."""
    spec = {**_dict(new.get("spec")), "finalizers": _dict(old.get("spec")).get("finalizers", [])}
    return {**new, "spec": spec}


def validate_namespace(obj: dict, old: dict | None) -> list[FieldError]:
    """Each spec.finalizers entry a qualified name, and one without a domain a standard
    finalizer name (Kubernetes' validateFinalizerName)."""
    errors: list[FieldError] = []
    path = Path("spec").child("finalizers")
    for name in _list(_dict(obj.get("spec")).get("finalizers")):
        if not isinstance(name, str):
            errors.append(FieldError.type_invalid(path, name, "string"))
            continue
        errors += [FieldError.invalid(path, name, m) for m in is_qualified_name(name)]
        if "/" not in name and name not in STANDARD_FINALIZERS:
            errors.append(FieldError.invalid(path, name, "name is neither a standard finalizer "
                                             "name nor is it fully qualified"))  # fmt: skip
    return errors


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


# --- batch/v1 -------------------------------------------------------------------------------

# The labels the API server puts on a Job's pod template to select its pods, unprefixed
# (legacy) and prefixed (batch.kubernetes.io/, Kubernetes 1.27+).
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
JOB_RESTART_POLICIES = ("OnFailure", "Never")
COMPLETION_MODES = ("NonIndexed", "Indexed")
POD_REPLACEMENT_POLICIES = ("Failed", "TerminatingOrFailed")
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
MAX_INDEXED_PARALLELISM = 100_000
MAX_INT32 = 2**31 - 1
_NOT_NEGATIVE = "must be greater than or equal to 0"


def default_job_spec(spec: Any) -> Any:
    """SetDefaults_Job on a JobSpec: completions and parallelism 1 when both are unset,
    backoffLimit 6 (the int32 maximum with backoffLimitPerIndex), completionMode
    NonIndexed, suspend and manualSelector false, podReplacementPolicy Failed with a
    podFailurePolicy and TerminatingOrFailed without, and the pod template's defaults."""
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", MAX_INT32 if "backoffLimitPerIndex" in spec else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    failure_policy = spec.get("podFailurePolicy")
    spec.setdefault("podReplacementPolicy",
                    "Failed" if failure_policy is not None else "TerminatingOrFailed")  # fmt: skip
    spec.setdefault("manualSelector", False)
    if isinstance(failure_policy, dict) and isinstance(failure_policy.get("rules"), list):
        spec["podFailurePolicy"] = {**failure_policy, "rules": [
            {**r, "onPodConditions": [{"status": "True", **p} if isinstance(p, dict) else p
                                      for p in r["onPodConditions"]]}
            if isinstance(r, dict) and isinstance(r.get("onPodConditions"), list) else r
            for r in failure_policy["rules"]]}  # fmt: skip
    template = spec.get("template")
    if isinstance(template, dict):
        spec["template"] = {**template, "spec": default_pod_spec(template.get("spec"))}
    return spec


def generate_job_selector(obj: dict) -> dict:
    """The job strategy's generateSelector: the template gets the job-name and
    controller-uid labels (both spellings) unless it has them, and the selector
    ``batch.kubernetes.io/controller-uid=<uid>`` unless it selects that key. Needs
    ``metadata.uid``; a label the user set to another value is validation's to
    refuse."""
    m = _dict(obj.get("metadata"))
    spec = dict(_dict(obj.get("spec")))
    template = dict(_dict(spec.get("template")))
    tm = dict(_dict(template.get("metadata")))
    labels = dict(_dict(tm.get("labels")))
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, m.get("name", ""))
    for key in CONTROLLER_UID_LABELS:
        labels.setdefault(key, m.get("uid", ""))
    selector = dict(_dict(spec.get("selector")))
    match = dict(_dict(selector.get("matchLabels")))
    match.setdefault(CONTROLLER_UID_LABELS[1], m.get("uid", ""))
    spec["selector"] = {**selector, "matchLabels": match}
    spec["template"] = {**template, "metadata": {**tm, "labels": labels}}
    return {**obj, "spec": spec}


def _template_labels(job: dict) -> dict:
    return _dict(_dict(_dict(_dict(job.get("spec")).get("template")).get("metadata")).get("labels"))


def default_job(obj: dict) -> dict:
    """SetDefaults_Job: the spec's defaults (``default_job_spec``), and a Job without
    labels of its own takes its template's."""
    new = {**obj, "spec": default_job_spec(obj.get("spec"))}
    m = _dict(new.get("metadata"))
    if _template_labels(new) and not m.get("labels"):
        new["metadata"] = {**m, "labels": dict(_template_labels(new))}
    return new


def prepare_job_for_create(obj: dict) -> dict:
    """What the job strategy does to a new Job once it has its name and uid, before
    validating it: the generated selector and labels unless ``manualSelector`` is
    true (``generate_job_selector``). Labels the Job took from its template follow it
    (in Kubernetes they are the same map), so a Job without labels of its own ends
    with the generated ones, as ``kubectl get job -o yaml`` shows."""
    if _dict(obj.get("spec")).get("manualSelector") is True:
        return obj
    new = generate_job_selector(obj)
    m = _dict(new.get("metadata"))
    if _dict(m.get("labels")) == _template_labels(obj):
        new["metadata"] = {**m, "labels": dict(_template_labels(new))}
    return new


def _non_negative(spec: dict, path: Path, *fields: str) -> list[FieldError]:
    errors = []
    for field in fields:
        value = spec.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError.type_invalid(path.child(field), value, "integer"))
        elif value < 0:
            errors.append(FieldError.invalid(path.child(field), value, _NOT_NEGATIVE))
    return errors


def _validate_job_modes(spec: dict, path: Path) -> list[FieldError]:
    """completionMode and what it allows (validateJobSpec)."""
    errors: list[FieldError] = []
    mode = spec.get("completionMode")
    if mode is not None and mode not in COMPLETION_MODES:
        errors.append(_not_supported(path.child("completionMode"), mode, COMPLETION_MODES))
    if mode == "Indexed":
        if spec.get("completions") is None:
            errors.append(FieldError.required(path.child("completions"),
                                              "when completion mode is Indexed"))  # fmt: skip
        parallelism = spec.get("parallelism")
        if isinstance(parallelism, int) and parallelism > MAX_INDEXED_PARALLELISM:
            errors.append(FieldError.invalid(
                path.child("parallelism"), parallelism,
                f"must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion "
                "mode is Indexed"))  # fmt: skip
    else:
        for field in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(field) is not None:
                errors.append(FieldError.invalid(path.child(field), spec[field],
                                                 "requires indexed completion mode"))  # fmt: skip
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errors.append(FieldError.required(path.child("backoffLimitPerIndex"),
                                          "when maxFailedIndexes is specified"))  # fmt: skip
    if spec.get("successPolicy") is not None and mode != "Indexed":
        errors.append(FieldError.invalid(path.child("successPolicy"), spec["successPolicy"],
                                         "requires indexed completion mode"))  # fmt: skip
    replacement = spec.get("podReplacementPolicy")
    allowed = ("Failed",) if spec.get("podFailurePolicy") is not None else POD_REPLACEMENT_POLICIES
    if replacement is not None and replacement not in allowed:
        errors.append(_not_supported(path.child("podReplacementPolicy"), replacement, allowed))
    return errors


def _validate_job_template(spec: dict, path: Path) -> list[FieldError]:
    """The pod template, whose restartPolicy must be OnFailure or Never."""
    template = _dict(spec.get("template"))
    at = path.child("template", "spec")
    errors = validate_pod_spec(template.get("spec"), at)
    policy = _dict(template.get("spec")).get("restartPolicy", "")
    if policy in ("Always", ""):
        errors.append(FieldError.required(at.child("restartPolicy"),
                                          'valid values: "OnFailure", "Never"'))  # fmt: skip
    elif policy not in JOB_RESTART_POLICIES:
        errors.append(_not_supported(at.child("restartPolicy"), policy, JOB_RESTART_POLICIES))
    elif spec.get("podFailurePolicy") is not None and policy != "Never":
        errors.append(FieldError.invalid(at.child("restartPolicy"), policy,
                                         'only "Never" is supported when podFailurePolicy is '
                                         "specified"))  # fmt: skip
    return errors


def validate_job_spec(spec: Any, path: Path, *, template_only: bool = False) -> list[FieldError]:
    """ValidateJobSpec (``template_only``: validateJobSpec, for a CronJob's job template,
    whose selector is not given)."""
    if not isinstance(spec, dict):
        return [FieldError.required(path)]
    errors = _non_negative(spec, path, "parallelism", "completions", "activeDeadlineSeconds",
                           "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex",
                           "maxFailedIndexes")  # fmt: skip
    errors += _validate_job_modes(spec, path)
    errors += _validate_job_template(spec, path)
    if template_only:
        return errors
    selector = spec.get("selector")
    labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
    if not isinstance(selector, dict):
        return [*errors, FieldError.required(path.child("selector"))]
    try:
        parsed = Selector.from_label_selector(selector)
    except InvalidSelector as e:
        return [*errors, FieldError.invalid(path.child("selector"), selector, str(e))]
    if not parsed.matches(labels):
        at = path.child("template", "metadata", "labels")
        errors.append(FieldError.invalid(at, labels, "`selector` does not match template "
                                         "`labels`"))  # fmt: skip
    return errors


def _has_label(labels: dict, path: Path, key: str, value: str) -> list[FieldError]:
    """ValidateHasLabel."""
    at = path.key(key)
    if key not in labels:
        return [FieldError.required(at, f"must be '{value}'")]
    if labels[key] != value:
        return [FieldError.invalid(at, labels, f"must be '{value}'")]
    return []


def _validate_generated_selector(obj: dict, prefixed: bool) -> list[FieldError]:
    """validateGeneratedSelector: unless the selector is manual, the template carries
    the job's name and uid in the generated labels and the selector selects them.
    ``prefixed``: the batch.kubernetes.io/ labels are required too (new jobs)."""
    m = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    selector = spec.get("selector")
    if spec.get("manualSelector") is True or not isinstance(selector, dict):
        return []
    errors = [] if m.get("uid") else [FieldError.required(Path("metadata").child("uid"))]
    uid, name = str(m.get("uid", "")), str(m.get("name", ""))
    labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
    at = Path("spec").child("template", "metadata", "labels")
    expected = {}
    for uid_key, name_key in zip(CONTROLLER_UID_LABELS, JOB_NAME_LABELS, strict=True):
        if uid_key == CONTROLLER_UID_LABELS[1] and not prefixed:
            continue
        errors += _has_label(labels, at, uid_key, uid) + _has_label(labels, at, name_key, name)
        expected[uid_key], expected[name_key] = uid, name
    try:
        if not Selector.from_label_selector(selector).matches(expected):
            errors.append(FieldError.invalid(Path("spec").child("selector"), selector,
                                             "`selector` not auto-generated"))  # fmt: skip
    except InvalidSelector:
        pass  # ValidateJobSpec says so
    return errors


# Template fields a suspended Job that never started may change (the scheduling
# directives a queueing controller sets before it lets the Job run).
_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "schedulingGates")


def _template_for_compare(template: dict, mutable: bool) -> dict:
    if not mutable:
        return template
    spec = {k: v for k, v in _dict(template.get("spec")).items()
            if k not in _SCHEDULING_DIRECTIVES}  # fmt: skip
    affinity = {k: v for k, v in _dict(spec.get("affinity")).items() if k != "nodeAffinity"}
    spec.pop("affinity", None)
    if affinity:
        spec["affinity"] = affinity
    metadata = {k: v for k, v in _dict(template.get("metadata")).items()
                if k not in ("labels", "annotations")}  # fmt: skip
    return {**template, "metadata": metadata, "spec": spec}


def _validate_job_update(spec: dict, before: dict, old: dict) -> list[FieldError]:
    """ValidateJobSpecUpdate: what may not change."""
    path = Path("spec")
    errors = []
    for field in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex",
                  "managedBy", "successPolicy"):  # fmt: skip
        if spec.get(field) != before.get(field):
            errors.append(FieldError.invalid(path.child(field), spec.get(field),
                                             "field is immutable"))  # fmt: skip
    if spec.get("completions") != before.get("completions"):
        elastic = spec.get("completionMode") == "Indexed" and spec.get("completions") is not None
        if not elastic:
            errors.append(FieldError.invalid(path.child("completions"), spec.get("completions"),
                                             "field is immutable"))  # fmt: skip
        elif spec.get("completions") != spec.get("parallelism"):
            errors.append(FieldError.invalid(path.child("completions"), spec.get("completions"),
                                             "can only be modified in tandem with "
                                             "spec.parallelism"))  # fmt: skip
    status = _dict(old.get("status"))
    mutable = before.get("suspend") is True and not status.get("startTime")
    template, old_template = _dict(spec.get("template")), _dict(before.get("template"))
    if _template_for_compare(template, mutable) != _template_for_compare(old_template, mutable):
        errors.append(FieldError.invalid(path.child("template"), template, "field is immutable"))
    return errors


def _condition_true(status: dict, kind: str) -> bool:
    return any(isinstance(c, dict) and c.get("type") == kind and c.get("status") == "True"
               for c in _list(status.get("conditions")))  # fmt: skip


def _validate_job_status_update(status: dict, before: dict) -> list[FieldError]:
    """The rules of ValidateJobStatusUpdate that keep a Job's history: its counters
    never go down, a terminal condition stays, completionTime never changes."""
    path = Path("status")
    errors = _non_negative(status, path, "active", "succeeded", "failed")
    for kind in ("Failed", "Complete", "FailureTarget"):
        if _condition_true(before, kind) and not _condition_true(status, kind):
            errors.append(FieldError.invalid(path.child("conditions"), None,
                                             f"cannot disable the terminal {kind}=True "
                                             "condition"))  # fmt: skip
    for field in ("failed", "succeeded"):
        now, then = status.get(field, 0), before.get(field, 0)
        if isinstance(now, int) and isinstance(then, int) and now < then:
            errors.append(FieldError.invalid(path.child(field), now,
                                             f"cannot decrease the {field} counter"))  # fmt: skip
    done, was = status.get("completionTime"), before.get("completionTime")
    if done and was and done != was:
        errors.append(FieldError.invalid(path.child("completionTime"), done,
                                         "completionTime cannot be mutated"))  # fmt: skip
    return errors


def validate_job(obj: dict, old: dict | None) -> list[FieldError]:
    """ValidateJob, and on update ValidateJobSpecUpdate and the status rules."""
    spec = obj.get("spec")
    errors = validate_job_spec(spec, Path("spec"))
    if not isinstance(spec, dict):
        return errors
    old_spec = _dict((old or {}).get("spec"))
    old_labels = _dict(_dict(_dict(old_spec.get("template")).get("metadata")).get("labels"))
    prefixed = old is None or CONTROLLER_UID_LABELS[1] in old_labels
    errors += _validate_generated_selector(obj, prefixed)
    completions = spec.get("completions")
    name = str(_dict(obj.get("metadata")).get("name", ""))
    if spec.get("completionMode") == "Indexed" and isinstance(completions, int) and completions > 0:
        hostname = f"{name}-{completions - 1}"
        if is_dns1123_label(hostname):
            errors.append(FieldError.invalid(Path("metadata").child("name"), name,
                                             "will not able to create pod with invalid DNS "
                                             f"label: {hostname}"))  # fmt: skip
    if old is not None:
        errors += _validate_job_update(spec, old_spec, old)
        errors += _validate_job_status_update(_dict(obj.get("status")), _dict(old.get("status")))
    return errors


def job_fields(obj: dict) -> dict[str, str]:
    """The field a Job list may select on beyond its name (JobToSelectableFields)."""
    return {"status.successful": str(_dict(obj.get("status")).get("succeeded", 0))}


def default_cron_job(obj: dict) -> dict:
    """SetDefaults_CronJob; the job template gets its pod template's defaults (a Job's
    own defaults come when the CronJob controller creates it)."""
    spec = dict(_dict(obj.get("spec")))
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        job_spec = dict(job_template["spec"])
        template = job_spec.get("template")
        if isinstance(template, dict):
            job_spec["template"] = {**template, "spec": default_pod_spec(template.get("spec"))}
        spec["jobTemplate"] = {**job_template, "spec": job_spec}
    return {**obj, "spec": spec}


_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly")  # fmt: skip
_CRON_FIELD = re.compile(r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|\?|[0-9A-Za-z]+"
                         r"(-[0-9A-Za-z]+)?)(/[0-9]+)?)*")  # fmt: skip
_GO_DURATION = re.compile(r"([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+")


def cron_schedule_problem(schedule: str) -> str:
    """Why robfig/cron's ParseStandard refuses ``schedule`` ("" if it does not): five
    fields, or a descriptor (``@daily``, ``@every 1h30m``). Field values are checked
    for their syntax, not their ranges."""
    if schedule.startswith("@"):
        if schedule in _CRON_DESCRIPTORS:
            return ""
        every = schedule.removeprefix("@every ")
        if every != schedule and _GO_DURATION.fullmatch(every):
            return ""
        return f"unrecognized descriptor: {schedule}"
    fields = schedule.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for field in fields:
        if not _CRON_FIELD.fullmatch(field):
            return f'failed to parse int from {field}: strconv.Atoi: parsing "{field}": invalid ' \
                   "syntax"
    return ""


def validate_cron_job(obj: dict, old: dict | None) -> list[FieldError]:
    """ValidateCronJobCreate / ValidateCronJobUpdate: the schedule, the policies and
    the job template (whose selector is always generated)."""
    spec = obj.get("spec")
    path = Path("spec")
    if not isinstance(spec, dict):
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    schedule = spec.get("schedule")
    if not schedule:
        errors.append(FieldError.required(path.child("schedule")))
    elif not isinstance(schedule, str):
        errors.append(FieldError.type_invalid(path.child("schedule"), schedule, "string"))
    else:
        problem = cron_schedule_problem(schedule)
        if problem:
            errors.append(FieldError.invalid(path.child("schedule"), schedule, problem))
        if "TZ" in schedule:
            errors.append(FieldError.invalid(path.child("schedule"), schedule,
                                             "cannot use TZ or CRON_TZ in schedule, use "
                                             "timeZone field instead"))  # fmt: skip
    errors += _non_negative(spec, path, "startingDeadlineSeconds", "successfulJobsHistoryLimit",
                            "failedJobsHistoryLimit")  # fmt: skip
    policy = spec.get("concurrencyPolicy")
    if policy not in CONCURRENCY_POLICIES:
        errors.append(_not_supported(path.child("concurrencyPolicy"), policy, CONCURRENCY_POLICIES))
    at = path.child("jobTemplate", "spec")
    job_spec = _dict(spec.get("jobTemplate")).get("spec")
    errors += validate_job_spec(job_spec, at, template_only=True)
    if isinstance(job_spec, dict) and job_spec.get("selector") is not None:
        errors.append(FieldError.invalid(at.child("selector"), job_spec["selector"],
                                         "`selector` will be auto-generated"))  # fmt: skip
    if isinstance(job_spec, dict) and job_spec.get("manualSelector") is True:
        errors.append(_not_supported(at.child("manualSelector"), True, ("nil", "false")))
    name = str(_dict(obj.get("metadata")).get("name", ""))
    if old is None and len(name) > 52:
        errors.append(FieldError.invalid(Path("metadata").child("name"), name,
                                         "must be no more than 52 characters"))  # fmt: skip
    return errors


# --- autoscaling/v2 (also served as autoscaling/v1: see _autoscaling) -----------------------

METRIC_SOURCE_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
METRIC_TARGET_TYPES = ("AverageValue", "Utilization", "Value")
SCALING_POLICY_TYPES = ("Percent", "Pods")
SELECT_POLICIES = ("Disabled", "Max", "Min")
# GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: what a direction of a given
# behavior that leaves a field out gets.
_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
             "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                          {"type": "Percent", "value": 100, "periodSeconds": 15}]}  # fmt: skip
_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
               "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}  # fmt: skip


def default_hpa(obj: dict) -> dict:
    """SetDefaults_HorizontalPodAutoscaler (autoscaling/v2): minReplicas 1, the CPU
    metric at 80% average utilization when no metric is given, and a given behavior's
    missing fields filled from Kubernetes' scale-up and scale-down rules. The
    annotations of autoscaling/v1's round trip are dropped: a v2 object never has them
    (Kubernetes' v2 conversion drops them)."""
    obj = drop_round_trip_annotations(obj)
    spec = dict(_dict(obj.get("spec")))
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]  # fmt: skip
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior = dict(behavior)
        for direction, rules in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
            given = behavior.get(direction)
            behavior[direction] = {**rules, **(given if isinstance(given, dict) else {})}
        spec["behavior"] = behavior
    return {**obj, "spec": spec}


def _sign(raw: Any) -> int:
    """The sign of a quantity (0 for one that does not parse: the decoder refuses it)."""
    try:
        amount = Quantity.parse(raw).amount
    except (InvalidQuantity, TypeError):
        return 0
    return (amount > 0) - (amount < 0)


def _validate_metric_target(target: Any, path: Path) -> list[FieldError]:
    if not isinstance(target, dict):
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    kind = target.get("type")
    if not kind:
        errors.append(FieldError.required(path.child("type")))
    elif kind not in METRIC_TARGET_TYPES:
        errors.append(_not_supported(path.child("type"), kind, METRIC_TARGET_TYPES))
    for name in ("value", "averageValue"):  # a zero target would divide by zero
        if target.get(name) is not None and _sign(target[name]) != 1:
            errors.append(FieldError.invalid(path.child(name), target[name], "must be positive"))
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization < 1:
        errors.append(FieldError.invalid(path.child("averageUtilization"), utilization,
                                         "must be greater than 0"))  # fmt: skip
    field = {"Utilization": "averageUtilization", "Value": "value",
             "AverageValue": "averageValue"}.get(kind)  # fmt: skip
    if field and target.get(field) is None:
        errors.append(FieldError.required(path.child(field),
                                          f"must set {field} when type is {kind}"))  # fmt: skip
    return errors


def _validate_metrics(metrics: Any, path: Path) -> list[FieldError]:
    errors: list[FieldError] = []
    for i, metric in enumerate(_list(metrics)):
        at = path.index(i)
        kind = _dict(metric).get("type")
        if not kind:
            errors.append(FieldError.required(at.child("type"), "must specify a metric source "
                                              "type"))  # fmt: skip
            continue
        if kind not in METRIC_SOURCE_TYPES:
            errors.append(_not_supported(at.child("type"), kind, METRIC_SOURCE_TYPES))
            continue
        field = kind[0].lower() + kind[1:]
        source = _dict(metric).get(field)
        if not isinstance(source, dict):
            errors.append(FieldError.required(at.child(field), "must populate information for "
                                              "the given metric source"))  # fmt: skip
            continue
        if kind in ("Resource", "ContainerResource") and not source.get("name"):
            errors.append(FieldError.required(at.child(field, "name"),
                                              "must specify a resource name"))  # fmt: skip
        target = _dict(source.get("target"))
        both = all(target.get(f) is not None for f in ("averageUtilization", "averageValue"))
        if kind in ("Resource", "ContainerResource") and both:
            errors.append(FieldError.invalid(at.child(field, "target", "averageValue"),
                                             target["averageValue"], "may not set both a target "
                                             "raw value and a target utilization"))  # fmt: skip
        errors += _validate_metric_target(source.get("target"), at.child(field, "target"))
    return errors


def _validate_scaling_rules(rules: Any, path: Path) -> list[FieldError]:
    if not isinstance(rules, dict):
        return []
    errors: list[FieldError] = []
    window = rules.get("stabilizationWindowSeconds")
    if isinstance(window, int) and not 0 <= window <= 3600:
        errors.append(FieldError.invalid(path.child("stabilizationWindowSeconds"), window,
                                         "must be less than or equal to 3600"
                                         if window > 3600 else _NOT_NEGATIVE))  # fmt: skip
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        errors.append(_not_supported(path.child("selectPolicy"), select, SELECT_POLICIES))
    policies = _list(rules.get("policies"))
    if not policies:
        errors.append(FieldError.required(path.child("policies"), "must specify at least one "
                                          "Policy"))  # fmt: skip
    for i, policy in enumerate(policies):
        at, policy = path.child("policies").index(i), _dict(policy)
        if policy.get("type") not in SCALING_POLICY_TYPES:
            errors.append(_not_supported(at.child("type"), policy.get("type"),
                                         SCALING_POLICY_TYPES))  # fmt: skip
        value, period = policy.get("value"), policy.get("periodSeconds")
        if not isinstance(value, int) or value <= 0:
            errors.append(FieldError.invalid(at.child("value"), value, "must be greater than "
                                             "zero"))  # fmt: skip
        if not isinstance(period, int) or period <= 0:
            errors.append(FieldError.invalid(at.child("periodSeconds"), period, "must be "
                                             "greater than zero"))  # fmt: skip
        elif period > 1800:
            errors.append(FieldError.invalid(at.child("periodSeconds"), period, "must be less "
                                             "than or equal to 1800"))  # fmt: skip
    return errors


def validate_hpa(obj: dict, old: dict | None) -> list[FieldError]:
    """ValidateHorizontalPodAutoscaler (autoscaling/v2): the target, the replica range,
    the metrics and the behavior."""
    spec = obj.get("spec")
    path = Path("spec")
    if not isinstance(spec, dict):
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    ref = _dict(spec.get("scaleTargetRef"))
    for field in ("kind", "name"):
        if not ref.get(field):
            errors.append(FieldError.required(path.child("scaleTargetRef", field)))
    if ref.get("name"):
        errors += [FieldError.invalid(path.child("scaleTargetRef", "name"), ref["name"], m)
                   for m in name_is_path_segment(str(ref["name"]), False)]  # fmt: skip
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        errors.append(FieldError.invalid(path.child("minReplicas"), low,
                                         "must be greater than or equal to 1"))  # fmt: skip
    if not isinstance(high, int) or isinstance(high, bool) or high < 1:
        errors.append(FieldError.invalid(path.child("maxReplicas"), high,
                                         "must be greater than 0"))  # fmt: skip
    elif isinstance(low, int) and high < low:
        errors.append(FieldError.invalid(path.child("maxReplicas"), high, "must be greater "
                                         "than or equal to `minReplicas`"))  # fmt: skip
    errors += _validate_metrics(spec.get("metrics"), path.child("metrics"))
    behavior = _dict(spec.get("behavior"))
    for direction in ("scaleUp", "scaleDown"):
        errors += _validate_scaling_rules(behavior.get(direction),
                                          path.child("behavior", direction))  # fmt: skip
    return errors


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
                subresources=frozenset({"status", "finalize"}),
                name_rule=name_is_dns_label,
                rule=validate_namespace,
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
                subresources=frozenset({"status", "binding", "eviction", "log", "exec",
                                       "portforward"}),
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
            rt("", "ServiceAccount", "serviceaccounts", True, short_names=("sa",),
               subresources=frozenset({"token"})),
            rt(
                "",
                "Event",
                "events",
                True,
                short_names=("ev",),
                rule=_requires("involvedObject.kind", "involvedObject.name"),
                fields=event_fields,
                # kube-apiserver keeps no watch cache of events (DefaultWatchCacheSizes:
                # 0): many, written once, read rarely.
                watch_cached=False,
                ttl=True,
            ),
            workload("Deployment", "deployments", "deploy", True, frozenset({"status", "scale"})),
            workload("ReplicaSet", "replicasets", "rs", True, frozenset({"status", "scale"})),
            workload("DaemonSet", "daemonsets", "ds", False, STATUS),
            rt("apps", "ControllerRevision", "controllerrevisions", True,
               rule=validate_controller_revision),
            rt("batch", "Job", "jobs", True, categories=("all",), subresources=STATUS,
               generation=True, rule=validate_job, default=default_job, fields=job_fields,
               prepare_create=prepare_job_for_create),
            rt("batch", "CronJob", "cronjobs", True, short_names=("cj",), categories=("all",),
               subresources=STATUS, generation=True, rule=validate_cron_job,
               default=default_cron_job),
            ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler",
                         "horizontalpodautoscalers", True, short_names=("hpa",),
                         categories=("all",), subresources=STATUS, default=default_hpa,
                         validate=_with_meta(True, validate_hpa),
                         conversions=(Conversion("v1", to_storage=to_v2, from_storage=to_v1),)),
            rt(CERTIFICATES, "CertificateSigningRequest", "certificatesigningrequests", False,
               short_names=("csr",), subresources=frozenset({"status", "approval"}),
               rule=validate_csr, name_rule=name_is_path_segment, fields=csr_fields),
            rt("coordination.k8s.io", "Lease", "leases", True),
            rt(
                "policy",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                True,
                short_names=("pdb",),
                subresources=STATUS,
                generation=True,
                rule=validate_pdb,
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
