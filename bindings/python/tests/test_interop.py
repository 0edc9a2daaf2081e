"""Python, Rust and C processes on one queue: the repository's Rust examples
(examples/producer.rs, examples/consumer.rs) and C examples (bindings/c/examples)."""

from __future__ import annotations

import subprocess

import shmq

N = 50_000  # more than the 1 MiB queue holds: both sides wait for each other


def test_python_producer_to_rust_consumer(qname, rust_examples):
    shmq.create(qname)  # the examples' defaults: 1 MiB, 64 KiB messages, mpsc
    rx = subprocess.Popen([rust_examples / "consumer", "--queue", qname, "--count", str(N), "--timeout-ms", "30000"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with shmq.Producer(qname) as tx:
        for i in range(N):
            tx.send(b"order %d" % i, timeout=30)
    out, err = rx.communicate(timeout=120)
    assert rx.returncode == 0, err
    assert "in order" in out
    assert qname not in shmq.list_queues()  # the Rust consumer removed it


def test_rust_producer_to_python_consumer(qname, rust_examples):
    shmq.create(qname)
    with shmq.Consumer(qname) as rx:
        tx = subprocess.Popen([rust_examples / "producer", "--queue", qname, "--count", str(N)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got = [rx.recv(timeout=30) for _ in range(N)]
        tx.communicate(timeout=120)
        assert tx.returncode == 0
    assert got == [b"order %d" % i for i in range(N)]


def test_python_producer_to_c_consumer(qname, c_examples):
    shmq.create(qname)
    rx = subprocess.Popen([c_examples / "consumer", qname, str(N)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    with shmq.Producer(qname) as tx:
        for i in range(0, N, 1000):
            tx.send_batch([b"py %d" % j for j in range(i, i + 1000)], timeout=30)
    out, err = rx.communicate(timeout=120)
    assert rx.returncode == 0, err
    lines = out.splitlines()
    assert lines[:N] == [b"py %d" % i for i in range(N)]
    assert lines[N] == b"received %d messages from %s" % (N, qname.encode())


def test_c_producer_to_python_consumer_views(qname, c_examples):
    shmq.create(qname)
    with shmq.Consumer(qname) as rx:
        tx = subprocess.Popen([c_examples / "producer", qname, str(N)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        got = [bytes(rx.recv_view(timeout=30)) for _ in range(N)]
        tx.communicate(timeout=120)
        assert tx.returncode == 0
    assert got == [b"message %d" % i for i in range(N)]


def test_python_rust_and_c_producers_share_one_queue(qname, rust_examples, c_examples):
    shmq.create(qname, capacity=1 << 16)
    n = 20_000
    with shmq.Consumer(qname) as rx:
        procs = [
            subprocess.Popen([rust_examples / "producer", "--queue", qname, "--count", str(n),
                              "--capacity", str(1 << 16), "--max-message", str(1 << 15)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            subprocess.Popen([c_examples / "producer", qname, str(n)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE),
        ]
        nxt = {b"order": 0, b"message": 0, b"py": 0}
        with shmq.Producer(qname) as tx:
            i = 0
            received = 0
            while received < 3 * n:
                if i < n and tx.try_send(b"py %d" % i):
                    i += 1
                for m in rx.recv_batch(timeout=0 if i < n else 30):
                    who, k = m.split(b" ")
                    assert int(k) == nxt[who], m
                    nxt[who] += 1
                    received += 1
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    assert nxt == {b"order": n, b"message": n, b"py": n}
