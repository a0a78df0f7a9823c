"""
Calls, casts and monitors of servers, and the resolution of names and paths to servers.

A caller talks to a server directly, over the server's Unix socket in the tree's private directory,
authenticated with the key of the server's scope; a call never hops through a supervisor. Each thread
keeps one connection per server (a pickled ref reconnects in the process that loads it). A request
carries an id and the incarnation it is for; the reply names the id. A call waits on two
descriptors at once, the connection and a pidfd of the server, so a server that dies fails the call
at once (``ServerDown``), never at the timeout. Nothing is ever sent twice: any exception between a
request and its reply (a timeout, a signal handler's, Ctrl-C) drops the connection, so a late reply
is never read by a later call.

When a server died without saying why, its supervisor is asked (``AwaitExit``, bounded) for the exit
reason it reaped. A :class:`Monitor` is that same question asked ahead: a connection to the server's
supervisor that becomes readable when the process has been reaped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import struct
import threading
import time
from typing import Any

from .. import _names, _wire
from .._deadlines import deadline_from, remaining
from .._keys import Key
from .._protocol import AwaitExit
from .._transport import AUTH_TIMEOUT, KeyMismatch, KeyRefused, connect
from ..errors import (
    AuthenticationError,
    CallingSelfError,
    CallTimeout,
    NoProc,
    Overloaded,
    ServerDown,
    SupervisorError,
)
from ..reasons import ExitReason
from .ref import ServerRef, key_for_scope

__all__ = [
    "DEFAULT_TIMEOUT",
    "Monitor",
    "call",
    "cast",
    "monitor",
    "resolve",
    "server_status",
]

DEFAULT_TIMEOUT = 5.0
"""Seconds a call waits for its reply by default (OTP's 5000 ms)."""
_EXIT_GRACE = 1.0
"""Seconds a caller whose handshake was cut waits for the server's pidfd to say it is exiting."""
REASON_TIMEOUT = 2.0
"""Seconds a failed call gives the server's supervisor, at most, to say why the server died."""
_POLL_MAX_MS = 2**31 - 1

_local = threading.local()
_close_fd = os.close
_serving: tuple[int, int] | None = None  # (pid, thread) of this process's server loop, if it runs one


def serving_here(pid: int, thread: int) -> None:
    """Mark this process's thread *thread* as running the server *pid* (a call to it is calling_self)."""
    global _serving
    _serving = (pid, thread)


class _Link:
    """
    One thread's connection to one server process, and a pidfd of that process. Its socket is
    non-blocking: every read and write is bounded by the call's deadline, and a request costs one
    write, one poll and the reads of its answer.
    """

    def __init__(self, conn: Any, pidfd: int, server_pid: int) -> None:
        self.conn = conn
        self.fd: int = conn.fileno()
        os.set_blocking(self.fd, False)
        self.pidfd = pidfd
        self.server_pid = server_pid
        self.ids = itertools.count(1)
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.poller.register(pidfd, select.POLLIN)
        self.reader = select.poll()
        self.reader.register(self.fd, select.POLLIN)
        self.writer = select.poll()
        self.writer.register(self.fd, select.POLLOUT)

    def close(self) -> None:
        # No module globals here (contextlib, os): __del__ may run while the interpreter tears down.
        try:
            self.conn.close()
        except OSError:
            pass
        pidfd, self.pidfd = self.pidfd, -1
        if pidfd >= 0:
            try:
                _close_fd(pidfd)
            except OSError:
                pass

    def __del__(self) -> None:
        # A thread's links go with the thread (its threading.local): their descriptors go too.
        self.close()

    def send(self, data: bytes, deadline: float | None) -> None:
        """
        Write *data* as one frame, by *deadline*.

        Raises:
            TimeoutError: the server did not take it in time (part of it may have been written).
            OSError: the connection is closed (the server had closed it: it read nothing of it).
        """
        size = len(data)
        header = struct.pack("!i", size) if size < 2**31 else struct.pack("!iQ", -1, size)
        view = memoryview(header + data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                if not _wait(self.writer, deadline):
                    raise TimeoutError("the server did not take the request in time") from None

    def read_frame(self, deadline: float | None) -> bytearray:
        """
        One frame, read whole by *deadline* (a server stopped in the middle of one cannot hold the
        caller past it).

        Raises:
            TimeoutError: the frame did not come whole in time.
            EOFError, OSError: the connection ended before or in the middle of it.
        """
        header = self._read_exactly(4, deadline, first=True)
        (size,) = struct.unpack("!i", header)
        if size == -1:
            (size,) = struct.unpack("!Q", self._read_exactly(8, deadline))
        return self._read_exactly(size, deadline)

    def _read_exactly(self, size: int, deadline: float | None, first: bool = False) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                n = os.readv(self.fd, [view[got:]])
            except BlockingIOError:
                if not _wait(self.reader, deadline):
                    raise TimeoutError("the answer did not come whole in time") from None
                continue
            if n == 0:
                if first and got == 0:
                    raise EOFError
                raise OSError("end of file in the middle of an answer")
            got += n
        return buffer

    def wait(self, deadline: float | None) -> str:
        """Block until a frame can be read ("data"), the server died ("dead") or *deadline* ("timeout")."""
        while True:
            if deadline is None:
                events = self.poller.poll()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                events = self.poller.poll(min(int(left * 1000) + 1, _POLL_MAX_MS))
            if not events:
                continue
            if any(fd == self.fd for fd, _ in events):
                return "data"  # a reply sent just before the server died is still read
            return "dead"


def _wait(poller: Any, deadline: float | None) -> bool:
    """Poll *poller* until it has an event (True) or *deadline* passes (False)."""
    while True:
        if deadline is None:
            if poller.poll():
                return True
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if poller.poll(min(int(left * 1000) + 1, _POLL_MAX_MS)):
            return True


def _links() -> dict[str, _Link]:
    links: dict[str, _Link] | None = getattr(_local, "links", None)
    if links is None or getattr(_local, "pid", None) != os.getpid():
        for inherited in (links or {}).values():  # a forked child's copies of its parent's links
            inherited.close()
        links = {}
        _local.links, _local.pid = links, os.getpid()
    return links


def _drop(target: ServerRef) -> None:
    link = _links().pop(target.address, None)
    if link is not None:
        link.close()


def _link(target: ServerRef, call: str, deadline: float | None) -> _Link:
    """This thread's connection to *target*'s process, made if needed; raises SupervisorError."""
    links = _links()
    link = links.get(target.address)
    if link is not None:
        if link.server_pid == target.pid:
            return link  # if its server has closed it since, the write fails: NoProc
        del links[target.address]
        link.close()
    try:
        pidfd = os.pidfd_open(target.pid)
    except ProcessLookupError:
        raise _no_proc(call, target) from None
    try:
        conn = connect(target.address, target.key, _bounded(AUTH_TIMEOUT, deadline))
    except BaseException as error:
        # A socket is closed as its process exits, a moment before its pidfd fires: a server that
        # hangs up in the handshake is nearly always exiting, so give its pidfd a moment to say so.
        ended = isinstance(error, OSError) and _ends_within(pidfd, _bounded(_EXIT_GRACE, deadline))
        os.close(pidfd)
        if isinstance(error, (FileNotFoundError, ConnectionRefusedError)):
            raise _no_proc(call, target) from error
        if isinstance(error, KeyRefused):
            raise AuthenticationError(f"{call}: server {target.path} refused this key") from error
        if isinstance(error, KeyMismatch):
            raise AuthenticationError(
                f"{call}: the peer at server {target.path}'s address does not hold its key"
            ) from error
        if isinstance(error, TimeoutError):
            raise CallTimeout(
                f"{call}: server {target.path} did not complete the connection handshake in time; "
                "nothing was sent"
            ) from error
        if isinstance(error, OSError):
            if ended:
                raise _no_proc(call, target) from error
            raise CallTimeout(
                f"{call}: server {target.path} closed the connection during the handshake (it is too loaded "
                "to complete one within its deadline); nothing was sent"
            ) from error
        raise
    _sweep(links)
    link = _Link(conn, pidfd, target.pid)
    links[target.address] = link
    return link


def _sweep(links: dict[str, _Link]) -> None:
    """
    Close this thread's links to servers that have died: a caller of many short-lived servers
    (sessions come and go) keeps descriptors for the live ones only. One poll over them all, when
    a new link is made.
    """
    dead = _ended([link.pidfd for link in links.values()])
    for address, link in list(links.items()):
        if link.pidfd in dead:
            del links[address]
            link.close()


def _ended(fds: list[int]) -> set[int]:
    """Those of *fds* that are readable now (a pidfd: its process ended; a watch: it was answered)."""
    if not fds:
        return set()
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(0)}


def _ends_within(pidfd: int, seconds: float) -> bool:
    """Whether the process of *pidfd* ends (its pidfd is readable) within *seconds*; blocks that long."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(seconds * 1000)))


def _bounded(seconds: float, deadline: float | None) -> float:
    return seconds if deadline is None else max(0.0, min(seconds, deadline - time.monotonic()))


def _no_proc(call: str, target: ServerRef) -> NoProc:
    return NoProc(f"{call}: server {target.path} (pid {target.pid}) is not running; nothing was sent")


def _check_ref(target: object) -> ServerRef:
    if not isinstance(target, ServerRef):
        raise TypeError(
            f"'target' must be a ServerRef (from whereis) (got {target!r} that is a {type(target).__name__})"
        )
    return target


def _encode(call: str, message: Any) -> bytes:
    try:
        return _wire.dumps(message)
    except Exception as error:
        raise TypeError(f"{call}: the message cannot be pickled: {type(error).__name__}: {error}") from error


def call(target: ServerRef, request: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """
    Send *request* to the server *target* and return its reply. Blocks until the reply, or *timeout*
    seconds (None: for ever). Sent once, never again: nothing is retried.

    Raises:
        TypeError, ValueError: *target* or *timeout* is not valid, or *request* cannot be pickled;
            nothing was sent.
        CallTimeout: no reply within *timeout*. The request may still run.
        ServerDown: the server died before replying (its ``reason`` says why, when known).
        NoProc: *target*'s process is not running (or is another incarnation); nothing ran.
        Overloaded: the server's mailbox is full; nothing ran.
        CallingSelfError: a server's handler called its own server.
        AuthenticationError: the server refused the ref's key.
    """
    target = _check_ref(target)
    deadline = deadline_from("timeout", timeout)
    if _serving is not None and _serving == (target.pid, threading.get_ident()) and target.pid == os.getpid():
        raise CallingSelfError(f"call: server {target.path} called itself: that call could only deadlock")
    return _request("call", target, request, deadline, timeout)


def cast(target: ServerRef, message: Any, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """
    Put *message* in the mailbox of the server *target* (its ``handle_cast``) and return: it waits for
    the mailbox to take the message (the server's mailbox thread answers at once, even while a handler
    runs), never for the handling. To a server that is not running (or dies meanwhile) it does
    nothing, as OTP's cast.

    Raises:
        TypeError, ValueError: *target* or *timeout* is not valid, or *message* cannot be pickled.
        Overloaded: the server's mailbox is full: the message was not queued.
        CallTimeout: the mailbox did not answer within *timeout* (the server's process is stopped or
            starved); the message may still be delivered.
        AuthenticationError: the server refused the ref's key.
    """
    target = _check_ref(target)
    deadline = deadline_from("timeout", timeout)
    with contextlib.suppress(NoProc, ServerDown):
        _request("cast", target, message, deadline, timeout)


def server_status(target: ServerRef, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """
    What the server's mailbox thread says of it, for operators' tools: ``{"mailbox": n}``, the
    messages waiting (not the one being handled). Answered without the server's main thread, so
    it comes while a handler runs. Blocks for one round trip; raises as :func:`call` does.
    """
    target = _check_ref(target)
    deadline = deadline_from("timeout", timeout)
    answer: dict[str, Any] = _request("status", target, None, deadline, timeout)
    return answer


def _request(
    kind: str, target: ServerRef, payload: Any, deadline: float | None, timeout: float | None
) -> Any:
    link = _link(target, kind, deadline)
    request_id = next(link.ids)
    data = _encode(kind, (kind, request_id, target.incarnation, payload))
    try:
        try:
            link.send(data, deadline)
        except TimeoutError:
            ready = "timeout"  # the request may have been taken in part: the connection goes
        except OSError:
            # The server had closed the connection: it never read the request.
            _drop(target)
            raise _no_proc(kind, target) from None
        else:
            ready = ""
        while True:
            if ready != "timeout":
                ready = link.wait(deadline)
            if ready == "timeout":
                _drop(target)
                what = "request may still run" if kind == "call" else "message may still be delivered"
                raise CallTimeout(
                    f"{kind}: server {target.path} did not answer within {timeout} s; the {what} "
                    "(it is not withdrawn, and not retried)"
                )
            if ready == "dead":
                raise _down(kind, target, deadline)
            try:
                frame = link.read_frame(deadline)
            except TimeoutError:
                ready = "timeout"
                continue
            except (EOFError, OSError):
                raise _down(kind, target, deadline) from None
            try:
                reply = _wire.loads(frame)
            finally:
                _wire.zero(frame)
            if reply[1] != request_id:
                continue  # not this request's: cannot happen on a connection dropped at every failure
            return _answer(kind, target, reply, deadline)
    except BaseException:
        _drop(target)
        raise


def _answer(kind: str, target: ServerRef, reply: tuple[Any, ...], deadline: float | None) -> Any:
    status = reply[0]
    if status == "reply":
        return reply[2]
    if status == "queued":
        return None
    if status == "status":
        return reply[2]
    if status == "overloaded":
        raise Overloaded(f"{kind}: the mailbox of server {target.path} is full; the message was not queued")
    if status == "noproc":
        _drop(target)
        raise _no_proc(kind, target)
    if status == "down":
        _drop(target)
        reason: ExitReason = reply[2]
        return_error = ServerDown(
            f"{kind}: server {target.path} died before replying: {reason.describe()}", reason
        )
        raise return_error
    raise SupervisorError(f"{kind}: server {target.path} sent an unknown answer {status!r}")


def _down(kind: str, target: ServerRef, deadline: float | None) -> ServerDown:
    _drop(target)
    reason = _exit_reason(target, deadline)
    why = "" if reason is None else f": {reason.describe()}"
    return ServerDown(f"{kind}: server {target.path} (pid {target.pid}) died before replying{why}", reason)


def _exit_reason(target: ServerRef, deadline: float | None) -> ExitReason | None:
    """The exit reason *target*'s supervisor reaped, asked within a short bound; None if it cannot say."""
    bound = (
        REASON_TIMEOUT if deadline is None else min(REASON_TIMEOUT, max(0.05, deadline - time.monotonic()))
    )
    try:
        with Monitor(target, bound) as watch:
            return watch.wait(bound)
    except (SupervisorError, OSError):
        return None


class Monitor:
    """
    A watch on one server process, answered by its supervisor when the process has been reaped.

    :meth:`fileno` becomes readable then, so it composes with ``select``, ``selectors`` and asyncio's
    ``add_reader``; :meth:`wait` returns the :class:`~supervisor.ExitReason`. Holds one connection
    to the supervisor until :meth:`close` (or the end of a ``with`` block). Inside a GenServer, use
    ``self.monitor(ref)``: the notice then arrives in ``handle_info``.
    """

    def __init__(self, target: ServerRef, timeout: float = AUTH_TIMEOUT) -> None:
        """
        Ask *target*'s supervisor to say when the process ends. Blocks for the connection (within
        *timeout* seconds).

        Raises:
            NoProc: the supervisor is not running.
            AuthenticationError: the supervisor refused the ref's key.
            CallTimeout: the supervisor did not complete the handshake within *timeout*.
        """
        self.target = _check_ref(target)
        self.reason: ExitReason | None = None
        self._error: SupervisorError | None = None
        self._done = False
        self._lock = threading.Lock()  # one reader at a time: the answer is read once, then kept
        try:
            self._conn = connect(target.supervisor_address, target.key, timeout)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise NoProc(f"monitor: the supervisor of server {target.path} is not running") from error
        except KeyMismatch as error:
            raise AuthenticationError(
                f"monitor: the supervisor of server {target.path} refused this ref's key"
            ) from error
        except TimeoutError as error:
            raise CallTimeout(f"monitor: the supervisor of server {target.path} did not answer") from error
        except OSError as error:
            raise NoProc(f"monitor: the supervisor of server {target.path} is going away") from error
        try:
            _wire.send(self._conn, AwaitExit(target.pid))
        except OSError as error:
            self._conn.close()
            raise NoProc(f"monitor: the supervisor of server {target.path} is going away") from error
        self._fd: int = self._conn.fileno()
        self._closed = False

    def fileno(self) -> int:
        """
        A descriptor that becomes readable when the process has ended (and stays so).

        Raises:
            ValueError: the monitor is closed.
        """
        if self._closed:
            raise ValueError("the monitor is closed")
        return self._fd

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """
        The process's exit reason once it has ended; None if *timeout* seconds pass first (None:
        wait for ever). Blocks.

        Raises:
            NoProc: the process was not its supervisor's child (it had ended long ago).
        """
        if not self._done:
            if self._closed:
                raise ValueError("the monitor is closed")
            deadline = deadline_from("timeout", timeout)
            left = remaining(deadline)
            if not self._lock.acquire(timeout=-1 if left is None else left):
                return None
            try:
                if not self._done:
                    if not self._conn.poll(remaining(deadline)):
                        return None
                    self._read()
            finally:
                self._lock.release()
        if self._error is not None:
            raise self._error
        return self.reason

    def _read(self) -> None:
        self._done = True
        try:
            status, value = _wire.recv(self._conn)
        except (EOFError, OSError):
            # The supervisor exited without answering: its children die with it.
            self.reason = ExitReason.killed("its supervisor exited first")
            return
        if status == "ok":
            self.reason = value
        elif isinstance(value, SupervisorError):
            self._error = value
        else:
            self._error = SupervisorError(f"monitor: unexpected answer {status!r}")

    def close(self) -> None:
        """Stop watching; the descriptor is closed. Closing twice does nothing."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "waiting" if not self._done else (self.reason.describe() if self.reason else "error")
        return f"<Monitor {self.target.path} pid {self.target.pid}: {state}>"


def monitor(target: ServerRef) -> Monitor:
    """Watch the server *target* until its process ends; see :class:`Monitor`. Blocks for a connect."""
    return Monitor(target)


def resolve(private_dir: str, held: Key, held_scope: str, path: str) -> ServerRef | None:
    """
    The running server at *path*, as a ref carrying the key of its scope (derived from *held*, of
    *held_scope*); None if no server runs there. Reads one file; does not block on any process.

    Raises:
        AuthenticationError: *held* does not open the server's scope.
    """
    entry = _names.read_server(private_dir, path)
    if entry is None or not entry.is_alive():
        return None
    key = key_for_scope(held, held_scope, entry.scope, f"server {path}")
    return ServerRef(entry.path, entry.pid, entry.incarnation, private_dir, entry.scope, key)
