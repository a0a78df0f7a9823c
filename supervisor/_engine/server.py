"""
The supervisor's control socket: accept and authenticate clients, read requests, route them, reply.

Nothing a client does holds the loop. The listener is non-blocking; each accepted connection runs the
authentication handshake as a non-blocking state machine (:class:`~supervisor._transport.ServerHandshake`)
driven by the loop's epoll set, with one deadline for the whole handshake, however the client
trickles its bytes; a client that misses it is dropped. A failed ``accept`` (out of descriptors)
pauses accepting for a moment rather than failing the loop or spinning on a listener that stays
readable.

One table maps each request type to a :class:`Route`: *read* routes are answered at once from the
state (``which_children`` while a start is in progress is fine, as in OTP it is not); *queued* routes
become jobs that the supervisor schedules and whose return value (or ``SupervisorError``) is the
reply; a *direct* route gets the connection and replies when it chooses (``Stop``). A request that
cannot be unpickled is answered ``("unreadable", why)``; a connection that closes or sends an unknown
request is dropped; the loop goes on. This module knows the protocol's shape, not what a supervisor
does.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .. import _wire
from .._addresses import TreeContext
from .._frames import FrameReader, frame
from .._transport import AUTH_TIMEOUT, KeyMismatch, ServerHandshake, listen, refuse
from ..errors import SupervisorError
from .hooks import LoopHooks
from .jobs import Job
from .reactor import Reactor

__all__ = ["ControlServer", "Route", "RouteKind"]

log = logging.getLogger("supervisor")

ACCEPT_PAUSE = 0.1
"""Seconds accepting pauses after ``accept`` failed for want of descriptors or memory."""
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _Pending:
    """A connection still in its handshake: the socket, the state machine, the deadline."""

    __slots__ = ("deadline", "handshake", "sock")

    def __init__(self, sock: socket.socket, handshake: ServerHandshake, deadline: float) -> None:
        self.sock, self.handshake, self.deadline = sock, handshake, deadline


MAX_OUTGOING = 64 * 1024 * 1024
"""Bytes of replies a client may leave unread before its connection is dropped."""
MAX_INCOMING = 256 * 1024 * 1024
"""Bytes of one request a client may send; a larger one drops its connection."""


class _Client:
    """
    An authenticated client connection: a non-blocking socket, the request still coming (read into
    a buffer of its own size, see :mod:`supervisor._frames`), and the bytes of replies still going.
    """

    __slots__ = ("outgoing", "reader", "sock", "wants_writable")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader(MAX_INCOMING)
        self.outgoing = bytearray()
        self.wants_writable = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.reader.discard()
        self.sock.close()

    def receive(self) -> list[bytearray]:
        """The requests that came whole (see :meth:`FrameReader.receive`); never blocks."""
        return self.reader.receive(self.sock)


class RouteKind(enum.Enum):
    READ = "read"
    """``handler(request)`` returns the reply's value (or raises SupervisorError) at once."""
    QUEUED = "queued"
    """``handler(request)`` returns a job, queued under ``key(request)``; its return is the reply."""
    DIRECT = "direct"
    """``handler(conn, request)`` replies itself, when it chooses."""


@attrs.frozen
class Route:
    kind: RouteKind
    handler: Callable[..., Any]
    key: Callable[[Any], str] | None = None


class ControlServer:
    """
    The listening socket and client connections of one supervisor.

    Args:
        routes: request type → route.
        submit: queue a job ``(key, conn, job)``; it replies through :meth:`reply_job`.
    """

    def __init__(
        self,
        tree: TreeContext,
        reactor: Reactor,
        hooks: LoopHooks,
        routes: Mapping[type, Route],
        submit: Callable[[str, Any, Job], None],
    ) -> None:
        self.tree = tree
        self.reactor = reactor
        self.hooks = hooks
        self.routes = routes
        self.submit = submit
        self.listener = listen(tree.address)
        self.listener.setblocking(False)
        self.conns: set[Any] = set()
        self.pending: dict[int, _Pending] = {}  # fd -> a connection in its handshake
        self.accept_paused_until: float | None = None
        reactor.watch(self.listener, self)

    def deadline(self) -> float | None:
        """When the loop must wake for :meth:`on_deadline`: a handshake's deadline, or accepting's resume."""
        times = [p.deadline for p in self.pending.values()]
        if self.accept_paused_until is not None:
            times.append(self.accept_paused_until)
        return min(times, default=None)

    def on_deadline(self, now: float) -> None:
        """Drop the handshakes past their deadline; resume accepting when its pause is over."""
        for fd, pending in list(self.pending.items()):
            if now >= pending.deadline:
                log.warning(
                    "supervisor %s: dropped a connection that did not authenticate within %s s",
                    self.tree.path,
                    AUTH_TIMEOUT,
                )
                self._drop_pending(fd)
        if self.accept_paused_until is not None and now >= self.accept_paused_until:
            self.accept_paused_until = None
            self.reactor.watch(self.listener, self)

    def accept(self) -> None:
        """Accept one client and start its handshake; never blocks."""
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno not in _RESOURCE_ERRORS:
                log.warning("supervisor %s: accept failed: %s", self.tree.path, error)
                return
            # The listener stays readable while clients wait: stop watching it for a moment
            # instead of spinning, and keep serving everything else.
            log.warning(
                "supervisor %s: cannot accept a connection (%s); retrying shortly", self.tree.path, error
            )
            self.reactor.unwatch(self.listener)
            self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
            return
        handshake = ServerHandshake(self.tree.authkey)
        try:
            sock.setblocking(False)
            sent = sock.send(handshake.greeting)  # fits: a new socket's buffer is empty
        except OSError:
            sock.close()
            return
        if sent != len(handshake.greeting):
            sock.close()
            return
        fd = self.reactor.watch(sock, self)
        self.pending[fd] = _Pending(sock, handshake, time.monotonic() + AUTH_TIMEOUT)

    def on_handshake_readable(self, fd: int) -> None:
        """Feed what a connection in its handshake sent; finish it, or drop it if it failed."""
        pending = self.pending[fd]
        try:
            data = pending.sock.recv(pending.handshake.needed)
            if not data:
                raise ConnectionError("closed during the handshake")
            answer = pending.handshake.feed(data)
            if answer is None:
                return
            if pending.sock.send(answer) != len(answer):
                raise ConnectionError("the handshake's answer did not fit")
        except BlockingIOError:
            return
        except KeyMismatch:
            log.warning("supervisor %s: refused a connection that failed authentication", self.tree.path)
            refuse(pending.sock)
            self._drop_pending(fd)
            return
        except OSError:
            self._drop_pending(fd)  # the client hung up during the handshake
            return
        del self.pending[fd]
        self.reactor.unwatch(pending.sock)
        conn = _Client(pending.sock)
        self.conns.add(conn)
        self.reactor.watch(conn, self)

    def _drop_pending(self, fd: int) -> None:
        pending = self.pending.pop(fd)
        self.reactor.unwatch(pending.sock)  # before the close: the fd number may be reused at once
        pending.sock.close()

    def on_readable(self, conn: Any) -> None:
        """
        *conn* is readable or writable: send what waits for it, then read what came and route each
        whole request. Never blocks: a client that trickles a request, or does not read its replies,
        holds only its own buffers (bounded: past them it is dropped).
        """
        if conn.outgoing and not self._flush(conn):
            return
        try:
            complete = conn.receive()
        except (EOFError, OSError):
            self.drop(conn)
            return
        for request in complete:
            if conn not in self.conns:
                return  # dropped, or handed to a new owner, by an earlier request of this read
            self._route(conn, request)

    def _route(self, conn: Any, frame: bytearray) -> None:
        try:
            request = _wire.loads(frame)
        except Exception as error:
            # The message was read whole, so the connection is still in step: tell the sender why.
            why = f"{type(error).__name__}: {error}"
            log.warning("supervisor %s: unreadable request (%s); told its sender", self.tree.path, why)
            self.reply(conn, ("unreadable", why))
            return
        finally:
            _wire.zero(frame)  # a handle in a request carries a key: leave no copy in freed memory
        route = self.routes.get(type(request))
        if route is None:
            log.warning("supervisor %s: unknown request %r; closing its connection", self.tree.path, request)
            self.drop(conn)
        elif route.kind is RouteKind.READ:
            try:
                value = route.handler(request)
            except SupervisorError as error:
                self.reply(conn, ("error", error))
            else:
                self.reply(conn, ("ok", value))
        elif route.kind is RouteKind.QUEUED:
            assert route.key is not None
            self.submit(route.key(request), conn, self.reply_job(conn, route.handler(request)))
        else:
            route.handler(conn, request)

    def reply_job(self, conn: Any, job: Job) -> Job:
        """Run *job*, then reply to *conn* with its return value or the SupervisorError it raised."""
        try:
            value = yield from job
        except SupervisorError as error:
            self.reply(conn, ("error", error))
        else:
            self.reply(conn, ("ok", value))

    def reply(self, conn: Any, message: tuple[str, Any]) -> None:
        """
        Send *message* to *conn* (None: nobody to tell) without blocking: what the socket does not
        take now waits in the connection's buffer for it to become writable. A connection that fails,
        or whose client lets its replies pile up past ``MAX_OUTGOING`` bytes, is dropped.
        """
        if conn is None or conn not in self.conns:
            return
        self.hooks.before_reply()
        try:
            data = _wire.dumps(message)
        except Exception as error:  # a reply value that cannot be pickled: say so instead
            data = _wire.dumps(("error", SupervisorError(f"the reply could not be encoded: {error}")))
        conn.outgoing += frame(data)
        if len(conn.outgoing) > MAX_OUTGOING:
            log.warning("supervisor %s: a client does not read its replies; dropped it", self.tree.path)
            self.drop(conn)
            return
        self._flush(conn)

    def _flush(self, conn: Any) -> bool:
        """Send what the socket takes now; True once all is sent (else the loop wakes when writable)."""
        try:
            sent = conn.sock.send(conn.outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.drop(conn)
            return False
        del conn.outgoing[:sent]
        waiting = bool(conn.outgoing)
        if waiting != conn.wants_writable:
            conn.wants_writable = waiting
            self.reactor.want_writable(conn.fileno(), waiting)
        return not waiting

    def release(self, conn: Any) -> None:
        """Hand *conn* over to its new owner (an event subscriber): no longer read, watched or closed here."""
        if conn in self.conns:
            self.conns.discard(conn)
            self.reactor.unwatch(conn)

    def drop(self, conn: Any) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self.reactor.unwatch(conn)
        conn.close()

    def close(self) -> None:
        """Drop every connection, close the listener and remove its socket file."""
        for fd in list(self.pending):
            self._drop_pending(fd)
        for conn in list(self.conns):
            if conn.outgoing:
                self._flush(conn)  # a last try, without blocking: the stopper's reply is in there
            self.drop(conn)
        self.reactor.unwatch(self.listener)
        self.listener.close()
        try:
            os.unlink(self.tree.address)
        except FileNotFoundError:
            pass
