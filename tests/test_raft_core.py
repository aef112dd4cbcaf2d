"""The Raft core, one behaviour at a time, on the in-memory cluster harness."""

from __future__ import annotations

import pytest
from raft_cluster import Cluster

from actorkube.raft import MemoryStorage
from actorkube.raft._core import (
    Config,
    NotLeader,
    ProposalDropped,
    RaftNode,
    Recovered,
    Role,
)
from actorkube.raft._types import (
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    Message,
    MsgType,
)


def elect(cluster: Cluster, rounds: int = 50) -> int:
    for _ in range(rounds):
        cluster.tick_all()
        cluster.settle()
        cluster.check()
        leader = cluster.leader()
        if leader is not None:
            return leader
    raise AssertionError("no leader")


def run(cluster: Cluster, rounds: int) -> None:
    for _ in range(rounds):
        cluster.tick_all()
        cluster.settle()
        cluster.check()


def isolate(cluster: Cluster, node: int) -> None:
    for other in cluster.nodes:
        if other != node:
            cluster.cut |= {(node, other), (other, node)}


def test_one_leader_is_elected_and_commands_commit_everywhere() -> None:
    cluster = Cluster(3, seed=1)
    leader = elect(cluster)
    assert [cluster.nodes[n].role for n in (1, 2, 3)].count(Role.LEADER) == 1
    indexes = [cluster.propose(leader, f"c{i}".encode()) for i in range(5)]
    cluster.settle()
    run(cluster, 1)  # followers learn the commit index from the next heartbeat
    for node in (1, 2, 3):
        assert [a[2] for a in cluster.apps[node]] == [f"c{i}".encode() for i in range(5)]
        assert cluster.nodes[node].log.committed == indexes[-1]


def test_a_single_node_cluster_commits_alone() -> None:
    cluster = Cluster(1)
    leader = elect(cluster)
    cluster.propose(leader, b"x")
    cluster.settle()
    assert cluster.apps[1] == [(2, cluster.nodes[1].term, b"x")]


def test_followers_reject_proposals_with_a_leader_hint() -> None:
    cluster = Cluster(3, seed=2)
    leader = elect(cluster)
    follower = next(n for n in (1, 2, 3) if n != leader)
    with pytest.raises(NotLeader) as err:
        cluster.nodes[follower].propose(b"x")
    assert err.value.leader == leader


@pytest.mark.parametrize("pre_vote", [True, False])
def test_a_rejoining_partitioned_node_disrupts_only_without_pre_vote(pre_vote: bool) -> None:
    cluster = Cluster(3, seed=3, pre_vote=pre_vote)
    leader = elect(cluster)
    term = cluster.nodes[leader].term
    lonely = next(n for n in (1, 2, 3) if n != leader)
    isolate(cluster, lonely)
    run(cluster, 60)  # the lonely node times out again and again
    cluster.cut.clear()
    run(cluster, 30)
    if pre_vote:
        assert cluster.leader() == leader
        assert cluster.nodes[leader].term == term
        assert cluster.nodes[lonely].term == term
    else:
        assert cluster.nodes[lonely].term > term or cluster.nodes[leader].term > term


def test_check_quorum_makes_a_cut_off_leader_step_down() -> None:
    cluster = Cluster(3, seed=4)
    leader = elect(cluster)
    isolate(cluster, leader)
    run(cluster, 25)
    assert cluster.nodes[leader].role is not Role.LEADER
    others = [n for n in (1, 2, 3) if n != leader]
    assert any(cluster.nodes[n].role is Role.LEADER for n in others)


def test_fast_backtracking_needs_few_round_trips() -> None:
    # A follower with 50 entries of a stale term: one reject jumps over all of them.
    stale = tuple(Entry(1, i) for i in range(1, 51))
    leader_log = tuple(Entry(1, i) for i in range(1, 3)) + tuple(Entry(2, i) for i in range(3, 41))
    leader = RaftNode(Config(1, (1, 2)), Recovered(HardState(2, 1, 2), None, leader_log))
    follower = RaftNode(Config(2, (1, 2)), Recovered(HardState(1, 0, 2), None, stale))
    leader._become_candidate()  # term 3
    leader.votes[2] = True
    leader._become_leader()
    rejects = 0
    for _ in range(20):
        for m in leader.ready().messages:
            if m.to == 2 and m.type is MsgType.APP:
                follower.step(m)
        for m in follower.ready().messages:
            rejects += m.reject
            leader.step(m)
        if follower.log.last_index() == leader.log.last_index():
            break
    assert follower.log.entries == leader.log.entries
    assert rejects <= 2


def test_only_entries_of_the_current_term_commit_by_counting() -> None:
    # The leader of term 3 holds an uncommitted entry of term 2; a follower matching it
    # is not enough to commit it: it commits with the leader's own entry of term 3.
    log = (Entry(1, 1), Entry(2, 2))
    leader = RaftNode(Config(1, (1, 2, 3)), Recovered(HardState(2, 1, 1), None, log))
    leader.term = 2
    leader._become_candidate()
    leader.votes.update({2: True})
    leader._become_leader()  # appends Entry(3, 3)
    leader.ready()
    leader.step(Message(MsgType.APP_RESP, 1, 2, 3, index=2))
    assert leader.log.committed == 1
    leader.step(Message(MsgType.APP_RESP, 1, 2, 3, index=3))
    assert leader.log.committed == 3


def test_read_index_writes_nothing_to_the_log() -> None:
    cluster = Cluster(3, seed=5)
    leader = elect(cluster)
    cluster.propose(leader, b"x")
    cluster.settle()
    last = cluster.nodes[leader].log.last_index()
    states = []
    for node in (1, 2, 3):
        cluster.nodes[node].read_index(f"read-{node}".encode())
    for _ in range(5):
        for node in (1, 2, 3):
            core = cluster.nodes[node]
            while core.has_ready():
                ready = core.ready()
                states += [(node, s) for s in ready.read_states]
                cluster.network.extend(ready.messages)
                core.advance(ready)
        while cluster.network:
            cluster.deliver(0)
    assert sorted((n, s.context, s.index) for n, s in states) == [
        (n, f"read-{n}".encode(), last) for n in (1, 2, 3)
    ]
    assert cluster.nodes[leader].log.last_index() == last


def test_a_deposed_leader_cannot_serve_a_stale_read() -> None:
    cluster = Cluster(3, seed=6)
    old = elect(cluster)
    isolate(cluster, old)
    others = [n for n in (1, 2, 3) if n != old]
    # Only the majority's clocks run: the old leader still believes it leads.
    for _ in range(60):
        for n in others:
            cluster.nodes[n].tick()
        cluster.settle()
        if any(cluster.nodes[n].role is Role.LEADER for n in others):
            break
    new = next(n for n in others if cluster.nodes[n].role is Role.LEADER)
    cluster.propose(new, b"fresh")
    cluster.settle()
    assert cluster.nodes[old].role is Role.LEADER
    # The harness fails on a read point below what was committed when the read began.
    cluster.read(old)
    cluster.settle()
    assert any(c.startswith(b"read-") for c in cluster.reads)  # never confirmed
    cluster.cut.clear()
    run(cluster, 5)
    assert cluster.nodes[old].role is Role.FOLLOWER


def test_leadership_transfer() -> None:
    cluster = Cluster(3, seed=7)
    leader = elect(cluster)
    target = next(n for n in (1, 2, 3) if n != leader)
    cluster.nodes[leader].transfer_leadership(target)
    with pytest.raises(ProposalDropped):
        cluster.nodes[leader].propose(b"during")
    cluster.settle()
    assert cluster.leader() == target
    cluster.propose(target, b"after")
    cluster.settle()
    run(cluster, 1)  # the old leader learns the commit index from a heartbeat
    assert cluster.apps[leader][-1][2] == b"after"


def test_a_follower_behind_the_compacted_log_gets_a_snapshot() -> None:
    cluster = Cluster(3, seed=8)
    leader = elect(cluster)
    behind = next(n for n in (1, 2, 3) if n != leader)
    cluster.crash(behind)
    for i in range(10):
        cluster.propose(leader, f"c{i}".encode())
    cluster.settle()
    cluster.compact(leader)
    assert cluster.nodes[leader].log.snap_index > 1
    cluster.start(behind)
    run(cluster, 5)
    assert [a[2] for a in cluster.apps[behind]] == [f"c{i}".encode() for i in range(10)]
    assert cluster.disks[behind].recover().snapshot is not None


def test_a_learner_replicates_without_voting_and_is_promoted_once_caught_up() -> None:
    cluster = Cluster(3, seed=9)
    leader = elect(cluster)
    for i in range(5):
        cluster.propose(leader, f"c{i}".encode())
    cluster.settle()
    core = cluster.nodes[leader]
    core.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    cluster.add_node(4)
    with pytest.raises(ProposalDropped, match="pending"):
        core.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 4))
    run(cluster, 3)
    assert 4 in core.learners and 4 not in core.voters
    assert cluster.nodes[4].role is Role.FOLLOWER
    assert [a[2] for a in cluster.apps[4]] == [f"c{i}".encode() for i in range(5)]
    core.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 4))
    run(cluster, 3)
    assert core.voters == {1, 2, 3, 4}
    assert cluster.nodes[4].voters == {1, 2, 3, 4}


def test_promoting_a_learner_that_lags_is_refused() -> None:
    cluster = Cluster(3, seed=10)
    leader = elect(cluster)
    core = cluster.nodes[leader]
    core.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    cluster.add_node(4)
    cluster.crash(4)
    run(cluster, 2)
    with pytest.raises(ProposalDropped, match="not caught up"):
        core.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, 4))


def test_a_removed_leader_hands_over_the_commit_then_steps_down() -> None:
    cluster = Cluster(3, seed=11)
    leader = elect(cluster)
    cluster.nodes[leader].propose_conf_change(ConfChange(ConfChangeType.REMOVE, leader))
    cluster.settle()
    with pytest.raises(ProposalDropped, match="removed"):
        cluster.nodes[leader].propose(b"x")
    run(cluster, 10)  # one election timeout: it steps down
    assert cluster.nodes[leader].role is not Role.LEADER
    run(cluster, 30)  # the others' leader lease runs out, and they elect
    new = cluster.leader()
    assert new is not None and new != leader
    assert cluster.nodes[new].voters == {1, 2, 3} - {leader}


def test_the_last_voter_left_after_a_leader_removal_can_lead() -> None:
    # Two voters; the leader removes itself and is then shut down for good. The other
    # must have learned that the removal committed, or it waits forever for a vote.
    cluster = Cluster(2, seed=1)
    leader = elect(cluster)
    other = 3 - leader
    cluster.nodes[leader].propose_conf_change(ConfChange(ConfChangeType.REMOVE, leader))
    cluster.settle()
    cluster.tick_all()
    cluster.settle()
    cluster.crash(leader)
    run(cluster, 50)
    assert cluster.nodes[other].voters == {other}
    assert cluster.leader() == other


def test_a_duplicated_read_request_is_answered_once() -> None:
    cluster = Cluster(3, seed=5)
    leader = elect(cluster)
    follower = next(n for n in (1, 2, 3) if n != leader)
    cluster.nodes[follower].read_index(b"f-1")
    cluster.process(follower)
    (request,) = [m for m in cluster.network if m.type is MsgType.READ_INDEX]
    cluster.network.append(request)  # delivered twice
    cluster.settle()
    cluster.nodes[leader].read_index(b"l-1")
    cluster.settle()


def test_restart_recovers_term_vote_and_log() -> None:
    cluster = Cluster(3, seed=12)
    leader = elect(cluster)
    cluster.propose(leader, b"kept")
    cluster.settle()
    before = {n: (c.term, c.vote, c.log.last_index()) for n, c in cluster.nodes.items()}
    for node in (1, 2, 3):
        cluster.crash(node)
        cluster.start(node)
    after = {n: (c.term, c.vote, c.log.last_index()) for n, c in cluster.nodes.items()}
    assert after == before
    elect(cluster)
    cluster.settle()
    for node in (1, 2, 3):
        assert cluster.apps[node][-1][2] == b"kept"


def test_a_follower_that_lost_its_log_does_not_set_the_leader_spinning() -> None:
    # Found by the etcd fault test: a follower restarted with nothing (its storage never
    # fsynced, then a power cut) rejects every probe at an index it had acknowledged;
    # the leader answered each rejection with the same probe at once, forever, at one
    # instant of virtual time.
    cluster = Cluster(3, seed=5)
    leader = elect(cluster)
    for i in range(3):
        cluster.propose(leader, b"before-%d" % i)
    cluster.settle()
    run(cluster, 2)
    follower = next(n for n in (1, 2, 3) if n != leader)
    cluster.propose(leader, b"in flight")
    cluster.process(leader)  # sent past what the follower acknowledged...
    cluster.crash(follower)  # ...which never gets it
    cluster.disks[follower] = MemoryStorage()  # the amnesia
    cluster.start(follower)
    cluster.propose(leader, b"after")
    cluster.settle()
    cluster.process_all()
    assert not cluster.network, "the leader and the follower still exchange messages"
    # The others go on committing (the follower stays behind: amnesia is not repaired).
    third = next(n for n in (1, 2, 3) if n not in (leader, follower))
    run(cluster, 2)
    assert cluster.apps[third][-1][2] == b"after"


def test_the_same_inputs_give_the_same_outputs() -> None:
    def history(seed: int) -> list:
        cluster = Cluster(5, seed=seed)
        out = []
        for _ in range(30):
            cluster.tick_all()
            cluster.process_all()
            out += [(m.type, m.frm, m.to, m.term) for m in cluster.network]
            cluster.settle()
        return out

    assert history(13) == history(13)
    assert history(13) != history(14)


def test_a_removed_leader_serves_no_reads() -> None:
    # Two voters; the leader removes itself. Until its election timeout it still holds
    # the leader role, but the remaining voter may already lead and commit: a read
    # served by the removed leader would be stale.
    cluster = Cluster(2, seed=3)
    old = elect(cluster)
    other = 3 - old
    cluster.nodes[old].propose_conf_change(ConfChange(ConfChangeType.REMOVE, old))
    cluster.settle()
    cluster.tick_all()
    cluster.settle()
    assert cluster.nodes[other].voters == {other}
    isolate(cluster, old)
    for _ in range(30):  # only the remaining voter's clock runs
        cluster.nodes[other].tick()
        cluster.settle()
    assert cluster.nodes[other].role is Role.LEADER
    cluster.propose(other, b"new")
    cluster.settle()
    assert cluster.nodes[old].role is Role.LEADER
    cluster.read(old)  # the harness fails on a stale read point
    cluster.settle()


def test_a_batch_of_appends_skips_followers_that_have_everything() -> None:
    # Under load a follower's acknowledgement already carries the newest entries to it
    # (pipelining); the append batch of the next Ready must not add an empty append.
    leader = RaftNode(Config(1, (1, 2, 3)))
    leader._become_candidate()
    leader.votes[2] = True
    leader._become_leader()
    followers = {n: RaftNode(Config(n, (1, 2, 3))) for n in (2, 3)}

    for m in leader.ready().messages:  # the new leader's empty entry
        followers[m.to].step(m)
    for follower in followers.values():
        for m in follower.ready().messages:
            leader.step(m)
    leader.propose(b"one")
    for m in leader.ready().messages:
        followers[m.to].step(m)
    leader.propose(b"two")  # not sent yet: due with the next Ready
    for m in followers[2].ready().messages:
        leader.step(m)  # the ack sends "two" to node 2 at once
    sent = [m for m in leader.ready().messages if m.type is MsgType.APP]
    assert sorted((m.to, len(m.entries)) for m in sent) == [(2, 1), (3, 1)]
