"""A whole etcd group killed (SIGKILL, no chance to flush anything) restarts from its
data directories with every acknowledged write. Real processes and the real clock: the
group's disks fsync in worker threads, which a virtual clock would race."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from actorkube.actor import ActorSystem
from actorkube.etcd import start_group

CHILD = Path(__file__).with_name("etcd_crash_child.py")
REPO = Path(__file__).resolve().parents[1]


async def test_a_killed_group_restarts_with_every_acknowledged_write(tmp_path) -> None:
    count = 40
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path), str(count)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acked = []
    try:
        for line in child.stdout:  # each line is written after the ack came back
            acked.append(int(line.split()[1]))
            if len(acked) == count // 2:
                break  # kill it mid-stream, while writes are in flight
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert len(acked) == count // 2
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path, fsync=True, tick_interval=0.02)
        client = group.client(timeout=60)
        everything = await client.get(b"key-", b"key.")
        present = {kv.key for kv in everything.kvs}
        missing = [i for i in acked if b"key-%03d" % i not in present]
        assert not missing, f"acknowledged writes lost: {missing}"
        # Nothing written is half there: every key that came back has its value.
        assert all(kv.value == b"value-%d" % int(kv.key[4:]) for kv in everything.kvs)
        await group.stop()
