"""
The control protocol: endpoints, authentication, and the request and reply messages.

Each supervisor listens on a Unix socket in the tree's private directory (mode 0700), named after a
hash of its path in the tree, so a nested supervisor keeps its address across restarts. A connection
is authenticated both ways by HMAC-SHA256 over random nonces with the tree's 32-byte authkey, in fixed
sized messages under a deadline, so a client that stalls or has the wrong key cannot hang a supervisor
for longer than the deadline. After that, messages are pickled (``multiprocess`` connections): anyone
holding the authkey can run code in the tree.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import tempfile

import attrs
from multiprocess.connection import Connection

from .specs import ChildSpec

__all__ = [
    "AUTH_TIMEOUT",
    "ChildAddress",
    "CountChildren",
    "DeleteChild",
    "Request",
    "RestartChild",
    "StartChild",
    "Stop",
    "TerminateChild",
    "WhichChildren",
    "accept_authenticated",
    "connect",
    "listen",
    "make_private_dir",
    "socket_path",
]

AUTH_TIMEOUT = 2.0
_NONCE = 32
_WELCOME = b"supervisor-ok"


@attrs.frozen
class StartChild:
    spec: ChildSpec


@attrs.frozen
class TerminateChild:
    child_id: str


@attrs.frozen
class RestartChild:
    child_id: str


@attrs.frozen
class DeleteChild:
    child_id: str


@attrs.frozen
class WhichChildren:
    pass


@attrs.frozen
class CountChildren:
    pass


@attrs.frozen
class ChildAddress:
    """The control address of the nested supervisor *child_id*."""

    child_id: str


@attrs.frozen
class Stop:
    pass


Request = (
    StartChild
    | TerminateChild
    | RestartChild
    | DeleteChild
    | WhichChildren
    | CountChildren
    | ChildAddress
    | Stop
)


def make_private_dir() -> str:
    """A new directory only this user can enter (0700), for the tree's sockets."""
    path = tempfile.mkdtemp(prefix="supervisor-")
    os.chmod(path, 0o700)
    return path


def socket_path(private_dir: str, tree_path: str) -> str:
    """The control socket of the supervisor at *tree_path* (ids joined by '/'): stable across restarts."""
    digest = hashlib.sha256(tree_path.encode()).hexdigest()[:16]
    return os.path.join(private_dir, f"s-{digest}.sock")


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
            raise ConnectionError("peer closed the connection during authentication")
        data += chunk
    return data


def _digest(authkey: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(authkey, role + nonce, hashlib.sha256).digest()


def accept_authenticated(server: socket.socket, authkey: bytes) -> Connection | None:
    """
    Accept one connection and authenticate it; None if it was refused (wrong key, stall, hang-up).

    Blocks for at most ``AUTH_TIMEOUT`` seconds.
    """
    sock, _ = server.accept()
    sock.settimeout(AUTH_TIMEOUT)
    try:
        nonce = os.urandom(_NONCE)
        sock.sendall(nonce)
        answer = _recv_exact(sock, 32)
        if not hmac.compare_digest(answer, _digest(authkey, b"client", nonce)):
            sock.close()
            return None
        client_nonce = _recv_exact(sock, _NONCE)
        sock.sendall(_digest(authkey, b"server", client_nonce))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return Connection(sock.detach())


def connect(address: str, authkey: bytes, timeout: float = AUTH_TIMEOUT) -> Connection:
    """
    Connect to the supervisor at *address* and authenticate both ways.

    Raises:
        ConnectionError: refused, or the peer does not hold the authkey.
        FileNotFoundError: no supervisor listens there.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        nonce = _recv_exact(sock, _NONCE)
        sock.sendall(_digest(authkey, b"client", nonce))
        client_nonce = os.urandom(_NONCE)
        sock.sendall(client_nonce)
        answer = _recv_exact(sock, 32)
    except BaseException:
        sock.close()
        raise
    if not hmac.compare_digest(answer, _digest(authkey, b"server", client_nonce)):
        sock.close()
        raise ConnectionError(f"the peer at {address} does not hold this tree's authkey")
    sock.settimeout(None)
    return Connection(sock.detach())
