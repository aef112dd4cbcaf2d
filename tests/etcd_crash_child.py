"""A process that runs an etcd group on disk (fsync on), writes keys and reports each
acknowledgement on stdout, then waits to be killed (tests/test_etcd_crash.py)."""

from __future__ import annotations

import sys

import trio

from actorkube.actor import ActorSystem
from actorkube.etcd import start_group


async def main(data_dir: str, count: int) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=data_dir, fsync=True, tick_interval=0.02)
        client = group.client(timeout=30)
        for i in range(count):
            await client.put(b"key-%03d" % i, b"value-%d" % i)
            print(f"acked {i}", flush=True)
        await trio.sleep_forever()  # until killed


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
