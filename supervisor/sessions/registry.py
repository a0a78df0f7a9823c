"""
The session registry's client: typed reads of the registry server's table (our ETS table).

The table lives in the registry server process (``registry_server.py``), a worker child of the
Application's supervisor listening on a Unix socket in the tree's private directory. Its address is
stable, so when the server dies and is restarted, clients reconnect to the same place. A connection
(:class:`RegistryLink`) is authenticated both ways with the tree's key, as a control socket is, then
carries one request at a time: a method of the table and its arguments, pickled with the C pickler,
answered by its value. Nothing on the server counts references to anything, so no client, live,
exiting or left over from a previous server, can make the server drop or change its table by going
away (``multiprocess`` proxies did: their decref at exit reached a restarted server).

Every wait of a client is bounded: the connect, the handshake, each send and each reply wait on a
non-blocking socket until a deadline, so a server that is stopped (SIGSTOP) or hung costs a reader
its bound and no more, and raises :class:`RegistryUnavailableError`.

A registry server that was just restarted is empty until the SessionManager has republished every live
session; the SessionManager writes the ``PUBLISHED`` marker key with them, in the same update, and
readers treat a registry without it as unavailable for the moment. So a reader never mistakes the gap
for an empty registry. Values are stored encoded (``_wire.dumps``: the C pickler), so the server moves
bytes rather than objects. Reads (``get``, ``snapshot``) are one round trip each. A client that finds
the server gone retries, with short growing pauses, until its wait bound: there is no event to wait on
for a server that is not there yet.
"""

from __future__ import annotations

import math
import os
import pickle
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from .._keys import Key
from .._transport import ClientHandshake, KeyMismatch
from ..errors import AuthenticationError, RegistryUnavailableError

__all__ = ["PUBLISHED", "RegistryClient", "RegistryLink", "RemoteFailure"]

PUBLISHED = "\x00published"
"""The marker key: present once the SessionManager has published its sessions in this server."""

_HEADER = struct.Struct("!i")  # the frame header of ``multiprocess`` connections, which the server uses
_MAX_STEP = 86400.0  # poll(2) takes at most ~24.8 days: longer waits are taken in steps


class RemoteFailure(ConnectionError):
    """The registry server answered a request with an error (its text is the message)."""


class RegistryLink:
    """
    One connection to the registry server, on a non-blocking socket: framing, the handshake, calls.

    Blocking methods take a monotonic *deadline* and raise TimeoutError when it passes; the
    non-blocking ones (:meth:`fill`, :meth:`take_frame`, :meth:`advance`) let a loop drive the link
    from readiness events instead. Used by one thread.
    """

    def __init__(self, sock: socket.socket, authkey: Key | bytes) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.pid = os.getpid()
        self.handshake: ClientHandshake | None = ClientHandshake(authkey)
        self._buffer = bytearray()

    @classmethod
    def begin(cls, address: str, authkey: Key | bytes) -> RegistryLink:
        """
        Connect to *address* without blocking; the handshake is still to run (:meth:`advance`).

        Raises:
            OSError: nobody listens there (FileNotFoundError, ConnectionRefusedError), or its
                backlog is full (BlockingIOError).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return cls(sock, authkey)

    @classmethod
    def open(cls, address: str, authkey: Key | bytes, deadline: float) -> RegistryLink:
        """A connected, authenticated link; blocks until *deadline* at most (TimeoutError)."""
        link = cls.begin(address, authkey)
        try:
            while not link.advance():
                link.wait(select.POLLIN, deadline)
        except BaseException:
            link.close()
            raise
        return link

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def is_idle_and_open(self) -> bool:
        """True if nothing came from the server since the last reply: a readable idle link is closed."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    # ------------------------------------------------------------------ the handshake

    def advance(self) -> bool:
        """
        Run the handshake on what the server has sent so far, without blocking; True once it is done.

        Raises:
            KeyRefused: the server refused our key.
            KeyMismatch: the server does not hold the authkey.
            EOFError: the server closed the connection during the handshake without refusing our
                key (it is going away, or cut the handshake at its deadline).
            OSError: the connection failed.
        """
        handshake = self.handshake
        if handshake is None:
            return True
        closed: EOFError | None = None
        try:
            self.fill()
        except EOFError as error:
            closed = error  # a refusal sent before the close is still in the buffer
        while not handshake.done and self._buffer:
            data = bytes(self._buffer[: handshake.needed])
            del self._buffer[: len(data)]
            answer = handshake.feed(data)
            if answer and self.sock.send(answer) != len(answer):  # fits: the first bytes we send
                raise ConnectionError("the handshake's answer did not fit in the socket buffer")
        if not handshake.done:
            if closed is not None:
                raise EOFError(
                    "the session registry server closed the connection during the handshake"
                ) from closed
            return False
        self.handshake = None
        return True

    # ------------------------------------------------------------------ frames

    def fill(self) -> None:
        """Read whatever the server has sent, without blocking; EOFError if it closed the connection."""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                raise EOFError("the session registry server closed the connection")
            self._buffer += chunk
            if len(chunk) < 1 << 16:
                return

    def take_frame(self) -> bytes | None:
        """The next whole frame already read, if any."""
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        end = _HEADER.size + size
        if size < 0 or len(self._buffer) < end:
            if size < 0:
                raise ConnectionError("the session registry server sent a frame too large to read")
            return None
        frame = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return frame

    def recv_frame(self, deadline: float) -> bytes:
        """The next frame; blocks until *deadline* at most (TimeoutError)."""
        while (frame := self.take_frame()) is None:
            self.wait(select.POLLIN, deadline)
            self.fill()
        return frame

    def send_frame(self, payload: bytes, deadline: float) -> None:
        """Send *payload* as one frame; blocks until *deadline* at most (TimeoutError: the link is spoilt)."""
        if len(payload) > 0x7FFFFFFF:
            raise ValueError("a registry request must be smaller than 2 GiB")
        view = memoryview(_HEADER.pack(len(payload)) + payload)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                self.wait(select.POLLOUT, deadline)
                continue
            view = view[sent:]

    def wait(self, events: int, deadline: float) -> None:
        """Block until the socket is ready for *events* (or failed), or raise TimeoutError at *deadline*."""
        poller = select.poll()
        poller.register(self.sock, events)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the session registry server did not answer in time")
            if poller.poll(math.ceil(min(left, _MAX_STEP) * 1000)):
                return

    # ------------------------------------------------------------------ requests

    @staticmethod
    def request(method: str, *args: Any) -> bytes:
        """The frame payload that asks the table for ``method(*args)``."""
        return pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def reply(frame: bytes) -> Any:
        """
        The value a reply frame carries; RemoteFailure if it is the server's error, and the error itself
        if the server raised one of the package's errors (or a TypeError or ValueError about an argument).
        """
        status, value = pickle.loads(frame)
        if status == "raise" and isinstance(value, Exception):
            raise value
        if status != "ok":
            raise RemoteFailure(f"the session registry server failed a request: {value}")
        return value

    def call(self, method: str, args: tuple[Any, ...], deadline: float) -> Any:
        """``method(*args)`` on the table, one round trip; blocks until *deadline* at most."""
        self.send_frame(self.request(method, *args), deadline)
        return self.reply(self.recv_frame(deadline))


class RegistryClient:
    """
    Typed reads of the registry from any process and thread; every read is bounded.

    Each thread of each process uses a link of its own, made on first use. Picklable as address,
    authkey and wait bound.
    """

    def __init__(self, address: str, authkey: Key | bytes, timeout: float = 5.0) -> None:
        self.address = address
        self.authkey = authkey
        self.timeout = timeout
        self._local = threading.local()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.address, self.authkey, self.timeout))

    # ------------------------------------------------------------------ reads

    def get(self, key: str, timeout: float | None = None) -> Any:
        """
        The value under *key*, or None; waits while the registry is being republished or is away, up
        to *timeout* seconds (None: this client's bound). Blocks at most that long.

        Raises:
            RegistryUnavailableError: no answer from a published registry within the bound.
            AuthenticationError: the registry server refused this client's authkey.
        """

        def read(link: RegistryLink, deadline: float) -> Any:
            value, published = link.call("lookup", (key,), deadline)
            if not published:
                raise _NotPublished
            return None if value is None else pickle.loads(value)

        return self._call(read, timeout)

    def snapshot(self, timeout: float | None = None) -> dict[str, Any]:
        """A copy of the whole registry, in one round trip; waits and raises as :meth:`get` does."""

        def read(link: RegistryLink, deadline: float) -> dict[str, Any]:
            copy: dict[str, bytes] = link.call("snapshot", (), deadline)
            if copy.pop(PUBLISHED, None) is None:
                raise _NotPublished
            return {key: pickle.loads(value) for key, value in copy.items()}

        result: dict[str, Any] = self._call(read, timeout)
        return result

    def ask(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        """
        ``method(*args)`` of the registry server, asked once (never retried: it may act, not only
        read); blocks *timeout* seconds at most.

        Raises:
            RegistryUnavailableError: no answer within *timeout* (it may have acted), or the server
                is away.
            AuthenticationError: the registry server refused this client's authkey.
            the server's own error (one of the package's, or a TypeError or ValueError), re-raised.
        """
        deadline = time.monotonic() + timeout
        try:
            link = self._link(deadline)
            link.send_frame(link.request(method, *args), deadline)
            frame = link.recv_frame(deadline)
        except KeyMismatch as mismatch:
            self.reset()
            raise _refused(self.address) from mismatch
        except (OSError, EOFError) as failure:
            self.reset()
            raise RegistryUnavailableError(
                f"the session registry at {self.address} did not answer {method!r} within {timeout} s"
            ) from failure
        except BaseException:
            self.reset()  # a reply may still be in flight: this link must not be used again
            raise
        return link.reply(frame)

    # ------------------------------------------------------------------ plumbing

    def reset(self) -> None:
        """Close this thread's link, if any: the next read makes a new one."""
        link: RegistryLink | None = getattr(self._local, "link", None)
        self._local.link = None
        if link is not None:
            link.close()  # in a forked child, this closes the child's copy only

    def _link(self, deadline: float) -> RegistryLink:
        link: RegistryLink | None = getattr(self._local, "link", None)
        if link is not None and (link.pid != os.getpid() or not link.is_idle_and_open()):
            self.reset()  # inherited through a fork, or closed by a server that died since
            link = None
        if link is None:
            link = RegistryLink.open(self.address, self.authkey, deadline)
            self._local.link = link
        return link

    def _call(self, operation: Callable[[RegistryLink, float], Any], timeout: float | None) -> Any:
        bound = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + bound
        pause = 0.005
        while True:
            try:
                return operation(self._link(deadline), deadline)
            except _NotPublished as not_published:
                error: BaseException = not_published
            except KeyMismatch as mismatch:
                self.reset()
                raise _refused(self.address) from mismatch
            except BaseException as failure:
                # A reply may still be in flight (a timeout, a signal handler's exception): the link
                # must not be used again, or the next read would take this one's reply.
                self.reset()
                if not isinstance(failure, (OSError, EOFError)):
                    raise
                error = failure
            if not os.path.isdir(os.path.dirname(self.address)):
                # The tree's private directory goes when its root exits: nothing will come back.
                raise RegistryUnavailableError(
                    f"the session registry at {self.address} is gone: its Application has stopped"
                ) from error
            now = time.monotonic()
            if now >= deadline or isinstance(error, TimeoutError):
                raise RegistryUnavailableError(
                    f"the session registry at {self.address} did not answer within {bound} s"
                ) from error
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.2)


def _refused(address: str) -> AuthenticationError:
    return AuthenticationError(f"the session registry at {address} refused this client's authkey")


class _NotPublished(Exception):
    """The registry server is up but the SessionManager has not republished its sessions yet."""
