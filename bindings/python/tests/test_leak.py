"""A million messages through every send and receive call: the process's resident memory
stays flat (no leaked bytes objects, views or buffers)."""

from __future__ import annotations

import gc

import shmq

PAGE = 4096


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def round_of(tx, rx, n: int) -> None:
    """Sends and receives `n` messages, a quarter through each pair of calls."""
    msg = b"m" * 64
    q = n // 4
    for _ in range(q):
        tx.send(msg)
        rx.recv()
    for _ in range(q):
        tx.send(bytearray(msg))
        v = rx.recv_view()
        assert v.nbytes == 64
    rx.try_recv()  # releases the last view
    for _ in range(q // 100):
        tx.send_batch([msg] * 100)
        assert len(rx.recv_batch(max=100)) == 100
    for _ in range(q):
        tx.try_send(memoryview(msg))
        rx.try_recv()


def test_a_million_messages_leave_rss_flat(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        round_of(tx, rx, 100_000)  # warm up: allocator pools, caches
        gc.collect()
        before, objects = rss(), len(gc.get_objects())
        round_of(tx, rx, 1_000_000)
        gc.collect()
        after = rss()
        grown_objects = len(gc.get_objects()) - objects
    print(f"\nRSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB after 10^6 messages")
    assert after - before < 2 * 2**20, (before, after)
    assert grown_objects < 100, grown_objects
    assert shmq.inspect(queue)["received"]["messages"] == 1_100_000
