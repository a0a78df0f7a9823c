"""
Event streams: a supervisor's children's events, pushed to the client as they happen, never polled.

:meth:`SupervisorHandle.events() <supervisor.SupervisorHandle.events>` returns an
:class:`EventStream`: a connection to the supervisor that has sent it
:class:`~supervisor._protocol.Subscribe` and has been answered, so every event after the call
returns is delivered. The supervisor pushes :class:`~supervisor._protocol.Notice` frames; this module
turns them into :class:`Event` values. With ``subtree=True`` the stream also subscribes to every
nested supervisor found below (the supervisor's answer lists its running nested supervisors), and to
each nested supervisor that becomes ready later, as its ``started`` or ``restarted`` event is read.

The stream waits on one epoll descriptor holding its connections (:meth:`EventStream.fileno`), so
it composes with ``select``, ``selectors`` and asyncio's ``add_reader``. It reads exactly one frame at
a time, without blocking and without reading ahead, so a frame the stream has not returned yet is
still in the kernel and the descriptor stays readable. The supervisor never waits on a slow stream:
it buffers a bounded number of notices for it, then counts what it drops and sends a ``lost`` item.

This module imports values, the wire and the transport only, never the engine.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import select
import struct
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import attrs

from .. import _wire
from .._addresses import SESSION_MANAGER_ID, socket_path
from .._deadlines import deadline_from, remaining
from .._keys import Key
from .._protocol import (
    NEWS_EXITED,
    NEWS_INTENSITY,
    NEWS_LOST,
    NEWS_RESTARTED,
    NEWS_STARTED,
    Notice,
    Subscribe,
)
from .._transport import AUTH_TIMEOUT, KeyMismatch, KeyRefused, connect
from ..errors import AuthenticationError, CallTimeout, HandleClosedError, SupervisorError, SupervisorGoneError
from ..reasons import ExitReason

__all__ = [
    "DEFAULT_BUFFER",
    "EVENT_KINDS",
    "MAX_BUFFER",
    "NESTED_TIMEOUT",
    "Event",
    "EventStream",
    "NoticeStream",
    "Subscription",
    "check_buffer",
]

DEFAULT_BUFFER = 1000
"""How many events a supervisor buffers, by default, for a stream that does not keep up."""
MAX_BUFFER = 1_000_000
"""The largest buffer a stream may ask for."""
NESTED_TIMEOUT = 5.0
"""Seconds a subtree stream gives a nested supervisor, at most, to answer its subscription."""
EVENT_KINDS = frozenset({NEWS_STARTED, NEWS_EXITED, NEWS_RESTARTED, NEWS_INTENSITY, NEWS_LOST})
"""The kinds of :class:`Event`."""
_MAX_WAIT = 86400.0  # epoll_wait takes at most ~24.8 days; longer timeouts wait in steps
_HEADER = struct.Struct("!i")


@attrs.frozen
class Event:
    """
    One event of a supervisor's child, as an :class:`EventStream` yields it.

    Attributes:
        kind: ``"started"`` (the child became ready: its first start, ``start_child``,
            ``restart_child``), ``"restarted"`` (it became ready again in an automatic restart, as
            the child that failed or as a bystander of its restart set), ``"exited"`` (its process
            was reaped; a failed start too), ``"intensity_reached"`` (the supervisor reached its
            restart intensity and gives up: it stops), or ``"lost"`` (the supervisor dropped
            *count* events of this stream, which did not keep up).
        path: the child's id path (``"root/api/handler"``; a child known by pid, of a
            simple_one_for_one supervisor or a DynamicSupervisor, has a made-up id such as
            ``"job#3"``); the supervisor's own path for ``intensity_reached`` and ``lost``.
        pid: the child's process (for ``exited``, the one reaped); the supervisor's own pid for
            ``intensity_reached`` and ``lost``.
        reason: the exit reason, for ``exited``; for ``intensity_reached``, the last exit reason of
            the child whose restart was one too many; else None.
        at: when the supervisor saw it, a timezone-aware UTC ``datetime`` (wall clock: for display
            and logs, not for measuring durations).
        count: how many events were dropped, for ``lost``; else 0.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(EVENT_KINDS))
    path: str
    pid: int | None
    reason: ExitReason | None
    at: datetime.datetime
    count: int = 0


def check_buffer(buffer: object) -> int:
    """*buffer* as given, if it is an int from 1 to ``MAX_BUFFER``; TypeError or ValueError naming it."""
    if not isinstance(buffer, int) or isinstance(buffer, bool):
        raise TypeError(
            f"'buffer' must be an int (a number of events) (got {buffer!r} that is a {type(buffer).__name__})"
        )
    if not 1 <= buffer <= MAX_BUFFER:
        raise ValueError(f"'buffer' must be from 1 to {MAX_BUFFER} events (got {buffer!r})")
    return buffer


class Subscription:
    """
    One subscribed connection: the supervisor's path and pid, the key it took, and the frame being read.

    A frame is read in two steps, its 4-byte header then its body, each exactly: nothing past the
    frame is taken from the kernel.
    """

    __slots__ = ("buffer", "conn", "fd", "got", "in_body", "key", "path", "pid")

    def __init__(self, conn: Any, path: str, pid: int, key: Key) -> None:
        self.conn = conn
        self.fd: int = conn.fileno()
        self.path = path
        self.pid = pid
        self.key = key
        self.buffer = bytearray(_HEADER.size)
        self.got = 0
        self.in_body = False
        os.set_blocking(self.fd, False)

    def read_frame(self) -> bytearray | None:
        """
        The next whole frame's body, None while it is incomplete; never blocks.

        Raises:
            EOFError: the supervisor closed the connection (it exited), or it broke the framing.
        """
        while True:
            view = memoryview(self.buffer)
            try:
                n = os.readv(self.fd, [view[self.got :]])
            except BlockingIOError:
                return None
            except OSError as error:
                raise EOFError(str(error)) from error
            finally:
                view.release()
            if n == 0:
                raise EOFError("the supervisor closed the connection")
            self.got += n
            if self.got < len(self.buffer):
                continue
            if not self.in_body:
                (size,) = _HEADER.unpack(self.buffer)
                if size < 0:
                    raise EOFError("a frame too large for an event")
                self.buffer, self.got, self.in_body = bytearray(size), 0, True
                if size:
                    continue
            frame = self.buffer
            self.buffer, self.got, self.in_body = bytearray(_HEADER.size), 0, False
            return frame

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


T = TypeVar("T")


class NoticeStream(Generic[T]):
    """
    The machinery of an event stream: subscriptions on one epoll descriptor, read one frame at a time.

    Subclasses say which notice kinds they subscribe to (``_KINDS``) and turn each notice into the
    value they yield (:meth:`_convert`). Not for use by several threads at once.
    """

    _KINDS: frozenset[str] = frozenset()

    def __init__(
        self,
        address: str,
        key: Key,
        path: str,
        *,
        subtree: bool = False,
        buffer: int = DEFAULT_BUFFER,
        timeout: float | None = None,
        tree_key: Key | None = None,
    ) -> None:
        """
        Subscribe to the supervisor at *address* (and, with *subtree*, every nested one running below
        it); return once subscribed. Blocks for the connection and the supervisor's answer: at most
        *timeout* seconds if given (the handshake alone, at most 2 s), plus, with *subtree*, up to
        ``NESTED_TIMEOUT`` for each nested supervisor.

        *tree_key*: the tree's key when *key* is it, so a subtree stream can reach the supervisors of
        sessions, which serve with keys of their own derived from it.

        Raises:
            SupervisorGoneError: the supervisor is not running.
            AuthenticationError: it refused *key*.
            CallTimeout: it did not answer within *timeout* seconds.
        """
        deadline = deadline_from("timeout", timeout)
        self._buffer = check_buffer(buffer)
        self._subtree = subtree
        self._tree_key = tree_key
        self._private_dir = os.path.dirname(address)
        self._epoll = select.epoll()
        self._subs: dict[int, Subscription] = {}
        self._following: set[tuple[str, int]] = set()
        self._closed = False
        try:
            nested = self._subscribe(address, key, path, deadline)
            if subtree:
                self._follow_all(path, key, nested, deadline)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ the public surface

    def next_event(self, timeout: float | None = None) -> T | None:
        """
        The next event; None if *timeout* seconds pass first (None: wait as long as it takes), and
        at once once the stream has ended (see :attr:`ended`).

        Blocks until an event is readable or the timeout passes. With ``subtree=True``, reading the
        ``started`` or ``restarted`` event of a nested supervisor also subscribes to it, which blocks
        for its answer (at most ``NESTED_TIMEOUT`` seconds) even past *timeout*.

        Raises:
            TypeError, ValueError: *timeout* is not seconds >= 0 or None.
            HandleClosedError: the stream was closed.
        """
        deadline = deadline_from("timeout", timeout)
        if self._closed:
            raise HandleClosedError("next_event: this event stream was closed")
        while self._subs:
            left = remaining(deadline)
            ready = self._epoll.poll(-1 if left is None else min(left, _MAX_WAIT), 1)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            sub = self._subs.get(ready[0][0])
            if sub is None:
                continue
            try:
                frame = sub.read_frame()
            except EOFError:
                self._end(sub)
                continue
            if frame is None:
                continue
            try:
                notice = _wire.loads(frame)
            except Exception:
                # An exit reason whose term cannot be unpickled here: say an event was lost.
                notice = Notice(NEWS_LOST, None, sub.pid, _now(), count=1)
            if not isinstance(notice, Notice):
                continue
            event = self._convert(sub, notice)
            if event is not None:
                return event
        return None

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        """The next event; blocks until there is one. Stops when the stream has ended or was closed."""
        if self._closed:
            raise StopIteration
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def fileno(self) -> int:
        """
        A descriptor that is readable while an event (or the end) may be read: an epoll descriptor
        holding the stream's connections. It may also wake when a nested supervisor's connection
        ends, with no event to read (``next_event(0)`` then returns None).
        """
        return self._epoll.fileno()

    @property
    def ended(self) -> bool:
        """True once every supervisor subscribed to has exited and its events have been read."""
        return not self._subs

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """
        Unsubscribe: close every connection and the descriptor. The supervisors forget this stream
        in their next turn. Idempotent; does not block.
        """
        self._closed = True
        for sub in list(self._subs.values()):
            self._end(sub)
        self._epoll.close()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif not self._subs:
            state = "ended"
        else:
            state = "following " + ", ".join(sorted(sub.path for sub in self._subs.values()))
        return f"<{type(self).__name__}: {state}>"

    def __enter__(self) -> NoticeStream[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ subscribing

    def _convert(self, sub: Subscription, notice: Notice) -> T | None:
        """The value to yield for *notice* from *sub*'s supervisor, or None for none."""
        raise NotImplementedError

    def _subscribe(self, address: str, key: Key, path: str, deadline: float | None) -> list[tuple[str, int]]:
        """
        Subscribe to the supervisor at *address*; return its running nested supervisors' ids and pids.

        Raises:
            SupervisorGoneError, AuthenticationError, CallTimeout: as :meth:`__init__` says.
        """
        wait = AUTH_TIMEOUT if deadline is None else min(AUTH_TIMEOUT, remaining(deadline) or 0.0)
        try:
            conn = connect(address, key, wait)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise SupervisorGoneError(f"events: supervisor {path} is not running") from error
        except KeyRefused as error:
            raise AuthenticationError(f"events: supervisor {path} refused this handle's authkey") from error
        except KeyMismatch as error:
            raise AuthenticationError(
                f"events: the peer at supervisor {path}'s address does not hold this tree's authkey"
            ) from error
        except TimeoutError as error:
            raise CallTimeout(
                f"events: supervisor {path} did not complete the connection handshake in time; not subscribed"
            ) from error
        except OSError as error:
            raise SupervisorGoneError(f"events: supervisor {path} closed the connection") from error
        try:
            request = Subscribe(self._KINDS, self._buffer, self._subtree)
            _wire.send(conn, request)
            if deadline is not None and not conn.poll(remaining(deadline)):
                raise CallTimeout(
                    f"events: supervisor {path} did not answer the subscription in time; it may "
                    "still send events to a connection now closed"
                )
            status, value = _wire.recv(conn)
        except BaseException as error:
            conn.close()
            if isinstance(error, (EOFError, OSError)) and not isinstance(error, SupervisorError):
                raise SupervisorGoneError(f"events: supervisor {path} is gone") from error
            raise
        if status != "ok":
            conn.close()
            if isinstance(value, SupervisorError):
                raise value
            raise SupervisorError(f"events: supervisor {path} could not subscribe this stream: {value}")
        pid, nested = value
        sub = Subscription(conn, path, pid, key)
        self._subs[sub.fd] = sub
        self._following.add((path, pid))
        self._epoll.register(sub.fd, select.EPOLLIN)
        return list(nested)

    def _follow_all(
        self, path: str, key: Key, nested: list[tuple[str, int]], deadline: float | None = None
    ) -> None:
        """Subscribe to each nested supervisor ``(child_id, pid)`` of the supervisor at *path*, and below."""
        for child_id, pid in nested:
            self._follow(f"{path}/{child_id}", pid, key, deadline)

    def _follow(self, path: str, pid: int | None, key: Key, deadline: float | None = None) -> None:
        """
        Subscribe to the nested supervisor at *path* (and its nested ones) unless this stream already
        follows its process *pid*. One that is gone, or does not answer within ``NESTED_TIMEOUT``, is
        skipped: its events are not in this stream.
        """
        if (path, pid) in self._following:
            return
        bound = time.monotonic() + NESTED_TIMEOUT
        nested_deadline = bound if deadline is None else min(bound, deadline)
        address = socket_path(self._private_dir, path)
        keys = [key]
        if self._tree_key is not None and key == self._tree_key:
            session_key = self._tree_key.derive(path)
            # A session's supervisor serves with its own key: try it first below a SessionManager.
            below_manager = path.rpartition("/")[0].rpartition("/")[2] == SESSION_MANAGER_ID
            keys = [session_key, key] if below_manager else [key, session_key]
        for attempt in keys:
            try:
                nested = self._subscribe(address, attempt, path, nested_deadline)
            except AuthenticationError:
                continue
            except SupervisorError:
                return
            self._follow_all(path, attempt, nested, deadline)
            return

    def _end(self, sub: Subscription) -> None:
        del self._subs[sub.fd]
        self._following.discard((sub.path, sub.pid))
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(sub.fd)
        sub.close()


class EventStream(NoticeStream[Event]):
    """
    A supervisor's child events, as :class:`Event` values; from ``SupervisorHandle.events()``.

    Subscribed when it is returned: every event after that is delivered, in the order the supervisor
    saw them (events of different supervisors of a subtree interleave in no defined order). Iterate
    it (blocks for each event; ends once the supervisor has exited and every event was read), or
    call :meth:`next_event` with a timeout, or wait on :meth:`fileno`. Close it (or leave its
    ``with`` block) to unsubscribe. Not for use by several threads at once.
    """

    _KINDS = frozenset({NEWS_STARTED, NEWS_RESTARTED, NEWS_EXITED, NEWS_INTENSITY})

    def _convert(self, sub: Subscription, notice: Notice) -> Event | None:
        if notice.kind == NEWS_LOST or notice.child_id is None:
            return Event(notice.kind, sub.path, notice.pid, notice.reason, notice.at, notice.count)
        path = f"{sub.path}/{notice.child_id}"
        if self._subtree and notice.supervisor and notice.kind in (NEWS_STARTED, NEWS_RESTARTED):
            self._follow(path, notice.pid, sub.key)
        return Event(notice.kind, path, notice.pid, notice.reason, notice.at)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
