"""Producers and consumers in separate processes started by multiprocessing."""

from __future__ import annotations

import multiprocessing as mp

import pytest

import shmq

PER_PRODUCER = 20_000


def produce(queue: str, k: int, batch: bool) -> None:
    with shmq.Producer(queue) as tx:
        msgs = [b"p%d:%d" % (k, i) for i in range(PER_PRODUCER)]
        if batch:
            for i in range(0, PER_PRODUCER, 100):
                tx.send_batch(msgs[i : i + 100], timeout=60)
        else:
            for m in msgs:
                tx.send(m, timeout=60)


def consume(queue: str, total: int, results) -> None:
    """Receives `total` messages and reports, per producer, whether its messages came in
    order and how many came."""
    nxt: dict[int, int] = {}
    in_order = True
    with shmq.Consumer(queue, wait="block") as rx:
        got = 0
        while got < total:
            for m in rx.recv_batch(max=256, timeout=60):
                k, i = (int(x) for x in m[1:].split(b":"))
                in_order &= nxt.get(k, 0) == i
                nxt[k] = i + 1
                got += 1
    results.put((in_order, nxt))


@pytest.mark.parametrize("mode,producers", [("mpsc", 3), ("spsc", 1)])
def test_producer_and_consumer_processes_exchange_every_message_in_order(qname, mode, producers):
    shmq.create(qname, capacity=1 << 14, mode=mode)  # small: producers wait for room
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    total = producers * PER_PRODUCER
    rx = ctx.Process(target=consume, args=(qname, total, results))
    rx.start()
    txs = [ctx.Process(target=produce, args=(qname, k, k % 2 == 1)) for k in range(producers)]
    for p in txs:
        p.start()
    in_order, nxt = results.get(timeout=120)
    for p in [*txs, rx]:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert in_order
    assert nxt == {k: PER_PRODUCER for k in range(producers)}
    snap = shmq.inspect(qname)
    assert snap["sent"]["messages"] == snap["received"]["messages"] == total
    assert snap["participants"] == []


def test_a_forked_child_cannot_use_its_parents_handle_but_opens_its_own(queue):
    ctx = mp.get_context("fork")
    tx = shmq.Producer(queue)
    out = ctx.Queue()

    def child():
        try:
            tx.send(b"from the parent's handle")
            out.put("sent")
        except shmq.Error as e:
            out.put(type(e).__name__)
        with shmq.Producer(queue) as own:
            own.send(b"child")

    p = ctx.Process(target=child)
    p.start()
    assert out.get(timeout=60) != "sent"
    p.join(timeout=60)
    assert p.exitcode == 0
    with shmq.Consumer(queue) as rx:
        assert rx.recv(timeout=5) == b"child"
    tx.close()
