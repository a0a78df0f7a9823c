"""
The supervisor's event feed: who subscribed to its children's events, and sending them without blocking.

A client subscribes with :class:`~supervisor._protocol.Subscribe` (a direct route): its connection
leaves the control server and becomes a subscriber's, and from then on it only receives
:class:`~supervisor._protocol.Notice` frames. The feed is told of each child's life cycle by the
loop's hooks, as the watchers are, so it sees exactly what the supervisor does, in order, on the
supervisor's only thread.

The feed never slows the supervisor. Every subscriber's socket is non-blocking: a notice is written
at once while the kernel takes it; when the socket would block, notices wait in the subscriber's own
buffer (at most the *buffer* it asked for), and the loop wakes when the socket is writable again;
when that buffer is full, notices are only counted, and once the subscriber has read everything
buffered, a ``lost`` notice with the count is sent, then notices flow again. A subscriber that closes
its end (or sends anything) is dropped in the turn that sees it. A notice is pickled once for all the
subscribers that want it, and not at all when none does. No thread, no polling: the loop's epoll set
wakes the feed.

When the supervisor exits, whatever its subscribers have not taken is dropped without a ``lost``
notice (the exit does not wait for a reader), and their sockets close: the clients see the end.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

import attrs

from .. import _wire
from .._protocol import (
    NEWS_EXITED,
    NEWS_FORKED,
    NEWS_INTENSITY,
    NEWS_KINDS,
    NEWS_LOST,
    NEWS_REMOVED,
    NEWS_RESTARTED,
    NEWS_STARTED,
    Notice,
    Subscribe,
)
from ..reasons import ExitReason
from ..specs import NESTED_SUPERVISOR_FROM
from .hooks import ChildEvent, LoopHooks
from .reactor import Reactor

__all__ = ["MAX_BUFFER", "EventFeed"]

log = logging.getLogger("supervisor")

MAX_BUFFER = 1_000_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""Bytes of notices one subscriber may have waiting; past them notices are counted as lost."""
"""The most notices a subscriber may ask the supervisor to buffer for it."""
_READ_SIZE = 4096


class _Subscriber:
    """
    One subscriber: its connection, the kinds it wants, and what waits for its socket.

    ``out`` is the rest of the frame being written (the kernel took part of it); ``queue`` the frames
    after it, at most ``limit``; ``lost`` counts the notices dropped since the queue filled up, a
    ``lost`` notice being due once ``out`` and ``queue`` are empty; ``writable`` says whether the
    loop also wakes when the socket becomes writable (only while something waits).
    """

    __slots__ = ("conn", "fd", "kinds", "limit", "lost", "out", "queue", "queued_bytes", "writable")

    def __init__(self, conn: Any, kinds: frozenset[str], limit: int) -> None:
        self.conn = conn
        self.fd: int = conn.fileno()
        self.kinds = kinds
        self.limit = limit
        self.out = b""
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.lost = 0
        self.writable = False

    @property
    def blocked(self) -> bool:
        """Whether notices wait for the socket (a new one must queue behind them)."""
        return bool(self.out or self.queue or self.lost)


class EventFeed(LoopHooks):
    """
    The subscribers of one supervisor and the notices of its children's events.

    An observer in the loop's :class:`~supervisor._engine.hooks.ChainedHooks`; the loop routes
    ``Subscribe`` to :meth:`subscribe`, calls :meth:`on_ready` for the fds it owns, and
    :meth:`close` when the supervisor exits. Every method returns at once: nothing here blocks.

    Args:
        reactor: the loop's epoll set, where the subscribers' sockets are watched.
        supervisors: the ``(child_id, pid)`` of each running nested supervisor child, for the reply
            to a subscriber that asks for them.
    """

    def __init__(self, reactor: Reactor, supervisors: Callable[[], list[tuple[str, int]]]) -> None:
        self.reactor = reactor
        self.supervisors = supervisors
        self.subscribers: dict[int, _Subscriber] = {}

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, conn: Any, request: Subscribe) -> None:
        """
        Make *conn* (taken from the control server) a subscriber to *request*'s kinds, and reply.

        The reply is the first frame the subscriber gets; every event from now on follows it. Kinds
        it does not know are ignored; its buffer is bounded to ``1..MAX_BUFFER`` notices.
        """
        kinds = frozenset(request.kinds) & NEWS_KINDS
        limit = min(max(1, int(request.buffer)), MAX_BUFFER)
        nested = self.supervisors() if request.nested else []
        subscriber = _Subscriber(conn, kinds, limit)
        os.set_blocking(subscriber.fd, False)
        self.subscribers[subscriber.fd] = subscriber
        self.reactor.watch(subscriber.fd, self)
        self._send(subscriber, _frame(_wire.dumps(("ok", (os.getpid(), nested)))))

    def on_ready(self, fd: int) -> None:
        """The subscriber socket *fd* is readable (its client closed it or broke the protocol) or writable."""
        subscriber = self.subscribers.get(fd)
        if subscriber is None:
            return
        try:
            os.read(fd, _READ_SIZE)
        except BlockingIOError:
            self._flush(subscriber)  # nothing to read: it woke us for being writable
            return
        except OSError:
            pass
        # End of file, an error, or bytes from a client that must send none: it is gone.
        self._drop(subscriber)

    def close(self) -> None:
        """Send what each socket takes now without blocking, then close every subscriber's connection."""
        for subscriber in list(self.subscribers.values()):
            self._flush(subscriber)
            if subscriber.fd in self.subscribers:  # the flush drops a subscriber already gone
                self._drop(subscriber)

    def _drop(self, subscriber: _Subscriber) -> None:
        del self.subscribers[subscriber.fd]
        self.reactor.unwatch(subscriber.fd)  # before the close: the fd number may be reused at once
        try:
            subscriber.conn.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ sending

    def _publish(self, notice: Notice) -> None:
        """Give *notice* to every subscriber that wants it; pickled once, and only if one does."""
        frame: bytes | None = None
        for subscriber in list(self.subscribers.values()):
            if notice.kind not in subscriber.kinds:
                continue
            if subscriber.lost or len(subscriber.queue) >= subscriber.limit:
                subscriber.lost += 1
                continue
            if frame is None:
                frame = _frame(_encode(notice))
            if subscriber.queued_bytes + len(frame) > MAX_QUEUED_BYTES:
                subscriber.lost += 1  # notices with big exit reasons: bounded in bytes too
                continue
            self._send(subscriber, frame)

    def _send(self, subscriber: _Subscriber, frame: bytes) -> None:
        subscriber.queue.append(frame)
        subscriber.queued_bytes += len(frame)
        if not subscriber.writable:
            self._flush(subscriber)

    def _flush(self, subscriber: _Subscriber) -> None:
        """Write what the socket takes now: the frame begun, the queue, then a ``lost`` notice if due."""
        while True:
            if not subscriber.out:
                if subscriber.queue:
                    subscriber.out = subscriber.queue.popleft()
                    subscriber.queued_bytes -= len(subscriber.out)
                elif subscriber.lost:
                    lost = Notice(NEWS_LOST, None, os.getpid(), _now(), count=subscriber.lost)
                    subscriber.out = _frame(_encode(lost))
                    subscriber.lost = 0
                else:
                    break
            try:
                written = os.write(subscriber.fd, subscriber.out)
            except BlockingIOError:
                break
            except OSError:
                self._drop(subscriber)  # the client is gone (EPIPE, ECONNRESET)
                return
            subscriber.out = subscriber.out[written:]
        waiting = subscriber.blocked
        if waiting != subscriber.writable:
            subscriber.writable = waiting
            self.reactor.want_writable(subscriber.fd, waiting)

    # ------------------------------------------------------------------ the hooks

    def child_starting(self, child: ChildEvent) -> None:
        if self.subscribers:
            self._publish(_notice(NEWS_FORKED, child, child.pid))

    def child_ready(self, child: ChildEvent, info: Any) -> None:
        if self.subscribers:
            self._publish(_notice(NEWS_RESTARTED if child.automatic else NEWS_STARTED, child, child.pid))

    def child_down(self, child: ChildEvent, reason: ExitReason, restarting: bool) -> None:
        if self.subscribers:
            notice = _notice(NEWS_EXITED, child, child.last_pid)
            self._publish(attrs.evolve(notice, reason=reason, restarting=restarting))

    def child_removed(self, child: ChildEvent) -> None:
        if self.subscribers:
            self._publish(
                _notice(NEWS_REMOVED, child, child.pid if child.pid is not None else child.last_pid)
            )

    def intensity_reached(self, child: ChildEvent, reason: ExitReason | None) -> None:
        if self.subscribers:
            self._publish(Notice(NEWS_INTENSITY, None, os.getpid(), _now(), reason=reason))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _notice(kind: str, child: ChildEvent, pid: int | None) -> Notice:
    spec = child.spec
    nested = spec.nested is not None or spec.start == NESTED_SUPERVISOR_FROM
    return Notice(kind, child.child_id, pid, _now(), supervisor=nested)


def _encode(notice: Notice) -> bytes:
    try:
        return _wire.dumps(notice)
    except Exception:
        # An exit reason whose term cannot be pickled here: the notice still goes, without it.
        log.warning("event feed: cannot encode the reason of %r; sent without it", notice, exc_info=True)
        return _wire.dumps(attrs.evolve(notice, reason=None))


def _frame(payload: bytes) -> bytes:
    """*payload* framed as ``multiprocess`` connections frame a message (``_wire.recv_frame`` reads it)."""
    return struct.pack("!i", len(payload)) + payload
