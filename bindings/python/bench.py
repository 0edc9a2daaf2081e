#!/usr/bin/env python3
"""One-way latency and throughput of shmq against multiprocessing.Queue,
multiprocessing.Pipe and a Unix socket, between two Python processes on this machine.

    python bindings/python/bench.py [--size 64] [--repeat 5] [--quick]

Throughput: a producer process sends N messages of --size bytes, one call per message, to
a consumer process that receives them one call per message; the rate is N over the time
from the producer's first send to the consumer's last receive (CLOCK_MONOTONIC, which both
processes share). shmq is also measured with send_batch/recv_batch (100 per call).

Latency: ping-pong. Process A stamps CLOCK_MONOTONIC into a message and sends it; process
B computes now - stamp (the one-way latency) and answers; A waits for the answer before
the next message, so nothing queues. The first 1,000 samples are dropped.

Every measurement runs --repeat times in fresh processes; the table gives the medians of
those runs (and of each run's p50/p99). The transports:

* shmq: an SPSC queue of 1 MiB (two for ping-pong), wait="adaptive" (the default: spin
  about 50 µs, then sleep on a futex), recv/send per message.
* multiprocessing.Queue: put/get (pickles the bytes; a feeder thread writes to a pipe).
* multiprocessing.Pipe: send_bytes/recv_bytes (no pickling).
* Unix socket: a socketpair of SOCK_SEQPACKET (one message per send/recv system call).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import time

import shmq

WARMUP = 1_000


# --- endpoints: (send, recv, close) made inside the process that uses them ------------------


def endpoint(kind: str, spec, role: str, wait: str):
    """`spec` is what the parent made for the transport; `role` "tx" or "rx" for
    throughput, "a" or "b" for ping-pong (a sends on the first channel, b on the second)."""
    if kind.startswith("shmq"):
        if role in ("tx", "rx"):
            h = shmq.Producer(spec, wait=wait) if role == "tx" else shmq.Consumer(spec, wait=wait)
            return (getattr(h, "send", None), getattr(h, "recv", None), h.close, h)
        out, inq = spec if role == "a" else spec[::-1]
        tx, rx = shmq.Producer(out, wait=wait), shmq.Consumer(inq, wait=wait)
        return (tx.send, rx.recv, lambda: (tx.close(), rx.close()), (tx, rx))
    if kind == "mp.Queue":
        if role in ("tx", "rx"):
            return (spec.put, spec.get, lambda: None, None)
        out, inq = spec if role == "a" else spec[::-1]
        return (out.put, inq.get, lambda: None, None)
    if kind == "mp.Pipe":
        if role in ("tx", "rx"):
            r, w = spec
            c = w if role == "tx" else r
            return (c.send_bytes, c.recv_bytes, c.close, None)
        c = spec[0] if role == "a" else spec[1]
        return (c.send_bytes, c.recv_bytes, c.close, None)
    if kind == "unix socket":
        s = spec[0] if role in ("tx", "a") else spec[1]
        return (s.send, lambda: s.recv(1 << 16), s.close, None)
    raise ValueError(kind)


def make_spec(ctx, kind: str, pingpong: bool):
    """The transport's shared part, made by the parent; returns (spec, cleanup)."""
    if kind.startswith("shmq"):
        names = [f"bench-{os.getpid()}-{i}" for i in range(2 if pingpong else 1)]
        for n in names:
            shmq.create(n, capacity=1 << 20, mode="spsc")

        def cleanup():
            for n in names:
                try:
                    shmq.remove(n)
                except shmq.NotFound:
                    pass

        return (tuple(names) if pingpong else names[0]), cleanup
    if kind == "mp.Queue":
        return ((ctx.Queue(), ctx.Queue()) if pingpong else ctx.Queue()), lambda: None
    if kind == "mp.Pipe":
        return (ctx.Pipe(duplex=True) if pingpong else ctx.Pipe(duplex=False)), lambda: None
    if kind == "unix socket":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return (a, b), lambda: (a.close(), b.close())
    raise ValueError(kind)


# --- the two measurements, each a pair of processes -----------------------------------------


def thr_tx(kind, spec, n, size, wait, barrier, results):
    send, _, close, _h = endpoint(kind, spec, "tx", wait)
    msg = b"x" * size
    barrier.wait()
    t0 = time.monotonic()
    if kind == "shmq batch":
        batch = [msg] * 100
        send_batch = _h.send_batch
        for _ in range(n // 100):
            send_batch(batch)
    else:
        for _ in range(n):
            send(msg)
    results.put(("t0", t0))
    if kind == "mp.Queue":
        spec.close()
        spec.join_thread()  # wait for the feeder thread before exiting
    close()


def thr_rx(kind, spec, n, size, wait, barrier, results):
    _, recv, close, _h = endpoint(kind, spec, "rx", wait)
    barrier.wait()
    if kind == "shmq batch":
        recv_batch = _h.recv_batch
        got = 0
        while got < n:
            got += len(recv_batch(100))
    else:
        for _ in range(n):
            recv()
    results.put(("t1", time.monotonic()))
    close()


def lat_a(kind, spec, n, size, wait, barrier, results):
    send, recv, close, _ = endpoint(kind, spec, "a", wait)
    pad = b"x" * (size - 8)
    pack, now = struct.Struct("<q").pack, time.monotonic_ns
    barrier.wait()
    for _ in range(n):
        send(pack(now()) + pad)
        recv()
    close()


def lat_b(kind, spec, n, size, wait, barrier, results):
    send, recv, close, _ = endpoint(kind, spec, "b", wait)
    reply = b"y" * size
    unpack, now = struct.Struct("<q").unpack_from, time.monotonic_ns
    samples = [0] * n
    barrier.wait()
    for i in range(n):
        m = recv()
        samples[i] = now() - unpack(m)[0]
        send(reply)
    s = sorted(samples[WARMUP:])
    results.put((s[len(s) // 2], s[len(s) * 99 // 100]))
    close()


def run_pair(ctx, kind, fa, fb, n, size, wait, pingpong):
    spec, cleanup = make_spec(ctx, kind, pingpong)
    try:
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=f, args=(kind, spec, n, size, wait, barrier, results)) for f in (fa, fb)]
        for p in procs:
            p.start()
        got = [results.get(timeout=600) for _ in range(1 if pingpong else 2)]
        for p in procs:
            p.join(timeout=600)
            if p.exitcode != 0:
                raise RuntimeError(f"{kind}: a benchmark process failed")
    finally:
        cleanup()
    if pingpong:
        return got[0]
    t = dict(got)
    return n / (t["t1"] - t["t0"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64, help="message size in bytes (at least 8)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each measurement")
    ap.add_argument("--wait", default="adaptive", choices=["spin", "block", "adaptive"], help="shmq's wait")
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages (a smoke test)")
    ap.add_argument("--transports", default="shmq,shmq batch,mp.Queue,mp.Pipe,unix socket",
                    help="comma-separated subset (mp.Queue is the baseline and always runs)")
    a = ap.parse_args()
    scale = 10 if a.quick else 1
    ctx = mp.get_context("spawn")
    # Messages per throughput run: about a second each.
    counts = {"shmq": 1_000_000, "shmq batch": 3_000_000, "mp.Queue": 200_000, "mp.Pipe": 500_000,
              "unix socket": 500_000}
    chosen = set(a.transports.split(",")) | {"mp.Queue"}
    unknown = chosen - set(counts)
    if unknown:
        ap.error(f"unknown transports: {', '.join(sorted(unknown))}")
    counts = {k: v for k, v in counts.items() if k in chosen}
    lat_n = 20_000 // scale + WARMUP
    rows = {}
    for kind in counts:
        n = counts[kind] // scale
        rates = [run_pair(ctx, kind, thr_tx, thr_rx, n, a.size, a.wait, False) for _ in range(a.repeat)]
        lats = []
        if kind != "shmq batch":
            lats = [run_pair(ctx, kind, lat_a, lat_b, lat_n, a.size, a.wait, True) for _ in range(a.repeat)]
        rows[kind] = (statistics.median(rates), lats)
        print(f"{kind}: {statistics.median(rates):,.0f} msg/s {sorted(round(r) for r in rates)}", file=sys.stderr)

    base_rate = rows["mp.Queue"][0]
    base_p50 = statistics.median(l[0] for l in rows["mp.Queue"][1])
    print(f"\n{a.size}-byte messages, {a.repeat} runs each, medians; shmq wait={a.wait}; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| transport | throughput (msg/s) | vs mp.Queue | one-way p50 | one-way p99 | p50 vs mp.Queue |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, (rate, lats) in rows.items():
        if lats:
            p50 = statistics.median(l[0] for l in lats)
            p99 = statistics.median(l[1] for l in lats)
            lat = f"{p50 / 1000:.1f} µs | {p99 / 1000:.1f} µs | {base_p50 / p50:.1f}× lower"
        else:
            lat = "– | – | –"
        print(f"| {kind} | {rate:,.0f} | {rate / base_rate:.1f}× | {lat} |")


if __name__ == "__main__":
    main()
