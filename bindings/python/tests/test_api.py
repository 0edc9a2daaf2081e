"""Every call of the package and every error it raises, in one process."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import shmq

from conftest import ROOT


# --- queues ---------------------------------------------------------------------------------


def test_create_returns_the_configuration_and_inspect_reports_it(qname):
    cfg = shmq.create(qname, capacity=1 << 14, max_message=1000, mode="spsc", permissions=0o640)
    assert cfg["name"] == qname
    assert (cfg["capacity"], cfg["max_message"], cfg["mode"], cfg["permissions"]) == (1 << 14, 1000, "spsc", 0o640)
    assert cfg["creator_pid"] == os.getpid()
    snap = shmq.inspect(qname)
    for k, v in cfg.items():
        assert snap[k] == v
    assert snap["messages"] == 0 and snap["closed"] is False and snap["participants"] == []
    assert [s["name"] for s in snap["subscriptions"]] == ["default"]
    assert qname in shmq.list_queues()


def test_max_message_defaults_to_64_kib_or_half_a_smaller_capacity(qname):
    assert shmq.create(qname, capacity=1 << 20)["max_message"] == shmq.DEFAULT_MAX_MESSAGE == 65536
    shmq.remove(qname)
    assert shmq.create(qname, capacity=1 << 12)["max_message"] == 2048


def test_create_an_existing_name_raises_exists_unless_exist_ok(queue):
    with pytest.raises(shmq.Exists):
        shmq.create(queue, capacity=1 << 16)
    assert shmq.create(queue, capacity=1 << 16, exist_ok=True)["name"] == queue


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "x" * 201, "sp ace"])
def test_a_bad_queue_name_raises_invalid_name(bad):
    with pytest.raises(shmq.InvalidName) as e:
        shmq.create(bad)
    assert isinstance(e.value, shmq.InvalidArgument) and isinstance(e.value, ValueError)


def test_bad_options_raise_invalid_argument(qname):
    with pytest.raises(shmq.InvalidArgument):
        shmq.create(qname, capacity=3000)
    with pytest.raises(shmq.InvalidArgument):
        shmq.create(qname, capacity=1 << 12, max_message=1 << 12)
    with pytest.raises(shmq.InvalidArgument):
        shmq.create(qname, mode="fifo")
    with pytest.raises(shmq.InvalidArgument):
        shmq.Producer("whatever", wait="sometimes")
    assert qname not in shmq.list_queues()


def test_remove_and_inspect_of_a_missing_queue_raise_not_found(qname):
    with pytest.raises(shmq.NotFound):
        shmq.remove(qname)
    with pytest.raises(shmq.NotFound):
        shmq.inspect(qname)
    with pytest.raises(shmq.NotFound):
        shmq.Producer(qname)
    with pytest.raises(shmq.NotFound):
        shmq.Consumer(qname)


def test_a_segment_that_is_not_a_queue_raises_corrupt_or_incompatible(qname):
    path = Path("/dev/shm") / f"shmq.{qname}"
    path.write_bytes(b"\xff" * 8192)
    try:
        with pytest.raises((shmq.Corrupt, shmq.Incompatible)):
            shmq.Consumer(qname)
        with pytest.raises((shmq.Corrupt, shmq.Incompatible)):
            shmq.inspect(qname)
    finally:
        path.unlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
def test_a_queue_of_another_user_raises_permission(queue):
    code = (
        "import os, shmq\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    shmq.Producer(%r)\nexcept shmq.Permission as e:\n"
        "    assert isinstance(e, PermissionError); print('Permission', e.code)\n" % queue
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "Permission -10", r.stderr


# --- send and receive -----------------------------------------------------------------------


def test_messages_arrive_in_order_as_bytes(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        for i in range(100):
            tx.send(b"msg %d" % i)
        assert len(rx) == 100 and len(tx) == 100
        assert [rx.recv() for _ in range(100)] == [b"msg %d" % i for i in range(100)]
        assert rx.try_recv() is None


def test_send_takes_any_bytes_like_object_and_an_empty_message(queue):
    import array

    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        for m in (b"", bytearray(b"ba"), memoryview(b"mv"), array.array("B", [1, 2])):
            tx.send(m)
        assert [rx.recv(timeout=1) for _ in range(4)] == [b"", b"ba", b"mv", b"\x01\x02"]
        with pytest.raises(TypeError):
            tx.send("text")


def test_a_message_over_max_message_raises_too_large_with_its_sizes(qname):
    shmq.create(qname, capacity=1 << 12, max_message=100)
    with shmq.Producer(qname) as tx:
        with pytest.raises(shmq.TooLarge) as e:
            tx.send(b"x" * 101)
        assert (e.value.len, e.value.max, e.value.code) == (101, 100, -4)
        tx.send(b"x" * 100)


def test_recv_with_a_timeout_on_an_empty_queue_raises_timeout_after_it(queue):
    with shmq.Consumer(queue) as rx:
        t = time.monotonic()
        with pytest.raises(shmq.Timeout) as e:
            rx.recv(timeout=0.2)
        assert time.monotonic() - t >= 0.2
        assert isinstance(e.value, TimeoutError)
        with pytest.raises(shmq.Timeout):
            rx.recv(timeout=0)
        with pytest.raises(shmq.Timeout):
            rx.recv_view(timeout=0.05)
        with pytest.raises(ValueError):
            rx.recv(timeout=float("nan"))


def test_a_full_queue_raises_full_without_waiting_and_timeout_after_waiting(qname):
    shmq.create(qname, capacity=1 << 10, max_message=200)
    with shmq.Producer(qname) as tx:
        n = 0
        while tx.try_send(b"y" * 100):
            n += 1
        assert n > 0
        with pytest.raises(shmq.Full):
            tx.send(b"z", timeout=0)
        t = time.monotonic()
        with pytest.raises(shmq.Timeout):
            tx.send(b"z", timeout=0.2)
        assert time.monotonic() - t >= 0.2
        with shmq.Consumer(qname) as rx:
            assert rx.recv() == b"y" * 100
        tx.send(b"z", timeout=1)


def test_a_blocked_send_completes_when_a_consumer_makes_room(qname):
    shmq.create(qname, capacity=1 << 10, max_message=200)
    with shmq.Producer(qname, wait="block") as tx, shmq.Consumer(qname) as rx:
        while tx.try_send(b"y" * 100):
            pass
        threading.Timer(0.1, rx.recv).start()
        tx.send(b"after", timeout=10)
        got = []
        while (m := rx.try_recv()) is not None:
            got.append(m)
        assert got[-1] == b"after"


@pytest.mark.parametrize("wait", ["spin", "block", "adaptive"])
def test_a_blocked_recv_returns_the_message_sent_by_another_thread(queue, wait):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue, wait=wait) as rx:
        assert rx.wait == wait
        threading.Timer(0.1, tx.send, args=(b"late",)).start()
        assert rx.recv(timeout=10) == b"late"


def test_send_batch_and_recv_batch(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        tx.send_batch([b"a", bytearray(b"bc"), b""])
        tx.send_batch(iter([b"d"]))
        tx.send_batch([])
        assert rx.recv_batch(max=2) == [b"a", b"bc"]
        assert rx.recv_batch() == [b"", b"d"]
        assert rx.recv_batch(timeout=0) == []
        assert rx.recv_batch(max=0) == []
        with pytest.raises(shmq.Timeout):
            rx.recv_batch(timeout=0.05)
        with pytest.raises(shmq.TooLarge):
            tx.send_batch([b"ok", b"x" * 40000])
        assert rx.try_recv() is None  # nothing of a refused batch was sent


def test_send_batch_waits_for_room_and_reports_how_many_were_sent_on_timeout(qname):
    shmq.create(qname, capacity=1 << 10, max_message=200)
    with shmq.Producer(qname) as tx, shmq.Consumer(qname) as rx:
        msgs = [b"%03d" % i + b"." * 97 for i in range(30)]
        with pytest.raises(shmq.Timeout) as e:
            tx.send_batch(msgs, timeout=0.1)
        sent = e.value.sent
        assert 0 < sent < 30
        with pytest.raises(shmq.Full) as e:
            tx.send_batch(msgs[sent:], timeout=0)
        assert e.value.sent == 0
        got = []
        t = threading.Thread(target=lambda: tx.send_batch(msgs[sent:], timeout=30))
        t.start()
        while len(got) < 30:
            got += rx.recv_batch(timeout=30)
        t.join()
        assert got == msgs


def test_recv_view_is_the_message_until_the_next_call_then_released(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        tx.send(b"first")
        tx.send(b"second")
        v = rx.recv_view()
        assert isinstance(v, memoryview) and v.readonly and bytes(v) == b"first" and v.nbytes == 5
        with pytest.raises(TypeError):
            v[0] = 1
        assert len(rx) == 2  # the viewed message is still in the queue
        assert rx.recv() == b"second"  # the next call took the viewed message first
        with pytest.raises(ValueError):
            bytes(v)
        tx.send(b"third")
        v = rx.recv_view(timeout=1)
        assert v.tobytes() == b"third"
        rx.close()
        with pytest.raises(ValueError):
            v.tobytes()
        assert shmq.inspect(queue)["messages"] == 0


def test_a_buffer_derived_from_a_view_keeps_the_memory_mapped_after_close(queue):
    with shmq.Producer(queue) as tx:
        tx.send(b"kept")
    rx = shmq.Consumer(queue)
    v = rx.recv_view()
    derived = memoryview(v.obj)  # a second export of the message's buffer
    rx.close()
    del rx
    gc.collect()
    assert len(derived) == 4
    derived.tobytes()  # reads mapped memory (whatever it holds now): no crash


def test_iterating_a_consumer_ends_when_the_queue_is_removed_and_drained(queue):
    with shmq.Producer(queue) as tx, shmq.Consumer(queue) as rx:
        tx.send_batch([b"1", b"2", b"3"])
        shmq.remove(queue)
        assert list(rx) == [b"1", b"2", b"3"]
        with pytest.raises(shmq.Closed):
            rx.recv()
        with pytest.raises(shmq.Closed):
            tx.send(b"4")


def test_a_removed_queue_wakes_a_blocked_recv_with_closed(queue):
    with shmq.Consumer(queue) as rx:
        threading.Timer(0.1, shmq.remove, args=(queue,)).start()
        with pytest.raises(shmq.Closed) as e:
            rx.recv(timeout=30)
        assert e.value.code == -13


def test_a_second_consumer_or_spsc_producer_raises_busy(qname):
    shmq.create(qname, capacity=1 << 12, mode="spsc")
    with shmq.Consumer(qname), shmq.Producer(qname):
        with pytest.raises(shmq.Busy):
            shmq.Consumer(qname)
        with pytest.raises(shmq.Busy):
            shmq.Producer(qname)
    with shmq.Consumer(qname), shmq.Producer(qname):
        pass  # the slots were freed on exit


def test_interrupt_makes_a_blocked_call_raise_interrupted(qname):
    shmq.create(qname, capacity=1 << 10, max_message=200)
    with shmq.Producer(qname) as tx, shmq.Consumer(qname) as rx:
        threading.Timer(0.1, rx.interrupt).start()
        with pytest.raises(shmq.Interrupted):
            rx.recv(timeout=30)
        while tx.try_send(b"y" * 100):
            pass
        threading.Timer(0.1, tx.interrupt).start()
        with pytest.raises(shmq.Interrupted):
            tx.send(b"y", timeout=30)
        assert rx.recv(timeout=1) == b"y" * 100  # both handles work as before


def test_a_handle_blocked_in_one_thread_refuses_another_thread(queue):
    outcome = []

    def blocked():
        try:
            rx.recv(timeout=30)
        except shmq.Interrupted as e:
            outcome.append(e)

    with shmq.Consumer(queue) as rx:
        t = threading.Thread(target=blocked)
        t.start()
        time.sleep(0.2)
        with pytest.raises(RuntimeError, match="another thread"):
            rx.try_recv()
        rx.interrupt()
        t.join()
    assert len(outcome) == 1


def test_close_is_idempotent_and_a_closed_handle_raises_value_error(queue):
    tx, rx = shmq.Producer(queue), shmq.Consumer(queue)
    assert not tx.closed and not rx.closed
    tx.close(), tx.close(), rx.close(), rx.close()
    assert tx.closed and rx.closed
    for call in (lambda: tx.send(b"x"), lambda: rx.recv(), lambda: len(rx), lambda: tx.config):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert shmq.inspect(queue)["participants"] == []


def test_handle_properties(queue):
    with shmq.Producer(queue, wait="spin") as tx, shmq.Consumer(queue) as rx:
        assert tx.name == rx.name == queue and rx.subscription == "default"
        assert tx.config["capacity"] == rx.config["capacity"] == 1 << 16
        assert tx.wait == "spin" and rx.wait == "adaptive"
        tx.wait = "block"
        rx.wait = "spin"
        assert (tx.wait, rx.wait) == ("block", "spin")
        with pytest.raises(shmq.InvalidArgument):
            rx.wait = "never"
        roles = sorted(p["role"] for p in shmq.inspect(queue)["participants"])
        assert roles == ["consumer", "producer"]
        assert queue in repr(tx) and queue in repr(rx)


# --- subscriptions --------------------------------------------------------------------------


def test_every_subscription_gets_every_message_and_members_share_one(queue):
    shmq.Subscription.create(queue, "billing")
    shmq.Subscription.create(queue, "billing")  # the same options: nothing to do
    shmq.Subscription.create(queue, "audit", lag_limit=4096)
    with pytest.raises(shmq.InvalidArgument):
        shmq.Subscription.create(queue, "billing", lag_limit=1024)
    assert [s["name"] for s in shmq.Subscription.list(queue)] == ["default", "billing", "audit"]
    with shmq.Consumer(queue, subscription="billing") as b1, shmq.Consumer(queue, subscription="billing") as b2, \
            shmq.Consumer(queue, subscription="audit") as audit, shmq.Consumer(queue) as default, \
            shmq.Producer(queue) as tx:
        assert b1.subscription == "billing"
        msgs = [b"m%d" % i for i in range(50)]
        tx.send_batch(msgs)
        assert [default.recv(timeout=5) for _ in msgs] == msgs
        assert [audit.recv(timeout=5) for _ in msgs] == msgs
        shared = []
        deadline = time.monotonic() + 30
        while len(shared) < 50 and time.monotonic() < deadline:
            for b in (b1, b2):
                m = b.try_recv()
                if m is not None:
                    shared.append(m)
        assert sorted(shared) == sorted(msgs)
        infos = {s["name"]: s for s in shmq.Subscription.list(queue)}
        assert infos["billing"]["received"]["messages"] + sum(
            m["counters"]["messages"] for m in infos["billing"]["members"]) >= 50
        assert infos["audit"]["lag_limit"] == 4096
    shmq.Subscription.remove(queue, "audit")
    assert [s["name"] for s in shmq.Subscription.list(queue)] == ["default", "billing"]


def test_subscription_errors(queue):
    with pytest.raises(shmq.NotFound):
        shmq.Consumer(queue, subscription="nobody")
    with pytest.raises(shmq.NotFound):
        shmq.Subscription.remove(queue, "nobody")
    with pytest.raises(shmq.InvalidName):
        shmq.Subscription.create(queue, "x" * 49)
    with pytest.raises(shmq.NotFound):
        shmq.Subscription.list(queue + "-missing")
    assert shmq.Subscription.DEFAULT == "default"


def test_a_removed_subscription_closes_its_members(queue):
    shmq.Subscription.create(queue, "gone")
    with shmq.Consumer(queue, subscription="gone") as m:
        threading.Timer(0.1, shmq.Subscription.remove, args=(queue, "gone")).start()
        with pytest.raises(shmq.Closed):
            m.recv(timeout=30)


def test_a_subscription_past_its_lag_limit_raises_lapped_then_goes_on(qname):
    shmq.create(qname, capacity=1 << 12, max_message=256)
    shmq.Subscription.create(qname, "slow", lag_limit=1024)
    with shmq.Consumer(qname, subscription="slow") as slow, shmq.Consumer(qname) as rx, \
            shmq.Producer(qname) as tx:
        for i in range(200):  # far more than the capacity; the default consumer keeps up
            tx.send(b"%04d" % i + b"." * 60, timeout=10)
            rx.recv(timeout=10)
        with pytest.raises(shmq.Lapped) as e:
            while True:
                slow.recv(timeout=10)
        assert e.value.missed_bytes > 0 and e.value.code == -17
        tx.send(b"after")
        got = None
        while got != b"after":
            got = slow.recv(timeout=10)


# --- errors ---------------------------------------------------------------------------------


def test_the_exception_codes_are_the_c_header_codes():
    header = (ROOT / "bindings/c/include/shmq.h").read_text()
    codes = {m[1]: int(m[2]) for m in re.finditer(r"#define SHMQ_ERR_(\w+) \((-?\d+)\)", header)}
    names = {
        "Full": "FULL", "Timeout": "TIMEOUT", "TooLarge": "TOO_LARGE", "NotFound": "NOT_FOUND",
        "Exists": "EXISTS", "InvalidArgument": "INVALID", "InvalidName": "INVALID", "Busy": "BUSY",
        "Permission": "PERMISSION", "Corrupt": "CORRUPT", "Incompatible": "INCOMPATIBLE",
        "Closed": "CLOSED", "Io": "IO", "Interrupted": "INTERRUPTED", "Lapped": "LAPPED",
        "Log": "LOG", "NoSpace": "NO_SPACE", "AckExpired": "ACK_EXPIRED",
    }
    for cls, c in names.items():
        exc = getattr(shmq, cls)
        assert issubclass(exc, shmq.Error)
        assert exc.code == codes[c], cls
    assert issubclass(shmq.Io, OSError) and issubclass(shmq.Permission, PermissionError)
    assert shmq.Io("reading", 5).errno == 5
    assert shmq.AckExpired("late", 4096).id == 4096


def test_the_package_docstring_example_runs():
    import doctest

    assert doctest.testmod(shmq).failed == 0


def test_a_member_receives_views_and_a_dropped_consumer_takes_its_viewed_message(queue):
    shmq.Subscription.create(queue, "views")
    with shmq.Producer(queue) as tx:
        m = shmq.Consumer(queue, subscription="views")
        tx.send_batch([b"v1", b"v2", b"v3"])
        assert bytes(m.recv_view(timeout=5)) == b"v1"
        assert m.recv(timeout=5) == b"v2"
        assert bytes(m.recv_view(timeout=5)) == b"v3"
        del m  # garbage-collected with a view pending: v3 counts as received
        gc.collect()
        with shmq.Consumer(queue, subscription="views") as again:
            assert again.try_recv() is None
        rx = shmq.Consumer(queue)
        view = rx.recv_view(timeout=5)
        assert bytes(view) == b"v1"
        del rx
        gc.collect()
        with pytest.raises(ValueError):  # released with its consumer, as by close()
            bytes(view)
        with shmq.Consumer(queue) as rx:
            assert rx.recv(timeout=5) == b"v2"
