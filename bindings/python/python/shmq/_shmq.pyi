"""Type stubs of the native module shmq._shmq (re-exported by ``shmq``)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Iterable, Iterator, Literal, Optional, Union

from typing_extensions import Buffer, Self, final

__all__ = [
    "create", "remove", "inspect", "list_queues", "dlq_name", "Producer", "Consumer", "Reader", "Subscription",
    "Message", "DeadLetter", "MessageBuffer",
    "DEFAULT_CAPACITY", "DEFAULT_MAX_MESSAGE", "DEFAULT_PERMISSIONS", "DEFAULT_MAX_LOG_BYTES", "MAX_NAME_LEN",
]

_WaitMode = Literal["spin", "block", "adaptive"]
_QueueMode = Literal["spsc", "mpsc"]
_Fsync = Union[Literal["never", "always"], float]
_AckMode = Literal["auto", "explicit"]

DEFAULT_CAPACITY: int
DEFAULT_MAX_MESSAGE: int
DEFAULT_PERMISSIONS: int
MAX_NAME_LEN: int
DEFAULT_MAX_LOG_BYTES: int

def create(
    name: str,
    capacity: int = 1048576,
    max_message: Optional[int] = None,
    mode: _QueueMode = "mpsc",
    permissions: int = 0o600,
    exist_ok: bool = False,
    durable: Optional[Union[str, os.PathLike[str]]] = None,
    fsync: _Fsync = "never",
    max_log_bytes: Optional[int] = None,
    retain: Optional[int] = None,
) -> dict[str, Any]:
    """Creates queue `name` (durable: with a log in directory `durable`, restored from it
    when created again); returns its configuration (name, mode, capacity, max_message,
    permissions, creator_pid, created_unix_ns, durable)."""

def remove(name: str) -> None:
    """Removes queue `name` (open handles keep working; consumers drain, then get Closed)."""

def list_queues() -> list[str]:
    """The names of the shmq queues on this host."""

def inspect(name: str) -> dict[str, Any]:
    """A snapshot of queue `name`: configuration, positions, counters, participants,
    subscriptions."""

def dlq_name(queue: str, subscription: str) -> str:
    """The name of the dead-letter queue of `subscription` of `queue`."""

@final
class Producer:
    """A producer of queue `name`; a context manager."""

    def __new__(cls, name: str, wait: _WaitMode = "adaptive") -> Self: ...
    def send(self, data: Buffer, timeout: Optional[float] = None) -> int:
        """Sends one message and returns its id; waits while full (None: forever, 0: raise
        Full, t: Timeout)."""
    def send_nowait(self, data: Buffer, timeout: Optional[float] = None) -> int:
        """Sends one message and returns its id without waiting for its sync (fsync="always");
        waits for room like send."""
    def wait_durable(self, id: int, timeout: Optional[float] = None) -> None:
        """Waits until message `id` and those before it are on disk (None: forever, t:
        Timeout)."""
    def try_send(self, data: Buffer) -> bool:
        """Sends if there is room now; False if the queue is full."""
    def send_batch(self, messages: Iterable[Union[bytes, bytearray]], timeout: Optional[float] = None) -> None:
        """Sends every message in order; `timeout` bounds the whole call."""
    def interrupt(self) -> None:
        """Makes a waiting (or the next waiting) send raise Interrupted."""
    def close(self) -> None:
        """Detaches from the queue."""
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def wait(self) -> _WaitMode: ...
    @wait.setter
    def wait(self, wait: _WaitMode) -> None: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def __len__(self) -> int: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Consumer:
    """The consumer of queue `name` (or a member of `subscription`); a context manager and
    an iterator of messages (ending when the queue is removed and drained)."""

    def __new__(cls, name: str, wait: _WaitMode = "adaptive", subscription: Optional[str] = None) -> Self: ...
    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message; waits while empty (None: forever, t: at most t s, 0: no wait)."""
    def try_recv(self) -> Optional[bytes]:
        """The next message if there is one now, else None."""
    def recv_view(self, timeout: Optional[float] = None) -> memoryview:
        """The next message without a copy, valid until the next call on this consumer."""
    def recv_batch(self, max: int = 64, timeout: Optional[float] = None) -> list[bytes]:
        """Up to `max` messages; waits for the first only."""
    def recv_message(self, timeout: Optional[float] = None) -> Message:
        """The next message with its id and delivery count; waits like recv."""
    def ack(self, id: int) -> None:
        """Acknowledges message `id` (explicit acks); AckExpired if it was taken away."""
    def nack(self, id: int, reason: str = "") -> None:
        """Gives message `id` back to be delivered again now."""
    def reject(self, id: int, reason: str = "") -> None:
        """Moves message `id` to the subscription's dead-letter queue now."""
    @property
    def in_flight(self) -> int:
        """Messages this member holds unacknowledged."""
    def interrupt(self) -> None:
        """Makes a waiting (or the next waiting) receive raise Interrupted."""
    def close(self) -> None:
        """Releases a pending view and detaches from the queue."""
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def subscription(self) -> str: ...
    @property
    def wait(self) -> _WaitMode: ...
    @wait.setter
    def wait(self, wait: _WaitMode) -> None: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Reader:
    """Replays durable queue `name`'s log from `start` ("oldest", "now" or a message id);
    a context manager and an iterator of messages (ending when the queue is removed and
    read)."""

    def __new__(cls, name: str, start: Union[Literal["oldest", "now"], int] = "oldest") -> Self: ...
    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message; waits at the end of the log (None: forever, t: at most t s, 0: no
        wait)."""
    def recv_message(self, timeout: Optional[float] = None) -> Message:
        """The next message with its id; waits like recv."""
    def close(self) -> None:
        """Closes the log."""
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Subscription:
    """Named subscriptions of a queue (fan-out; members of one share its messages)."""

    DEFAULT: str
    @staticmethod
    def create(
        queue: str,
        name: str,
        lag_limit: Optional[int] = None,
        ack: _AckMode = "auto",
        ack_wait: float = 30.0,
        max_in_flight: int = 256,
        max_deliveries: int = 5,
    ) -> None: ...
    @staticmethod
    def list(queue: str) -> list[dict[str, Any]]: ...
    @staticmethod
    def remove(queue: str, name: str) -> None: ...

@final
class MessageBuffer:
    """The exporter behind the memoryview of `Consumer.recv_view` (read-only)."""

@final
class Message:
    """A message from `Consumer.recv_message` or `Reader.recv_message`: its bytes, id and
    delivery count."""

    @property
    def data(self) -> bytes: ...
    @property
    def id(self) -> int: ...
    @property
    def delivery_count(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def __len__(self) -> int: ...

@final
class DeadLetter:
    """A message of a dead-letter queue, decoded."""

    @staticmethod
    def decode(data: Buffer) -> DeadLetter: ...
    @property
    def id(self) -> int: ...
    @property
    def deliveries(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def unix_ns(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
