"""Kubernetes RBAC authorization: may this user do this request, and which binding says so.

Rules of this file:

- Pure and synchronous: no I/O, no clock. ``RBACAuthorizer`` holds the current Roles,
  ClusterRoles, RoleBindings and ClusterRoleBindings (JSON-like dicts in the
  ``rbac.authorization.k8s.io/v1`` shape), changed one object at a time by an informer
  (``upsert``, ``delete``); ``authorize`` only reads them.
- RBAC only adds permissions: its decision is ALLOW or NO_OPINION, never DENY. Nothing
  bound, a rule that does not match, a binding whose role is missing: no opinion (a
  missing role is named in the reason). DENY can only come from another authorizer.
- A ClusterRoleBinding grants its ClusterRole's rules everywhere: in every namespace,
  on cluster-scoped resources, on non-resource URLs. A RoleBinding grants its Role (of
  its own namespace) or ClusterRole only to requests in its own namespace: never to
  cluster-scoped or all-namespace requests, never to non-resource URLs (those have no
  namespace, and ``Attributes`` refuses one that has).
- A rule allows a resource request when the verb, the API group, the resource and the
  name all match. Verbs and API groups: exactly or ``*``. Resources: ``*`` (which covers
  subresources too), exactly (``pods`` is not ``pods/log``), or ``*/log`` for that
  subresource of any resource. ``pods/*`` is not a wildcard in Kubernetes and is not
  here. ``resourceNames``, when present, must contain the request's name: a request
  without a name (create, and list/watch/deletecollection without a ``metadata.name``
  field selector) never matches such a rule. A non-resource request matches on its verb
  and its path: exactly, ``*``, or a pattern ending in ``*`` as a prefix.
- Subjects: a User by name, a Group by membership of ``UserInfo.groups``, a
  ServiceAccount by the user name ``system:serviceaccount:<namespace>:<name>``. A
  ServiceAccount subject without a namespace means the RoleBinding's namespace; in a
  ClusterRoleBinding (where Kubernetes' validation requires it) it matches nobody. The
  groups ``system:authenticated``, ``system:unauthenticated``, ``system:serviceaccounts``
  and ``system:serviceaccounts:<namespace>`` are the authenticator's to put in
  ``UserInfo.groups`` (see its named constructors); RBAC matches them like any group.
- ``system:masters`` is not RBAC: as in kube-apiserver, ``PrivilegedGroups`` allows it
  before RBAC is asked, chained with ``union``.
- Bindings are visited in name order, ClusterRoleBindings first, so the binding named in
  an ALLOW's reason is always the same one.
- ``default_cluster_roles`` is Kubernetes' bootstrap policy for the resources this
  project serves: cluster-admin, admin, edit, view (already aggregated: there is no
  aggregation controller yet), system:discovery, system:basic-user,
  system:public-info-viewer, system:kube-scheduler, system:node-proxier (kube-proxy)
  and system:node. system:node is bound to the group system:nodes (Kubernetes'
  bootstrap policy before its Node authorizer, which would narrow each kubelet to its
  own node's objects: there is no Node authorizer here). The controller roles
  (system:controller:*) are Kubernetes' for the controllers here (``CONTROLLER_ACCOUNTS``),
  each bound to its service account in kube-system. metrics-server's roles come with
  the cluster too, as its manifest installs them: system:aggregated-metrics-reader
  (reading metrics.k8s.io; its rules are in view, edit and admin, as its aggregation
  labels would put them) and system:metrics-server, bound to the service account
  kube-system/metrics-server (``METRICS_SERVER_ACCOUNT``). The cloud controller
  manager's role, system:cloud-controller-manager (the one Kubernetes' cloud controller
  manager guide and addon give it), is bound to the service account
  kube-system/cloud-controller-manager (``CLOUD_CONTROLLER_MANAGER_ACCOUNT``), whose
  credentials all the cloud controllers use.
- Node bootstrap (TLS bootstrapping as kubeadm sets it up): Kubernetes' roles
  system:node-bootstrapper (make and read CSRs), the CSR auto-approval roles
  (certificatesigningrequests/nodeclient, /selfnodeclient) and the signer approver
  roles; kubeadm's bindings of the first two to the group of its node tokens
  (system:bootstrappers:kubeadm:default-node-token) and of selfnodeclient to
  system:nodes (a kubelet renews its own certificate). ``default_roles`` and
  ``default_role_bindings`` are the namespaced ones: the bootstrap signer's and token
  cleaner's (Kubernetes' namespaced controller roles in kube-system and kube-public)
  and kubeadm's kubeadm:bootstrap-signer-clusterinfo, which lets anyone read the
  ConfigMap kube-public/cluster-info (how a joining node finds the cluster).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
from sortedcontainers import SortedDict

SYSTEM_MASTERS = "system:masters"
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"
RBAC_GROUP = "rbac.authorization.k8s.io"

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_NAMESPACED_KINDS = {"Role": True, "RoleBinding": True,
                     "ClusterRole": False, "ClusterRoleBinding": False}  # fmt: skip


def _freeze_extra(extra: Mapping[str, Iterable[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(values)) for key, values in dict(extra).items()))


@attrs.frozen
class UserInfo:
    """Who makes a request, as the authenticator found it (Kubernetes' ``user.Info``).
    ``groups`` holds every group the user is in, the implicit ones included; ``extra`` is
    given as a mapping and kept as sorted ``(key, values)`` pairs, so a UserInfo hashes."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    extra: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_freeze_extra
    )

    @classmethod
    def anonymous(cls) -> UserInfo:
        """A request that no authenticator claimed, as Kubernetes' anonymous
        authenticator names it."""
        return cls(ANONYMOUS, groups=(ALL_UNAUTHENTICATED,))

    @classmethod
    def service_account(cls, namespace: str, name: str, uid: str = "",
                        extra: Mapping[str, Sequence[str]] = {}) -> UserInfo:  # fmt: skip
        """A service account's token, authenticated: its user name and groups as the
        service-account authenticator builds them, plus ``system:authenticated``;
        ``extra`` (what the token is bound to)."""
        groups = (ALL_SERVICE_ACCOUNTS, f"{ALL_SERVICE_ACCOUNTS}:{namespace}", ALL_AUTHENTICATED)
        return cls(f"{_SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", uid, groups, extra)


@attrs.frozen
class Attributes:
    """One request, as authorizers see it (Kubernetes' ``authorizer.Attributes``).

    A resource request names ``api_group``, ``resource``, maybe ``subresource``, maybe
    ``namespace`` (empty: cluster-scoped, or across all namespaces) and maybe ``name``
    (for a namespace object, ``namespace`` is its own name, as the request info sets it;
    for list and watch, the name of a ``metadata.name`` field selector). A non-resource
    request (``resource_request=False``) has only a verb and a ``path``; a resource
    request may carry its path too, which RBAC ignores."""

    user: UserInfo
    verb: str
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    resource_request: bool = True
    path: str = ""

    def __attrs_post_init__(self) -> None:
        # A namespace on a non-resource request would let RoleBindings grant URLs.
        scoped = (self.namespace, self.api_group, self.resource, self.subresource, self.name)
        if not self.resource_request and any(scoped):
            raise ValueError("a non-resource request has a path, not a namespace or resource")

    @classmethod
    def non_resource(cls, user: UserInfo, verb: str, path: str) -> Attributes:
        """A request for a URL that is not an API resource (``/healthz``, ``/api``)."""
        return cls(user, verb, resource_request=False, path=path)


class Verdict(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"
    NO_OPINION = "NoOpinion"


@attrs.frozen
class Decision:
    """An authorizer's answer. ``reason`` says why, in Kubernetes' words, for the audit
    log and the 403 message: for RBAC's ALLOW, the binding, role and subject that
    allowed; for its NO_OPINION, empty or the roles that bindings name but do not
    exist."""

    verdict: Verdict
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> Decision: ...


@attrs.frozen
class PrivilegedGroups:
    """Allows every request of a user in one of ``groups`` and has no opinion on the
    others (Kubernetes' privileged-group authorizer: an empty reason either way)."""

    groups: tuple[str, ...] = attrs.field(default=(SYSTEM_MASTERS,), converter=tuple)

    def authorize(self, attrs: Attributes) -> Decision:
        for group in attrs.user.groups:
            if group in self.groups:
                return _ALLOW
        return _NO_OPINION


# This authorizer's two answers, made once (a Decision is immutable): it is asked first,
# on every request.
_ALLOW = Decision(Verdict.ALLOW)
_NO_OPINION = Decision(Verdict.NO_OPINION)


@attrs.frozen
class _Union:
    authorizers: tuple[Authorizer, ...]

    def authorize(self, attrs: Attributes) -> Decision:
        reasons = []
        for authorizer in self.authorizers:
            decision = authorizer.authorize(attrs)
            if decision.verdict is not Verdict.NO_OPINION:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        return Decision(Verdict.NO_OPINION, "\n".join(reasons))

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict[str, list[str]]]:
        """The rules of the authorizers that can list them (RBAC)."""
        out = []
        for authorizer in self.authorizers:
            if hasattr(authorizer, "rules_for"):
                out += authorizer.rules_for(user, namespace)
        return out


def union(authorizers: Iterable[Authorizer]) -> Authorizer:
    """Asks ``authorizers`` in order and returns the first ALLOW or DENY unchanged; if
    all have no opinion, NO_OPINION with their non-empty reasons, one per line."""
    return _Union(tuple(authorizers))


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(obj.get(key) or ())


def _quote(text: str) -> str:
    """``text`` in double quotes, as Go's ``%q`` writes it in Kubernetes' reasons."""
    return json.dumps(text, ensure_ascii=False)


def _matches(allowed: frozenset[str], requested: str) -> bool:
    return "*" in allowed or requested in allowed


@attrs.frozen
class _Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]
    non_resource_urls: tuple[str, ...]

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any]) -> _Rule:
        return cls(
            frozenset(_strings(rule, "verbs")),
            frozenset(_strings(rule, "apiGroups")),
            frozenset(_strings(rule, "resources")),
            frozenset(_strings(rule, "resourceNames")),
            _strings(rule, "nonResourceURLs"),
        )

    def as_dict(self) -> dict[str, list[str]]:
        fields = (("verbs", self.verbs), ("apiGroups", self.api_groups),
                  ("resources", self.resources), ("resourceNames", self.resource_names),
                  ("nonResourceURLs", self.non_resource_urls))  # fmt: skip
        return {name: sorted(values) for name, values in fields if values}

    # A rule allows a request if ``allows_any_name`` and, where ``names_matter``, the
    # request's name is one of its resourceNames (see ``RBACAuthorizer._decide``).

    def allows_any_name(self, attrs: Attributes) -> bool:
        """Whether the rule allows the request, its ``resourceNames`` aside."""
        if not _matches(self.verbs, attrs.verb):
            return False
        if not attrs.resource_request:
            return any(_url_matches(pattern, attrs.path) for pattern in self.non_resource_urls)
        return _matches(self.api_groups, attrs.api_group) and self._resource_matches(
            attrs.resource, attrs.subresource
        )

    def names_matter(self, attrs: Attributes) -> bool:
        """Whether the request's name decides this rule's answer (its resourceNames)."""
        return bool(self.resource_names) and attrs.resource_request

    def _resource_matches(self, resource: str, subresource: str) -> bool:
        if subresource:
            combined = f"{resource}/{subresource}"
            return _matches(self.resources, combined) or f"*/{subresource}" in self.resources
        return _matches(self.resources, resource)


def _url_matches(pattern: str, path: str) -> bool:
    if pattern == "*" or pattern == path:
        return True
    return pattern.endswith("*") and path.startswith(pattern.rstrip("*"))


@attrs.frozen
class _Subject:
    kind: str
    name: str
    namespace: str

    def applies_to(self, user: UserInfo, binding_namespace: str) -> bool:
        if self.kind == "User":
            return user.name == self.name
        if self.kind == "Group":
            return self.name in user.groups
        if self.kind == "ServiceAccount":
            namespace = self.namespace or binding_namespace
            return bool(namespace) and user.name == (
                f"{_SERVICE_ACCOUNT_PREFIX}{namespace}:{self.name}"
            )
        return False

    def describe(self, binding_namespace: str) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {_quote(f'{self.name}/{self.namespace or binding_namespace}')}"
        return f"{self.kind} {_quote(self.name)}"


@attrs.frozen
class _Binding:
    """A RoleBinding (``namespace`` set) or a ClusterRoleBinding (``namespace`` empty)."""

    namespace: str
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[_Subject, ...]

    @classmethod
    def from_dict(cls, namespace: str, name: str, obj: Mapping[str, Any]) -> _Binding:
        role_ref = obj.get("roleRef") or {}
        subjects = tuple(
            _Subject(s.get("kind", ""), s.get("name", ""), s.get("namespace") or "")
            for s in obj.get("subjects") or ()
        )
        return cls(namespace, name, role_ref.get("kind", ""), role_ref.get("name", ""), subjects)

    def subject_for(self, user: UserInfo) -> _Subject | None:
        """The first subject that is ``user``, which the reason names."""
        return next((s for s in self.subjects if s.applies_to(user, self.namespace)), None)

    def describe(self, subject: _Subject) -> str:
        if self.namespace:
            binding = f"RoleBinding {_quote(f'{self.name}/{self.namespace}')}"
        else:
            binding = f"ClusterRoleBinding {_quote(self.name)}"
        role = f"{self.role_kind} {_quote(self.role_name)}"
        return f"{binding} of {role} to {subject.describe(self.namespace)}"


def _identity(kind: str, namespace: str, name: str) -> tuple[str, str]:
    """The store key of an object: ``(namespace, name)``, the namespace empty for
    cluster-scoped kinds (whatever was given, as the API server clears it)."""
    if kind not in _NAMESPACED_KINDS:
        raise ValueError(f"not an RBAC kind: {kind!r}")
    if not name:
        raise ValueError(f"a {kind} needs a name")
    if not _NAMESPACED_KINDS[kind]:
        return "", name
    if not namespace:
        raise ValueError(f"a {kind} needs a namespace")
    return namespace, name


def _aggregate(errors: Sequence[str]) -> str:
    """Errors joined as Kubernetes' error aggregate prints them, duplicates dropped."""
    distinct = list(dict.fromkeys(errors))
    return distinct[0] if len(distinct) == 1 else "[" + ", ".join(distinct) + "]"


_MAX_DECISIONS = 50_000  # remembered decisions; all are forgotten beyond that


@attrs.define(eq=False)
class RBACAuthorizer:
    """The RBAC authorizer over the objects it was given (see the module's rules).

    Each store maps ``(namespace, name)`` to the parsed object, sorted so that the
    bindings of one namespace are a contiguous range, visited in name order."""

    _stores: dict[str, SortedDict] = attrs.field(
        init=False, factory=lambda: {kind: SortedDict() for kind in _NAMESPACED_KINDS}
    )
    # Decisions already made, by what they depend on: a decision is a function of the
    # request's attributes (the user's name and groups, not its uid or extra) and of
    # the RBAC objects, so any change to those forgets them all. Thousands of kubelets
    # renewing their Leases ask the same few questions every ten seconds. A decision
    # the object's name took no part in is kept without it (see ``authorize``).
    _decisions: dict[tuple, Decision] = attrs.field(init=False, factory=dict)

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> RBACAuthorizer:
        """An authorizer holding ``objects``, upserted in order."""
        authorizer = cls()
        for obj in objects:
            authorizer.upsert(obj)
        return authorizer

    def upsert(self, obj: Mapping[str, Any]) -> None:
        """Adds ``obj`` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding), or
        replaces the one of the same kind, namespace and name. Raises ``ValueError``,
        changing nothing, for another kind or a missing name or namespace."""
        kind = obj.get("kind", "")
        metadata = obj.get("metadata") or {}
        key = _identity(kind, metadata.get("namespace") or "", metadata.get("name") or "")
        self._decisions.clear()
        if kind.endswith("Binding"):
            self._stores[kind][key] = _Binding.from_dict(*key, obj)
        else:
            self._stores[kind][key] = tuple(_Rule.from_dict(r) for r in obj.get("rules") or ())

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Forgets the object; one it does not hold is already forgotten."""
        key = _identity(kind, namespace, name)
        self._decisions.clear()
        self._stores[kind].pop(key, None)

    def authorize(self, attrs: Attributes) -> Decision:
        user = attrs.user
        # Most decisions hold for any name (no rule that was asked names objects), and
        # are kept so: a kubelet's update of each of its pods' status is one question.
        key = (user.name, user.groups, attrs.verb, attrs.namespace, attrs.api_group,
               attrs.resource, attrs.subresource, attrs.resource_request, attrs.path)  # fmt: skip
        decisions = self._decisions
        decision = decisions.get(key)
        if decision is None:
            named = (*key, attrs.name)  # (one element longer: never equal to a ``key``)
            decision = decisions.get(named)
            if decision is None:
                if len(decisions) >= _MAX_DECISIONS:
                    decisions.clear()
                decision, by_name = self._decide(attrs)
                decisions[named if by_name else key] = decision
        return decision

    def _decide(self, attrs: Attributes) -> tuple[Decision, bool]:
        """The decision, and whether the request's name took part in it: whether a rule
        with resourceNames was asked that matches the request but for its name. If not,
        every rule asked answers the same for any name, and so does the decision."""
        errors: list[str] = []
        by_name = False
        for binding in self._bindings_for(attrs.namespace):
            subject = binding.subject_for(attrs.user)
            if subject is None:
                continue
            for rule in self._rules_of(binding, errors):
                if not rule.allows_any_name(attrs):
                    continue
                if rule.names_matter(attrs):
                    by_name = True
                    if attrs.name not in rule.resource_names:
                        continue
                reason = f"RBAC: allowed by {binding.describe(subject)}"
                return Decision(Verdict.ALLOW, reason), by_name
        reason = f"RBAC: {_aggregate(errors)}" if errors else ""
        return Decision(Verdict.NO_OPINION, reason), by_name

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict[str, list[str]]]:
        """Every rule that applies to ``user`` in ``namespace`` (cluster-wide ones
        included), as PolicyRule objects (what a SelfSubjectRulesReview lists)."""
        out = []
        for binding in self._bindings_for(namespace):
            if binding.subject_for(user) is None:
                continue
            for rule in self._rules_of(binding, []):
                out.append(rule.as_dict())
        return out

    def _bindings_for(self, namespace: str) -> Iterator[_Binding]:
        yield from self._stores["ClusterRoleBinding"].values()
        if namespace:
            # (namespace + "\0",) sorts after every (namespace, name) and before any
            # other namespace's keys.
            role_bindings = self._stores["RoleBinding"]
            for key in role_bindings.irange((namespace,), (namespace + "\0",)):
                yield role_bindings[key]

    def _rules_of(self, binding: _Binding, errors: list[str]) -> tuple[_Rule, ...]:
        """The rules of the binding's role; none, and an error, if it does not exist.
        A Role is looked up in the binding's namespace, which for a ClusterRoleBinding
        is empty and holds no Role."""
        if binding.role_kind == "ClusterRole":
            key = ("", binding.role_name)
        elif binding.role_kind == "Role":
            key = (binding.namespace, binding.role_name)
        else:
            errors.append(f"unsupported role reference kind: {_quote(binding.role_kind)}")
            return ()
        rules = self._stores[binding.role_kind].get(key)
        if rules is None:
            resource = f"{binding.role_kind.lower()}.{RBAC_GROUP}"
            errors.append(f"{resource} {_quote(binding.role_name)} not found")
            return ()
        return rules


_READ = ("get", "list", "watch")
_WRITE = ("create", "update", "patch", "delete", "deletecollection")
_WORKLOADS = ("daemonsets", "deployments", "deployments/scale", "replicasets",
              "replicasets/scale")  # fmt: skip


def _rule(verbs: Sequence[str], groups: Sequence[str], resources: Sequence[str]) -> dict:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _urls(verbs: Sequence[str], urls: Sequence[str]) -> dict[str, Any]:
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


def _view_rules() -> list[dict[str, Any]]:
    # Read-only access to what does not escalate: no secrets (their tokens would), no
    # roles, nothing cluster-scoped but the namespace itself.
    return [
        _rule(_READ, [""], ["pods", "services", "endpoints", "serviceaccounts", "configmaps"]),
        _rule(_READ, [""], ["events", "pods/status", "pods/log"]),
        # Read access to namespaces at namespace scope means reading *this* namespace.
        _rule(_READ, [""], ["namespaces"]),
        _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(_READ, ["apps"], _WORKLOADS),
        *_metrics_reader_rules(),
    ]


def _metrics_reader_rules() -> list[dict[str, Any]]:
    """metrics-server's system:aggregated-metrics-reader, aggregated to view, edit and
    admin."""
    return [_rule(_READ, [METRICS_GROUP], ["pods", "nodes"])]


def _metrics_reader_role() -> dict[str, Any]:
    role = _cluster_role("system:aggregated-metrics-reader", _metrics_reader_rules())
    aggregate = {f"rbac.authorization.k8s.io/aggregate-to-{r}": "true"
                 for r in ("view", "edit", "admin")}  # fmt: skip
    role["metadata"]["labels"].update(aggregate)
    return role


def _metrics_server_rules() -> list[dict[str, Any]]:
    """What metrics-server may do (its system:metrics-server ClusterRole)."""
    return [
        _rule(["get"], [""], ["nodes/metrics"]),
        _rule(_READ, [""], ["pods", "nodes"]),
    ]


def _edit_rules() -> list[dict[str, Any]]:
    # Every user-level action in a namespace; no /status (the system's to write), no
    # endpoints writes (dropped in Kubernetes 1.22 for CVE-2021-25740), no roles.
    return [
        _rule(_READ, [""], ["secrets"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(_WRITE, [""], ["pods", "pods/exec", "pods/portforward"]),
        _rule(_READ, [""], ["pods/exec", "pods/portforward"]),
        _rule(_WRITE, [""], ["services", "serviceaccounts", "configmaps", "secrets"]),
        _rule(_WRITE, ["apps"], _WORKLOADS),
        *_view_rules(),
    ]


def _admin_rules() -> list[dict[str, Any]]:
    # edit, plus granting permissions within the namespace.
    return [_rule(_READ + _WRITE, [RBAC_GROUP], ["roles", "rolebindings"]), *_edit_rules()]


def _bootstrap_metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": _bootstrap_metadata(name),
        "rules": rules,
    }


def default_cluster_roles() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoles (see the module's rules), as fresh dicts."""
    health = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    discovery = [*health, "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"]
    access_reviews = ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]
    self_reviews = [
        _rule(["create"], ["authorization.k8s.io"], access_reviews),
        _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
    ]
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _urls(["*"], ["*"])]),
        _cluster_role("admin", _admin_rules()),
        _cluster_role("edit", _edit_rules()),
        _cluster_role("view", _view_rules()),
        _cluster_role("system:discovery", [_urls(["get"], discovery)]),
        _cluster_role("system:public-info-viewer", [_urls(["get"], health)]),
        _cluster_role("system:basic-user", self_reviews),
        _cluster_role("system:kube-scheduler", _scheduler_rules()),
        _cluster_role("system:kube-controller-manager", _controller_manager_rules()),
        _cluster_role("system:node", _node_rules()),
        _cluster_role("system:node-proxier", _node_proxier_rules()),
        _metrics_reader_role(),
        _cluster_role("system:metrics-server", _metrics_server_rules()),
        _cluster_role("system:cloud-controller-manager", _cloud_controller_manager_rules()),
        *_certificate_roles(),
        *_controller_roles(),
    ]


CERTIFICATES_GROUP = "certificates.k8s.io"
CSRS = "certificatesigningrequests"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
_SIGNERS = {"kube-apiserver-client": "kubernetes.io/kube-apiserver-client",
            "kube-apiserver-client-kubelet": KUBELET_CLIENT_SIGNER,
            "kubelet-serving": "kubernetes.io/kubelet-serving",
            "legacy-unknown": "kubernetes.io/legacy-unknown"}  # fmt: skip
NODE_BOOTSTRAPPER = "system:node-bootstrapper"
NODE_CLIENT = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
SELF_NODE_CLIENT = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
# The group of the tokens ``kubeadm token create`` makes.
KUBEADM_NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
CLUSTER_INFO_ROLE = "kubeadm:bootstrap-signer-clusterinfo"


def _signer_rule(verb: str, *signers: str) -> dict[str, Any]:
    return {**_rule([verb], [CERTIFICATES_GROUP], ["signers"]), "resourceNames": list(signers)}


def _certificate_roles() -> list[dict[str, Any]]:
    """Kubernetes' bootstrap roles for certificate requests: making them (the node
    bootstrapper), having them approved automatically, approving them per signer."""
    roles = [
        _cluster_role(NODE_BOOTSTRAPPER,
                      [_rule(["create", "get", "list", "watch"], [CERTIFICATES_GROUP], [CSRS])]),
        _cluster_role(NODE_CLIENT,
                      [_rule(["create"], [CERTIFICATES_GROUP], [f"{CSRS}/nodeclient"])]),
        _cluster_role(SELF_NODE_CLIENT,
                      [_rule(["create"], [CERTIFICATES_GROUP], [f"{CSRS}/selfnodeclient"])]),
    ]  # fmt: skip
    for short, signer in _SIGNERS.items():
        roles.append(_cluster_role(f"system:certificates.k8s.io:{short}-approver",
                                   [_signer_rule("approve", signer)]))  # fmt: skip
    return roles


def _role(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    role = _cluster_role(name, rules)
    role["kind"] = "Role"
    role["metadata"]["namespace"] = namespace
    return role


def _role_binding(namespace: str, name: str, subjects: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {**_bootstrap_metadata(name), "namespace": namespace},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
        "subjects": subjects,
    }


def _account(name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}


def default_roles() -> list[dict[str, Any]]:
    """The bootstrap Roles: the bootstrap signer reads token Secrets in kube-system and
    signs kube-public/cluster-info; the token cleaner deletes token Secrets; kubeadm's
    cluster-info reader."""
    watch = ["get", "list", "watch"]
    signer = f"system:controller:{BOOTSTRAP_SIGNER_ACCOUNT}"
    cluster_info = {**_rule(["update"], [""], ["configmaps"]), "resourceNames": ["cluster-info"]}
    read_cluster_info = {**_rule(["get"], [""], ["configmaps"]), "resourceNames": ["cluster-info"]}
    return [
        _role("kube-system", signer, [_rule(watch, [""], ["secrets"])]),
        _role("kube-system", f"system:controller:{TOKEN_CLEANER_ACCOUNT}",
              [_rule([*watch, "delete"], [""], ["secrets"]), _events_rule()]),
        _role("kube-public", signer, [_rule(watch, [""], ["configmaps"]), cluster_info,
                                      _events_rule()]),
        _role("kube-public", CLUSTER_INFO_ROLE, [read_cluster_info]),
    ]  # fmt: skip


def default_role_bindings() -> list[dict[str, Any]]:
    """The bindings of ``default_roles``: each controller's to its service account in
    kube-system, the cluster-info reader to anonymous and unauthenticated users (kubeadm
    binds the user system:anonymous; the group says the same of every anonymous
    request)."""
    signer = f"system:controller:{BOOTSTRAP_SIGNER_ACCOUNT}"
    cleaner = f"system:controller:{TOKEN_CLEANER_ACCOUNT}"
    everyone = [{"apiGroup": RBAC_GROUP, "kind": "User", "name": ANONYMOUS},
                {"apiGroup": RBAC_GROUP, "kind": "Group", "name": ALL_UNAUTHENTICATED}]
    return [
        _role_binding("kube-system", signer, [_account(BOOTSTRAP_SIGNER_ACCOUNT)]),
        _role_binding("kube-system", cleaner, [_account(TOKEN_CLEANER_ACCOUNT)]),
        _role_binding("kube-public", signer, [_account(BOOTSTRAP_SIGNER_ACCOUNT)]),
        _role_binding("kube-public", CLUSTER_INFO_ROLE, everyone),
    ]  # fmt: skip


def _events_rule() -> dict[str, Any]:
    return _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"])


def _node_proxier_rules() -> list[dict[str, Any]]:
    """What kube-proxy may do (Kubernetes' bootstrap system:node-proxier role)."""
    return [
        _rule(["list", "watch"], [""], ["services", "endpoints"]),
        _rule(["get", "list", "watch"], [""], ["nodes"]),
        _events_rule(),
        _rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
    ]


# The controllers' service accounts in kube-system, each bound to its role.
CONTROLLER_ACCOUNTS = ("replicaset-controller", "deployment-controller",
                       "daemon-set-controller", "node-controller", "namespace-controller",
                       "generic-garbage-collector", "service-account-controller",
                       "job-controller", "cronjob-controller", "pod-garbage-collector",
                       "endpointslice-controller", "endpoint-controller",
                       "horizontal-pod-autoscaler",
                       "ttl-after-finished-controller", "certificate-controller",
                       "disruption-controller", "root-ca-cert-publisher")  # fmt: skip
# Controllers whose roles are namespaced (Roles in kube-system and kube-public, bound to
# these service accounts in kube-system; see ``default_roles``).
BOOTSTRAP_SIGNER_ACCOUNT = "bootstrap-signer"
TOKEN_CLEANER_ACCOUNT = "token-cleaner"
METRICS_SERVER_ACCOUNT = "metrics-server"  # in kube-system
CLOUD_CONTROLLER_MANAGER_ACCOUNT = "cloud-controller-manager"  # in kube-system
METRICS_GROUP = "metrics.k8s.io"


def _controller_roles() -> list[dict[str, Any]]:
    """Kubernetes' roles of the controllers that run here. Each also watches what it
    writes: in kube-controller-manager that watch is the shared informers', made under
    the manager's own identity, while here each controller's informers are its own."""
    watch = ["get", "list", "watch"]
    write = ["get", "list", "watch", "create", "update", "delete"]
    slices = [
        _rule(watch, [""], ["services", "pods", "nodes"]),
        _rule(["update"], [""], ["services/finalizers"]),
        _rule(write, ["discovery.k8s.io"], ["endpointslices"]),
        _events_rule(),
    ]
    endpoints = [
        _rule(watch, [""], ["services", "pods"]),
        _rule(write, [""], ["endpoints"]),
        _rule(["create"], [""], ["endpoints/restricted"]),
        _events_rule(),
    ]
    replica_sets = [
        _rule(["get", "list", "watch", "update"], ["apps", "extensions"], ["replicasets"]),
        _rule(["update"], ["apps", "extensions"], ["replicasets/status"]),
        _rule(["update"], ["apps", "extensions"], ["replicasets/finalizers"]),
        _rule(["list", "watch", "patch", "create", "delete"], [""], ["pods"]),
        _events_rule(),
    ]
    deployments = [
        _rule(["get", "list", "watch", "update"], ["apps", "extensions"], ["deployments"]),
        _rule(["update"], ["apps", "extensions"], ["deployments/status"]),
        _rule(["update"], ["apps", "extensions"], ["deployments/finalizers"]),
        _rule([*write, "patch"], ["apps", "extensions"], ["replicasets"]),
        _rule(["get", "list", "watch", "update"], [""], ["pods"]),
        _events_rule(),
    ]
    daemon_sets = [
        _rule(watch, ["apps", "extensions"], ["daemonsets"]),
        _rule(["update"], ["apps", "extensions"], ["daemonsets/status"]),
        _rule(["update"], ["apps", "extensions"], ["daemonsets/finalizers"]),
        _rule(["get", "list", "watch"], [""], ["nodes"]),
        _rule(["get", "list", "watch", "create", "delete", "patch"], [""], ["pods"]),
        _rule(["create"], [""], ["pods/binding"]),
        _rule([*write, "patch"], ["apps"], ["controllerrevisions"]),
        _events_rule(),
    ]
    nodes = [
        _rule(["get", "list", "watch", "update", "delete", "patch"], [""], ["nodes"]),
        _rule(["patch", "update"], [""], ["nodes/status"]),
        _rule(["get", "list", "watch", "delete"], [""], ["pods"]),
        _rule(["update", "patch"], [""], ["pods/status"]),
        _rule(watch, ["coordination.k8s.io"], ["leases"]),
        _rule(watch, ["apps"], ["daemonsets"]),
        _events_rule(),
    ]
    namespaces = [
        _rule(["get", "list", "watch", "delete"], [""], ["namespaces"]),
        _rule(["update"], [""], ["namespaces/finalize", "namespaces/status"]),
        _rule(["get", "list", "delete", "deletecollection"], ["*"], ["*"]),
    ]
    garbage = [_rule(["get", "list", "watch", "patch", "update", "delete"], ["*"], ["*"])]
    service_accounts = [
        _rule(watch, [""], ["namespaces", "serviceaccounts"]),
        _rule(["create"], [""], ["serviceaccounts"]),
        _events_rule(),
    ]
    jobs = [
        _rule(["get", "list", "watch", "update", "patch"], ["batch"], ["jobs"]),
        _rule(["update"], ["batch"], ["jobs/status"]),
        _rule(["update"], ["batch"], ["jobs/finalizers"]),
        _rule(["get", "list", "watch", "create", "delete", "patch"], [""], ["pods"]),
        _events_rule(),
    ]
    cron_jobs = [
        _rule(["get", "list", "watch", "update"], ["batch"], ["cronjobs"]),
        _rule([*write, "patch"], ["batch"], ["jobs"]),
        _rule(["update"], ["batch"], ["cronjobs/status"]),
        _rule(["update"], ["batch"], ["cronjobs/finalizers"]),
        _rule(["list", "delete"], [""], ["pods"]),
        _events_rule(),
    ]
    pod_gc = [
        _rule(["list", "watch", "delete"], [""], ["pods"]),
        _rule(["get", "list", "watch"], [""], ["nodes"]),
        _rule(["patch", "update"], [""], ["pods/status"]),
    ]
    autoscaler = [
        _rule(watch, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(["update"], ["autoscaling"], ["horizontalpodautoscalers/status"]),
        _rule(["get", "update"], ["*"], ["*/scale"]),
        _rule(["list", "watch"], [""], ["pods"]),
        _rule(["list"], [METRICS_GROUP], ["pods"]),
        _rule(["get", "list"], ["custom.metrics.k8s.io"], ["*"]),
        _rule(["get", "list"], ["external.metrics.k8s.io"], ["*"]),
        _events_rule(),
    ]
    ttl_after_finished = [
        _rule(["get", "list", "watch", "delete"], ["batch"], ["jobs"]),
        _events_rule(),
    ]
    disruptions = [
        _rule(watch, ["apps", "extensions"], ["deployments", "replicasets"]),
        _rule(watch, [""], ["replicationcontrollers", "pods"]),
        _rule(["patch", "update"], [""], ["pods/status"]),  # stale DisruptionTarget cleared
        _rule(watch, ["policy"], ["poddisruptionbudgets"]),
        _rule(watch, ["apps"], ["statefulsets"]),
        _rule(["update"], ["policy"], ["poddisruptionbudgets/status"]),
        _rule(["get"], ["*"], ["*/scale"]),
        _events_rule(),
    ]
    root_ca = [
        _rule(["create", "update"], [""], ["configmaps"]),
        _rule(watch, [""], ["configmaps", "namespaces"]),
        _events_rule(),
    ]
    # csrapproving and csrsigning (and Kubernetes' csrcleaner) act as this one account.
    certificates = [
        _rule(["get", "list", "watch", "delete"], [CERTIFICATES_GROUP], [CSRS]),
        _rule(["update"], [CERTIFICATES_GROUP], [f"{CSRS}/status", f"{CSRS}/approval"]),
        _signer_rule("approve", KUBELET_CLIENT_SIGNER),
        _signer_rule("sign", *_SIGNERS.values()),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        _events_rule(),
    ]
    return [
        _cluster_role("system:controller:daemon-set-controller", daemon_sets),
        _cluster_role("system:controller:node-controller", nodes),
        _cluster_role("system:controller:namespace-controller", namespaces),
        _cluster_role("system:controller:generic-garbage-collector", garbage),
        _cluster_role("system:controller:service-account-controller", service_accounts),
        _cluster_role("system:controller:job-controller", jobs),
        _cluster_role("system:controller:cronjob-controller", cron_jobs),
        _cluster_role("system:controller:pod-garbage-collector", pod_gc),
        _cluster_role("system:controller:endpointslice-controller", slices),
        _cluster_role("system:controller:endpoint-controller", endpoints),
        _cluster_role("system:controller:replicaset-controller", replica_sets),
        _cluster_role("system:controller:deployment-controller", deployments),
        _cluster_role("system:controller:horizontal-pod-autoscaler", autoscaler),
        _cluster_role("system:controller:ttl-after-finished-controller", ttl_after_finished),
        _cluster_role("system:controller:certificate-controller", certificates),
        _cluster_role("system:controller:disruption-controller", disruptions),
        _cluster_role("system:controller:root-ca-cert-publisher", root_ca),
    ]


def _node_rules() -> list[dict[str, Any]]:
    """What a kubelet may do (Kubernetes' bootstrap system:node role)."""
    watch = ["get", "list", "watch"]
    return [
        _rule(["create", "update", "patch"], ["", "events.k8s.io"], ["events"]),
        _rule(["create", *watch], [""], ["nodes"]),
        _rule(["update", "patch"], [""], ["nodes/status"]),
        _rule(["update", "patch", "delete"], [""], ["nodes"]),
        _rule(watch, [""], ["pods"]),
        _rule(["create", "delete"], [""], ["pods"]),
        _rule(["update", "patch"], [""], ["pods/status"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(watch, [""], ["services"]),
        _rule(["get"], [""], ["endpoints"]),
        _rule(["get", "list", "watch"], [""], ["configmaps", "secrets"]),
        _rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
        _rule(["get", "create", "update", "patch", "delete"], ["coordination.k8s.io"],
              ["leases"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews",
                                                     "localsubjectaccessreviews"]),
        # A kubelet renews its client certificate (and asks for a serving one).
        _rule(["create", "get", "list", "watch"], [CERTIFICATES_GROUP], [CSRS]),
    ]


def _controller_manager_rules() -> list[dict[str, Any]]:
    """What kube-controller-manager itself may do (Kubernetes' bootstrap
    system:kube-controller-manager role, for its own identity: its Lease and events;
    each controller acts as its own service account)."""
    return [
        _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        _rule(["create"], ["coordination.k8s.io"], ["leases"]),
        _rule(["get", "update"], ["coordination.k8s.io"], ["leases"]),
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    ]


def _cloud_controller_manager_rules() -> list[dict[str, Any]]:
    """What cloud-controller-manager may do (Kubernetes' system:cloud-controller-manager
    role): the cloud node and node lifecycle controllers read, update, taint and delete
    nodes; the route controller patches nodes/status; the service controller updates
    services and their status; its Lease (only its own once made) and events."""
    watch = ["get", "list", "watch"]
    own_lease = {**_rule(["get", "update"], ["coordination.k8s.io"], ["leases"]),
                 "resourceNames": [CLOUD_CONTROLLER_MANAGER_ACCOUNT]}  # fmt: skip
    return [
        _events_rule(),
        _rule(["create"], ["coordination.k8s.io"], ["leases"]),
        own_lease,
        _rule([*watch, "update", "patch", "delete"], [""], ["nodes"]),
        _rule(["patch", "update"], [""], ["nodes/status"]),
        _rule([*watch, "patch", "update"], [""], ["services"]),
        _rule(["patch", "update"], [""], ["services/status"]),
        # Not Kubernetes' serviceaccounts, token and review rules: those serve
        # --use-service-account-credentials (a token per controller), and here every
        # cloud controller acts as this one account, so they would only let its token
        # mint tokens for any account.
    ]


def _scheduler_rules() -> list[dict[str, Any]]:
    """What kube-scheduler may do (Kubernetes' bootstrap system:kube-scheduler role)."""
    watch = ["get", "list", "watch"]
    return [
        _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        _rule(["create"], ["coordination.k8s.io"], ["leases"]),
        _rule(["get", "update"], ["coordination.k8s.io"], ["leases"]),
        _rule(["delete", *watch], [""], ["pods"]),
        _rule(watch, [""], ["nodes", "namespaces"]),
        _rule(["create"], [""], ["bindings", "pods/binding"]),
        _rule(["patch", "update"], [""], ["pods/status"]),
        _rule(watch, [""], ["replicationcontrollers", "services"]),
        _rule(watch, ["apps", "extensions"], ["replicasets"]),
        _rule(watch, ["apps"], ["statefulsets"]),
        _rule(watch, ["policy"], ["poddisruptionbudgets"]),
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    ]


def _cluster_role_binding(name: str, groups: list[str], kind: str = "Group") -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _bootstrap_metadata(name),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": kind, "name": g} for g in groups],
    }


def _account_binding(name: str, account: str) -> dict[str, Any]:
    """ClusterRole ``name`` bound to the service account ``account`` in kube-system."""
    binding = _cluster_role_binding(name, [])
    binding["subjects"] = [{"kind": "ServiceAccount", "name": account,
                            "namespace": "kube-system"}]  # fmt: skip
    return binding


def _controller_binding(controller: str) -> dict[str, Any]:
    """A controller's role bound to its service account in kube-system (Kubernetes'
    controller bindings, used with --use-service-account-credentials)."""
    return _account_binding(f"system:controller:{controller}", controller)


def default_cluster_role_bindings() -> list[dict[str, Any]]:
    """The bootstrap ClusterRoleBindings of ``default_cluster_roles``: cluster-admin to
    system:masters; discovery and basic-user to every authenticated user (not to
    anonymous ones, since Kubernetes 1.14); health and version to everyone;
    system:kube-scheduler and system:kube-controller-manager to the users of those
    names; system:node to system:nodes; system:node-proxier to the user
    system:kube-proxy; system:metrics-server, system:cloud-controller-manager and each
    controller's role to its service account; kubeadm's TLS bootstrap bindings."""
    everyone = [ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]
    return [
        _cluster_role_binding("cluster-admin", [SYSTEM_MASTERS]),
        _cluster_role_binding("system:discovery", [ALL_AUTHENTICATED]),
        _cluster_role_binding("system:basic-user", [ALL_AUTHENTICATED]),
        _cluster_role_binding("system:public-info-viewer", everyone),
        _cluster_role_binding("system:kube-scheduler", ["system:kube-scheduler"], "User"),
        _cluster_role_binding("system:kube-controller-manager",
                              ["system:kube-controller-manager"], "User"),
        _cluster_role_binding("system:node", ["system:nodes"]),
        _cluster_role_binding("system:node-proxier", ["system:kube-proxy"], "User"),
        _account_binding("system:metrics-server", METRICS_SERVER_ACCOUNT),
        _account_binding("system:cloud-controller-manager", CLOUD_CONTROLLER_MANAGER_ACCOUNT),
        *(_controller_binding(c) for c in CONTROLLER_ACCOUNTS),
        *_kubeadm_bindings(),
    ]


def _kubeadm_bindings() -> list[dict[str, Any]]:
    """kubeadm's TLS bootstrap bindings: its node tokens may ask for node client
    certificates and have them approved; a node may renew its own."""
    def binding(name: str, role: str, group: str) -> dict[str, Any]:
        made = _cluster_role_binding(role, [group])
        made["metadata"] = {"name": name}
        return made

    return [
        binding("kubeadm:kubelet-bootstrap", NODE_BOOTSTRAPPER, KUBEADM_NODE_TOKEN_GROUP),
        binding("kubeadm:node-autoapprove-bootstrap", NODE_CLIENT, KUBEADM_NODE_TOKEN_GROUP),
        binding("kubeadm:node-autoapprove-certificate-rotation", SELF_NODE_CLIENT,
                "system:nodes"),
    ]  # fmt: skip
