"""
The registry server: the process that holds the session registry's table and serves it.

A worker child of the Application's supervisor (``StartMode.NOTIFY``), ready once it listens. Its
accepter and connection threads live only in this leaf process, which never forks; it serves until
SIGTERM (``ShutdownExit``). Each connection is authenticated with the tree's key (the control sockets'
handshake, bounded by its deadline, in the connection's own thread), then carries requests
``(method, args)``, each answered ``("ok", value)``, ``("raise", error)`` (one of the package's
errors, re-raised at the caller) or ``("error", text)``, in order. The methods are those a table class
lists in ``METHODS`` (:class:`Table`'s, or the cluster's table's), nothing else: there are no proxies
and no reference counts, so nothing a client does, or fails to do when it exits, can make the server
drop its table. Values are bytes (encoded by the clients), so requests and replies are pickled with
the C pickler.
"""

from __future__ import annotations

import pickle
import signal
import socket
import struct
import threading
import time
from typing import Any

from multiprocess.connection import Connection

from .. import _child, _titles
from .._addresses import TreeContext
from .._keys import Key
from .._transport import authenticate, listen
from ..errors import SupervisorError, UnreadableRequestError
from .registry import PUBLISHED

__all__ = ["Table", "run_registry_server", "serve_table"]

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Table:
    """The registry: ``session_id → encoded SessionInfo``, plus the ``PUBLISHED`` marker. Thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.caller = threading.local()
        """``caller.pid``: the pid of the client whose request the current thread is serving."""

    def lookup(self, key: str) -> tuple[bytes | None, bool]:
        """The value under *key* (or None) and whether the registry is published, at one instant."""
        with self._lock:
            return self._entries.get(key), PUBLISHED in self._entries

    def snapshot(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._entries)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._entries[key] = value

    def remove(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def replace_all(self, entries: dict[str, bytes]) -> None:
        """Make the table exactly *entries* (the SessionManager includes the marker)."""
        with self._lock:
            self._entries = dict(entries)

    def node_info(self) -> tuple[str, float] | None:
        """The name of the cluster node this registry serves, and its answers' slack; None: no cluster."""
        return None

    METHODS = frozenset({"lookup", "snapshot", "put", "remove", "replace_all", "node_info"})
    """The methods a client may call."""


def _serve(table: Table, sock: socket.socket, authkey: Key | bytes) -> None:
    """Authenticate one client, then answer its requests in order until it hangs up."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    table.caller.pid = _PEERCRED.unpack(credentials)[0]  # the client's pid, as the kernel saw it connect
    conn: Connection | None = authenticate(sock, authkey)
    if conn is None:
        return
    with conn:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                method, args = pickle.loads(frame)
            except Exception as error:  # a class this process cannot import, say: said, not dropped
                why = f"{type(error).__name__}: {error}"
                unreadable = UnreadableRequestError(f"the registry could not read the request ({why})", why)
                try:
                    conn.send_bytes(pickle.dumps(("raise", unreadable), protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:
                    return
                continue
            try:
                if method not in table.METHODS:
                    raise AttributeError(f"the registry has no method {method!r}")
                reply: tuple[str, Any] = ("ok", getattr(table, method)(*args))
            except (SupervisorError, TypeError, ValueError) as error:
                reply = ("raise", error)
            except Exception as error:
                reply = ("error", f"{type(error).__name__}: {error}")
            try:
                conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                return


def _accept(table: Table, listener: socket.socket, authkey: Key | bytes) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            # Out of descriptors, or the client gave up: this thread may wait, nothing else does.
            time.sleep(0.05)
            continue
        threading.Thread(target=_serve, args=(table, sock, authkey), daemon=True).start()


def run_registry_server(tree: TreeContext) -> None:
    """
    The start of the registry server child at *tree*: serve the table until stopped; never returns.

    Its process title says ``registry`` and its path.
    """
    _titles.set_title("registry", tree.shown_path)
    serve_table(tree, Table())
    _child.notify_ready()
    while True:
        signal.pause()  # SIGTERM raises ShutdownExit here


def serve_table(tree: TreeContext, table: Table) -> None:
    """
    Serve *table* on *tree*'s registry socket from a thread of this process; returns once it listens.

    A predecessor's stale socket (one that was killed) is replaced.
    """
    listener = listen(tree.address)
    listener.setblocking(True)
    accepter = threading.Thread(
        target=_accept, args=(table, listener, tree.authkey), name="registry-accepter", daemon=True
    )
    accepter.start()
