"""Durable queues and explicit acknowledgements: a queue restored from its log, messages
delivered again after a worker process is killed, nack, reject and the dead-letter queue,
and a late ack."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import shmq

from conftest import python_child

# Every wait in these tests is bounded by this many seconds (a failure, not a hang).
WAIT = 10.0


@pytest.fixture
def durable(qname, tmp_path):
    """A queue name and a log directory on the real disk (tmp_path, not /dev/shm). Afterwards
    the queue, its dead-letter queues (`<queue>.<sub>.dlq`) and the logs are removed."""
    logdir = tmp_path / "log"
    yield qname, logdir
    for q in shmq.list_queues():
        if q == qname or q.startswith(qname + "."):
            try:
                shmq.remove(q)
            except shmq.NotFound:
                pass
    shutil.rmtree(logdir, ignore_errors=True)


def sub_info(queue: str, name: str) -> dict:
    (info,) = [s for s in shmq.Subscription.list(queue) if s["name"] == name]
    return info


def finish(child: subprocess.Popen) -> tuple[str, str]:
    """Waits (bounded) for a child that is done or killed; its output."""
    try:
        return child.communicate(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- options ----------------------------------------------------------------------------------


def test_create_durable_reports_its_log_options_and_keeps_the_rust_defaults(durable):
    name, logdir = durable
    cfg = shmq.create(name, capacity=1 << 16, durable=logdir)
    assert cfg["durable"] == {
        "dir": str(logdir), "fsync": "never", "max_log_bytes": shmq.DEFAULT_MAX_LOG_BYTES, "retain": None,
    }
    assert shmq.DEFAULT_MAX_LOG_BYTES == 8 << 30
    # A durable record carries 16 bytes before the message: the default max_message fits.
    assert cfg["max_message"] == (1 << 15) - 16
    assert shmq.inspect(name)["durable"] == cfg["durable"]
    assert logdir.is_dir()
    shmq.remove(name)
    cfg = shmq.create(name, capacity=1 << 16, durable=str(logdir), fsync=0.25, max_log_bytes=1 << 24,
                      retain=1 << 20, exist_ok=True)
    assert cfg["durable"] == {"dir": str(logdir), "fsync": 0.25, "max_log_bytes": 1 << 24, "retain": 1 << 20}
    assert shmq.create(f"{name}-volatile", capacity=1 << 16)["durable"] is None
    shmq.remove(f"{name}-volatile")


@pytest.mark.parametrize("fsync", ["sometimes", "", 0, -1.0, float("nan"), True])
def test_a_bad_fsync_raises_invalid_argument(durable, fsync):
    name, logdir = durable
    with pytest.raises(shmq.InvalidArgument):
        shmq.create(name, capacity=1 << 16, durable=logdir, fsync=fsync)


def test_log_options_without_durable_raise_invalid_argument(qname):
    for kw in ({"fsync": "always"}, {"fsync": 1.0}, {"max_log_bytes": 1 << 30}, {"retain": 0}):
        with pytest.raises(shmq.InvalidArgument):
            shmq.create(qname, capacity=1 << 16, **kw)
    with pytest.raises(TypeError):
        shmq.create(qname, capacity=1 << 16, durable="/tmp/x", fsync=[1])  # type: ignore[arg-type]
    assert qname not in shmq.list_queues()


def test_explicit_ack_options_are_validated(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    for kw in ({"ack": "sometimes"}, {"ack": "explicit", "ack_wait": -1.0}, {"ack": "explicit", "ack_wait": 0.0},
               {"ack": "explicit", "max_in_flight": 0}, {"ack": "explicit", "max_in_flight": 1025},
               {"ack": "explicit", "max_deliveries": 0}, {"ack": "explicit", "lag_limit": 1024}):
        with pytest.raises(shmq.InvalidArgument):
            shmq.Subscription.create(name, "workers", **kw)
    shmq.Subscription.create(name, "workers", ack="explicit")
    shmq.Subscription.create(name, "workers", ack="explicit", ack_wait=30.0, max_in_flight=256, max_deliveries=5)
    with pytest.raises(shmq.InvalidArgument):  # exists with other options
        shmq.Subscription.create(name, "workers", ack="explicit", max_deliveries=3)
    with pytest.raises(shmq.InvalidArgument):  # the default subscription acknowledges by receiving
        shmq.Subscription.create(name, "default", ack="explicit")
    assert shmq.dlq_name(name, "workers") == f"{name}.workers.dlq"
    assert shmq.dlq_name(name, "workers") in shmq.list_queues()


def test_explicit_acks_need_a_durable_queue(queue):
    with pytest.raises(shmq.InvalidArgument):
        shmq.Subscription.create(queue, "workers", ack="explicit")


def test_subscription_list_reports_the_ack_fields(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    shmq.Subscription.create(name, "billing")
    shmq.Subscription.create(name, "workers", ack="explicit")
    zero = {"in_flight": 0, "acked": 0, "nacked": 0, "expired": 0, "dead_lettered": 0, "oldest_unacked_unix_ns": None}
    for sub, ack in (("default", "auto"), ("billing", "auto"), ("workers", "explicit")):
        info = sub_info(name, sub)
        assert info["ack"] == ack
        assert {k: info[k] for k in zero} == zero


def test_an_auto_member_cannot_ack_and_an_explicit_one_cannot_peek_or_batch(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    shmq.Subscription.create(name, "workers", ack="explicit")
    with shmq.Producer(name) as tx, shmq.Consumer(name) as rx, \
            shmq.Consumer(name, subscription="workers") as w:
        msg_id = tx.send(b"one")
        m = rx.recv_message(timeout=WAIT)
        assert (m.data, m.id, m.delivery_count, bytes(m), len(m)) == (b"one", msg_id, 1, b"one", 3)
        with pytest.raises(shmq.InvalidArgument):
            rx.ack(m.id)
        assert rx.in_flight == 0
        with pytest.raises(shmq.InvalidArgument):
            w.recv_view(timeout=0)
        with pytest.raises(shmq.InvalidArgument):
            w.recv_batch(timeout=0)
        assert w.recv(timeout=WAIT) == b"one"  # recv works too: the message is in flight
        assert w.in_flight == 1
        with pytest.raises(shmq.InvalidArgument):  # not held
            w.ack(msg_id + 1)
        w.ack(msg_id)
        assert w.in_flight == 0


def test_a_member_with_explicit_acks_waits_for_a_message_without_the_gil(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    shmq.Subscription.create(name, "workers", ack="explicit")
    got = []
    with shmq.Consumer(name, subscription="workers") as rx, shmq.Producer(name) as tx:
        t = threading.Thread(target=lambda: got.append(rx.recv_message(timeout=WAIT)))
        t.start()
        time.sleep(0.2)  # lets the thread start waiting (the test is weaker, not wrong, if not)
        # Runs only if the waiting thread released the GIL (else it gets Timeout first).
        msg_id = tx.send(b"job")
        t.join(timeout=2 * WAIT)
        assert [(m.id, m.data) for m in got] == [(msg_id, b"job")]
        rx.ack(msg_id)


# --- (a) a durable queue restored from its log ------------------------------------------------

PRODUCER = r"""
import sys, shmq
with shmq.Producer(sys.argv[1]) as tx:
    for i in range(int(sys.argv[2])):
        print(tx.send(b"order %d" % i, timeout=10), flush=True)
"""


def test_a_durable_queue_is_restored_from_its_log_after_its_shared_memory_is_gone(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    child = python_child(PRODUCER, name, "5")
    out, err = finish(child)
    assert child.returncode == 0, err
    ids = [int(x) for x in out.split()]
    assert len(ids) == 5 and ids == sorted(set(ids))
    shmq.remove(name)  # the shared-memory object goes, as at a host restart; the log stays
    assert name not in shmq.list_queues()
    assert any(logdir.iterdir())
    # Created again with the same directory: restored from the log.
    cfg = shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always", exist_ok=True)
    assert cfg["durable"]["fsync"] == "always"
    with shmq.Consumer(name) as rx:
        got = [rx.recv_message(timeout=WAIT) for _ in range(5)]
        assert [(m.data, m.id) for m in got] == [(b"order %d" % i, ids[i]) for i in range(5)]
        with pytest.raises(shmq.Timeout):
            rx.recv(timeout=0)
    with shmq.Producer(name) as tx:
        assert tx.send(b"after", timeout=WAIT) > ids[-1]  # ids go on above every id handed out
        assert tx.try_send(b"after 2")
        tx.send_batch([b"after 3", b"after 4"], timeout=WAIT)
    with shmq.Consumer(name) as rx:
        assert [rx.recv(timeout=WAIT) for _ in range(4)] == [b"after", b"after 2", b"after 3", b"after 4"]


def test_a_view_of_a_message_read_from_the_log_outlives_its_consumer(durable):
    """A consumer more than a ring behind reads the log files: the message is in the
    consumer's own buffer, not in shared memory, and its next call (or its end) reuses or
    frees that buffer. A view (and a slice of it, which `close()` does not release) must
    still read the message: it is copied. (Before, a slice read freed memory: garbage, or a
    crash at a few MB.)"""
    import gc

    name, logdir = durable
    size = 1 << 20
    shmq.create(name, capacity=1 << 22, max_message=size, durable=logdir)
    with shmq.Producer(name) as tx:
        for i in range(8):  # twice the ring: the consumer is detached and reads the log
            tx.send(bytes([i]) * size, timeout=WAIT)
    rx = shmq.Consumer(name)
    views = []
    for i in range(2):
        v = rx.recv_view(timeout=WAIT)
        views.append((i, v[0:size]))  # a slice: a memoryview of its own
    rx.close()
    del rx, v
    gc.collect()
    for i, s in views:
        assert len(s) == size and s[0] == i and s[size - 1] == i and bytes(s) == bytes([i]) * size


# --- (b) a worker killed holding messages: they are delivered again ---------------------------

WORKER = r"""
import sys, shmq
rx = shmq.Consumer(sys.argv[1], subscription="workers")
for _ in range(int(sys.argv[2])):
    m = rx.recv_message(timeout=10)
    print(m.id, m.delivery_count, m.data.decode(), flush=True)
print("holding", flush=True)
sys.stdin.read()  # holds them unacknowledged until killed (or the parent closes stdin)
"""


def test_messages_a_killed_worker_held_unacked_are_delivered_again_and_acked_here(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    # ack_wait far longer than the waits below: only the worker's death brings them back.
    shmq.Subscription.create(name, "workers", ack="explicit", ack_wait=600.0)
    with shmq.Producer(name) as tx:
        sent = {tx.send(b"job %d" % i): b"job %d" % i for i in range(3)}
    worker = python_child(WORKER, name, "3", stdin=subprocess.PIPE)
    try:
        lines = [worker.stdout.readline().rstrip("\n").split(maxsplit=2) for _ in range(4)]  # bounded: recv(timeout=10)
        assert lines[3] == ["holding"], (lines, worker.stderr.read() if worker.poll() is not None else "")
        held = {int(i): (int(c), d.encode()) for i, c, d in lines[:3]}
        assert held == {i: (1, d) for i, d in sent.items()}
        assert sub_info(name, "workers")["in_flight"] == 3
        assert sub_info(name, "workers")["oldest_unacked_unix_ns"] is not None
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        finish(worker)
    assert worker.returncode == -signal.SIGKILL
    with shmq.Consumer(name, subscription="workers") as rx:
        again = [rx.recv_message(timeout=WAIT) for _ in range(3)]
        assert {m.id: (m.delivery_count, m.data) for m in again} == {i: (2, d) for i, d in sent.items()}
        assert rx.in_flight == 3
        for m in again:
            rx.ack(m.id)
        assert rx.in_flight == 0
        with pytest.raises(shmq.Timeout):  # acknowledged: never delivered again
            rx.recv(timeout=0.1)
    info = sub_info(name, "workers")
    assert (info["in_flight"], info["acked"], info["oldest_unacked_unix_ns"]) == (0, 3, None)
    assert info["redelivered"] >= 3


# --- (c) nack, then reject: the dead-letter queue ---------------------------------------------


def test_a_nacked_message_comes_back_and_a_rejected_one_lands_in_the_dead_letter_queue(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    shmq.Subscription.create(name, "workers", ack="explicit")
    with shmq.Producer(name) as tx:
        a, b = tx.send(b"resize image 1"), tx.send(b"resize image 2")
    with shmq.Consumer(name, subscription="workers") as rx:
        m = rx.recv_message(timeout=WAIT)
        assert (m.data, m.id, m.delivery_count) == (b"resize image 1", a, 1)
        rx.nack(m.id, "try again")
        m = rx.recv_message(timeout=WAIT)  # before the newer message
        assert (m.data, m.id, m.delivery_count) == (b"resize image 1", a, 2)
        rx.reject(m.id, "image 1 is corrupt")
        m = rx.recv_message(timeout=WAIT)
        assert (m.data, m.id, m.delivery_count) == (b"resize image 2", b, 1)
        rx.ack(m.id)
        assert rx.in_flight == 0
        with pytest.raises(shmq.Timeout):
            rx.recv(timeout=0.1)
    info = sub_info(name, "workers")
    assert (info["acked"], info["nacked"], info["dead_lettered"], info["in_flight"]) == (1, 1, 1, 0)
    with shmq.Consumer(shmq.dlq_name(name, "workers")) as dlq:
        dead = shmq.DeadLetter.decode(dlq.recv(timeout=WAIT))
        assert (dead.id, dead.deliveries, dead.reason, dead.payload) == (a, 2, "image 1 is corrupt", b"resize image 1")
        assert dead.unix_ns > 0
        with pytest.raises(shmq.Timeout):
            dlq.recv(timeout=0)
    with pytest.raises(shmq.Corrupt):
        shmq.DeadLetter.decode(b"not a dead letter")


# --- (d) a late ack -------------------------------------------------------------------------


def test_an_ack_after_ack_wait_raises_ack_expired(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir)
    shmq.Subscription.create(name, "workers", ack="explicit", ack_wait=0.2)
    with shmq.Producer(name) as tx:
        msg_id = tx.send(b"slow job")
    with shmq.Consumer(name, subscription="workers") as slow, \
            shmq.Consumer(name, subscription="workers") as other:
        m = slow.recv_message(timeout=WAIT)
        assert (m.id, m.delivery_count) == (msg_id, 1)
        # Held past ack_wait: released and delivered again, here to the other member.
        again = other.recv_message(timeout=WAIT)
        assert (again.id, again.delivery_count, again.data) == (msg_id, 2, b"slow job")
        with pytest.raises(shmq.AckExpired) as e:
            slow.ack(m.id)
        assert e.value.id == msg_id and e.value.code == -20 and isinstance(e.value, shmq.Error)
        other.ack(again.id)
        assert other.in_flight == 0
    info = sub_info(name, "workers")
    assert info["expired"] >= 1 and info["acked"] == 1 and info["in_flight"] == 0


# --- (e) pipelined sends: send_nowait and wait_durable ----------------------------------------

CONSUMER = r"""
import sys, shmq
with shmq.Consumer(sys.argv[1]) as rx:
    for _ in range(int(sys.argv[2])):
        m = rx.recv_message(timeout=10)
        print(m.id, m.data.decode(), flush=True)
"""


def test_send_nowait_pipelines_sends_and_a_consumer_in_another_process_gets_them_in_order(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    child = python_child(CONSUMER, name, "20")
    with shmq.Producer(name) as tx:
        ids = [tx.send_nowait(b"order %d" % i, timeout=WAIT) for i in range(20)]
        assert ids == sorted(set(ids))
        tx.wait_durable(ids[-1], timeout=WAIT)
        tx.wait_durable(ids[0], timeout=0)  # on disk already: no wait needed
    out, err = finish(child)
    assert child.returncode == 0, err
    got = [line.split(maxsplit=1) for line in out.splitlines()]
    assert [(int(i), d) for i, d in got] == [(ids[i], "order %d" % i) for i in range(20)]


def test_wait_durable_for_an_id_not_sent_yet_times_out(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    with shmq.Producer(name) as tx:
        t0 = time.monotonic()
        with pytest.raises(shmq.Timeout):  # nothing sent yet: it cannot be on disk
            tx.wait_durable(0, timeout=0.1)
        assert 0.09 <= time.monotonic() - t0 < WAIT
        msg_id = tx.send_nowait(b"one")
        tx.wait_durable(msg_id, timeout=WAIT)
        t0 = time.monotonic()
        with pytest.raises(shmq.Timeout):
            tx.wait_durable(1 << 40, timeout=0.1)
        assert 0.09 <= time.monotonic() - t0 < WAIT
        with pytest.raises(TypeError):
            tx.send_nowait("text")  # type: ignore[arg-type]


def test_send_nowait_waits_for_room_like_send(queue):
    with shmq.Producer(queue) as tx:
        sent = []
        with pytest.raises(shmq.Full):
            for _ in range(1000):
                sent.append(tx.send_nowait(b"x" * 1000, timeout=0))
        assert sent and sent == sorted(sent)
        t0 = time.monotonic()
        with pytest.raises(shmq.Timeout):
            tx.send_nowait(b"x" * 1000, timeout=0.05)
        assert 0.04 <= time.monotonic() - t0 < WAIT


def test_on_a_volatile_queue_send_nowait_is_send_and_wait_durable_returns_at_once(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        a, b = tx.send_nowait(b"one"), tx.send_nowait(bytearray(b"two"))
        assert a < b
        tx.wait_durable(b, timeout=0)
        tx.wait_durable(1 << 40)  # no log: nothing to wait for
        assert [(m.id, m.data) for m in (rx.recv_message(timeout=WAIT) for _ in range(2))] == [(a, b"one"), (b, b"two")]


def test_wait_durable_waits_without_the_gil(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    errors = []
    with shmq.Producer(name) as tx:
        ids = [tx.send_nowait(b"job %d" % i) for i in range(100)]

        def wait():
            try:
                tx.wait_durable(ids[-1], timeout=WAIT)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        t = threading.Thread(target=wait)
        t.start()
        t.join(timeout=2 * WAIT)
        assert not t.is_alive() and errors == []
    with shmq.Reader(name) as r:  # readers see what is synced: all of it
        assert [r.recv_message(timeout=WAIT).id for _ in range(100)] == ids


# --- (f) replay: Reader ---------------------------------------------------------------------


def test_a_reader_replays_what_a_consumer_already_consumed(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    with shmq.Producer(name) as tx, shmq.Consumer(name) as rx:
        ids = [tx.send(b"order %d" % i) for i in range(5)]
        assert [rx.recv(timeout=WAIT) for _ in range(5)] == [b"order %d" % i for i in range(5)]
        with shmq.Reader(name) as r:  # start="oldest"
            got = [r.recv_message(timeout=WAIT) for _ in range(5)]
            assert [(m.id, m.data, m.delivery_count) for m in got] == [(ids[i], b"order %d" % i, 1) for i in range(5)]
            with pytest.raises(shmq.Timeout):  # the end of the log
                r.recv(timeout=0)
            t0 = time.monotonic()
            with pytest.raises(shmq.Timeout):
                r.recv_message(timeout=0.1)
            assert 0.09 <= time.monotonic() - t0 < WAIT
        with shmq.Reader(name, start=ids[2]) as r:
            assert [r.recv_message(timeout=WAIT).id for _ in range(3)] == ids[2:]
        assert shmq.Reader(name, "oldest").recv(timeout=WAIT) == b"order 0"
        with pytest.raises(shmq.Timeout):  # the reader took nothing: the consumer has nothing new
            rx.recv(timeout=0)


def test_a_reader_from_now_sees_only_later_messages_and_ends_when_the_queue_is_removed(durable):
    name, logdir = durable
    shmq.create(name, capacity=1 << 16, durable=logdir, fsync="always")
    with shmq.Producer(name) as tx:
        tx.send(b"before")
        r = shmq.Reader(name, start="now")
        with pytest.raises(shmq.Timeout):
            r.recv(timeout=0.05)
        got = []
        # The reader waits with the GIL released: the send below runs while it waits.
        t = threading.Thread(target=lambda: got.append(r.recv_message(timeout=WAIT)))
        t.start()
        time.sleep(0.2)
        later = tx.send(b"later")
        t.join(timeout=2 * WAIT)
        assert [(m.id, m.data) for m in got] == [(later, b"later")]
        tx.send(b"last")
    shmq.remove(name)
    assert list(r) == [b"last"]  # iteration ends once the queue is removed and read
    with pytest.raises(shmq.Closed):
        r.recv(timeout=0.05)
    assert repr(r) == f'<shmq.Reader queue="{name}">' and r.name == name and not r.closed
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(ValueError):
        r.recv(timeout=0)


def test_a_reader_needs_a_durable_queue_and_a_valid_start(durable):
    name, logdir = durable
    shmq.create(f"{name}.volatile", capacity=1 << 16)  # removed by the fixture
    with pytest.raises(shmq.InvalidArgument):
        shmq.Reader(f"{name}.volatile")
    with pytest.raises(shmq.NotFound):
        shmq.Reader(f"{name}.missing")
    shmq.create(name, capacity=1 << 16, durable=logdir)
    for start in ("sometimes", "", -1, True):
        with pytest.raises(shmq.InvalidArgument):
            shmq.Reader(name, start)  # type: ignore[arg-type]
    for start in (1.5, [0]):
        with pytest.raises(TypeError):
            shmq.Reader(name, start)  # type: ignore[arg-type]
    shmq.Reader(name, 0).close()
