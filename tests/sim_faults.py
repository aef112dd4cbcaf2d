"""One step of a seeded fault schedule over simulated hosts ``n1``, ``n2``, ... (shared
by the Raft and etcd fault tests)."""

from __future__ import annotations

import random

from actorkube.sim import SimNetwork


async def fault_step(
    net: SimNetwork,
    rng: random.Random,
    action: str,
    nodes: list[int],
    storages: dict,
    down: set[int],
    others: list[str],
) -> None:
    """Carry out ``action``: "partition" cuts a random minority of the nodes off from the
    rest and ``others`` (the clients' hosts); "heal" mends every cut; "crash" stops a
    node while a majority stays up, its storage keeping only what a crash keeps;
    "restart" brings a crashed node back. Anything else does nothing."""
    size = len(nodes)
    if action == "partition":
        side = rng.sample(nodes, rng.randint(1, size // 2))
        net.partition([f"n{n}" for n in side], [f"n{n}" for n in nodes if n not in side] + others)
    elif action == "heal":
        net.heal()
    elif action == "crash" and len(down) < size // 2:
        victim = rng.choice([n for n in nodes if n not in down])
        await net.crash(f"n{victim}")
        storages[victim] = storages[victim].crash()
        down.add(victim)
    elif action == "restart" and down:
        back = rng.choice(sorted(down))
        await net.restart(f"n{back}")
        down.discard(back)
