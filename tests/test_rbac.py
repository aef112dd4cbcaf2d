"""RBAC authorization: a matrix of who may do what, each row citing the Kubernetes rule it
checks, the reasons Kubernetes gives, and Hypothesis properties of the authorizer."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from actorkube.apiserver._rbac import (
    ALL_AUTHENTICATED,
    Attributes,
    Decision,
    PrivilegedGroups,
    RBACAuthorizer,
    UserInfo,
    Verdict,
    default_cluster_role_bindings,
    default_cluster_roles,
    union,
)

RBAC = "rbac.authorization.k8s.io"


def role(name, rules, namespace=""):
    """A Role if ``namespace`` is given, else a ClusterRole."""
    kind = "Role" if namespace else "ClusterRole"
    metadata = {"name": name, "namespace": namespace} if namespace else {"name": name}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": metadata, "rules": rules}


def binding(name, role_ref, subjects, namespace=""):
    """A RoleBinding if ``namespace`` is given, else a ClusterRoleBinding; ``role_ref`` is
    ``"Kind/name"``, each subject ``"Kind:name"`` or ``"ServiceAccount:namespace/name"``."""
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    metadata = {"name": name, "namespace": namespace} if namespace else {"name": name}
    ref_kind, _, ref_name = role_ref.partition("/")
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC, "kind": ref_kind, "name": ref_name},
        "subjects": [_subject(s) for s in subjects],
    }


def _subject(text):
    kind, _, name = text.partition(":")
    if kind == "ServiceAccount":
        namespace, _, name = name.rpartition("/")
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"kind": kind, "name": name, "apiGroup": RBAC}


def request(user, verb, target, namespace="", name=""):
    """Attributes in ``kubectl auth can-i`` terms: ``target`` is ``resource[.group][/sub]``
    (``deployments.apps/scale``), or a URL path starting with ``/``."""
    if target.startswith("/"):
        return Attributes.non_resource(user, verb, target)
    resource, _, subresource = target.partition("/")
    resource, _, group = resource.partition(".")
    return Attributes(user, verb, namespace, group, "v1", resource, subresource, name)


USERS = {
    "anonymous": UserInfo.anonymous(),
    "alice": UserInfo("alice", groups=(ALL_AUTHENTICATED,)),
    "bob": UserInfo("bob", groups=(ALL_AUTHENTICATED,)),
    "carol": UserInfo("carol", groups=("ops", ALL_AUTHENTICATED)),
    "ci": UserInfo.service_account("build", "ci"),
    "team-a-default": UserInfo.service_account("team-a", "default"),
    "team-b-default": UserInfo.service_account("team-b", "default"),
    "root": UserInfo("root", groups=("system:masters", ALL_AUTHENTICATED)),
}

READ = ["get", "list", "watch"]
WORLD = [
    *default_cluster_roles(),
    *default_cluster_role_bindings(),
    role(
        "pod-reader",
        [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": READ},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["app-config"],
                "verbs": ["get", "list", "create", "update"],
            },
        ],
        namespace="team-a",
    ),
    binding("alice-pod-reader", "Role/pod-reader", ["User:alice"], "team-a"),
    binding("bob-view", "ClusterRole/view", ["User:bob"], "team-a"),
    binding("ci-edit", "ClusterRole/edit", ["ServiceAccount:build/ci"], "team-a"),
    binding("default-sa", "Role/pod-reader", ["ServiceAccount:default"], "team-a"),
    binding("sa-view", "ClusterRole/view", ["Group:system:serviceaccounts"], "shared"),
    role(
        "scaler",
        [
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get", "update"]},
            {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
        ],
    ),
    binding("ops-scale", "ClusterRole/scaler", ["Group:ops"]),
    role(
        "lease-reader",
        [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": READ}],
    ),
    binding("build-leases", "ClusterRole/lease-reader", ["Group:system:serviceaccounts:build"]),
]


def chain(objects):
    return union([PrivilegedGroups(), RBACAuthorizer.from_objects(objects)])


AUTHORIZER = chain(WORLD)

# (user, verb, target, namespace, name, allowed)
MATRIX = [
    # --- anonymous: only what binds system:unauthenticated.
    # Nothing binds system:anonymous or system:unauthenticated to pods.
    ("anonymous", "get", "pods", "team-a", "", False),
    # system:public-info-viewer is bound to system:unauthenticated: health and version.
    ("anonymous", "get", "/healthz", "", "", True),
    ("anonymous", "get", "/version", "", "", True),
    # ... and only with its verb: get.
    ("anonymous", "post", "/healthz", "", "", False),
    # system:discovery is bound to system:authenticated only (since 1.14).
    ("anonymous", "get", "/apis", "", "", False),
    # system:basic-user too.
    ("anonymous", "create", "selfsubjectaccessreviews.authorization.k8s.io", "", "", False),
    # --- alice: RoleBinding in team-a to the Role pod-reader of team-a.
    ("alice", "get", "pods", "team-a", "p", True),
    ("alice", "watch", "pods", "team-a", "", True),
    # A RoleBinding grants only in its own namespace...
    ("alice", "get", "pods", "team-b", "p", False),
    # ... and never to a request across all namespaces (namespace empty).
    ("alice", "list", "pods", "", "", False),
    # Verbs match exactly.
    ("alice", "delete", "pods", "team-a", "p", False),
    # A subresource is granted as "resource/subresource".
    ("alice", "get", "pods/log", "team-a", "p", True),
    # "pods" does not cover pods' subresources.
    ("alice", "create", "pods/exec", "team-a", "p", False),
    # The API group must match: pods are in the core group "".
    ("alice", "get", "pods.apps", "team-a", "p", False),
    # resourceNames restricts to those names...
    ("alice", "get", "configmaps", "team-a", "app-config", True),
    ("alice", "get", "configmaps", "team-a", "other", False),
    # ... so a list without a name (no metadata.name field selector) is not allowed,
    ("alice", "list", "configmaps", "team-a", "", False),
    # a list with that field selector is,
    ("alice", "list", "configmaps", "team-a", "app-config", True),
    # and create cannot be restricted by name: the new object's name is not known.
    ("alice", "create", "configmaps", "team-a", "", False),
    # Every authenticated user gets system:discovery: "/apis/*" is a prefix...
    ("alice", "get", "/apis/apps/v1", "", "", True),
    # ... and "/apis" an exact URL.
    ("alice", "get", "/apis", "", "", True),
    ("alice", "get", "/metrics", "", "", False),
    # system:basic-user: anyone authenticated may ask what they may do.
    ("alice", "create", "selfsubjectaccessreviews.authorization.k8s.io", "", "", True),
    # --- bob: RoleBinding in team-a to the ClusterRole view.
    ("bob", "list", "pods", "team-a", "", True),
    # A ClusterRole through a RoleBinding grants only in the binding's namespace.
    ("bob", "list", "pods", "team-b", "", False),
    # view cannot read secrets (they hold service account tokens: escalation).
    ("bob", "get", "secrets", "team-a", "s", False),
    ("bob", "list", "secrets", "team-a", "", False),
    ("bob", "create", "pods", "team-a", "", False),
    ("bob", "get", "pods/log", "team-a", "p", True),
    ("bob", "get", "pods/status", "team-a", "p", True),
    # Status is the system's to write.
    ("bob", "update", "pods/status", "team-a", "p", False),
    ("bob", "get", "deployments.apps", "team-a", "d", True),
    ("bob", "get", "deployments.apps/scale", "team-a", "d", True),
    ("bob", "update", "deployments.apps/scale", "team-a", "d", False),
    # view reads endpointslices (since 1.22), in their own API group.
    ("bob", "list", "endpointslices.discovery.k8s.io", "team-a", "", True),
    ("bob", "list", "endpointslices", "team-a", "", False),
    # view reads namespaces at namespace scope: this namespace, named by itself.
    ("bob", "get", "namespaces", "team-a", "team-a", True),
    # Cluster-scoped resources are never granted by a RoleBinding.
    ("bob", "list", "nodes", "", "", False),
    ("bob", "list", "roles.rbac.authorization.k8s.io", "team-a", "", False),
    ("bob", "get", "leases.coordination.k8s.io", "team-a", "l", False),
    # --- ci: ServiceAccount build/ci, RoleBinding in team-a to the ClusterRole edit.
    ("ci", "create", "pods", "team-a", "", True),
    # edit reads and writes secrets.
    ("ci", "get", "secrets", "team-a", "s", True),
    ("ci", "create", "deployments.apps", "team-a", "", True),
    ("ci", "patch", "deployments.apps/scale", "team-a", "d", True),
    ("ci", "impersonate", "serviceaccounts", "team-a", "builder", True),
    # edit does not write status, nor endpoints (1.22, CVE-2021-25740), nor roles.
    ("ci", "update", "pods/status", "team-a", "p", False),
    ("ci", "update", "endpoints", "team-a", "e", False),
    ("ci", "create", "roles.rbac.authorization.k8s.io", "team-a", "", False),
    # The binding is in team-a, not in the service account's own namespace.
    ("ci", "create", "pods", "build", "", False),
    # Group system:serviceaccounts:build (a ClusterRoleBinding): leases everywhere.
    ("ci", "get", "leases.coordination.k8s.io", "kube-system", "l", True),
    # Group system:serviceaccounts (RoleBinding in shared to view): every service account.
    ("ci", "list", "pods", "shared", "", True),
    ("alice", "list", "pods", "shared", "", False),
    # Service accounts are authenticated: discovery.
    ("ci", "get", "/api", "", "", True),
    # --- service account subject without a namespace: the RoleBinding's namespace.
    ("team-a-default", "get", "pods", "team-a", "p", True),
    ("team-b-default", "get", "pods", "team-a", "p", False),
    ("team-a-default", "get", "leases.coordination.k8s.io", "team-a", "l", False),
    # --- carol, in group ops: ClusterRoleBinding to scaler ("*/scale", "pods/*").
    # A ClusterRoleBinding grants in every namespace.
    ("carol", "update", "deployments.apps/scale", "team-a", "d", True),
    ("carol", "update", "replicasets.apps/scale", "team-z", "r", True),
    # "*/scale" is the subresource only, not its resource.
    ("carol", "get", "deployments.apps", "team-a", "d", False),
    # "pods/*" is not a wildcard in Kubernetes: it matches nothing real.
    ("carol", "get", "pods/log", "team-a", "p", False),
    # --- system:masters: everything, before RBAC is asked.
    ("root", "delete", "nodes", "", "n", True),
    ("root", "escalate", "clusterroles.rbac.authorization.k8s.io", "", "x", True),
    ("root", "get", "/metrics", "", "", True),
]


@pytest.mark.parametrize(
    ("who", "verb", "target", "namespace", "name", "allowed"),
    MATRIX,
    ids=[f"{who}-{verb}-{target}-{ns or '*'}-{name}" for who, verb, target, ns, name, _ in MATRIX],
)
def test_matrix(who, verb, target, namespace, name, allowed):
    attrs = request(USERS[who], verb, target, namespace, name)
    assert AUTHORIZER.authorize(attrs).allowed is allowed


def test_reasons_name_the_binding_the_role_and_the_subject():
    rbac = RBACAuthorizer.from_objects(WORLD)
    cases = {
        ("carol", "update", "deployments.apps/scale", "team-a", "d"):
            'ClusterRoleBinding "ops-scale" of ClusterRole "scaler" to Group "ops"',
        ("alice", "get", "pods", "team-a", "p"):
            'RoleBinding "alice-pod-reader/team-a" of Role "pod-reader" to User "alice"',
        ("ci", "create", "pods", "team-a", ""):
            'RoleBinding "ci-edit/team-a" of ClusterRole "edit" to ServiceAccount "ci/build"',
        # A service account subject without namespace is described with the binding's.
        ("team-a-default", "get", "pods", "team-a", "p"):
            'RoleBinding "default-sa/team-a" of Role "pod-reader" '
            'to ServiceAccount "default/team-a"',
    }  # fmt: skip
    for (who, verb, target, namespace, name), why in cases.items():
        decision = rbac.authorize(request(USERS[who], verb, target, namespace, name))
        assert decision == Decision(Verdict.ALLOW, f"RBAC: allowed by {why}")


def test_cluster_role_bindings_are_visited_first_then_by_name():
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    rbac = RBACAuthorizer.from_objects(
        [
            role("r", rules, "ns"),
            role("c", rules),
            binding("a", "Role/r", ["User:u"], "ns"),
            binding("z", "ClusterRole/c", ["User:u"]),
            binding("y", "ClusterRole/c", ["Group:g", "User:u"]),
        ]
    )
    decision = rbac.authorize(request(UserInfo("u", groups=["g"]), "get", "pods", "ns"))
    # The first subject that applies is the one named.
    assert (
        decision.reason == 'RBAC: allowed by ClusterRoleBinding "y" of ClusterRole "c" to Group "g"'
    )


def test_missing_roles_grant_nothing_and_are_named():
    rbac = RBACAuthorizer.from_objects(
        [
            role("elsewhere", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "team-b"),
            binding("ghost", "ClusterRole/ghost", ["User:u"]),
            binding("ghost-2", "ClusterRole/ghost", ["User:u"]),
            # A RoleBinding's Role is looked up in the binding's namespace only.
            binding("cross", "Role/elsewhere", ["User:u"], "team-a"),
            # A ClusterRoleBinding cannot grant a Role.
            binding("crb-role", "Role/elsewhere", ["User:u"]),
            binding("odd", "Policy/x", ["User:u"]),
            # Bindings that do not apply to the user report nothing.
            binding("other", "ClusterRole/nope", ["User:someone-else"]),
        ]
    )
    decision = rbac.authorize(request(UserInfo("u"), "get", "pods", "team-a", "p"))
    assert decision == Decision(
        Verdict.NO_OPINION,
        # In visiting order (crb-role, ghost, ghost-2, odd, then cross), once each.
        'RBAC: [role.rbac.authorization.k8s.io "elsewhere" not found, '
        'clusterrole.rbac.authorization.k8s.io "ghost" not found, '
        'unsupported role reference kind: "Policy"]',
    )
    alone = RBACAuthorizer.from_objects([binding("ghost", "ClusterRole/ghost", ["User:u"])])
    reason = alone.authorize(request(UserInfo("u"), "get", "pods", "team-a")).reason
    assert reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "ghost" not found'


def test_a_service_account_subject_in_a_cluster_role_binding_needs_its_namespace():
    # Kubernetes' validation requires it; the authorizer matches nobody without it.
    rbac = RBACAuthorizer.from_objects(
        [*default_cluster_roles(), binding("sa", "ClusterRole/view", ["ServiceAccount:ci"])]
    )
    for namespace in ("", "build", "default"):
        user = UserInfo.service_account(namespace or "default", "ci")
        assert not rbac.authorize(request(user, "get", "pods", namespace, "p")).allowed


def test_non_resource_urls_need_a_cluster_role_binding():
    # cluster-admin through a RoleBinding: everything in the namespace, no URL, nothing
    # cluster-scoped.
    rbac = RBACAuthorizer.from_objects(
        [
            *default_cluster_roles(),
            binding("local-admin", "ClusterRole/cluster-admin", ["User:u"], "ns"),
        ]
    )
    user = UserInfo("u")
    assert rbac.authorize(request(user, "deletecollection", "secrets", "ns")).allowed
    assert rbac.authorize(
        request(user, "escalate", "roles.rbac.authorization.k8s.io", "ns")
    ).allowed
    assert not rbac.authorize(request(user, "get", "/healthz")).allowed
    assert not rbac.authorize(request(user, "list", "nodes")).allowed
    with pytest.raises(ValueError, match="non-resource"):
        Attributes(user, "get", namespace="ns", resource_request=False, path="/healthz")


@pytest.mark.parametrize(
    ("pattern", "path", "allowed"),
    [
        ("*", "/anything/at/all", True),
        ("/healthz", "/healthz", True),
        # Without a trailing "*" a URL matches exactly.
        ("/healthz", "/healthz/etcd", False),
        ("/healthz/*", "/healthz/etcd", True),
        ("/healthz/*", "/healthz", False),
        # A trailing "*" is a plain prefix, not a path segment.
        ("/api*", "/apis/apps", True),
        ("/api**", "/api", True),
    ],
)
def test_non_resource_url_patterns(pattern, path, allowed):
    rules = [{"nonResourceURLs": [pattern], "verbs": ["get"]}]
    rbac = RBACAuthorizer.from_objects(
        [role("r", rules), binding("b", "ClusterRole/r", ["User:u"])]
    )
    assert rbac.authorize(request(UserInfo("u"), "get", path)).allowed is allowed


def test_star_resources_cover_subresources_and_star_verbs_any_verb():
    rules = [{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}]
    rbac = RBACAuthorizer.from_objects(
        [role("r", rules), binding("b", "ClusterRole/r", ["User:u"])]
    )
    user = UserInfo("u")
    assert rbac.authorize(request(user, "get", "pods/log", "ns", "p")).allowed
    assert rbac.authorize(request(user, "bind", "anything", "ns", "x")).allowed
    assert not rbac.authorize(request(user, "get", "deployments.apps", "ns")).allowed


def test_a_resource_rule_never_matches_a_url():
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    rbac = RBACAuthorizer.from_objects(
        [role("r", rules), binding("b", "ClusterRole/r", ["User:u"])]
    )
    # A resource rule never matches a URL, even one that looks like the resource.
    assert not rbac.authorize(request(UserInfo("u"), "get", "/api/v1/pods")).allowed


def test_union_returns_the_first_allow_or_deny_and_joins_no_opinion_reasons():
    class Fixed:
        def __init__(self, decision):
            self.decision = decision

        def authorize(self, attrs):
            return self.decision

    deny = Decision(Verdict.DENY, "no")
    quiet = Decision(Verdict.NO_OPINION, "first")
    attrs = request(UserInfo("u"), "get", "pods", "ns")
    assert (
        union([Fixed(quiet), Fixed(deny), Fixed(Decision(Verdict.ALLOW))]).authorize(attrs) == deny
    )
    joined = union([Fixed(quiet), Fixed(Decision(Verdict.NO_OPINION)), Fixed(quiet)])
    assert joined.authorize(attrs) == Decision(Verdict.NO_OPINION, "first\nfirst")
    assert union([]).authorize(attrs) == Decision(Verdict.NO_OPINION)


def test_privileged_groups_allow_with_an_empty_reason():
    root = USERS["root"]
    assert PrivilegedGroups().authorize(request(root, "get", "pods")) == Decision(Verdict.ALLOW)
    assert PrivilegedGroups().authorize(request(USERS["alice"], "get", "pods")) == Decision(
        Verdict.NO_OPINION
    )


def test_upsert_replaces_and_delete_forgets():
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    rbac = RBACAuthorizer.from_objects(
        [role("r", rules, "ns"), binding("b", "Role/r", ["User:u"], "ns")]
    )
    attrs = request(UserInfo("u"), "get", "pods", "ns", "p")
    assert rbac.authorize(attrs).allowed
    rbac.upsert(role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], "ns"))
    assert not rbac.authorize(attrs).allowed
    rbac.upsert(role("r", rules, "ns"))
    rbac.delete("RoleBinding", "ns", "b")
    assert not rbac.authorize(attrs).allowed
    rbac.delete("RoleBinding", "ns", "b")  # already gone: nothing to do


def test_malformed_objects_are_refused_and_change_nothing():
    rbac = RBACAuthorizer()
    with pytest.raises(ValueError, match="not an RBAC kind"):
        rbac.upsert({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}})
    with pytest.raises(ValueError, match="needs a namespace"):
        rbac.upsert({"kind": "Role", "metadata": {"name": "r"}, "rules": []})
    with pytest.raises(ValueError, match="needs a name"):
        rbac.upsert({"kind": "ClusterRole", "metadata": {}, "rules": []})
    with pytest.raises(ValueError, match="not an RBAC kind"):
        rbac.delete("Pod", "ns", "p")
    assert rbac.authorize(request(UserInfo("u"), "get", "pods", "ns")) == Decision(
        Verdict.NO_OPINION
    )


def test_the_bootstrap_policy():
    roles = {r["metadata"]["name"]: r for r in default_cluster_roles()}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user"} <= (
        roles.keys()
    )
    # view never mentions secrets, in any rule.
    assert all("secrets" not in r.get("resources", ()) for r in roles["view"]["rules"])
    # Fresh dicts: a caller's change does not leak into the next call.
    roles["view"]["rules"][0]["verbs"].append("delete")
    fresh = {r["metadata"]["name"]: r for r in default_cluster_roles()}
    assert "delete" not in fresh["view"]["rules"][0]["verbs"]
    rbac = RBACAuthorizer.from_objects([*default_cluster_roles(), *default_cluster_role_bindings()])
    for who in ("alice", "ci"):
        for path in ("/api", "/api/v1", "/apis/apps/v1", "/version", "/readyz", "/openapi/v3"):
            assert rbac.authorize(request(USERS[who], "get", path)).allowed, (who, path)
    # admin adds roles and rolebindings to edit, which adds writes to view.
    admin = RBACAuthorizer.from_objects(
        [*default_cluster_roles(), binding("b", "ClusterRole/admin", ["User:u"], "ns")]
    )
    user = UserInfo("u")
    for verb in ("create", "get", "deletecollection"):
        for target in ("rolebindings.rbac.authorization.k8s.io", "secrets", "pods", "services"):
            assert admin.authorize(request(user, verb, target, "ns")).allowed, (verb, target)
    assert not admin.authorize(request(user, "create", "leases.coordination.k8s.io", "ns")).allowed


# --- Properties over random worlds.

NAMESPACES = ["ns1", "ns2"]
ROLE_NAMES = ["r1", "r2", "view", "edit"]
BINDING_NAMES = ["b1", "b2", "b3"]

SUBJECTS = st.sampled_from(
    [
        {"kind": "User", "name": "alice"},
        {"kind": "User", "name": "bob"},
        {"kind": "Group", "name": "g1"},
        {"kind": "Group", "name": ALL_AUTHENTICATED},
        {"kind": "Group", "name": "system:serviceaccounts:ns1"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "ns1"},
        {"kind": "ServiceAccount", "name": "robot"},
    ]
)
RESOURCE_RULES = st.fixed_dictionaries(
    {
        "verbs": st.lists(
            st.sampled_from(["get", "list", "create", "delete", "*"]), min_size=1, max_size=3
        ),
        "apiGroups": st.lists(st.sampled_from(["", "apps", "*"]), min_size=1, max_size=2),
        "resources": st.lists(
            st.sampled_from(["pods", "pods/log", "secrets", "deployments", "*/scale", "*"]),
            min_size=1,
            max_size=3,
        ),
        "resourceNames": st.lists(st.sampled_from(["a", "b"]), max_size=1),
    }
)
URL_RULES = st.fixed_dictionaries(
    {
        "verbs": st.lists(st.sampled_from(["get", "*"]), min_size=1, max_size=2),
        "nonResourceURLs": st.lists(
            st.sampled_from(["/healthz", "/api*", "/apis/*", "*"]), max_size=2
        ),
    }
)
ROLES = st.builds(
    role,
    st.sampled_from(ROLE_NAMES),
    st.lists(st.one_of(RESOURCE_RULES, URL_RULES), max_size=3),
    st.sampled_from(["", *NAMESPACES]),
)
ROLE_REFS = st.sampled_from(
    [f"{kind}/{name}" for kind in ("Role", "ClusterRole") for name in ROLE_NAMES]
)


BINDING_NAME = st.sampled_from(BINDING_NAMES)


@st.composite
def bindings(draw, name=BINDING_NAME):
    obj = binding(draw(name), draw(ROLE_REFS), [], draw(st.sampled_from(["", *NAMESPACES])))
    obj["subjects"] = draw(st.lists(SUBJECTS, min_size=1, max_size=2))
    return obj


OBJECTS = st.one_of(ROLES, bindings())
# Random objects over the bootstrap roles (which they may replace), so that bindings to
# view and edit grant something.
WORLDS = st.lists(OBJECTS, max_size=8).map(lambda objects: [*default_cluster_roles(), *objects])

PROBE_USERS = [
    UserInfo("alice", groups=("g1", ALL_AUTHENTICATED)),
    UserInfo("bob", groups=(ALL_AUTHENTICATED,)),
    UserInfo.service_account("ns1", "robot"),
    UserInfo.service_account("ns2", "robot"),
    UserInfo.anonymous(),
    UserInfo("root", groups=("system:masters",)),
]
RESOURCE_TARGETS = ["pods", "pods/log", "secrets", "deployments.apps", "deployments.apps/scale"]
PROBES = [
    request(user, verb, target, namespace, name)
    for user in PROBE_USERS
    for verb in ("get", "list", "create")
    for target in RESOURCE_TARGETS
    for namespace in ("", *NAMESPACES)
    for name in ("", "a")
] + [
    request(user, "get", path)
    for user in PROBE_USERS
    for path in ("/healthz", "/api", "/apis/apps", "/metrics")
]


# Fewer probes for the state machine, which checks after every step.
STEP_PROBES = [a for a in PROBES if a.verb != "list" and not a.name]


def decisions(authorizer, probes=PROBES):
    return [authorizer.authorize(attrs) for attrs in probes]


@given(WORLDS, bindings(name=st.just("extra")))
def test_adding_a_binding_never_removes_a_permission(world, extra):
    rbac = RBACAuthorizer.from_objects(world)
    before = [d.allowed for d in decisions(rbac)]
    rbac.upsert(extra)
    after = [d.allowed for d in decisions(rbac)]
    assert all(a for b, a in zip(before, after, strict=True) if b)


@given(st.lists(OBJECTS, max_size=8))
def test_without_bindings_only_system_masters_has_access(world):
    rbac = RBACAuthorizer.from_objects([*WORLD, *world])
    for obj in [*WORLD, *world]:
        if obj["kind"].endswith("Binding"):
            rbac.delete(*key(obj))
    chained = union([PrivilegedGroups(), rbac])
    for attrs in PROBES:
        assert rbac.authorize(attrs) == Decision(Verdict.NO_OPINION)
        assert chained.authorize(attrs).allowed is ("system:masters" in attrs.user.groups)


def key(obj):
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@given(WORLDS, OBJECTS)
def test_upsert_then_delete_restores_every_decision(world, extra):
    # A new object (deleting a replaced one would not restore the old one).
    assume(key(extra) not in {key(obj) for obj in world})
    rbac = RBACAuthorizer.from_objects(world)
    before = decisions(rbac)
    rbac.upsert(extra)
    rbac.delete(*key(extra))
    assert decisions(rbac) == before


class IncrementalEqualsRebuilt(RuleBasedStateMachine):
    """An authorizer fed changes one by one, like an informer does, decides as one built
    from scratch from the objects that are left."""

    stored = Bundle("stored")

    def __init__(self):
        super().__init__()
        self.objects = {key(obj): obj for obj in default_cluster_roles()}
        self.rbac = RBACAuthorizer.from_objects(self.objects.values())

    @rule(target=stored, obj=OBJECTS)
    def upsert(self, obj):
        self.rbac.upsert(obj)
        self.objects[key(obj)] = obj
        return key(obj)

    @rule(key=stored)
    def delete(self, key):
        self.rbac.delete(*key)
        self.objects.pop(key, None)

    @invariant()
    def decides_as_rebuilt(self):
        rebuilt = RBACAuthorizer.from_objects(self.objects.values())
        assert decisions(self.rbac, STEP_PROBES) == decisions(rebuilt, STEP_PROBES)


IncrementalEqualsRebuilt.TestCase.settings = settings(stateful_step_count=20)
TestIncrementalEqualsRebuilt = IncrementalEqualsRebuilt.TestCase
