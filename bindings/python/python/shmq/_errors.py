"""The exceptions of shmq: one class per error of the Rust library (``shmq::Error``), all
under :class:`Error`. ``code`` is the matching C code (``SHMQ_ERR_*`` in ``shmq.h``).

Where a built-in exception fits, the class derives from it too, so that generic handlers
work: ``Timeout`` is a ``TimeoutError``, ``InvalidArgument`` (and ``InvalidName``) and
``TooLarge`` are ``ValueError``\\ s, ``Permission`` is a ``PermissionError`` and ``Io`` is an
``OSError`` (with ``errno`` set).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "Error", "Full", "Timeout", "TooLarge", "NotFound", "Exists", "InvalidArgument", "InvalidName",
    "Busy", "Permission", "Corrupt", "Incompatible", "Closed", "Interrupted", "Lapped", "Io",
    "Log", "NoSpace", "AckExpired",
]


class Error(Exception):
    """Base class of every shmq error."""

    code: int = 0


class Full(Error):
    """The queue is full and the call was not allowed to wait (``timeout=0``)."""

    code = -1


class Timeout(Error, TimeoutError):
    """A positive timeout expired before the call could complete (or ``recv(timeout=0)``
    found the queue empty)."""

    code = -3


class TooLarge(Error, ValueError):
    """The message is larger than the queue's ``max_message``: ``len`` and ``max`` say by how
    much."""

    code = -4

    def __init__(self, message: str, len: Optional[int] = None, max: Optional[int] = None) -> None:
        super().__init__(message)
        self.len = len
        self.max = max


class NotFound(Error):
    """No queue (or subscription) of that name exists."""

    code = -6


class Exists(Error):
    """``create`` of a name that already exists."""

    code = -7


class InvalidArgument(Error, ValueError):
    """A bad option, length or call order."""

    code = -8


class InvalidName(InvalidArgument):
    """The name is not 1-200 bytes of ``[A-Za-z0-9._-]`` not starting with ``.`` (48 bytes
    for a subscription)."""

    code = -8


class Busy(Error):
    """The slot is held by a live process (a second consumer, a second producer on an SPSC
    queue), or the participant table is full."""

    code = -9


class Permission(Error, PermissionError):
    """The operating system refused access."""

    code = -10


class Corrupt(Error):
    """The shared memory failed validation: not a well-formed shmq queue, or another process
    wrote nonsense into its control words."""

    code = -11


class Incompatible(Error):
    """The queue was made by an incompatible layout version of shmq."""

    code = -12


class Closed(Error):
    """The queue (or subscription) was removed and, for a consumer, everything in it has
    been received."""

    code = -13


class Interrupted(Error):
    """A waiting call was woken by the handle's ``interrupt()``. Nothing was sent or
    received; the handle works as before."""

    code = -16


class Lapped(Error):
    """A subscription with a lag limit fell that far behind: ``missed_bytes`` bytes of
    messages were never delivered to it. The next receive goes on with the newest messages."""

    code = -17

    def __init__(self, message: str, missed_bytes: int = 0) -> None:
        super().__init__(message)
        self.missed_bytes = missed_bytes


class Log(Error):
    """A durable queue's log failed to write or sync. After a failed sync nothing is
    retried: the queue is read-only from then on."""

    code = -18


class NoSpace(Error):
    """The disk (or quota, or file-size limit) has no room for a durable queue's log.
    Nothing was written; the call may be retried once there is room."""

    code = -19


class AckExpired(Error):
    """An ``ack``, ``nack`` or ``reject`` came too late: message ``id`` had been taken away
    meanwhile (held past the subscription's ``ack_wait``, or its member was taken for dead),
    so it is delivered again (or was already). Nothing changed."""

    code = -20

    def __init__(self, message: str, id: Optional[int] = None) -> None:
        super().__init__(message)
        self.id = id


class Io(Error, OSError):
    """Any other operating-system error; ``errno`` is the OS error number."""

    code = -14

    def __init__(self, message: str, errno: Optional[int] = None) -> None:
        if errno is None:
            OSError.__init__(self, message)
        else:
            OSError.__init__(self, errno, message)
