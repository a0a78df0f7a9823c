"""
The supervisor's one epoll set: which fds it waits on, who owns each, and the signal wake-up pipe.

One wait per turn (:meth:`Reactor.wait`), with the nearest deadline as its timeout, never a polling
interval. An fd is added when it appears and removed *before* it is closed: the kernel drops a closed
fd from an epoll set by itself, but the number is reused at once by the next descriptor opened (a new
child's pidfd, say), and a late ``unwatch`` of the old owner would then remove the newcomer. So every
owner unwatches first, then closes.

SIGTERM and SIGCHLD are turned into bytes on a non-blocking wake-up pipe (``signal.set_wakeup_fd``)
whose read end is in the set; the handlers do nothing else, so a signal only ever ends a wait. This
module knows fds and signals, not children or requests.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any

__all__ = ["MAX_WAIT", "Reactor", "Signals"]

MAX_WAIT = 86400.0
"""The longest single wait, in seconds. epoll_wait takes at most ~24.8 days (2**31 - 1 ms); a later
deadline (a shutdown or start timeout of months) is reached by waking once a day: a job resumes only
when its fds fired or its own deadline passed, so an early wake-up changes nothing."""


class Signals:
    """What the wake-up pipe said since the last read: a child died, a stop was asked for."""

    __slots__ = ("child_exited", "terminate")

    def __init__(self, data: bytes) -> None:
        self.child_exited = signal.SIGCHLD in data
        self.terminate = signal.SIGTERM in data


def _note_signal(signum: int, frame: FrameType | None) -> None:
    """Signal handler: nothing to do here; the byte in the wake-up pipe wakes the loop."""


class Reactor:
    """
    The epoll set of one supervisor process, and the owner of every fd in it.

    Must be built on the process's main thread (it installs signal handlers). Not thread-safe: the
    supervisor process has one thread.
    """

    def __init__(self) -> None:
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, _note_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.poller = select.epoll()
        self.watched: dict[int, Any] = {}
        self.owners: dict[int, Any] = {}
        self.watch(self.wakeup_r, self)

    def watch(self, obj: Any, owner: Any = None) -> int:
        """Add *obj* (an fd or an object with ``fileno()``) to the set, owned by *owner*; return its fd."""
        fd = obj if isinstance(obj, int) else obj.fileno()
        self.poller.register(fd, select.EPOLLIN)
        self.watched[fd] = obj
        self.owners[fd] = owner
        return int(fd)

    def unwatch(self, obj: Any) -> None:
        """Remove *obj* from the set, if it is there. Call it before closing the fd (see above)."""
        fd = obj if isinstance(obj, int) else obj.fileno()
        self.owners.pop(fd, None)
        if self.watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.poller.unregister(fd)

    def wait(self, deadlines: Iterable[float]) -> tuple[set[Any], list[int]]:
        """
        Block until an fd of the set is readable or the nearest of *deadlines* (monotonic) passes.

        Returns the ready objects (as given to :meth:`watch`) and their fds, in the kernel's order;
        both empty when a deadline passed first.
        """
        nearest = min(deadlines, default=None)
        timeout = -1.0 if nearest is None else min(MAX_WAIT, max(0.0, nearest - time.monotonic()))
        events = self.poller.poll(timeout)
        ready = {self.watched[fd] for fd, _ in events if fd in self.watched}
        return ready, [fd for fd, _ in events]

    def read_signals(self) -> Signals:
        """Empty the wake-up pipe; say which signals came."""
        try:
            data = os.read(self.wakeup_r, 512)
        except BlockingIOError:
            data = b""
        return Signals(data)

    def close(self) -> None:
        """Close the epoll set (the wake-up pipe stays: a signal may still come before exit)."""
        self.poller.close()
