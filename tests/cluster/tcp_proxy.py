"""
A TCP proxy for tests that can cut the network between a client and a server, silently or loudly.

:class:`TcpProxy` listens on a free 127.0.0.1 port and forwards every connection it accepts to one
target. One background thread runs every connection through :mod:`selectors` with non-blocking
sockets; each direction of a connection buffers at most ``buffer_size`` bytes (reading stops while
the buffer is full, so a slow side slows the other rather than growing memory).

- ``cut("blackhole")``: a silent partition. Connections stay open and nothing moves in either
  direction; new connections are accepted (the client's connect succeeds) and then ignored. A
  client sees its requests time out, never an error.
- ``cut("reset")``: the server is unreachable. Every connection is closed at once with a reset
  (RST), and new ones are refused (ECONNREFUSED): the port stops listening but stays bound.
- ``heal()``: forward again. Connections held through a blackhole are closed then (their bytes are
  lost anyway), so a client reconnects cleanly instead of reading a half-delivered answer.

The controls are thread-safe: each is run by the proxy's thread and blocks until it has taken effect
(for ``cut("reset")``: every connection is closed when it returns).
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal

__all__ = ["CutMode", "TcpProxy"]

HOST = "127.0.0.1"
CutMode = Literal["blackhole", "reset"]
Mode = Literal["open", "blackhole", "reset"]

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN
_CONTROL_TIMEOUT = 10.0
_ACCEPTS_PER_WAKEUP = 64


def _bind_listener() -> socket.socket:
    """
    A listening, non-blocking socket on a free 127.0.0.1 port, bound to that port by number.

    Bound by number (not port 0) so that ``shutdown(SHUT_RD)`` (stop listening) keeps the port:
    Linux releases an automatically picked port when a listener stops, and keeps a chosen one.
    Retries a few times if another process takes the port between the pick and the bind.
    """
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError as error:
            listener.close()
            if error.errno == errno.EADDRINUSE:
                continue
            raise
        return listener
    raise OSError(errno.EADDRINUSE, "no free port for the proxy after 20 tries")


def _close(sock: socket.socket, *, reset: bool = False) -> None:
    """Close *sock*; with *reset*, make the peer see a connection reset (RST) rather than an end."""
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    sock.close()


class _Pipe:
    """One proxied connection: the accepted client socket, its upstream socket and two buffers."""

    __slots__ = (
        "client",
        "client_eof",
        "client_shut",
        "closed",
        "connecting",
        "frozen",
        "masks",
        "to_client",
        "to_upstream",
        "upstream",
        "upstream_eof",
        "upstream_shut",
    )

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.connecting = True
        self.client_eof = False  # the client sent its end (FIN)
        self.upstream_eof = False
        self.client_shut = False  # we passed the upstream's end on to the client (shutdown SHUT_WR)
        self.upstream_shut = False
        self.frozen = False
        self.closed = False
        self.masks: dict[socket.socket, int] = {client: 0, upstream: 0}


class _Command:
    """A control the loop thread runs; the caller blocks on ``done``."""

    __slots__ = ("action", "done", "error")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = threading.Event()
        self.error: BaseException | None = None


class TcpProxy:
    """
    A proxy from ``address`` (a free 127.0.0.1 port) to ``(target_host, target_port)``.

    Starts its thread at construction and forwards until :meth:`cut`, then again after
    :meth:`heal`; :meth:`close` ends it. Usable as a context manager (closes on exit).

    Args:
        target_host: where connections go.
        target_port: the target's port.
        buffer_size: bytes buffered per direction per connection.
        max_held: connections held open during a blackhole; the oldest is dropped past it.
    """

    def __init__(
        self, target_host: str, target_port: int, *, buffer_size: int = 65536, max_held: int = 1024
    ) -> None:
        self._target = (target_host, target_port)
        self._buffer_size = buffer_size
        self._max_held = max_held
        self._mode: Mode = "open"
        self._lock = threading.Lock()
        self._commands: collections.deque[_Command] = collections.deque()
        self._closed = False
        self._stopping = False
        self._failure: BaseException | None = None
        self._pipes: set[_Pipe] = set()
        self._held: collections.deque[socket.socket] = collections.deque()
        self._listening = True
        self._selector = selectors.DefaultSelector()
        self._listener = _bind_listener()
        self._port: int = self._listener.getsockname()[1]
        self._wake_read, self._wake_write = socket.socketpair()
        try:
            self._wake_read.setblocking(False)
            self._wake_write.setblocking(False)
            self._selector.register(self._wake_read, selectors.EVENT_READ, None)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._thread = threading.Thread(target=self._run, name=f"tcp-proxy-{self._port}", daemon=True)
            self._thread.start()
        except BaseException:
            for sock in (self._wake_read, self._wake_write, self._listener):
                sock.close()
            self._selector.close()
            raise

    # -- what it is -------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` clients connect to."""
        return (HOST, self._port)

    @property
    def host(self) -> str:
        """The proxy's host: ``127.0.0.1``."""
        return HOST

    @property
    def port(self) -> int:
        """The proxy's port."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for HTTP clients."""
        return f"http://{HOST}:{self._port}"

    @property
    def target(self) -> tuple[str, int]:
        """Where connections are forwarded."""
        return self._target

    @property
    def mode(self) -> Mode:
        """``"open"`` (forwarding), ``"blackhole"`` or ``"reset"``."""
        return self._mode

    # -- controls (any thread; each blocks until the proxy's thread has applied it) ---------------

    def cut(self, mode: CutMode = "blackhole") -> None:
        """
        Cut the link: ``"blackhole"`` (silent: held open, nothing forwarded, new ones accepted and
        ignored) or ``"reset"`` (every connection reset now, new ones refused).

        Blocks until applied (at most 10 s). Cutting again with another mode switches to it.
        """
        if mode == "blackhole":
            self._call(self._blackhole)
        elif mode == "reset":
            self._call(self._reset)
        else:
            raise ValueError(f"cut mode must be 'blackhole' or 'reset', not {mode!r}")

    def heal(self) -> None:
        """Forward normally again; connections held by a blackhole are closed. Blocks until applied."""
        self._call(self._heal)

    def close(self) -> None:
        """
        Stop the thread and close every socket (blocks until the thread has ended; idempotent).

        Raises:
            RuntimeError: the proxy's thread had died of an unexpected error (chained to it).
        """
        with self._lock:
            first = not self._closed
            if first:
                self._closed = True
                self._commands.append(_Command(self._stop))
                self._wake()
        self._thread.join(_CONTROL_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the proxy's thread did not end within {_CONTROL_TIMEOUT:g} s")
        if first and self._failure is not None:
            raise RuntimeError("the proxy's thread failed") from self._failure

    def __enter__(self) -> TcpProxy:
        """Return this proxy (already running)."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the proxy: see :meth:`close`."""
        self.close()

    def __repr__(self) -> str:
        return f"<TcpProxy {self._mode} {HOST}:{self._port} -> {self._target[0]}:{self._target[1]}>"

    def _call(self, action: Callable[[], None]) -> None:
        """Run *action* on the proxy's thread and block until it has run; re-raise its error."""
        command = _Command(action)
        with self._lock:
            if self._closed:
                raise RuntimeError("the proxy is closed") from self._failure
            self._commands.append(command)
            self._wake()
        if not command.done.wait(_CONTROL_TIMEOUT):
            raise RuntimeError(f"the proxy's thread did not answer within {_CONTROL_TIMEOUT:g} s")
        if command.error is not None:
            raise command.error

    def _wake(self) -> None:
        """Make the loop's select return (the lock is held; one pending byte is enough)."""
        try:
            self._wake_write.send(b"\0")
        except BlockingIOError:
            pass

    # -- the loop (the proxy's thread only, from here on) -----------------------------------------

    def _run(self) -> None:
        """The thread: wait for sockets and commands until stopped; then close everything."""
        try:
            while not self._stopping:
                commands_waiting = False
                for key, mask in self._selector.select():
                    if key.fileobj is self._wake_read:
                        commands_waiting = True
                    elif key.fileobj is self._listener:
                        self._accept()
                    else:
                        pipe, sock = key.data
                        self._serve(pipe, sock, mask)
                if commands_waiting:
                    self._run_commands()
        except BaseException as error:
            self._failure = error
        finally:
            self._teardown()

    def _run_commands(self) -> None:
        """Drain the wake socket and run the queued commands, in order."""
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            try:
                command.action()
            except Exception as error:
                command.error = error
            finally:
                command.done.set()

    def _accept(self) -> None:
        """Accept what is waiting: pipe it upstream when open, hold it in a blackhole."""
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
                    return
                raise
            client.setblocking(False)
            if self._mode == "blackhole":
                self._held.append(client)
                while len(self._held) > self._max_held:
                    _close(self._held.popleft(), reset=True)
                continue
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            pipe = _Pipe(client, upstream)
            self._pipes.add(pipe)
            status = upstream.connect_ex(self._target)
            if status not in (0, errno.EINPROGRESS):
                self._abort(pipe)
                continue
            self._update(pipe)

    def _serve(self, pipe: _Pipe, sock: socket.socket, mask: int) -> None:
        """Handle one readiness event of one of *pipe*'s sockets; any socket error ends the pipe."""
        if pipe.closed or pipe.frozen:  # closed or frozen by an earlier event of this same select
            return
        try:
            if sock is pipe.upstream and pipe.connecting:
                status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if status != 0:
                    self._abort(pipe)  # the target refused: the client sees a reset
                    return
                pipe.connecting = False
            else:
                outgoing = pipe.to_client if sock is pipe.client else pipe.to_upstream
                incoming = pipe.to_upstream if sock is pipe.client else pipe.to_client
                if mask & selectors.EVENT_WRITE and outgoing:
                    sent = sock.send(outgoing, socket.MSG_NOSIGNAL)
                    del outgoing[:sent]
                room = self._buffer_size - len(incoming)
                if mask & selectors.EVENT_READ and room > 0:  # recv(0) would look like an end
                    data = sock.recv(room)
                    if data:
                        incoming += data
                    elif sock is pipe.client:
                        pipe.client_eof = True
                    else:
                        pipe.upstream_eof = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._abort(pipe)
            return
        self._update(pipe)

    def _update(self, pipe: _Pipe) -> None:
        """Pass on ends whose bytes are all delivered, close a finished pipe, else set its interests."""
        try:
            if pipe.client_eof and not pipe.to_upstream and not pipe.connecting and not pipe.upstream_shut:
                pipe.upstream_shut = True
                pipe.upstream.shutdown(socket.SHUT_WR)
            if pipe.upstream_eof and not pipe.to_client and not pipe.client_shut:
                pipe.client_shut = True
                pipe.client.shutdown(socket.SHUT_WR)
        except OSError:
            self._abort(pipe)
            return
        if pipe.client_shut and pipe.upstream_shut:
            self._drop(pipe)
            return
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        client_mask = (read if not pipe.client_eof and len(pipe.to_upstream) < self._buffer_size else 0) | (
            write if pipe.to_client else 0
        )
        if pipe.connecting:
            upstream_mask = write
        else:
            upstream_mask = (
                read if not pipe.upstream_eof and len(pipe.to_client) < self._buffer_size else 0
            ) | (write if pipe.to_upstream else 0)
        self._interest(pipe, pipe.client, client_mask)
        self._interest(pipe, pipe.upstream, upstream_mask)

    def _interest(self, pipe: _Pipe, sock: socket.socket, mask: int) -> None:
        """Make the selector watch *sock* for *mask* (0: not at all)."""
        current = pipe.masks[sock]
        if mask == current:
            return
        if current == 0:
            self._selector.register(sock, mask, (pipe, sock))
        elif mask == 0:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, mask, (pipe, sock))
        pipe.masks[sock] = mask

    def _forget(self, pipe: _Pipe) -> None:
        """Stop watching *pipe*'s sockets."""
        for sock in (pipe.client, pipe.upstream):
            if pipe.masks[sock]:
                self._selector.unregister(sock)
                pipe.masks[sock] = 0

    def _drop(self, pipe: _Pipe, *, reset: bool = False) -> None:
        """Close both of *pipe*'s sockets (with *reset*: the peers see RST) and forget the pipe."""
        if pipe.closed:
            return
        self._forget(pipe)
        pipe.closed = True
        self._pipes.discard(pipe)
        _close(pipe.client, reset=reset)
        _close(pipe.upstream, reset=reset)

    def _abort(self, pipe: _Pipe) -> None:
        """End *pipe* on an error: both peers see a reset, as they would without the proxy."""
        self._drop(pipe, reset=True)

    # -- what the controls do (on the proxy's thread) ---------------------------------------------

    def _listen(self) -> None:
        """Listen again after a reset (same port: it stayed bound)."""
        if not self._listening:
            self._listener.listen(128)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._listening = True

    def _release_held(self, *, reset: bool) -> None:
        """Close the connections a blackhole accepted and those it froze."""
        while self._held:
            _close(self._held.popleft(), reset=reset)
        for pipe in list(self._pipes):
            if pipe.frozen:
                self._drop(pipe, reset=reset)

    def _blackhole(self) -> None:
        self._listen()
        for pipe in self._pipes:
            self._forget(pipe)
            pipe.frozen = True
        self._mode = "blackhole"

    def _reset(self) -> None:
        while self._held:
            _close(self._held.popleft(), reset=True)
        for pipe in list(self._pipes):
            self._drop(pipe, reset=True)
        if self._listening:
            self._selector.unregister(self._listener)
            # Stops listening (connects are refused; the accept queue is reset) and keeps the port.
            self._listener.shutdown(socket.SHUT_RD)
            self._listening = False
        self._mode = "reset"

    def _heal(self) -> None:
        if self._mode == "blackhole":
            self._release_held(reset=False)
        self._listen()
        self._mode = "open"

    def _stop(self) -> None:
        self._stopping = True

    def _teardown(self) -> None:
        """Close every socket and the selector; fail the commands still queued."""
        with self._lock:
            self._closed = True
            pending = list(self._commands)
            self._commands.clear()
        try:
            for pipe in list(self._pipes):
                self._drop(pipe)
        finally:
            for pipe in self._pipes:  # only after an error above: close what is left regardless
                pipe.client.close()
                pipe.upstream.close()
            while self._held:
                _close(self._held.popleft())
            self._selector.close()
            for sock in (self._listener, self._wake_read, self._wake_write):
                sock.close()
            for command in pending:
                if command.action != self._stop:
                    command.error = RuntimeError("the proxy was closed")
                command.done.set()
