"""The Deployment controller's pure core (actorkube/controllers/_rollout.py): table tests
mirroring Kubernetes' own (deployment_util_test.go, sync_test.go, rolling_test.go), the
conditions and revisions one sync writes, and simulations that roll a Deployment out
against an in-memory ReplicaSet controller, checking Kubernetes' availability and surge
guarantees at every step."""

from __future__ import annotations

import copy
import itertools

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actorkube.apiserver._meta import rfc3339
from actorkube.controllers._rollout import (
    DESIRED_REPLICAS,
    INT32_MAX,
    LAST_APPLIED,
    MAX_REPLICAS,
    POD_TEMPLATE_HASH,
    REVISION,
    REVISION_HISTORY,
    Plan,
    _fnv32a,
    equal_ignore_hash,
    is_owned_by,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
    plan,
    replica_set_fraction,
    resolve_fenceposts,
    revision,
    template_hash,
)

NOW = 1_700_000_000.0
SAFE = set("bcdfghjklmnpqrstvwxz2456789")


# --- builders --------------------------------------------------------------------------------


def template(image: str = "v2", **labels: str) -> dict:
    return {"metadata": {"labels": {"app": "web", **labels}},
            "spec": {"containers": [{"name": "c", "image": image}]}}  # fmt: skip


def deployment(replicas: int = 3, *, image: str = "v2", surge=0, unavailable=0,
               strategy: str = "RollingUpdate", status: dict | None = None,
               annotations: dict | None = None, **spec) -> dict:  # fmt: skip
    """A Deployment as Kubernetes' tests build one (maxSurge and maxUnavailable 0 unless
    said otherwise), observed and complete unless ``status`` says otherwise."""
    rolling = {"maxSurge": surge, "maxUnavailable": unavailable}
    strategy_spec = {"type": strategy, **({"rollingUpdate": rolling} if strategy ==
                                          "RollingUpdate" else {})}  # fmt: skip
    done = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas}  # fmt: skip
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(image), "strategy": strategy_spec, **spec},
            "status": done if status is None else status}  # fmt: skip


def rs(name: str, replicas: int, *, image: str = "v1", age: float = 100, rev: int | None = None,
       available: int | None = None, actual: int | None = None, desired: int | None = None,
       max_replicas: int | None = None, **meta) -> dict:  # fmt: skip
    """An owned ReplicaSet ``age`` seconds old whose status has caught up unless said."""
    annotations = {}
    if rev is not None:
        annotations[REVISION] = str(rev)
    if desired is not None:
        annotations[DESIRED_REPLICAS] = str(desired)
    if max_replicas is not None:
        annotations[MAX_REPLICAS] = str(max_replicas)
    actual = replicas if actual is None else actual
    available = actual if available is None else available
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid",
                         "resourceVersion": "7", "creationTimestamp": rfc3339(NOW - age),
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "web", "uid": "d-uid", "controller": True}],
                         **meta},
            "spec": {"replicas": replicas, "template": template(image)},
            "status": {"replicas": actual, "readyReplicas": available,
                       "availableReplicas": available}}  # fmt: skip


def sizes(p: Plan, *given: dict) -> dict[str, int]:
    """Every ReplicaSet's spec.replicas once the plan is carried out."""
    out = {rs["metadata"]["name"]: rs["spec"]["replicas"] for rs in given}
    for changed in [*p.updates, *([p.create] if p.create else [])]:
        out[changed["metadata"]["name"]] = changed["spec"]["replicas"]
    return out


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions", ()) if c["type"] == kind), None)


# --- deployment/util tables ------------------------------------------------------------------


def test_fnv32a_known_vectors():
    assert _fnv32a(b"") == 0x811C9DC5
    assert _fnv32a(b"a") == 0xE40C292C
    assert _fnv32a(b"foobar") == 0xBF9CF968


def test_template_hash_is_deterministic_safe_and_moved_by_the_collision_count():
    t = template("v2")
    reordered = {"spec": t["spec"], "metadata": t["metadata"]}
    assert template_hash(t, None) == template_hash(reordered, None)
    assert set(template_hash(t, None)) <= SAFE
    assert len({template_hash(t, c) for c in (None, 0, 1, 2)}) == 4
    assert template_hash(t, None) != template_hash(template("v3"), None)


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("0%", "0%", 0, (0, 1)),
    ("39%", "39%", 10, (4, 3)),
    (None, "39%", 10, (0, 3)),
    ("39%", None, 10, (4, 0)),
    (None, None, 10, (0, 1)),
    (1, 0, 5, (1, 0)),
    ("25%", "25%", 3, (1, 0)),
])  # fmt: skip
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(("surge", "unavailable"), [("oops", "39%"), ("55%", "urg"), ("5", 1)])
def test_resolve_fenceposts_refuses_what_is_not_an_int_or_a_percentage(surge, unavailable):
    with pytest.raises(ValueError):
        resolve_fenceposts(surge, unavailable, 10)


@pytest.mark.parametrize(("replicas", "unavailable", "expected"), [
    (10, 5, 5), (10, 10, 10), (5, 10, 5), (0, 10, 0),
    (10, "50%", 5), (10, "100%", 10), (5, "100%", 5),
])  # fmt: skip
def test_max_unavailable(replicas, unavailable, expected):
    assert max_unavailable(deployment(replicas, surge=1, unavailable=unavailable)) == expected


def test_max_unavailable_and_surge_of_recreate_are_zero():
    d = deployment(10, strategy="Recreate")
    assert (max_unavailable(d), max_surge(d)) == (0, 0)


def test_api_defaults_apply_to_what_is_left_out():
    d = deployment(8)
    del d["spec"]["strategy"]
    assert (max_surge(d), max_unavailable(d)) == (2, 2)  # 25% up and 25% down


@pytest.mark.parametrize(("strategy", "replicas", "new_replicas", "surge", "expected"), [
    ("RollingUpdate", 1, 5, 1, 5),  # cannot scale up: stays where it is
    ("RollingUpdate", 6, 2, 10, 6),  # scales up, but never past replicas
    ("Recreate", 3, 1, 1, 3),
])  # fmt: skip
def test_new_rs_new_replicas(strategy, replicas, new_replicas, surge, expected):
    d = deployment(replicas, surge=surge, unavailable=1, strategy=strategy)
    new = rs("web-new", new_replicas, image="v2")
    assert new_rs_new_replicas(d, [rs("web-5", 5)], new) == expected


def pt(name: str, node: str, annotations: dict, labels: dict) -> dict:
    return {"metadata": {"name": name, "annotations": annotations, "labels": labels},
            "spec": {"nodeName": node}}  # fmt: skip


H = POD_TEMPLATE_HASH


@pytest.mark.parametrize(("former", "latter", "expected"), [
    (pt("foo", "n", {}, {H: "1", "x": "y"}), pt("foo", "n", {}, {H: "1", "x": "y"}), True),
    (pt("foo", "n", {}, {H: "1", "x": "y"}), pt("foo", "n", {}, {H: "2", "x": "y"}), True),
    (pt("foo", "n", {}, {"x": "y"}), pt("foo", "n", {}, {H: "2", "x": "y"}), True),
    (pt("foo", "n", {}, {"x": "y"}), pt("foo", "n", {}, {H: "2"}), False),
    (pt("foo", "n", {}, {H: "1"}), pt("foo", "n", {}, {H: "1", "x": "y"}), False),
    (pt("foo", "n", {"a": "1"}, {H: "1"}), pt("foo", "n", {"b": "1"}, {H: "1"}), False),
    (pt("foo-1", "n", {}, {H: "1"}), pt("foo-2", "n", {}, {H: "2"}), False),
    (pt("foo", "n-1", {}, {"x": "y"}), pt("foo", "n-2", {}, {"z": "y"}), False),
    # Semantic equality: null, {} and [] are as good as absent.
    (pt("foo", "n", {}, {}), {"metadata": {"name": "foo", "annotations": None},
                                        "spec": {"nodeName": "n", "volumes": []}}, True),
])  # fmt: skip
def test_equal_ignore_hash(former, latter, expected):
    assert equal_ignore_hash(former, latter) is expected
    assert equal_ignore_hash(latter, former) is expected


@pytest.mark.parametrize(("replicas", "status_replicas", "surge", "rs_replicas", "annotation",
                          "expected"), [
    (0, 0, 0, 10, None, -10),  # scaling to zero takes all
    (10, 0, 0, 5, None, 0),  # no annotation and no status: no estimate
    (10, 0, 0, 5, "0", 0),
    (120, 100, 0, 50, None, 10),  # falls back to status.replicas
    (120, 100, 0, 50, "0", 10),
    (120, 0, 0, 50, "100", 10),
    (120, 0, 10, 50, "110", 9),  # surge pods scale along
    (10, 0, 0, 6, "12", -1),
    (100, 0, 10, 50, "130", -8),
])  # fmt: skip
def test_replica_set_fraction(replicas, status_replicas, surge, rs_replicas, annotation, expected):
    d = deployment(replicas, surge=surge, unavailable=1, status={"replicas": status_replicas})
    r = rs("web-1", rs_replicas)
    if annotation is not None:
        r["metadata"]["annotations"][MAX_REPLICAS] = annotation
    assert replica_set_fraction(r, d) == expected


def test_revision_and_ownership_helpers():
    assert revision(rs("a", 1, rev=12)) == 12
    assert revision(rs("a", 1)) == 0
    bad = rs("a", 1)
    bad["metadata"]["annotations"][REVISION] = "x1"
    assert revision(bad) == 0
    assert is_owned_by(rs("a", 1), deployment())
    orphan = rs("a", 1)
    orphan["metadata"]["ownerReferences"][0]["controller"] = False
    assert not is_owned_by(orphan, deployment())
    assert not is_owned_by(rs("a", 1), {"metadata": {"uid": "other"}})


# --- sync and scale: sync_test.go's TestScale ------------------------------------------------

NEW_TS, OLD_TS, OLDER_TS = 0, 3600, 7200  # ages in seconds


def scaled(replicas: int, old_replicas: int, rss: list[tuple], *, surge=0, old_surge=0,
           image: str = "v3") -> dict[str, int]:  # fmt: skip
    """Scale a Deployment from ``old_replicas`` to ``replicas``: its ReplicaSets carry the
    replicas annotations the old size gave them; (name, size, image, age) each."""
    d = deployment(replicas, surge=surge, image=image, status={"replicas": old_replicas})
    old_max = old_replicas + old_surge
    given = [rs(name, size, image=img, age=age, desired=old_replicas, max_replicas=old_max)
             for name, size, img, age in rss]  # fmt: skip
    p = plan(d, given, [], NOW)
    assert p.create is None
    for r in p.updates:
        assert r["metadata"]["annotations"][DESIRED_REPLICAS] == str(replicas)
    return sizes(p, *given)


@pytest.mark.parametrize(("replicas", "old", "rss", "expected"), [
    (12, 10, [("v3", 10, "v3", NEW_TS)], {"v3": 12}),
    (5, 10, [("v3", 10, "v3", NEW_TS)], {"v3": 5}),
    (10, 5, [("v3", 2, "v3", NEW_TS), ("v1", 3, "v1", OLD_TS)], {"v3": 4, "v1": 6}),
    (3, 5, [("v3", 2, "v3", NEW_TS), ("v1", 3, "v1", OLD_TS)], {"v3": 1, "v1": 2}),
    (4, 9, [("v3", 8, "v3", NEW_TS), ("v1", 1, "v1", OLD_TS)], {"v3": 4, "v1": 0}),
    (10, 7, [("v3", 2, "v3", NEW_TS), ("v2", 3, "v2", OLD_TS), ("v1", 2, "v1", OLDER_TS)],
     {"v3": 3, "v2": 4, "v1": 3}),
    (8, 13, [("v3", 2, "v3", NEW_TS), ("v2", 8, "v2", OLD_TS), ("v1", 3, "v1", OLDER_TS)],
     {"v3": 1, "v2": 5, "v1": 2}),
    # Leftovers: growing, the newest of equals gains; shrinking, the oldest loses.
    (4, 3, [("v3", 1, "v3", NEW_TS), ("v2", 1, "v2", OLD_TS), ("v1", 1, "v1", OLDER_TS)],
     {"v3": 2, "v2": 1, "v1": 1}),
    (2, 3, [("v3", 1, "v3", NEW_TS), ("v2", 1, "v2", OLD_TS), ("v1", 1, "v1", OLDER_TS)],
     {"v3": 1, "v2": 1, "v1": 0}),
    (0, 6, [("v3", 3, "v3", NEW_TS), ("v2", 2, "v2", OLD_TS), ("v1", 1, "v1", OLDER_TS)],
     {"v3": 0, "v2": 0, "v1": 0}),
])  # fmt: skip
def test_proportional_scaling(replicas, old, rss, expected):
    assert scaled(replicas, old, rss) == expected


def test_from_zero_the_new_replica_set_takes_all():
    # No active ReplicaSet: no scaling event, the rollout grows the new one.
    rss = [("v3", 0, "v3", NEW_TS), ("v2", 0, "v2", OLD_TS), ("v1", 0, "v1", OLDER_TS)]
    got = scaled(6, 6, rss)
    assert got == {"v3": 6, "v2": 0, "v1": 0}


def test_proportional_scaling_without_a_new_replica_set_grows_the_newest_first():
    got = scaled(5, 4, [("v2", 2, "v2", OLD_TS), ("v1", 2, "v1", OLDER_TS)], image="v9")
    assert got == {"v2": 3, "v1": 2}


def test_proportional_scaling_counts_surge_pods():
    got = scaled(20, 10, [("v3", 6, "v3", NEW_TS), ("v1", 6, "v1", OLD_TS)], surge=2, old_surge=2)
    assert got == {"v3": 11, "v1": 11}
    got = scaled(50, 10, [("v3", 5, "v3", NEW_TS), ("v1", 8, "v1", OLD_TS)], surge=6, old_surge=3)
    assert got == {"v3": 22, "v1": 34}


def test_scaling_event_scales_before_a_new_template_rolls_out():
    got = scaled(14, 10, [("v2", 7, "v2", NEW_TS), ("v1", 3, "v1", OLD_TS)], image="v9")
    assert got == {"v2": 10, "v1": 4}


def test_a_saturated_new_replica_set_ends_the_old_ones():
    d = deployment(4, image="v2", status={"replicas": 6})
    new = rs("web-new", 4, image="v2", age=NEW_TS, desired=4, max_replicas=4)
    old = rs("web-old", 2, image="v1", age=OLD_TS, desired=6, max_replicas=6)
    assert sizes(plan(d, [new, old], [], NOW), new, old) == {"web-new": 4, "web-old": 0}


# --- RollingUpdate: rolling_test.go ----------------------------------------------------------


def rolling(replicas: int, surge, unavailable, old: int, new: int, *, old_available=None,
            new_available=None) -> dict[str, int]:  # fmt: skip
    """One rollout step of a Deployment with an old and a new ReplicaSet, no scaling event."""
    d = deployment(replicas, surge=surge, unavailable=unavailable,
                   status={"replicas": old + new, "observedGeneration": 1})  # fmt: skip
    kept = {"desired": replicas, "max_replicas": replicas + max_surge(d)}
    given = [rs("web-old", old, image="v1", age=OLD_TS, rev=1, available=old_available, **kept),
             rs("web-new", new, image="v2", age=NEW_TS, rev=2, available=new_available, **kept)]
    p = plan(d, given, [], NOW)
    assert p.create is None and not p.deletes
    for r in p.updates:
        assert r["spec"]["replicas"] >= 0
        assert r["metadata"]["resourceVersion"] == "7"
    return sizes(p, *given)


@pytest.mark.parametrize(("replicas", "surge", "old", "new", "expected_new"), [
    (10, 0, 10, 0, 0),  # no room: the new ReplicaSet waits
    (10, 2, 10, 0, 2),
    (10, 2, 5, 0, 7),
    (10, 2, 10, 2, 2),
    (10, 2, 2, 11, 10),  # too big: scaled down to replicas
])  # fmt: skip
def test_reconcile_new_replica_set(replicas, surge, old, new, expected_new):
    assert rolling(replicas, surge, 0, old, new)["web-new"] == expected_new


@pytest.mark.parametrize(("replicas", "unavailable", "old", "new", "old_ready", "new_ready",
                          "expected_old"), [
    (10, 0, 10, 0, 10, 0, 9),  # both fenceposts 0: maxUnavailable becomes 1
    (10, 2, 10, 0, 10, 0, 8),
    (10, 2, 10, 0, 8, 0, 8),  # the 2 unhealthy go first, and that is all
    (10, 2, 10, 0, 9, 0, 8),  # 1 unhealthy, then 1 ready
    (10, 2, 8, 2, 8, 0, 8),  # maxScaleDown = 10 - 8 - 2 unavailable new = 0
    (10, 2, 8, 2, 8, 1, 7),  # maxScaleDown 1
    (10, "20%", 8, 2, 8, 2, 6),
    (10, 2, 10, 0, 1, 0, 8),  # maxScaleDown 2, both spent on unhealthy replicas
    (10, 2, 0, 10, 0, 5, 0),  # nothing old left
])  # fmt: skip
def test_reconcile_old_replica_sets(replicas, unavailable, old, new, old_ready, new_ready,
                                    expected_old):  # fmt: skip
    got = rolling(replicas, 0, unavailable, old, new, old_available=old_ready,
                  new_available=new_ready)  # fmt: skip
    assert got["web-old"] == expected_old


def test_unhealthy_cleanup_is_capped_by_max_scale_down_oldest_first():
    d = deployment(10, surge=0, unavailable=3, status={"replicas": 10})
    kept = {"desired": 10, "max_replicas": 10}
    older = rs("web-a", 5, image="v0", age=OLDER_TS, rev=1, available=3, **kept)
    old = rs("web-b", 5, image="v1", age=OLD_TS, rev=2, available=3, **kept)
    new = rs("web-new", 0, image="v2", age=NEW_TS, rev=3, **kept)
    # maxScaleDown = 10 - 7 - 0 = 3: web-a loses its 2 unhealthy, web-b one of its.
    got = sizes(plan(d, [older, old, new], [], NOW), older, old, new)
    assert got == {"web-a": 3, "web-b": 4, "web-new": 0}


def test_an_old_replica_set_with_more_available_than_wanted_fails_the_step():
    # Kubernetes' cleanupUnhealthyReplicas refuses to "scale down" to more replicas.
    got = rolling(10, 0, 2, 8, 2, old_available=9, new_available=2)
    assert got == {"web-old": 8, "web-new": 2}


def test_one_step_never_takes_availability_below_the_minimum():
    for unavailable, old_ready, new_ready in itertools.product(range(4), range(6), range(2)):
        got = rolling(5, 1, unavailable, 5, 1, old_available=old_ready, new_available=new_ready)
        lost = 5 - got["web-old"]  # the ReplicaSet controller drops unready pods first
        after = old_ready - max(0, lost - (5 - old_ready)) + new_ready
        assert after >= min(old_ready + new_ready, 5 - unavailable)


# --- a new ReplicaSet, revisions and annotations ---------------------------------------------


def test_a_new_template_creates_the_new_replica_set():
    annotations = {"team": "a", LAST_APPLIED: "{}", REVISION: "1"}
    d = deployment(3, surge=1, annotations=annotations, minReadySeconds=5)
    d["metadata"]["generation"] = 2
    old = rs("web-old", 3, rev=1, desired=3, max_replicas=4)
    p = plan(d, [old], [], NOW)
    pod_hash = template_hash(template("v2"), None)
    name = f"web-{pod_hash}"
    assert p.create is not None and not p.updates
    created = p.create
    assert created["metadata"]["name"] == name
    assert "resourceVersion" not in created["metadata"]
    assert created["metadata"]["labels"] == {"app": "web", H: pod_hash}
    assert created["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-uid",
         "controller": True, "blockOwnerDeletion": True}]  # fmt: skip
    wanted = {"team": "a", REVISION: "2", DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"}
    assert created["metadata"]["annotations"] == wanted
    assert created["spec"]["selector"] == {"matchLabels": {"app": "web", H: pod_hash}}
    assert created["spec"]["template"]["metadata"]["labels"] == {"app": "web", H: pod_hash}
    assert created["spec"]["minReadySeconds"] == 5
    assert created["spec"]["replicas"] == 1  # 3 old + 1 surge
    assert p.deployment_annotations == {**annotations, REVISION: "2"}
    progressing = condition(p.status, "Progressing")
    assert progressing is not None
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "True", "NewReplicaSetCreated", f'Created new replica set "{name}"')
    assert progressing["lastUpdateTime"] == progressing["lastTransitionTime"] == rfc3339(NOW)
    assert p.status["observedGeneration"] == 2
    assert p.requeue_after == 601.0
    # The input is left as it was.
    assert d["metadata"]["annotations"] == annotations and old["spec"]["replicas"] == 3


def test_the_oldest_of_several_matching_replica_sets_is_the_new_one():
    d = deployment(2)
    older = rs("web-b", 2, image="v2", age=OLD_TS, rev=2, desired=2, max_replicas=2)
    newer = rs("web-a", 0, image="v2", age=NEW_TS, rev=1, desired=2, max_replicas=2)
    p = plan(d, [newer, older], [], NOW)
    assert p.create is None
    assert p.status["updatedReplicas"] == 2  # web-b's


def test_a_rollback_reuses_the_old_replica_set_and_records_its_revision_history():
    d = deployment(2, image="v1", annotations={REVISION: "2"}, status={"replicas": 2})
    back = rs("web-a", 0, image="v1", age=OLD_TS, rev=1, desired=2, max_replicas=2)
    back["metadata"]["annotations"][REVISION_HISTORY] = "0"
    current = rs("web-b", 2, image="v2", age=NEW_TS, rev=2, desired=2, max_replicas=2)
    p = plan(d, [back, current], [], NOW)
    assert p.create is None
    synced = next(r for r in p.updates if r["metadata"]["name"] == "web-a")
    assert synced["metadata"]["annotations"][REVISION] == "3"
    assert synced["metadata"]["annotations"][REVISION_HISTORY] == "0,1"
    assert p.deployment_annotations is None  # Kubernetes follows on the next sync
    again = plan(d, [synced, current], [], NOW)
    assert again.deployment_annotations == {REVISION: "3"}


def test_revision_history_is_kept_within_its_length_limit():
    d = deployment(1, image="v1", status={"replicas": 1})
    back = rs("web-a", 0, image="v1", rev=5, desired=1, max_replicas=1)
    back["metadata"]["annotations"][REVISION_HISTORY] = ",".join(["1234"] * 400)  # 1999 chars
    current = rs("web-b", 1, image="v2", rev=9, desired=1, max_replicas=1)
    synced = plan(d, [back, current], [], NOW).updates[0]
    history = synced["metadata"]["annotations"][REVISION_HISTORY]
    assert history == ",".join(["1234"] * 399 + ["5"])  # the oldest entry made room


def test_stale_annotations_and_min_ready_seconds_of_the_new_replica_set_are_synced():
    d = deployment(2, annotations={"team": "b", REVISION: "1"}, minReadySeconds=7)
    new = rs("web-new", 2, image="v2", rev=1, desired=2, max_replicas=2)
    new["metadata"]["annotations"]["team"] = "a"
    p = plan(d, [new], [], NOW)
    (synced,) = p.updates
    assert synced["metadata"]["annotations"]["team"] == "b"
    assert synced["spec"]["minReadySeconds"] == 7
    assert synced["metadata"]["resourceVersion"] == "7"


def test_a_found_new_replica_set_is_said_when_no_progress_was_recorded():
    d, given = mid_rollout([])
    p = plan(d, given, [], NOW)
    assert p.deployment_annotations == {REVISION: "2"}
    cond = condition(p.status, "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "True", "FoundNewReplicaSet", 'Found new replica set "web-new"')


def test_a_complete_rollout_is_said_once():
    d = deployment(2)
    new = rs("web-new", 2, image="v2", rev=1, desired=2, max_replicas=2)
    p = plan(d, [new], [], NOW)
    cond = condition(p.status, "Progressing")
    assert (cond["reason"], cond["message"]) == (
        "NewReplicaSetAvailable", 'ReplicaSet "web-new" has successfully progressed.')
    assert p.requeue_after is None
    d["status"], d["metadata"]["annotations"] = p.status, p.deployment_annotations
    assert plan(d, [new], [], NOW + 50).status == p.status


def test_a_taken_name_is_a_hash_collision():
    d = deployment(2)
    squatter = rs(f"web-{template_hash(template('v2'), None)}", 0, image="other", rev=1)
    old = rs("web-old", 2, rev=2, desired=2, max_replicas=2)
    p = plan(d, [squatter, old], [], NOW)
    assert p.create is None and p.status["collisionCount"] == 1
    d["status"] = p.status
    p = plan(d, [squatter, old], [], NOW)
    assert p.create is not None
    assert p.create["metadata"]["name"] == f"web-{template_hash(template('v2'), 1)}"
    assert p.status["collisionCount"] == 1


# --- cleanup: sync_test.go's TestDeploymentController_cleanupDeployment ----------------------


@pytest.mark.parametrize(("olds", "limit", "deleted"), [
    ([(0, 0), (0, 0), (0, 0)], 1, {"web-1", "web-2"}),
    ([(0, 0), (0, 1), (1, 0), (1, 1)], 0, {"web-1"}),  # only those with no replicas at all
    ([(0, 0), (0, 0)], 0, {"web-1", "web-2"}),
    ([(1, 1), (1, 1)], 0, set()),
    ([(0, 0), (0, 0), (0, 0)], INT32_MAX, set()),  # no limit
    ([(0, 0), (0, 0), (0, 0)], 10, set()),
])  # fmt: skip
def test_cleanup_keeps_revision_history_limit(olds, limit, deleted):
    # Paused, so that cleanup runs whatever the old ReplicaSets' sizes.
    d = deployment(1, revisionHistoryLimit=limit, paused=True)
    given = [rs(f"web-{i}", spec, image=f"v0{i}", age=500 - i, rev=i, actual=actual,
                desired=1, max_replicas=1)
             for i, (spec, actual) in enumerate(olds, start=1)]  # fmt: skip
    given.append(rs("web-new", 1, image="v2", age=NEW_TS, rev=9, desired=1, max_replicas=1))
    p = plan(d, given, [], NOW)
    assert {r["metadata"]["name"] for r in p.deletes} == deleted


def test_cleanup_skips_replica_sets_being_deleted_or_not_yet_observed():
    d = deployment(1, revisionHistoryLimit=0, paused=True)
    going = rs("web-1", 0, image="v01", rev=1, deletionTimestamp=rfc3339(NOW))
    unobserved = rs("web-2", 0, image="v02", rev=2, generation=3)
    unobserved["status"]["observedGeneration"] = 2
    new = rs("web-new", 1, image="v2", rev=3, desired=1, max_replicas=1)
    assert plan(d, [going, unobserved, new], [], NOW).deletes == ()


def test_a_complete_rollout_cleans_up_lowest_revision_first():
    d = deployment(2, revisionHistoryLimit=1)
    given = [rs("web-a", 0, image="v0", rev=3), rs("web-b", 0, image="v1", rev=1),
             rs("web-new", 2, image="v2", rev=4, desired=2, max_replicas=2)]  # fmt: skip
    assert [r["metadata"]["name"] for r in plan(d, given, [], NOW).deletes] == ["web-b"]


def test_an_incomplete_rollout_does_not_clean_up():
    d = deployment(2, revisionHistoryLimit=0, status={"replicas": 2, "updatedReplicas": 1})
    given = [rs("web-a", 0, image="v0", rev=1),
             rs("web-new", 2, image="v2", rev=2, desired=2, max_replicas=2)]  # fmt: skip
    assert plan(d, given, [], NOW).deletes == ()


# --- status and conditions -------------------------------------------------------------------


def progressing(reason: str, since: float, status: str = "True") -> dict:
    return {"type": "Progressing", "status": status, "reason": reason, "message": "m",
            "lastUpdateTime": rfc3339(since),
            "lastTransitionTime": rfc3339(since - 50)}  # fmt: skip


def mid_rollout(conditions: list[dict], **status) -> tuple[dict, list[dict]]:
    """A rollout under way: 2 of 4 updated, the old ReplicaSet waiting to shrink."""
    before = {"observedGeneration": 1, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 3,
              "availableReplicas": 3, "conditions": conditions, **status}  # fmt: skip
    d = deployment(4, surge=0, unavailable=1, status=before)
    given = [rs("web-old", 2, rev=1, desired=4, max_replicas=4),
             rs("web-new", 2, image="v2", age=NEW_TS, rev=2, available=1, desired=4,
                max_replicas=4)]  # fmt: skip
    return d, given


def test_status_sums_the_replica_sets():
    d, given = mid_rollout([progressing("ReplicaSetUpdated", NOW - 10)])
    given[0]["status"].update(replicas=3, readyReplicas=2, availableReplicas=2)
    p = plan(d, given, [], NOW)
    s = p.status
    assert (s["replicas"], s["updatedReplicas"], s["readyReplicas"], s["availableReplicas"]) == (
        5, 2, 3, 3)
    # Kubernetes: sum of the ReplicaSets' spec.replicas - available.
    assert s["unavailableReplicas"] == 1
    assert condition(s, "Available")["reason"] == "MinimumReplicasAvailable"
    assert condition(s, "Available")["message"] == "Deployment has minimum availability."


def test_without_minimum_availability():
    d, given = mid_rollout([])
    given[0]["status"]["availableReplicas"] = 1
    available = condition(plan(d, given, [], NOW).status, "Available")
    assert (available["status"], available["reason"], available["message"]) == (
        "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")


def test_progress_renews_last_update_time_and_keeps_the_transition():
    old = progressing("ReplicaSetUpdated", NOW - 100)
    d, given = mid_rollout([old], availableReplicas=2)
    cond = condition(plan(d, given, [], NOW).status, "Progressing")
    assert cond["reason"] == "ReplicaSetUpdated"
    assert cond["message"] == 'ReplicaSet "web-new" is progressing.'
    assert cond["lastUpdateTime"] == rfc3339(NOW)
    assert cond["lastTransitionTime"] == old["lastTransitionTime"]


def test_no_progress_before_the_deadline_requeues_at_the_deadline():
    old = progressing("ReplicaSetUpdated", NOW - 100)
    d, given = mid_rollout([old])
    p = plan(d, given, [], NOW)
    assert condition(p.status, "Progressing") == old
    assert p.requeue_after == 600 - 100 + 1


def test_no_progress_past_the_deadline_times_out():
    d, given = mid_rollout([progressing("ReplicaSetUpdated", NOW - 601)])
    p = plan(d, given, [], NOW)
    cond = condition(p.status, "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-new" has timed out progressing.')
    assert cond["lastTransitionTime"] == rfc3339(NOW)
    assert p.requeue_after is None


def test_the_deadline_is_exclusive():
    d, given = mid_rollout([progressing("ReplicaSetUpdated", NOW - 600)])
    assert condition(plan(d, given, [], NOW).status, "Progressing")["reason"] == (
        "ReplicaSetUpdated")


def test_no_deadline_removes_progressing():
    d, given = mid_rollout([progressing("ReplicaSetUpdated", NOW - 9999)])
    d["spec"]["progressDeadlineSeconds"] = INT32_MAX
    p = plan(d, given, [], NOW)
    assert condition(p.status, "Progressing") is None and p.requeue_after is None


def test_a_replica_failure_is_copied_from_the_new_replica_set():
    d, given = mid_rollout([])
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": "quota", "lastTransitionTime": rfc3339(NOW - 5)}  # fmt: skip
    given[1]["status"]["conditions"] = [failure]
    cond = condition(plan(d, given, [], NOW).status, "ReplicaFailure")
    assert cond == {**failure, "lastUpdateTime": rfc3339(NOW - 5)}
    given[1]["status"]["conditions"] = []
    d["status"]["conditions"] = [cond]
    assert condition(plan(d, given, [], NOW).status, "ReplicaFailure") is None


def test_an_unchanged_condition_is_left_as_it_was():
    d = deployment(2)
    kept = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
            "message": "old words", "lastUpdateTime": rfc3339(NOW - 900),
            "lastTransitionTime": rfc3339(NOW - 900)}  # fmt: skip
    d["status"]["conditions"] = [kept]
    new = rs("web-new", 2, image="v2", rev=1, desired=2, max_replicas=2)
    d["metadata"]["annotations"] = {REVISION: "1"}
    assert condition(plan(d, [new], [], NOW).status, "Available") == kept


# --- paused, resumed, deleted ----------------------------------------------------------------


def test_a_paused_deployment_does_not_roll_out_nor_time_out():
    d, given = mid_rollout([progressing("ReplicaSetUpdated", NOW - 10_000)])
    d["spec"]["paused"] = True
    d["spec"]["template"] = template("v3")
    p = plan(d, given, [], NOW)
    assert p.create is None and p.updates == () and p.requeue_after is None
    cond = condition(p.status, "Progressing")
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "Unknown", "DeploymentPaused", "Deployment is paused")
    d["status"] = p.status
    assert condition(plan(d, given, [], NOW + 9999).status, "Progressing") == cond


def test_a_paused_deployment_still_scales_proportionally():
    d, given = mid_rollout([])
    d["spec"]["paused"] = True
    d["spec"]["replicas"] = 8
    assert sizes(plan(d, given, [], NOW), *given) == {"web-old": 4, "web-new": 4}


def test_resuming_says_so_and_restarts_the_deadline():
    paused = {"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused",
              "message": "Deployment is paused", "lastUpdateTime": rfc3339(NOW - 9999),
              "lastTransitionTime": rfc3339(NOW - 9999)}  # fmt: skip
    d, given = mid_rollout([paused])
    given[0]["spec"]["replicas"] = 3  # in step with availability: nothing to do now
    given[1]["status"]["availableReplicas"] = 0
    p = plan(d, given, [], NOW)
    cond = condition(p.status, "Progressing")
    assert (cond["reason"], cond["message"]) == ("DeploymentResumed", "Deployment is resumed")
    assert p.requeue_after == 601.0


def test_a_deleted_deployment_only_has_its_status_written():
    d, given = mid_rollout([])
    d["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    d["spec"]["template"] = template("v3")
    p = plan(d, given, [], NOW)
    assert (p.create, p.updates, p.deletes, p.requeue_after) == (None, (), (), None)
    assert p.status["replicas"] == 4


def test_a_selector_that_selects_everything_only_observes_the_generation():
    d = deployment(2, status={"observedGeneration": 0})
    d["spec"]["selector"] = {}
    p = plan(d, [], [], NOW)
    assert p == Plan(None, (), (), None, {"observedGeneration": 1}, None)


# --- Recreate --------------------------------------------------------------------------------


def pod(owner: dict, phase: str = "Running") -> dict:
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": True}  # fmt: skip
    return {"metadata": {"name": "p", "ownerReferences": [ref]}, "status": {"phase": phase}}


def test_recreate_scales_old_down_then_waits_for_their_pods_then_creates():
    d = deployment(3, strategy="Recreate", status={"replicas": 3})
    old = rs("web-old", 3, rev=1, desired=3, max_replicas=3)
    p = plan(d, [old], [pod(old)], NOW)
    assert p.create is None and sizes(p, old) == {"web-old": 0}
    old = p.updates[0]
    old["status"]["replicas"] = 0
    for phase in ("Running", "Pending", "Unknown"):
        assert plan(d, [old], [pod(old, phase)], NOW).create is None
    p = plan(d, [old], [pod(old, "Succeeded"), pod(old, "Failed")], NOW)
    assert p.create is not None and p.create["spec"]["replicas"] == 3
    assert p.create["metadata"]["annotations"][MAX_REPLICAS] == "3"


def test_recreate_waits_while_an_old_replica_set_still_counts_pods():
    d = deployment(3, strategy="Recreate")
    old = rs("web-old", 0, rev=1, actual=1)
    assert plan(d, [old], [], NOW).create is None


def test_recreate_scales_an_existing_new_replica_set_up_to_replicas():
    d = deployment(3, strategy="Recreate", status={"replicas": 0})
    old = rs("web-old", 0, rev=1)
    new = rs("web-new", 0, image="v2", rev=2, desired=3, max_replicas=3)
    assert sizes(plan(d, [old, new], [], NOW), old, new) == {"web-old": 0, "web-new": 3}


# --- any input: sizes are never negative -----------------------------------------------------

int_or_percent = st.one_of(st.integers(0, 6), st.integers(0, 100).map(lambda n: f"{n}%"))
annotation = st.one_of(st.none(), st.integers(0, 30).map(str), st.sampled_from(["", "x", "-3"]))


@settings(max_examples=150)
@given(st.integers(0, 20), int_or_percent, int_or_percent, st.booleans(),
       st.sampled_from(["RollingUpdate", "Recreate"]),
       st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), annotation, annotation,
                          st.integers(0, 3)), max_size=5))  # fmt: skip
def test_any_plan_writes_no_negative_size_and_keeps_resource_versions(
        replicas, surge, unavailable, paused, strategy, specs):  # fmt: skip
    d = deployment(replicas, surge=surge, unavailable=unavailable, strategy=strategy,
                   paused=paused, status={"replicas": sum(s for s, *_ in specs)})  # fmt: skip
    given = []
    for i, (spec, available, desired, max_replicas, image) in enumerate(specs):
        r = rs(f"web-{i}", spec, image=f"v{image}", age=100 + i, rev=i + 1,
               available=min(spec, available))  # fmt: skip
        for key, value in ((DESIRED_REPLICAS, desired), (MAX_REPLICAS, max_replicas)):
            if value is not None:
                r["metadata"]["annotations"][key] = value
        given.append(r)
    p = plan(d, given, [], NOW)
    for r in [*p.updates, *([p.create] if p.create else [])]:
        assert r["spec"]["replicas"] >= 0
    assert all(r["metadata"]["resourceVersion"] == "7" for r in p.updates)
    assert len({r["metadata"]["name"] for r in p.updates}) == len(p.updates)
    assert p.status["unavailableReplicas"] >= 0


# --- simulation: the Deployment controller against an in-memory ReplicaSet controller --------


@attrs.define
class Pod:
    owner: str  # the ReplicaSet's name
    ready_at: float
    gone_at: float | None = None  # terminating until then


@attrs.define
class Cluster:
    """The API's ReplicaSets and the pods a ReplicaSet controller keeps for them: pods are
    created at once, ready after a delay drawn from ``delays``; scaling down drops
    unready pods first, and a dropped pod terminates for ``grace`` seconds."""

    deployment: dict
    delays: itertools.cycle
    grace: float = 0.0
    now: float = NOW
    rss: dict[str, dict] = attrs.field(factory=dict)
    pods: list[Pod] = attrs.field(factory=list)
    serial: int = 0

    def step(self) -> Plan:
        p = plan(self.deployment, list(self.rss.values()), self.pod_objects(), self.now)
        self.apply(p)
        self.reconcile_pods()
        return p

    def apply(self, p: Plan) -> None:
        if p.create is not None:
            created = copy.deepcopy(p.create)
            self.serial += 1
            created["metadata"].update(uid=f"uid-{self.serial}", resourceVersion="1",
                                       creationTimestamp=rfc3339(self.now))  # fmt: skip
            assert created["metadata"]["name"] not in self.rss
            self.rss[created["metadata"]["name"]] = created
        for update in p.updates:
            name = update["metadata"]["name"]
            assert update["spec"]["replicas"] >= 0
            assert update["metadata"]["resourceVersion"] == self.rss[name]["metadata"][
                "resourceVersion"]
            rv = str(int(update["metadata"]["resourceVersion"]) + 1)
            self.rss[name] = {**update, "metadata": {**update["metadata"], "resourceVersion": rv},
                              "status": self.rss[name].get("status", {})}  # fmt: skip
        for gone in p.deletes:
            del self.rss[gone["metadata"]["name"]]
        if p.deployment_annotations is not None:
            self.deployment["metadata"]["annotations"] = p.deployment_annotations
        self.deployment["status"] = p.status

    def owned(self, name: str) -> list[Pod]:
        return [p for p in self.pods if p.owner == name and p.gone_at is None]

    def reconcile_pods(self) -> None:
        for name, r in self.rss.items():
            pods = self.owned(name)
            for _ in range(r["spec"]["replicas"] - len(pods)):
                self.pods.append(Pod(name, self.now + next(self.delays)))
            surplus = len(pods) - r["spec"]["replicas"]
            for victim in sorted(pods, key=lambda p: -p.ready_at)[:max(0, surplus)]:
                victim.gone_at = self.now + self.grace
        self.pods = [p for p in self.pods if p.gone_at is None or p.gone_at > self.now]
        self.update_statuses()

    def tick(self) -> None:
        self.now += 1
        self.pods = [p for p in self.pods if p.gone_at is None or p.gone_at > self.now]
        self.update_statuses()

    def update_statuses(self) -> None:
        for name, r in self.rss.items():
            pods = self.owned(name)
            available = sum(p.ready_at <= self.now for p in pods)
            r["status"] = {"replicas": len(pods), "readyReplicas": available,
                           "availableReplicas": available,
                           "observedGeneration": r["metadata"].get("generation", 0)}  # fmt: skip

    def pod_objects(self) -> list[dict]:
        out = []
        for i, p in enumerate(self.pods):
            ref = {"uid": self.rss[p.owner]["metadata"]["uid"], "controller": True}
            m = {"name": f"pod-{i}", "ownerReferences": [ref]}
            if p.gone_at is not None:
                m["deletionTimestamp"] = rfc3339(self.now)
            out.append({"metadata": m, "status": {"phase": "Running"}})
        return out

    def available(self) -> int:
        return sum(p.ready_at <= self.now for p in self.pods if p.gone_at is None)

    def complete(self) -> bool:
        """Kubernetes' DeploymentComplete, said by the Progressing condition too (which
        alone still says so while a Recreate's old pods go, from the last rollout)."""
        d, status = self.deployment, self.deployment["status"]
        cond = condition(status, "Progressing") or {}
        counts = [status.get(k) for k in ("replicas", "updatedReplicas", "availableReplicas")]
        return (cond.get("reason") == "NewReplicaSetAvailable"
                and counts == [d["spec"]["replicas"]] * 3
                and status["observedGeneration"] == d["metadata"]["generation"])  # fmt: skip

    def roll_out(self, check=lambda: None, limit: int = 400) -> None:
        for _ in range(limit):
            self.step()
            check()
            if self.complete():
                return
            self.tick()
            check()
        raise AssertionError(f"no complete rollout: {self.deployment['status']}")


def new_cluster(d: dict, delays: list[int], grace: float = 0.0) -> Cluster:
    cluster = Cluster(d, itertools.cycle(delays), grace)
    cluster.roll_out()  # template A, from nothing
    return cluster


def change_template(cluster: Cluster, image: str) -> None:
    d = cluster.deployment
    d["spec"]["template"] = template(image)
    d["metadata"]["generation"] += 1


def is_zero(value) -> bool:
    return value in (0, "0%")


@settings(max_examples=60)
@given(st.integers(1, 20), int_or_percent, int_or_percent,
       st.lists(st.integers(0, 3), min_size=1, max_size=8))  # fmt: skip
def test_a_rolling_update_keeps_availability_and_surge_bounds(replicas, surge, unavailable,
                                                               delays):  # fmt: skip
    assume(not (is_zero(surge) and is_zero(unavailable)))  # validation refuses both 0
    d = deployment(replicas, image="A", surge=surge, unavailable=unavailable, status={})
    cluster = new_cluster(d, delays)
    low, high = replicas - max_unavailable(d), replicas + max_surge(d)
    assert cluster.available() == replicas
    change_template(cluster, "B")

    def check() -> None:
        assert cluster.available() >= low
        assert len([p for p in cluster.pods if p.gone_at is None]) <= high
        assert sum(r["spec"]["replicas"] for r in cluster.rss.values()) <= high

    cluster.roll_out(check)
    by_image = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r
                for r in cluster.rss.values()}  # fmt: skip
    assert set(by_image) == {"A", "B"}
    assert by_image["B"]["spec"]["replicas"] == replicas and by_image["A"]["spec"]["replicas"] == 0
    assert by_image["B"]["metadata"]["annotations"][REVISION] == "2"
    assert cluster.deployment["metadata"]["annotations"][REVISION] == "2"
    status = cluster.deployment["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"],
            status["unavailableReplicas"]) == (replicas, replicas, replicas, 0)  # fmt: skip
    # Settled: a further sync changes nothing.
    again = plan(cluster.deployment, list(cluster.rss.values()), [], cluster.now)
    assert (again.create, again.updates, again.deletes) == (None, (), ())
    assert again.status == status and again.requeue_after is None


@settings(max_examples=40)
@given(st.integers(1, 10), st.lists(st.integers(0, 3), min_size=1, max_size=5),
       st.integers(0, 3))  # fmt: skip
def test_recreate_starts_no_new_pod_before_the_old_ones_are_gone(replicas, delays, grace):
    d = deployment(replicas, image="A", strategy="Recreate", status={})
    cluster = new_cluster(d, delays, grace)
    old_names = set(cluster.rss)
    change_template(cluster, "B")

    def check() -> None:
        owners = {p.owner for p in cluster.pods}
        assert not (owners & old_names and owners - old_names)

    cluster.roll_out(check)
    assert cluster.available() == replicas
    assert all(cluster.rss[name]["spec"]["replicas"] == 0 for name in old_names)


def test_many_rollouts_keep_revision_history_limit_old_replica_sets():
    d = deployment(2, image="i0", surge=1, unavailable=0, status={}, revisionHistoryLimit=2)
    cluster = new_cluster(d, [0, 1])
    for i in range(1, 6):
        change_template(cluster, f"i{i}")
        cluster.roll_out()
        cluster.tick()
        cluster.step()  # complete at the start of this sync: the cleanup
    images = sorted(r["spec"]["template"]["spec"]["containers"][0]["image"]
                    for r in cluster.rss.values())  # fmt: skip
    assert images == ["i3", "i4", "i5"]
    assert cluster.deployment["metadata"]["annotations"][REVISION] == "6"
