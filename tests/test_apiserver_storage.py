"""Objects in etcd with Kubernetes' semantics (actorkube.apiserver's ObjectStore), on a
3-member etcd group on trio's virtual clock. Expected answers follow the Kubernetes API
conventions (api-conventions.md: concurrency control, resourceVersion, generation,
graceful deletion, finalizers) and the wording of apimachinery's StatusError."""

from __future__ import annotations

import random

import pytest

from actorkube.actor import ActorSystem
from actorkube.apiserver import _errors as errors
from actorkube.apiserver._errors import ApiError
from actorkube.apiserver._registry import ResourceType
from actorkube.apiserver._storage import ObjectStore
from actorkube.etcd import start_group

CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    namespaced=True,
    subresources=frozenset({"status", "scale"}),
    generation=True,
)
PODS = ResourceType(
    "",
    "v1",
    "Pod",
    "pods",
    namespaced=True,
    graceful=True,
    subresources=frozenset({"status", "binding", "eviction"}),
)
NODES = ResourceType("", "v1", "Node", "nodes", namespaced=False, etcd_prefix="minions")


def cm(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }


async def open_store(system: ActorSystem):
    group = start_group(system, 3)
    store = ObjectStore(
        group.client(timeout=30), clock=lambda: 1_790_000_000.0, rng=random.Random(1)
    )
    return group, store


async def test_create_sets_what_the_server_owns_and_refuses_a_taken_name(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        sent = cm("a", k="v")
        sent["metadata"].update(uid="mine", resourceVersion="7", creationTimestamp="x")
        made = await store.create(CONFIGMAPS, sent)
        m = made["metadata"]
        assert m["uid"] != "mine" and len(m["uid"]) == 36 and m["uid"][14] == "4"
        assert m["creationTimestamp"] == "2026-09-21T14:13:20Z"
        assert m["resourceVersion"] == "2"  # the etcd revision of the write
        assert "generation" not in m  # configmaps have no spec to count
        got = await store.get(CONFIGMAPS, "default", "a")
        assert got == made
        with pytest.raises(ApiError) as taken:
            await store.create(CONFIGMAPS, cm("a"))
        assert taken.value.status == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'configmaps "a" already exists',
            "reason": "AlreadyExists",
            "details": {"name": "a", "kind": "configmaps"},
            "code": 409,
        }
        assert (await store.get(CONFIGMAPS, "default", "a"))["data"] == {"k": "v"}
        # The key is Kubernetes' own; nodes keep their historical prefix.
        raw = await store.etcd.get(b"/registry/configmaps/default/a")
        assert raw.kvs and b"resourceVersion" not in raw.kvs[0].value
        await store.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
        assert (await store.etcd.get(b"/registry/minions/n")).kvs
        await group.stop()


async def test_missing_objects_are_404_with_the_qualified_resource(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        with pytest.raises(ApiError) as missing:
            await store.get(DEPLOYMENTS, "default", "web")
        assert missing.value.code == 404
        assert missing.value.status["message"] == 'deployments.apps "web" not found'
        assert missing.value.status["details"] == {
            "name": "web",
            "group": "apps",
            "kind": "deployments",
        }
        await group.stop()


async def test_an_update_based_on_a_stale_read_is_refused(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        first = await store.create(CONFIGMAPS, cm("a", k="1"))
        rv = first["metadata"]["resourceVersion"]
        second = await store.update(
            CONFIGMAPS, "default", "a", lambda cur: {**cur, "data": {"k": "2"}}, expect=rv
        )
        assert int(second["metadata"]["resourceVersion"]) > int(rv)
        with pytest.raises(ApiError) as stale:
            await store.update(
                CONFIGMAPS, "default", "a", lambda cur: {**cur, "data": {"k": "3"}}, expect=rv
            )
        assert stale.value.code == 409 and stale.value.reason == "Conflict"
        assert stale.value.status["message"] == (
            'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )
        assert (await store.get(CONFIGMAPS, "default", "a"))["data"] == {"k": "2"}
        # Without a resourceVersion the update applies to whatever is current.
        third = await store.update(
            CONFIGMAPS, "default", "a", lambda cur: {**cur, "data": {"k": "3"}}
        )
        assert third["data"] == {"k": "3"}
        # A past version can still be read at its resourceVersion.
        old = await store.get(CONFIGMAPS, "default", "a", resource_version=rv)
        assert old["data"] == {"k": "1"}
        await group.stop()


async def test_a_guess_from_the_cache_is_only_a_first_try(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        first = await store.create(CONFIGMAPS, cm("a", k="1"))
        two = {**first, "data": {"k": "2"}}
        second = await store.update(CONFIGMAPS, "default", "a", lambda cur: two, guess=first)
        assert second["data"] == {"k": "2"}  # the guess was current: one write, no read
        seen = []

        def add_one(cur: dict) -> dict:
            seen.append(cur["data"]["k"])
            return {**cur, "data": {"k": cur["data"]["k"] + "+"}}

        # A stale guess: the write fails its condition and the change runs again on
        # what etcd has; no 409 without an expected version.
        third = await store.update(CONFIGMAPS, "default", "a", add_one, guess=first)
        assert seen == ["1", "2"] and third["data"] == {"k": "2+"}
        # With an expected version, a guess that matches it but is stale is still a 409
        # (decided on the fresh read), and one that is merely old is not.
        rv = third["metadata"]["resourceVersion"]
        with pytest.raises(ApiError) as stale:
            old = first["metadata"]["resourceVersion"]
            await store.update(CONFIGMAPS, "default", "a", add_one, expect=old, guess=first)
        assert stale.value.code == 409
        fourth = await store.update(CONFIGMAPS, "default", "a", add_one, expect=rv, guess=first)
        assert fourth["data"] == {"k": "2++"}
        # A change refused on a stale guess is tried again on what etcd has.
        def refuse_the_first(cur: dict) -> dict:
            if cur["data"]["k"] == "1":
                raise errors.conflict("configmaps", "", "a", "stale view")
            return {**cur, "data": {"k": "3"}}

        third_too = await store.update(CONFIGMAPS, "default", "a", refuse_the_first, guess=first)
        assert third_too["data"] == {"k": "3"}
        back = {"k": "2++"}
        fourth = await store.update(CONFIGMAPS, "default", "a", lambda cur: {**cur, "data": back})
        # A guess that changes nothing is checked on a fresh read before "no-op".
        same = await store.update(CONFIGMAPS, "default", "a", lambda cur: cur, guess=first)
        assert same["metadata"]["resourceVersion"] == fourth["metadata"]["resourceVersion"]
        # A guess of an object that is gone: 404, as without one.
        await store.delete(CONFIGMAPS, "default", "a")
        with pytest.raises(ApiError) as gone:
            await store.update(CONFIGMAPS, "default", "a", add_one, guess=fourth)
        assert gone.value.code == 404
        await group.stop()


async def test_generation_counts_spec_changes_only_and_server_fields_stay(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1},
        }
        made = await store.create(DEPLOYMENTS, dep)
        assert made["metadata"]["generation"] == 1
        uid = made["metadata"]["uid"]

        def scale(cur: dict) -> dict:
            new = {**cur, "spec": {"replicas": 3}}
            new["metadata"] = {**cur["metadata"], "uid": "forged", "generation": 99}
            return new

        scaled = await store.update(DEPLOYMENTS, "default", "web", scale)
        assert scaled["metadata"]["generation"] == 2 and scaled["metadata"]["uid"] == uid
        labelled = await store.update(
            DEPLOYMENTS,
            "default",
            "web",
            lambda cur: {**cur, "metadata": {**cur["metadata"], "labels": {"a": "b"}}},
        )
        assert labelled["metadata"]["generation"] == 2  # metadata is not spec
        status = await store.update(
            DEPLOYMENTS, "default", "web", lambda cur: {**cur, "status": {"replicas": 3}}
        )
        assert status["metadata"]["generation"] == 2
        # An update that changes nothing writes nothing.
        same = await store.update(DEPLOYMENTS, "default", "web", lambda cur: cur)
        assert same["metadata"]["resourceVersion"] == status["metadata"]["resourceVersion"]
        await group.stop()


async def test_finalizers_hold_a_deleted_object_until_they_are_removed(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        held = cm("a")
        held["metadata"]["finalizers"] = ["example.com/cleanup"]
        await store.create(CONFIGMAPS, held)
        marked, gone = await store.delete(CONFIGMAPS, "default", "a")
        assert not gone and marked["metadata"]["deletionTimestamp"] == "2026-09-21T14:13:20Z"
        assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
        # A client cannot take the deletionTimestamp away by an update.
        kept = await store.update(
            CONFIGMAPS,
            "default",
            "a",
            lambda cur: {**cur, "metadata": {**cur["metadata"], "deletionTimestamp": None}},
        )
        assert kept["metadata"]["deletionTimestamp"] == "2026-09-21T14:13:20Z"
        await store.update(
            CONFIGMAPS,
            "default",
            "a",
            lambda cur: {**cur, "metadata": {**cur["metadata"], "finalizers": []}},
        )
        with pytest.raises(ApiError) as missing:
            await store.get(CONFIGMAPS, "default", "a")
        assert missing.value.code == 404
        await group.stop()


async def test_pods_wait_out_their_grace_period_unless_never_scheduled(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)

        def pod(name: str, node: str = "") -> dict:
            spec = {
                "containers": [{"name": "c", "image": "i"}],
                "terminationGracePeriodSeconds": 30,
            }
            if node:
                spec["nodeName"] = node
            return {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec,
            }

        await store.create(PODS, pod("running", node="n1"))
        marked, gone = await store.delete(PODS, "default", "running")
        assert not gone and marked["metadata"]["deletionGracePeriodSeconds"] == 30
        assert marked["metadata"]["deletionTimestamp"] == "2026-09-21T14:13:50Z"
        # The kubelet, once the containers stopped, deletes with grace period 0.
        _, gone = await store.delete(PODS, "default", "running", grace_period=0)
        assert gone
        await store.create(PODS, pod("pending"))
        _, gone = await store.delete(PODS, "default", "pending")
        assert gone  # no node: nothing to wait for
        await group.stop()


async def test_delete_preconditions(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        made = await store.create(CONFIGMAPS, cm("a"))
        with pytest.raises(ApiError) as wrong:
            await store.delete(CONFIGMAPS, "default", "a", uid="another")
        assert wrong.value.code == 409
        assert "Precondition failed: UID in precondition: another" in str(wrong.value)
        _, gone = await store.delete(CONFIGMAPS, "default", "a", uid=made["metadata"]["uid"])
        assert gone
        await group.stop()


async def test_a_paged_list_is_one_snapshot_and_filters_apply(autojump_clock):
    async with ActorSystem() as system:
        group, store = await open_store(system)
        for i in range(7):
            await store.create(CONFIGMAPS, cm(f"c{i}", parity=str(i % 2)))
        other = cm("elsewhere")
        other["metadata"]["namespace"] = "other"
        await store.create(CONFIGMAPS, other)
        page = await store.list(CONFIGMAPS, "default", limit=3)
        names = [o["metadata"]["name"] for o in page["items"]]
        assert names == ["c0", "c1", "c2"] and page["kind"] == "ConfigMapList"
        rv = page["metadata"]["resourceVersion"]
        # Writes between pages do not show: the list is read at the first page's revision.
        await store.create(CONFIGMAPS, cm("c3a"))
        await store.delete(CONFIGMAPS, "default", "c5")
        token = page["metadata"]["continue"]
        while token:
            page = await store.list(CONFIGMAPS, "default", limit=3, continue_token=token)
            assert page["metadata"]["resourceVersion"] == rv
            names += [o["metadata"]["name"] for o in page["items"]]
            token = page["metadata"].get("continue", "")
        assert names == [f"c{i}" for i in range(7)]
        odd = await store.list(CONFIGMAPS, "default", keep=lambda o: o["data"].get("parity") == "1")
        assert [o["metadata"]["name"] for o in odd["items"]] == ["c1", "c3"]
        everywhere = await store.list(CONFIGMAPS)
        assert len(everywhere["items"]) == 8  # 7 - c5 + c3a + elsewhere
        # A continue token older than the compacted history is 410 Expired.
        first = await store.list(CONFIGMAPS, "default", limit=2)
        await store.create(CONFIGMAPS, cm("later"))
        await store.etcd.compact(int(first["metadata"]["resourceVersion"]) + 1)
        with pytest.raises(ApiError) as old:
            await store.list(
                CONFIGMAPS, "default", limit=2, continue_token=first["metadata"]["continue"]
            )
        assert old.value.code == 410 and old.value.reason == "Expired"
        with pytest.raises(ApiError) as bad:
            await store.list(CONFIGMAPS, "default", continue_token="garbage")
        assert bad.value.code == 400
        await group.stop()
