"""shmq: lock-free message queues in shared memory between processes on one Linux host.

A queue is a named ring of variable-length messages in POSIX shared memory
(``/dev/shm/shmq.NAME``), FIFO: producers append, a consumer takes. Python, Rust and C
processes share the same queues.

>>> import shmq
>>> _ = shmq.create("doc-orders", capacity=1 << 16)
>>> with shmq.Producer("doc-orders") as tx:
...     msg_id = tx.send(b"order 42")   # send returns the message's id
>>> with shmq.Consumer("doc-orders") as rx:
...     rx.recv(timeout=1.0)
b'order 42'
>>> shmq.remove("doc-orders")

Blocking calls release the GIL and wake up for Ctrl-C (``KeyboardInterrupt``).

Durable queues (``create(..., durable=DIR)``) keep their messages in a log on disk too;
subscriptions with ``ack="explicit"`` deliver each message until a member acknowledges it
(``Consumer.recv_message``, ``ack``, ``nack``, ``reject``; ``dlq_name``, ``DeadLetter``);
``Reader`` replays a durable queue's log from its oldest message, an id, or now, and
``Producer.send_nowait``/``wait_durable`` pipeline sends under ``fsync="always"``.
"""

from ._errors import (
    AckExpired,
    Busy,
    Closed,
    Corrupt,
    Error,
    Exists,
    Full,
    Incompatible,
    InvalidArgument,
    InvalidName,
    Interrupted,
    Io,
    Lapped,
    Log,
    NoSpace,
    NotFound,
    Permission,
    Timeout,
    TooLarge,
)
from ._shmq import (
    DEFAULT_CAPACITY,
    DEFAULT_MAX_LOG_BYTES,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_PERMISSIONS,
    MAX_NAME_LEN,
    Consumer,
    DeadLetter,
    Message,
    MessageBuffer,
    Producer,
    Reader,
    Subscription,
    create,
    dlq_name,
    inspect,
    list_queues,
    remove,
)

__all__ = [
    "create", "remove", "inspect", "list_queues", "dlq_name", "Producer", "Consumer", "Reader",
    "Subscription", "Message", "DeadLetter", "MessageBuffer", "DEFAULT_CAPACITY", "DEFAULT_MAX_MESSAGE",
    "DEFAULT_PERMISSIONS", "DEFAULT_MAX_LOG_BYTES", "MAX_NAME_LEN",
    "Error", "Full", "Timeout", "TooLarge", "NotFound", "Exists", "InvalidArgument", "InvalidName",
    "Busy", "Permission", "Corrupt", "Incompatible", "Closed", "Interrupted", "Lapped", "Io",
    "Log", "NoSpace", "AckExpired",
]
