"""Ctrl-C while a call is blocked: a child process blocked in recv or send gets SIGINT and
raises KeyboardInterrupt. The time from the signal to the exception is printed (run pytest
with -s to see it); it is not asserted (CI machines are noisy), the README gives figures."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

import shmq

from conftest import python_child

CHILD = r"""
import sys, time, shmq
queue, call, wait = sys.argv[1:4]
if call == "recv":
    h = shmq.Consumer(queue, wait=wait)
    block = lambda: h.recv()
elif call == "recv_timeout":
    h = shmq.Consumer(queue, wait=wait)
    block = lambda: h.recv(timeout=3600)
elif call == "recv_view":
    h = shmq.Consumer(queue, wait=wait)
    block = lambda: h.recv_view()
elif call == "recv_message":  # a member with explicit acks: it waits in recv_timeout, not peek
    h = shmq.Consumer(queue, wait=wait, subscription="workers")
    block = lambda: h.recv_message()
else:
    h = shmq.Producer(queue, wait=wait)
    while h.try_send(b"x" * 100):
        pass
    block = lambda: h.send(b"x" * 100) if call == "send" else h.send_batch([b"x"] * 10)
print("ready", flush=True)
try:
    block()
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
    h.close()
"""


@pytest.mark.parametrize("call", ["recv", "recv_timeout", "recv_view", "send", "send_batch"])
@pytest.mark.parametrize("wait", ["block", "adaptive", "spin"])
def test_ctrl_c_interrupts_a_blocked_call_with_keyboard_interrupt(qname, call, wait):
    shmq.create(qname, capacity=1 << 10, max_message=200)
    interrupt_child(qname, call, wait)


@pytest.mark.parametrize("wait", ["block", "adaptive", "spin"])
def test_ctrl_c_interrupts_a_member_with_explicit_acks_waiting_for_a_message(qname, wait, tmp_path):
    shmq.create(qname, capacity=1 << 10, max_message=200, durable=tmp_path / "log")
    shmq.Subscription.create(qname, "workers", ack="explicit")
    try:
        interrupt_child(qname, "recv_message", wait)
    finally:
        shmq.remove(shmq.dlq_name(qname, "workers"))
        shmq.remove(qname)
        shutil.rmtree(tmp_path / "log")


def interrupt_child(qname, call, wait):
    child = python_child(CHILD, qname, call, wait)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # well inside the blocking call
        sent_at = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    word, caught_at = out.split()
    assert word == "interrupted"
    print(f"\n{call}/{wait}: KeyboardInterrupt {1000 * (float(caught_at) - sent_at):.1f} ms after SIGINT")
    assert shmq.inspect(qname)["participants"] == []
