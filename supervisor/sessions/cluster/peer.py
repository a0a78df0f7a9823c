"""
The node-to-node endpoint: requests between the agents of a cluster's nodes over TCP (or TLS).

A connection is authenticated both ways with a key derived from the cluster's secret, by the same
mutual challenge-response as the package's Unix sockets (``supervisor._transport``), then carries
one request and its reply, each a length-prefixed pickle: ``(operation, args)``, answered
``("ok", value)`` or ``("raise", error)``. One request per connection: a connection that failed can
never carry a late reply into another request, and nothing is retried.

Every wait is bounded. A client connects, shakes hands and sends within its deadline, and reads the
reply until the deadline of the request. The server's accepter runs in a thread of the agent, each
connection in a thread of its own with a handshake deadline (``HANDSHAKE_TIMEOUT``) and a bound on
the time to send its request (``REQUEST_TIMEOUT``), so a silent peer holds one thread, for a bounded
time, and stalls nothing else. The agent is a leaf process that never forks, so it may have threads.
"""

from __future__ import annotations

import logging
import pickle
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..._keys import Key
from ..._transport import ClientHandshake, KeyMismatch, ServerHandshake, refuse
from ...errors import UnreadableRequestError
from .config import TlsFiles

__all__ = ["HANDSHAKE_TIMEOUT", "PeerServer", "request"]

log = logging.getLogger("supervisor.cluster")

HANDSHAKE_TIMEOUT = 2.0
"""Seconds a server gives a connecting peer to complete the handshake."""
REQUEST_TIMEOUT = 10.0
"""Seconds a server gives a peer to send its whole request once authenticated."""
MAX_FRAME = 1 << 28
_HEADER = struct.Struct("!I")

Handler = Callable[[str, tuple[Any, ...]], Any]


def _keep_alive(sock: socket.socket, idle: float) -> None:
    """Probe *sock* after *idle* seconds of silence, every second, and give up after 3 unanswered."""
    seconds = max(1, round(idle))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, (seconds + 3) * 1000)


def _client_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # nodes are named by the cluster, proved by the CA and the secret
    context.load_verify_locations(tls.cafile)
    context.load_cert_chain(tls.certfile, tls.keyfile)
    return context


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(tls.cafile)
    context.load_cert_chain(tls.certfile, tls.keyfile)
    return context


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the peer did not answer in time")
    return left


def _recv_some(sock: socket.socket, most: int, deadline: float) -> bytes:
    sock.settimeout(_left(deadline))
    chunk = sock.recv(most)
    if not chunk:
        raise EOFError("the peer closed the connection")
    return chunk


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError("the peer closed the connection")
        chunks += chunk
    return bytes(chunks)


def _send_frame(sock: socket.socket, payload: bytes, deadline: float) -> None:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"a node-to-node message must be smaller than {MAX_FRAME} bytes")
    sock.settimeout(_left(deadline))
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_frame(sock: socket.socket, deadline: float) -> bytes:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > MAX_FRAME:
        raise ConnectionError("the peer sent a frame too large to read")
    return _recv_exact(sock, size, deadline)


def request(
    address: tuple[str, int],
    key: Key,
    operation: str,
    args: tuple[Any, ...],
    *,
    connect_deadline: float,
    deadline: float,
    tls: TlsFiles | None = None,
    keepalive: float = 2.0,
) -> Any:
    """
    Send one request to the agent at *address* and return its reply's value (or raise its error).

    Blocks until *connect_deadline* at most to connect and authenticate, and until *deadline* at
    most for the reply.

    Raises:
        ConnectionRefusedError, TimeoutError, OSError: not connected and authenticated by
            *connect_deadline*: the request was not delivered (``delivered`` is False on the error).
        TimeoutError, EOFError, OSError: delivered, but no reply by *deadline*: it may have run
            (``delivered`` is True on the error).
        KeyMismatch: the peer does not hold the cluster's secret.

    TCP keepalives probe a silent connection after *keepalive* seconds, so a peer whose machine or
    network is gone fails the request within about *keepalive* + 3 s, whatever the deadline.
    """
    try:
        sock = socket.create_connection(address, timeout=_left(connect_deadline))
    except OSError as error:
        error.delivered = False  # type: ignore[attr-defined]
        raise
    try:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(sock, keepalive)
            if tls is not None:
                sock.settimeout(_left(connect_deadline))
                sock = _client_context(tls).wrap_socket(sock)
            handshake = ClientHandshake(key)
            while not handshake.done:
                answer = handshake.feed(_recv_some(sock, handshake.needed, connect_deadline))
                if answer:
                    sock.settimeout(_left(connect_deadline))
                    sock.sendall(answer)
        except (OSError, EOFError) as error:
            failure = error if isinstance(error, OSError) else ConnectionError(str(error))
            failure.delivered = False  # type: ignore[attr-defined]
            raise failure from error
        try:
            _send_frame(sock, pickle.dumps((operation, args), protocol=pickle.HIGHEST_PROTOCOL), deadline)
            status, value = pickle.loads(_recv_frame(sock, deadline))
        except (OSError, EOFError) as error:
            failure = error if isinstance(error, OSError) else ConnectionError(str(error))
            failure.delivered = True  # type: ignore[attr-defined]
            raise failure from error
    finally:
        sock.close()
    if status == "raise":
        raise value
    return value


class PeerServer:
    """
    The agent's endpoint: accepts peers on a thread, serves each connection on a thread of its own.

    *handler* is called with each request's operation and arguments in the connection's thread; its
    value is the reply, its exception (one that pickles) is re-raised at the peer.
    """

    def __init__(self, listen: tuple[str, int], key: Key, handler: Handler, tls: TlsFiles | None) -> None:
        self._key = key
        self._handler = handler
        self._context = None if tls is None else _server_context(tls)
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(listen)
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]

    def start(self) -> None:
        """Start accepting, in a daemon thread; returns at once."""
        threading.Thread(target=self._accept, name="cluster-peer-accepter", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                time.sleep(0.05)  # out of descriptors: this thread waits, nothing else does
                continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT
            if self._context is not None:
                sock.settimeout(HANDSHAKE_TIMEOUT)
                sock = self._context.wrap_socket(sock, server_side=True)
            handshake = ServerHandshake(self._key)
            sock.settimeout(_left(deadline))
            sock.sendall(handshake.greeting)
            answer = None
            while answer is None:
                try:
                    answer = handshake.feed(_recv_some(sock, handshake.needed, deadline))
                except KeyMismatch:
                    refuse(sock)
                    return
            sock.settimeout(_left(deadline))
            sock.sendall(answer)
            frame = _recv_frame(sock, time.monotonic() + REQUEST_TIMEOUT)
            reply: tuple[str, Any]
            try:
                operation, args = pickle.loads(frame)
            except Exception as error:  # from an authenticated peer: a class this node cannot import
                why = f"{type(error).__name__}: {error}"
                unreadable = UnreadableRequestError(f"this node could not read the request ({why})", why)
                reply = ("raise", unreadable)
            else:
                try:
                    reply = ("ok", self._handler(operation, tuple(args)))
                except Exception as error:
                    reply = ("raise", error)
            try:
                payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                payload = pickle.dumps(("raise", RuntimeError(f"the reply did not pickle: {error}")))
            _send_frame(sock, payload, time.monotonic() + REQUEST_TIMEOUT)
        except Exception as error:  # a peer that failed, lied or went silent: drop it
            log.debug("node-to-node connection dropped: %s", error)
        finally:
            sock.close()
