"""
The supervisor's one epoll set: which fds it waits on, who owns each, and the signal wake-up pipe.

One wait per turn (:meth:`Reactor.wait`), with the nearest deadline as its timeout, never a polling
interval. An fd is added when it appears and removed *before* it is closed: the kernel drops a closed
fd from an epoll set by itself, but the number is reused at once by the next descriptor opened (a new
child's pidfd, say), and a late ``unwatch`` of the old owner would then remove the newcomer. So every
owner unwatches first, then closes.

SIGTERM and SIGCHLD are turned into bytes on a non-blocking wake-up pipe (``signal.set_wakeup_fd``)
whose read end is in the set; the handlers do nothing else, so a signal only ever ends a wait.
:class:`Timers` holds callbacks due at monotonic times (a restart's backoff): their nearest time is one
of the wait's deadlines, and the loop runs the due ones after the wait. This module knows fds, signals
and times, not children or requests.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["MAX_WAIT", "Reactor", "Signals", "Timer", "Timers"]

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


class Timer:
    """A callback due at a monotonic time; :meth:`Timers.cancel` makes it never run."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False


class Timers:
    """
    Callbacks due at monotonic times, earliest first; nothing runs by itself.

    The loop adds :meth:`deadline` to its wait's deadlines and calls :meth:`run_due` after the wait.
    A cancelled timer stays in the heap until it reaches the top, where it is dropped unrun. Not
    thread-safe: the supervisor process has one thread.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run *callback* in the first :meth:`run_due` at or after the monotonic time *when*."""
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        return timer

    @staticmethod
    def cancel(timer: Timer | None) -> None:
        """Make *timer* never run (nothing if it is None, already run or already cancelled)."""
        if timer is not None:
            timer.cancelled = True

    def deadline(self) -> float | None:
        """The time of the earliest timer that is not cancelled, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> None:
        """Run, earliest first, every timer due at *now* and not cancelled; each runs once."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()


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
        self.timers = Timers()
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

    def want_writable(self, fd: int, wanted: bool) -> None:
        """Also wake for *fd* (watched) when it becomes writable, or no longer (*wanted* False)."""
        self.poller.modify(fd, select.EPOLLIN | (select.EPOLLOUT if wanted else 0))

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
