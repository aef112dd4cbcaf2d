"""RBAC's remembered decisions: a decision that held for one object name is reused for
another only when no rule naming objects (resourceNames) took part in it, and every
change to the RBAC objects forgets them all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.apiserver._rbac import (
    ALL_AUTHENTICATED,
    Attributes,
    RBACAuthorizer,
    UserInfo,
    Verdict,
)

RBAC = "rbac.authorization.k8s.io"
ALICE = UserInfo("alice", groups=(ALL_AUTHENTICATED,))


def role(name, rules, namespace="ns"):
    return {"apiVersion": f"{RBAC}/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": rules}  # fmt: skip


def role_binding(name, role_name, user="alice", namespace="ns"):
    return {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role_name},
            "subjects": [{"kind": "User", "name": user}]}  # fmt: skip


def get(name, user=ALICE, resource="configmaps", namespace="ns"):
    return Attributes(user, "get", namespace=namespace, resource=resource, name=name)


NAMED = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["a"]}  # fmt: skip
ANY = {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}


def test_a_decision_by_name_is_not_reused_for_another_name():
    rbac = RBACAuthorizer.from_objects([role("named", [NAMED]), role_binding("b1", "named")])
    for _ in range(2):  # the second round answers from what the first remembered
        assert rbac.authorize(get("a")).allowed
        assert rbac.authorize(get("b")).verdict is Verdict.NO_OPINION
        assert rbac.authorize(get("")).verdict is Verdict.NO_OPINION


def test_a_decision_for_any_name_names_the_same_binding_for_every_name():
    # Binding "a-first" (named rule) is asked before "b-any" (any name): for "a" it
    # allows, for any other name "b-any" does, and the reasons say which.
    rbac = RBACAuthorizer.from_objects([role("named", [NAMED]), role("any", [ANY]),
                                        role_binding("a-first", "named"),
                                        role_binding("b-any", "any")])  # fmt: skip
    for _ in range(2):
        assert "a-first" in rbac.authorize(get("a")).reason
        assert "b-any" in rbac.authorize(get("x")).reason
        assert "b-any" in rbac.authorize(get("y")).reason


def test_a_remembered_decision_goes_with_the_binding_that_made_it():
    rbac = RBACAuthorizer.from_objects([role("any", [ANY]), role_binding("b", "any")])
    assert rbac.authorize(get("x")).allowed
    assert rbac.authorize(get("y")).allowed  # (remembered for any name)
    rbac.delete("RoleBinding", "ns", "b")
    assert not rbac.authorize(get("x")).allowed
    assert not rbac.authorize(get("y")).allowed
    rbac.upsert(role_binding("b", "any"))
    assert rbac.authorize(get("z")).allowed


def test_a_remembered_decision_goes_with_a_changed_role():
    rbac = RBACAuthorizer.from_objects([role("r", [ANY]), role_binding("b", "r")])
    assert rbac.authorize(get("x")).allowed
    rbac.upsert(role("r", [NAMED]))
    assert not rbac.authorize(get("x")).allowed
    assert rbac.authorize(get("a")).allowed


RULES = st.fixed_dictionaries({
    "verbs": st.lists(st.sampled_from(["get", "update", "*"]), min_size=1, max_size=2),
    "apiGroups": st.just([""]),
    "resources": st.lists(st.sampled_from(["configmaps", "pods", "pods/status", "*"]),
                          min_size=1, max_size=2),
    "resourceNames": st.lists(st.sampled_from(["a", "b"]), max_size=2),
})  # fmt: skip
PROBES = [Attributes(ALICE, verb, namespace="ns", resource=resource, subresource=sub, name=name)
          for verb in ("get", "update")
          for resource, sub in (("configmaps", ""), ("pods", ""), ("pods", "status"))
          for name in ("a", "b", "c", "")]  # fmt: skip


@settings(max_examples=200)
@given(st.lists(st.lists(RULES, max_size=3), min_size=1, max_size=3),
       st.permutations(range(len(PROBES))))  # fmt: skip
def test_remembered_decisions_equal_fresh_ones(roles, order):
    objects = []
    for i, rules in enumerate(roles):
        objects += [role(f"r{i}", rules), role_binding(f"b{i}", f"r{i}")]
    remembering = RBACAuthorizer.from_objects(objects)
    for i in order:
        fresh = RBACAuthorizer.from_objects(objects).authorize(PROBES[i])
        assert remembering.authorize(PROBES[i]) == fresh
