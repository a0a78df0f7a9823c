"""
The control sockets' transport: listen, accept, connect, and the mutual handshake.

A connection is authenticated both ways by HMAC-SHA256 over random nonces with the 32-byte key the
supervisor serves with (the tree's, or a session's own: see :mod:`supervisor._keys`), in fixed-size
messages under a deadline, so a client that stalls or has the wrong key cannot
hang a supervisor for longer than the deadline. After that, messages are pickled (``multiprocess``
connections, encoded by :mod:`supervisor._wire`): anyone holding a key can run code in the processes
that accept it.
This module knows sockets and keys, not what is said over them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import time

from multiprocess.connection import Connection

from ._keys import Key

__all__ = [
    "AUTH_TIMEOUT",
    "REFUSAL",
    "ClientHandshake",
    "HandshakeError",
    "KeyMismatch",
    "KeyRefused",
    "ServerHandshake",
    "accept_authenticated",
    "authenticate",
    "connect",
    "listen",
    "refuse",
]

AUTH_TIMEOUT = 2.0
_NONCE = 32
REFUSAL = bytes(32)
"""What a server sends in place of its proof when the client's digest is wrong, before it closes: so a
client tells a refused key from a handshake cut at the server's deadline or by its exit."""


class HandshakeError(ConnectionError):
    """
    The peer closed the connection during the handshake without refusing our key: it is exiting, or
    it cut the handshake at its deadline.
    """


class KeyMismatch(ConnectionError):
    """The peer answered the handshake without holding this tree's authkey."""


class KeyRefused(KeyMismatch):
    """The server said it refused this client's key (it sent :data:`REFUSAL`)."""


def refuse(sock: socket.socket) -> None:
    """Tell the client of *sock* its key was refused, without blocking (best effort: it may be gone)."""
    try:
        sock.send(REFUSAL, socket.MSG_DONTWAIT)
    except OSError:
        pass


def listen(address: str) -> socket.socket:
    """A listening socket at *address*, replacing a stale socket file left by a dead predecessor."""
    try:
        os.unlink(address)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    os.chmod(address, 0o600)
    server.listen(64)
    return server


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise HandshakeError("peer closed the connection during authentication")
        data += chunk
    return data


def _digest(authkey: Key | bytes, role: bytes, nonce: bytes) -> bytes:
    # The key's own bytearray goes to HMAC: copied into a bytes object, it could not be zeroed.
    material = authkey.material if isinstance(authkey, Key) else authkey
    return hmac.new(material, role + nonce, hashlib.sha256).digest()


class ServerHandshake:
    """
    The server's side of the handshake as a state machine, without I/O, so a loop can run many at
    once without blocking on any: send :attr:`greeting`, then :meth:`feed` what the client sends
    (:attr:`needed` more bytes) until it returns the final answer to send back.
    """

    __slots__ = ("_authkey", "_received", "greeting")

    def __init__(self, authkey: Key | bytes) -> None:
        self._authkey = authkey
        self.greeting = os.urandom(_NONCE)
        self._received = b""

    @property
    def needed(self) -> int:
        """How many more bytes the client must send."""
        return 32 + _NONCE - len(self._received)

    def feed(self, data: bytes) -> bytes | None:
        """
        Take bytes from the client; return the answer to send once all have come, else None.

        Raises:
            KeyMismatch: the client does not hold the authkey (known as soon as its digest is in).
        """
        self._received += data[: self.needed]
        if len(self._received) >= 32 and not hmac.compare_digest(
            self._received[:32], _digest(self._authkey, b"client", self.greeting)
        ):
            raise KeyMismatch("the client does not hold this tree's authkey")
        if self.needed:
            return None
        return _digest(self._authkey, b"server", self._received[32:])


class ClientHandshake:
    """
    The client's side of the handshake as a state machine, without I/O, for a caller that must not
    block on the server: :meth:`feed` it what the server sends (:attr:`needed` more bytes) and send
    what it returns, until :attr:`done`.
    """

    __slots__ = ("_authkey", "_nonce", "_received")

    def __init__(self, authkey: Key | bytes) -> None:
        self._authkey = authkey
        self._nonce = os.urandom(_NONCE)
        self._received = b""

    @property
    def needed(self) -> int:
        """How many more bytes the server must send."""
        return _NONCE + 32 - len(self._received)

    @property
    def done(self) -> bool:
        """True once the server has proved it holds the authkey."""
        return not self.needed

    def feed(self, data: bytes) -> bytes:
        """
        Take bytes from the server; return what to send it now (maybe nothing).

        Raises:
            KeyMismatch: the server does not hold the authkey.
        """
        before = len(self._received)
        self._received += data[: self.needed]
        if before < _NONCE <= len(self._received):
            return _digest(self._authkey, b"client", self._received[:_NONCE]) + self._nonce
        if self.done and not hmac.compare_digest(
            self._received[_NONCE:], _digest(self._authkey, b"server", self._nonce)
        ):
            if self._received[_NONCE:] == REFUSAL:
                raise KeyRefused("the server refused this client's authkey")
            raise KeyMismatch("the server does not hold this tree's authkey")
        return b""


def accept_authenticated(server: socket.socket, authkey: Key | bytes) -> Connection | None:
    """
    Accept one connection and authenticate it; None if it was refused (wrong key, stall, hang-up).

    Blocks for at most ``AUTH_TIMEOUT`` seconds in all. (A supervisor's loop does not use this: it
    runs :class:`ServerHandshake` without blocking.)
    """
    sock, _ = server.accept()
    return authenticate(sock, authkey)


def authenticate(sock: socket.socket, authkey: Key | bytes) -> Connection | None:
    """
    Run the server's side of the handshake on the accepted *sock*; its connection, or None if refused.

    Blocks for at most ``AUTH_TIMEOUT`` seconds in all; a refused socket is closed.
    """
    deadline = time.monotonic() + AUTH_TIMEOUT
    handshake = ServerHandshake(authkey)
    try:
        sock.settimeout(AUTH_TIMEOUT)
        sock.sendall(handshake.greeting)
        answer = None
        while answer is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client did not complete the handshake in time")
            sock.settimeout(left)
            data = sock.recv(handshake.needed)
            if not data:
                raise HandshakeError("peer closed the connection during authentication")
            answer = handshake.feed(data)
        sock.sendall(answer)
    except KeyMismatch:
        refuse(sock)
        sock.close()
        return None
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return Connection(sock.detach())


def connect(address: str, authkey: Key | bytes, timeout: float = AUTH_TIMEOUT) -> Connection:
    """
    Connect to the supervisor at *address* and authenticate both ways.

    Raises:
        HandshakeError: the peer closed the connection during the handshake without refusing our key
            (it is exiting, or it cut the handshake at its deadline).
        KeyRefused: the peer refused our key.
        KeyMismatch: the peer does not hold the authkey.
        FileNotFoundError, ConnectionRefusedError: no supervisor listens there.
        TimeoutError: the handshake did not complete within *timeout* seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        nonce = _recv_exact(sock, _NONCE)
        client_nonce = os.urandom(_NONCE)
        # One send: a server that refuses our digest must not close before it has all of it, or
        # its refusal would be lost to a broken pipe.
        sock.sendall(_digest(authkey, b"client", nonce) + client_nonce)
        answer = _recv_exact(sock, 32)
    except BaseException:
        sock.close()
        raise
    if not hmac.compare_digest(answer, _digest(authkey, b"server", client_nonce)):
        sock.close()
        if answer == REFUSAL:
            raise KeyRefused(f"the supervisor at {address} refused this client's authkey")
        raise KeyMismatch(f"the peer at {address} does not hold this tree's authkey")
    sock.settimeout(None)
    return Connection(sock.detach())
