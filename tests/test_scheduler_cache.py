"""The scheduler's cache: assumed pods count at once, are confirmed by the informer,
forgotten when their bind fails and expire when never confirmed; pods may arrive
before their node and stay after it; the node table the cache keeps is always the
table built afresh."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.scheduler._cache import SchedulerCache
from actorkube.scheduler._table import NodeTable


def node(name: str, cpu: str = "2") -> dict:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "pods": "110"}}}


def pod(name: str, cpu: str = "500m", node: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def cpu(cache: SchedulerCache, name: str) -> int:
    return cache.node(name).requested.get("cpu", 0)


def test_an_assumed_pod_counts_until_confirmed_then_is_the_real_one() -> None:
    cache = SchedulerCache(ttl=30)
    cache.add_node(node("n1"))
    cache.add_node(node("n2"))
    assumed = cache.assume(pod("p"), "n1")
    assert assumed["spec"]["nodeName"] == "n1" and cache.is_assumed(pod("p"))
    assert cpu(cache, "n1") == 500
    with pytest.raises(ValueError):
        cache.assume(pod("p"), "n2")
    cache.finish_binding(assumed, now=10)
    # The informer says where the API server bound it (here: somewhere else).
    cache.add_pod(pod("p", node="n2"))
    assert not cache.is_assumed(pod("p"))
    assert (cpu(cache, "n1"), cpu(cache, "n2")) == (0, 500)
    assert cache.cleanup(now=1000) == []  # confirmed pods never expire


def test_forget_and_expiry() -> None:
    cache = SchedulerCache(ttl=30)
    cache.add_node(node("n1"))
    a = cache.assume(pod("a"), "n1")
    b = cache.assume(pod("b"), "n1")
    cache.forget(a)
    assert cpu(cache, "n1") == 500 and not cache.is_assumed(pod("a"))
    assert cache.cleanup(now=10_000) == []  # binding not finished: never expires
    cache.finish_binding(b, now=100)
    assert cache.cleanup(now=129) == []
    assert [p["metadata"]["name"] for p in cache.cleanup(now=130)] == ["b"]
    assert cpu(cache, "n1") == 0 and cache.pod_count() == 0
    cache.forget(pod("c"))  # unknown: nothing happens
    # A pod whose binding finished, then deleted; one of the same name assumed again:
    # the new one's clock starts at its own binding.
    d = cache.assume(pod("d"), "n1")
    cache.finish_binding(d, now=200)
    cache.remove_pod(d)
    d2 = cache.assume(pod("d"), "n1")
    assert cache.cleanup(now=10_000) == [] and cache.is_assumed(pod("d"))
    cache.finish_binding(d2, now=10_000)
    assert cache.cleanup(now=10_029) == []
    assert [p["metadata"]["name"] for p in cache.cleanup(now=10_030)] == ["d"]


def test_pods_before_their_node_and_after_it() -> None:
    cache = SchedulerCache()
    cache.add_pod(pod("early", node="n1"))
    assert cache.nodes() == [] and cache.node("n1") is None
    cache.add_node(node("n1"))
    assert [n.name for n in cache.nodes()] == ["n1"] and cpu(cache, "n1") == 500
    cache.remove_node(node("n1"))
    assert cache.nodes() == []
    cache.add_node(node("n1", cpu="4"))  # back, and its pod still counts
    assert cpu(cache, "n1") == 500 and cache.node("n1").allocatable["cpu"] == 4000
    cache.remove_node(node("n1"))
    cache.remove_pod(pod("early", node="n1"))
    assert cache.pod_count() == 0 and cache.nodes() == []
    cache.add_pod(pod("unbound"))  # not bound: not the cache's
    assert cache.pod_count() == 0


def test_node_order_is_arrival_order() -> None:
    cache = SchedulerCache()
    for name in ("b", "a", "c"):
        cache.add_node(node(name))
    cache.update_node(node("a", cpu="8"))
    assert [n.name for n in cache.nodes()] == ["b", "a", "c"]


ops = st.lists(
    st.tuples(st.sampled_from(["node", "drop-node", "bound", "assume", "forget", "delete"]),
              st.integers(0, 3), st.integers(0, 5), st.sampled_from(["1", "2", "4"])),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_kept_table_is_always_the_fresh_one(steps) -> None:
    cache = SchedulerCache()
    for op, n, p, size in steps:
        name, key = f"n{n}", f"p{p}"
        if op == "node":
            cache.add_node(node(name, cpu=size))
        elif op == "drop-node":
            cache.remove_node(node(name))
        elif op == "bound":
            cache.add_pod(pod(key, node=name))
        elif op == "assume" and not cache.is_assumed(pod(key)):
            with contextlib.suppress(ValueError):  # bound already
                cache.assume(pod(key), name)
        elif op == "forget":
            cache.forget(pod(key))
        elif op == "delete":
            cache.remove_pod(pod(key))
        kept, fresh = cache.table(), NodeTable(cache.nodes())
        assert kept.names == fresh.names
        for column in ("allocatable", "requested", "non_zero", "pods", "allowed_pods"):
            assert (getattr(kept, column) == getattr(fresh, column)).all(), column


def test_a_nomination_never_hides_an_assumed_pod() -> None:
    # Found by scheduler_perf's PreemptionBasic: the pod's own status update (naming its
    # nominated node) arrived while it was assumed there; holding room for it replaced
    # the assumed entry, and dropping the hold after the bind left the node empty.
    cache = SchedulerCache()
    cache.add_node(node("n1", cpu="4"))
    assumed = cache.assume(pod("p", cpu="3"), "n1")
    cache.nominate(pod("p", cpu="3"), "n1")
    cache.finish_binding(assumed, now=0)
    cache.unnominate(pod("p", cpu="3"))
    assert cpu(cache, "n1") == 3000 and cache.is_assumed(pod("p"))


@pytest.mark.parametrize("log", [1, 3, 4096])
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=12))
def test_a_derived_column_follows_every_refilled_row(log, changes) -> None:
    """``NodeTable.derived`` recomputes the rows refilled since it was last asked, from
    its log of refills, or from every row's epoch once the log has dropped what it
    needs (``log``: how many refills it keeps)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("actorkube.scheduler._table.REFILL_LOG", log)
        _follow(changes)


def _follow(changes) -> None:
    cache = SchedulerCache()
    for i in range(6):
        cache.add_node(node(f"n{i}", cpu="4"))
    table = cache.table()

    def free(t: NodeTable):
        return t.derived("free", lambda rows: t.allocatable[rows, 0] - t.requested[rows, 0],
                         lambda i: t.allocatable[i, 0] - t.requested[i, 0], int)  # fmt: skip

    free(table)
    held, seen = None, None
    for k, (n, asks) in enumerate(changes):
        for j in range(asks):  # several refills between two asks
            cache.add_pod(pod(f"p{k}-{j}", cpu="100m", node=f"n{(n + j) % 6}"))
        table = cache.table()
        column = free(table)
        assert column.tolist() == free(NodeTable(cache.nodes())).tolist()
        if held is not None:  # a column a caller holds is never changed under it
            assert held.tolist() == seen
        if k % 2:
            held, seen = column, column.tolist()


def test_a_refill_that_changes_no_number_recomputes_no_row() -> None:
    # A bind's confirmation replaces the assumed pod with the bound one: the node's
    # numbers stay, and so do the derived columns (one row computed per bind, not two).
    cache = SchedulerCache()
    for i in range(3):
        cache.add_node(node(f"n{i}", cpu="4"))
    computed: list[int] = []

    def free(t: NodeTable):
        def one(i: int) -> int:
            computed.append(i)
            return int(t.allocatable[i, 0] - t.requested[i, 0])

        return t.derived("free", lambda rows: t.allocatable[rows, 0] - t.requested[rows, 0],
                         one, int)  # fmt: skip

    free(cache.table())
    assumed = cache.assume(pod("p", cpu="1"), "n1")
    assert free(cache.table()).tolist() == [4000, 3000, 4000] and computed == [1]
    cache.add_pod({**assumed, "metadata": {**assumed["metadata"], "resourceVersion": "9"}})
    assert free(cache.table()).tolist() == [4000, 3000, 4000] and computed == [1]
    cache.add_pod(pod("q", cpu="2", node="n2"))
    column = free(cache.table())
    assert column.tolist() == [4000, 3000, 2000] and computed == [1, 2]
    with pytest.raises(ValueError):  # read-only: callers share it
        column[0] = 0


def test_claims_are_not_shared_by_pods_of_two_clusters_with_the_same_uid() -> None:
    # Two clusters in one process (scheduler_perf runs its workloads one after the
    # other, each API server seeded alike) give other pods the same uid and version.
    from actorkube.scheduler._nodeinfo import claims_of

    small, large = pod("p", cpu="100m"), pod("p", cpu="3")
    for p in (small, large):
        p["metadata"].update(uid="same-uid", resourceVersion="7")
    assert claims_of(small)[0]["cpu"] == 100
    assert claims_of(large)[0]["cpu"] == 3000
    assumed = {**large, "spec": {**large["spec"], "nodeName": "n1"}}
    assert claims_of(assumed) is claims_of(large)  # the assumed copy reads the same


def test_a_pod_like_one_met_before_takes_its_claims_without_reading_its_containers(
    monkeypatch,
) -> None:
    # A Deployment's next pod, or a bound pod's new version, asks what its look-alikes
    # asked: its claims are found by the text of what they are read from.
    from actorkube.scheduler import _nodeinfo

    computed = []
    real = _nodeinfo.pod_requests
    monkeypatch.setattr(_nodeinfo, "pod_requests",
                        lambda p, **kw: computed.append(1) or real(p, **kw))  # fmt: skip
    first, twin, other = pod("a", cpu="123m"), pod("b", cpu="123m"), pod("c", cpu="124m")
    for i, p in enumerate((first, twin, other)):
        p["metadata"].update(uid=f"uid-{i}", resourceVersion="1")
    assert _nodeinfo.claims_of(first)[0]["cpu"] == 123 and len(computed) == 2
    assert _nodeinfo.claims_of(twin) is _nodeinfo.claims_of(first) and len(computed) == 2
    assert _nodeinfo.claims_of(other)[0]["cpu"] == 124 and len(computed) == 4
