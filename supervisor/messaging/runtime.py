"""
The loop that runs one GenServer in its child process.

Two threads. The *mailbox thread* owns the server's socket: it accepts connections, runs each
authentication handshake without blocking (one deadline per handshake), reads requests as they
arrive and puts them in the bounded mailbox, answering at once what needs no handler: a cast's
receipt, ``overloaded`` when the mailbox is full, ``noproc`` for a request meant for another
incarnation. The *main thread* takes one message at a time and runs the callbacks: calls and casts
in arrival order, timers and monitor notices as they fall due. Signals reach the main thread only:
SIGTERM sets a flag (through the wake-up fd) that ends the loop after the message in progress, with
``terminate(shutdown)``.

A handler that raises crashes the server: every call still waiting in the mailbox, and the one being
handled, is told ``("down", reason)`` with the exception and its traceback; ``terminate`` runs; the
exception leaves the start function, so the supervisor gets it as the exit reason and restarts the
server by its restart type.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
import os
import select
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from .. import _names, _titles, _wire
from .._addresses import TreeContext
from .._child import notify_ready
from .._frames import FrameReader, frame
from .._keys import Key
from .._transport import AUTH_TIMEOUT, KeyMismatch, ServerHandshake, listen, refuse
from ..errors import NameTakenError
from ..reasons import ExitReason, ShutdownExit
from . import client
from .client import Monitor
from .genserver import NOREPLY, Caller, Down, GenServer, Stop, TimerRef
from .ref import ServerRef

__all__ = ["run_gen_server"]

log = logging.getLogger("supervisor")

_MAX_WAIT = 86400.0  # epoll takes at most ~24.8 days: a later timer is waited for in steps
MAX_INCOMING = 1 << 40
"""The largest request a server takes, in bytes (its memory is the real bound)."""
MAX_OUTGOING = 64 * 1024 * 1024
"""Bytes of answers a caller may leave unread before its connection is dropped."""


def run_gen_server(
    context: TreeContext,
    cls: type[GenServer],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    mailbox_max: int,
) -> None:
    """
    The start function of a GenServer child at *context*; returns or raises as the server ends.

    Its process title says ``server`` and its path, before ``init`` runs (which may set its own).
    """
    _titles.set_title("server", context.shown_path)
    _ServerProcess(context, cls, name, mailbox_max).run(args, kwargs)


class _Connection:
    """
    One caller's connection, as the mailbox thread reads it and both threads answer on it. Answers
    never block: what the socket does not take now waits in ``outgoing`` and the mailbox thread
    sends it when the socket is writable; a caller that leaves ``MAX_OUTGOING`` bytes unread is
    dropped.
    """

    __slots__ = ("closed", "epoll", "lock", "outgoing", "reader", "sock", "wants_writable")

    def __init__(self, sock: socket.socket, epoll: Any) -> None:
        self.sock = sock
        self.epoll = epoll  # the mailbox thread's: told to wake for writability while bytes wait
        self.reader = FrameReader(MAX_INCOMING)  # a request, read into a buffer of its own size
        self.outgoing = bytearray()
        self.wants_writable = False
        self.lock = threading.Lock()
        self.closed = False

    def send(self, message: tuple[Any, ...]) -> None:
        """Send *message* now, or queue it for when the socket is writable. Never blocks or raises."""
        try:
            data = _wire.dumps(message)
        except Exception as error:  # an unpicklable reply: the caller gets the reason instead
            data = _wire.dumps(
                (
                    "down",
                    message[1],
                    ExitReason.from_exception(TypeError(f"reply cannot be pickled: {error}")),
                )
            )
        with self.lock:
            if self.closed:
                return
            self.outgoing += frame(data)
            if len(self.outgoing) > MAX_OUTGOING:
                log.warning("genserver: a caller does not read its answers; dropped its connection")
                self._close()
                return
            self._flush()

    def flush(self) -> None:
        """The socket is writable: send what waits (the mailbox thread, on EPOLLOUT)."""
        with self.lock:
            if not self.closed:
                self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close()
            return
        del self.outgoing[:sent]
        waiting = bool(self.outgoing)
        if waiting != self.wants_writable:
            self.wants_writable = waiting
            with contextlib.suppress(OSError):
                self.epoll.modify(self.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if waiting else 0))

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader; the mailbox thread closes it


class _Message:
    __slots__ = ("caller", "conn", "kind", "payload", "request_id")

    def __init__(self, kind: str, payload: Any, conn: _Connection | None = None, request_id: int = 0) -> None:
        self.kind, self.payload, self.conn, self.request_id = kind, payload, conn, request_id
        self.caller: Caller | None = None


class _Mailbox:
    """Messages waiting for the main thread, and the wake-up pipe that tells it there are some."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.messages: collections.deque[_Message] = collections.deque()
        self.external = 0  # calls and casts queued: what the limit counts
        self.failure: BaseException | None = None  # the mailbox thread's, if it died
        self.closed = False
        self.idle = False  # the main thread found the mailbox empty and waits: an offer must wake it
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fail(self, error: BaseException) -> None:
        """The mailbox thread died of *error*: the main thread raises it at its next turn."""
        self.failure = error
        self._wake()

    def offer(self, message: _Message) -> str:
        """Queue a call or cast: "queued", "overloaded" (the mailbox is full) or "closed" (it ends)."""
        with self.lock:
            if self.closed:
                return "closed"
            if self.external >= self.limit:
                return "overloaded"
            self.external += 1
            self.messages.append(message)
            wake, self.idle = self.idle, False
        if wake:  # a busy main thread takes it after its message: no system call for it
            self._wake()
        return "queued"

    def put(self, message: _Message) -> None:
        """Queue a timer's or monitor's message (not counted against the limit); the main thread's."""
        with self.lock:
            self.messages.append(message)

    def take(self) -> _Message | None:
        """The next message; None if there is none, and then the main thread is idle until woken."""
        with self.lock:
            if not self.messages:
                self.idle = True
                return None
            self.idle = False
            message = self.messages.popleft()
            if message.conn is not None:
                self.external -= 1
            return message

    def close(self) -> list[_Message]:
        """Refuse every later offer; return what was queued."""
        with self.lock:
            self.closed = True
            taken = list(self.messages)
            self.messages.clear()
            self.external = 0
            return taken

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_write, b"\0")

    def drain_wakes(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_read, 4096):
                pass


class _MailboxThread(threading.Thread):
    """Accepts, authenticates and reads callers; queues their requests; answers what needs no handler."""

    def __init__(self, listener: socket.socket, key: Key, incarnation: int, mailbox: _Mailbox) -> None:
        super().__init__(name="genserver-mailbox", daemon=True)
        self.listener = listener
        self.key = key
        self.incarnation = incarnation
        self.mailbox = mailbox
        self.epoll = select.epoll()
        self.socks: dict[int, socket.socket] = {}  # fd -> the listener, a pending or a connected socket
        self.pending: dict[socket.socket, tuple[ServerHandshake, float]] = {}
        self.conns: dict[socket.socket, _Connection] = {}

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as error:
            # The server cannot take callers any more: its main thread crashes with this reason.
            self.mailbox.fail(error)

    def _serve(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
        self.listener.setblocking(False)
        self._watch(self.listener)
        while True:
            if self.pending:
                deadline = min(due for _, due in self.pending.values())
                events = self.epoll.poll(max(0.0, deadline - time.monotonic()))
            else:
                events = self.epoll.poll()
            for fd, mask in events:
                sock = self.socks.get(fd)
                if sock is None:
                    continue
                conn = self.conns.get(sock)
                if conn is not None:
                    if mask & select.EPOLLOUT:
                        conn.flush()
                    if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._read(conn)
                elif sock is self.listener:
                    self._accept()
                elif sock in self.pending:
                    self._handshake(sock)
            if self.pending:
                now = time.monotonic()
                for sock, (_, due) in list(self.pending.items()):
                    if now >= due:
                        self._forget(sock)

    def _watch(self, sock: socket.socket) -> None:
        self.socks[sock.fileno()] = sock
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError:
                time.sleep(0.05)  # out of descriptors: let the callers that hold them finish
                return
            sock.setblocking(False)
            handshake = ServerHandshake(self.key)
            try:
                sock.send(handshake.greeting)
            except OSError:
                sock.close()
                continue
            self.pending[sock] = (handshake, time.monotonic() + AUTH_TIMEOUT)
            self._watch(sock)

    def _handshake(self, sock: socket.socket) -> None:
        handshake, _ = self.pending[sock]
        try:
            data = sock.recv(handshake.needed)
            if not data:
                raise ConnectionError("closed during the handshake")
            answer = handshake.feed(data)
            if answer is None:
                return
            sock.send(answer)
        except BlockingIOError:
            return
        except KeyMismatch:
            refuse(sock)
            self._forget(sock)
            return
        except OSError:
            self._forget(sock)
            return
        del self.pending[sock]
        self.conns[sock] = _Connection(sock, self.epoll)

    def _forget(self, sock: socket.socket) -> None:
        self.pending.pop(sock, None)
        fd = sock.fileno()
        if self.socks.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)  # before the close: the number may be reused at once
        conn = self.conns.pop(sock, None)
        if conn is None:
            sock.close()
            return
        with conn.lock:  # not while the main thread is answering on it
            conn.closed = True
            conn.reader.discard()
            sock.close()

    def _read(self, conn: _Connection) -> None:
        try:
            frames = [] if conn.closed else conn.reader.receive(conn.sock)
        except (EOFError, OSError):
            frames = []
            conn.closed = True
        if conn.closed:
            self._forget(conn.sock)
            return
        for request in frames:
            try:
                message = _wire.loads(request)
                kind, request_id, incarnation, payload = message
            except Exception as error:
                log.warning(
                    "genserver: unreadable request (%s: %s); dropping its connection",
                    type(error).__name__,
                    error,
                )
                self._forget(conn.sock)
                return
            finally:
                _wire.zero(request)
            if kind not in ("call", "cast", "status"):
                self._forget(conn.sock)
                return
            if incarnation != self.incarnation:
                conn.send(("noproc", request_id))
                continue
            if kind == "status":  # for operators' tools: answered here, without the main thread
                conn.send(("status", request_id, {"mailbox": self.mailbox.external}))
                continue
            outcome = self.mailbox.offer(_Message(kind, payload, conn, request_id))
            if outcome == "closed":
                conn.send(("noproc", request_id))
            elif outcome == "overloaded":
                conn.send(("overloaded", request_id))
            elif kind == "cast":
                conn.send(("queued", request_id))


class _ServerProcess:
    """The main thread's side: the server object, its timers and monitors, and the loop."""

    def __init__(
        self, context: TreeContext, cls: type[GenServer], name: str | None, mailbox_max: int
    ) -> None:
        self.context = context
        self.cls = cls
        self.name = name
        self.mailbox = _Mailbox(mailbox_max)
        self.incarnation = int.from_bytes(os.urandom(8), "big") >> 1
        self.timers: list[tuple[float, int, TimerRef]] = []
        self.cancelled: set[int] = set()
        self.serial = itertools.count()
        self.stopping = False
        self.epoll = select.epoll()
        self.wakers: dict[int, Any] = {}  # fd -> "mailbox", "signal", or a Monitor

    # ------------------------------------------------------------------ what handlers call

    def send_after(self, seconds: float, message: Any) -> TimerRef:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(
                f"'seconds' must be a number (got {seconds!r} that is a {type(seconds).__name__})"
            )
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"'seconds' must be finite and >= 0 (got {seconds!r})")
        timer = TimerRef(time.monotonic() + seconds, message)
        heapq.heappush(self.timers, (timer.due, next(self.serial), timer))
        return timer

    def cancel_timer(self, timer: TimerRef) -> bool:
        live = any(entry[2] is timer for entry in self.timers) and id(timer) not in self.cancelled
        if live:
            self.cancelled.add(id(timer))
        return live

    def watch(self, monitor: Monitor) -> None:
        self._wake_on(monitor.fileno(), monitor)

    def unwatch(self, monitor: Monitor) -> None:
        """Forget *monitor* (no notice will come); nothing happens if its notice already came."""
        for fd, what in list(self.wakers.items()):
            if what is monitor:
                del self.wakers[fd]
                self.epoll.unregister(fd)
        monitor.close()

    def _wake_on(self, fd: int, what: Any) -> None:
        self.wakers[fd] = what
        self.epoll.register(fd, select.EPOLLIN)

    # ------------------------------------------------------------------ the life of the server

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        context = self.context
        listener = listen(context.address)
        started = _names.process_start_time(os.getpid())
        assert started is not None
        if self.name is not None:
            try:
                claim = _names.NameEntry(self.name, context.path, context.scope, os.getpid(), started)
                _names.claim_name(context.private_dir, claim)
            except _names.NameTaken as taken:
                raise NameTakenError(
                    f"server {context.path}: {taken}", self.name, taken.path, taken.pid
                ) from None
        server = self.cls()
        server.path = context.path
        server.session_id = context.session_id
        server.ref = ServerRef(
            context.path, os.getpid(), self.incarnation, context.private_dir, context.scope, context.authkey
        )
        server._runtime = self
        client.serving_here(os.getpid(), threading.get_ident())
        server.init(*args, **kwargs)
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._wake_on(wake_read, "signal")
        self._wake_on(self.mailbox.wake_read, "mailbox")
        _MailboxThread(listener, context.authkey, self.incarnation, self.mailbox).start()
        _names.publish_server(
            context.private_dir,
            _names.ServerEntry(context.path, os.getpid(), self.incarnation, started, context.scope),
        )
        notify_ready()
        self._serve(server, wake_read)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _serve(self, server: GenServer, wake_read: int) -> None:
        while True:
            if self.stopping:
                self._end(server, ExitReason.shutdown(), None)
                raise ShutdownExit()
            failure = self.mailbox.failure
            if failure is not None:
                self._end(server, ExitReason.from_exception(failure), None)
                raise failure
            self._due_timers()
            message = self.mailbox.take()
            if message is None:
                self._wait(wake_read)
                continue
            try:
                outcome = self._handle(server, message)
            except Exception as error:
                self._end(server, ExitReason.from_exception(error), message)
                raise
            if isinstance(outcome, Stop):
                self._stop(server, outcome, message)

    def _handle(self, server: GenServer, message: _Message) -> Any:
        if message.kind == "call":
            conn, request_id = message.conn, message.request_id
            assert conn is not None
            caller = message.caller = Caller(lambda value: conn.send(("reply", request_id, value)))
            result = server.handle_call(message.payload, caller)
            if isinstance(result, Stop):
                if result.reply is not NOREPLY:
                    caller.reply(result.reply)
                return result
            if result is not NOREPLY:
                caller.reply(result)
            return None
        if message.kind == "cast":
            return server.handle_cast(message.payload)
        return server.handle_info(message.payload)

    def _stop(self, server: GenServer, stop: Stop, message: _Message) -> None:
        reason = stop.reason
        if isinstance(reason, BaseException):
            self._end(server, ExitReason.from_exception(reason), message)
            raise reason
        exit_reason = ExitReason.normal() if reason == "normal" else ExitReason.shutdown()
        self._end(server, exit_reason, message)
        if reason == "shutdown":
            raise ShutdownExit()
        raise _NormalExit()

    def _end(self, server: GenServer, reason: ExitReason, current: _Message | None) -> None:
        """
        Stop taking callers (new ones find no socket: ``NoProc``), tell every waiting caller the
        server is down with *reason*, then run ``terminate``.
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.context.address)
        _names.forget_server(self.context.private_dir, self.context.path)
        # From now on the mailbox refuses (noproc: the request did not run); what it holds is told.
        for message in ([current] if current is not None else []) + self.mailbox.close():
            if message.kind != "call" or message.conn is None:
                continue
            if message.caller is None or not message.caller.replied:
                message.conn.send(("down", message.request_id, reason))
        try:
            server.terminate(reason)
        except Exception:
            log.exception("server %s: terminate raised", self.context.path)

    def _due_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, timer = heapq.heappop(self.timers)
            if id(timer) in self.cancelled:
                self.cancelled.discard(id(timer))
                continue
            self.mailbox.put(_Message("info", timer.message))

    def _wait(self, wake_read: int) -> None:
        timeout = -1.0 if not self.timers else max(0.0, self.timers[0][0] - time.monotonic())
        for fd, _ in self.epoll.poll(min(timeout, _MAX_WAIT) if timeout >= 0 else -1.0):
            what = self.wakers.get(fd)
            if what == "mailbox":
                self.mailbox.drain_wakes()
            elif what == "signal":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
            elif isinstance(what, Monitor):
                monitor = what
                self.epoll.unregister(fd)
                del self.wakers[fd]
                reason = _notice(monitor)
                monitor.close()
                self.mailbox.put(_Message("info", Down(monitor, reason)))


def _notice(monitor: Monitor) -> Any:
    try:
        return monitor.wait(0)
    except Exception as error:  # the process was gone before the monitor began: OTP's noproc
        return error


class _NormalExit(SystemExit):
    """A ``Stop("normal")``: leaves the start function as a normal exit."""

    def __init__(self) -> None:
        super().__init__(0)
