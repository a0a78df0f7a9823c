"""
The session registry: a ``multiprocess`` Manager dict (our ETS table), behind a small typed API.

The dict lives in a registry server process, a worker child of the Application's supervisor, listening
on a Unix socket in the tree's private directory with the tree's authkey. Its address is stable, so when
the server dies and is restarted, clients reconnect to the same place. Nothing but this module touches
the proxies.

A registry server that was just restarted is empty until the SessionManager has republished every live
session; the SessionManager writes the ``PUBLISHED`` marker key with them, in the same update, and
readers treat a registry without it as unavailable for the moment. So a reader never mistakes the gap
for an empty registry. Values are stored encoded (``_wire.dumps``: the C pickler), so the server and its
clients move bytes rather than pickling objects with dill's pure-Python pickler. Reads (``get``,
``snapshot``) are one round trip each (a ``get`` that finds nothing makes a second to check the marker).
A client that finds the server gone retries, with short growing pauses, until its wait bound, then
raises :class:`RegistryUnavailableError`: there is no event to wait on for a server that is not there
yet.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from typing import Any

import multiprocess.connection
from multiprocess import util
from multiprocess.context import AuthenticationError
from multiprocess.managers import BaseManager, DictProxy, convert_to_error

from . import _child, _loop, _wire
from .errors import RegistryUnavailableError

__all__ = ["REGISTRY_ID", "RegistryClient", "registry_address", "run_registry_server"]

REGISTRY_ID = "registry"
_PIPELINE_DEPTH = 32
_ACK_TIMEOUT = 2.0
PUBLISHED = "\x00published"
"""The marker key: present once the SessionManager has published its sessions in this server."""
_table: dict[str, Any] = {}


def _get_table() -> dict[str, Any]:
    return _table


class _RegistryManager(BaseManager):  # type: ignore[misc]
    pass


_RegistryManager.register("table", callable=_get_table, proxytype=DictProxy)


def registry_address(tree: _loop.TreeContext) -> str:
    """The registry server's socket for the Application whose supervisor sits at *tree*."""
    return tree.child(REGISTRY_ID).address


class _CPickler:
    """The standard pickler, in the shape ``multiprocess.connection`` expects of its pickler."""

    @staticmethod
    def dumps(obj: Any, protocol: int | None = None) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: Any) -> Any:
        return pickle.loads(data)


def run_registry_server() -> None:
    """
    The start function of the registry server child: serve the dict until stopped.

    Ready once it listens. The server's threads live only in this leaf process, which never forks.
    """
    tree, launch = _loop.current_tree, _child.current_launch
    if tree is None or launch is None:
        raise RuntimeError("the registry server must be started by a supervisor")
    address = tree.child(launch.spec.id).address
    # This process only serves bytes, tuples and tokens: its connections use the C pickler instead
    # of dill's pure-Python one, several times faster per request. Clients load either.
    multiprocess.connection._ForkingPickler = _CPickler
    try:
        os.unlink(address)  # a stale socket left by a predecessor that was killed
    except FileNotFoundError:
        pass
    manager = _RegistryManager(address=address, authkey=tree.authkey)
    server = manager.get_server()
    server.stop_event = threading.Event()  # serve_forever would set it; we serve without it
    os.chmod(address, 0o600)
    accepter = threading.Thread(target=server.accepter, name="registry-accepter", daemon=True)
    accepter.start()
    _child.notify_ready()
    while True:
        signal.pause()  # SIGTERM raises ShutdownExit here


class RegistryClient:
    """
    Typed access to the registry dict from any process and thread.

    Each process makes its own proxy on first use; each thread gets its own connection (the proxy's
    own thread-local connections). Picklable as address, authkey and wait bound.
    """

    def __init__(self, address: str, authkey: bytes, timeout: float = 5.0) -> None:
        self.address = address
        self.authkey = authkey
        self.timeout = timeout
        self._proxy: Any = None
        self._unacknowledged = 0
        self._pid = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (RegistryClient, (self.address, self.authkey, self.timeout))

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> Any:
        """The value under *key*, or None; waits (bounded) while the registry is being republished."""

        def read(table: Any) -> Any:
            value = table.get(key)
            if value is None:
                if PUBLISHED not in table:
                    raise _NotPublished
                return None
            return pickle.loads(value)

        return self._call(read)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole dict, in one round trip; waits (bounded) while it is being republished."""

        def read(table: Any) -> dict[str, Any]:
            copy: dict[str, bytes] = table.copy()
            if copy.pop(PUBLISHED, None) is None:
                raise _NotPublished
            return {key: pickle.loads(value) for key, value in copy.items()}

        result: dict[str, Any] = self._call(read)
        return result

    # ------------------------------------------------------------------ writes (the SessionManager's)

    # These try once and raise OSError or EOFError if the server is gone: the SessionManager's loop
    # must not block on a missing server; it reconnects on a timer of its own instead.
    #
    # put_later and delete_later are pipelined: the request is sent at once (the server applies
    # requests in order, so a reader sees it within the server's turnaround), and its reply is read
    # later, by acknowledge() when the connection is readable or by flush(). The SessionManager flushes
    # before it replies to any caller, so a caller reads its own writes. One thread only.

    def put_later(self, key: str, value: Any) -> None:
        self._send_later("__setitem__", (key, _wire.dumps(value)))

    def delete_later(self, key: str) -> None:
        self._send_later("pop", (key, None))

    def flush(self) -> None:
        """Wait for the reply of every pipelined write."""
        while self._unacknowledged:
            self._read_ack()

    def acknowledge(self) -> None:
        """Read the replies that have arrived; EOFError if the server closed the connection."""
        conn = self._connection()
        if self._unacknowledged == 0 and conn.poll(0):
            raise EOFError("the registry server closed the connection")
        while self._unacknowledged and conn.poll(0):
            self._read_ack()

    def _send_later(self, method: str, args: tuple[Any, ...]) -> None:
        proxy = self._table()
        conn = self._connection()
        # A bounded pipeline: with too many replies unread, the server would block writing them and
        # stop reading, and so would we, writing to it.
        while self._unacknowledged >= _PIPELINE_DEPTH or (self._unacknowledged and conn.poll(0)):
            self._read_ack()
        conn.send_bytes(pickle.dumps((proxy._id, method, args, {}), protocol=pickle.HIGHEST_PROTOCOL))
        self._unacknowledged += 1

    def _read_ack(self) -> None:
        conn = self._connection()
        # Bounded: a server that hangs (not dies) must not freeze the SessionManager's loop.
        if not conn.poll(_ACK_TIMEOUT):
            raise TimeoutError(f"the session registry did not acknowledge a write within {_ACK_TIMEOUT} s")
        kind, result = pickle.loads(conn.recv_bytes())
        self._unacknowledged -= 1
        if kind != "#RETURN":
            raise convert_to_error(kind, result)

    def _connection(self) -> Any:
        proxy = self._table()
        if getattr(proxy._tls, "connection", None) is None:
            proxy._connect()
        return proxy._tls.connection

    def replace_all_now(self, entries: dict[str, Any]) -> None:
        """Make the dict equal to *entries* and mark it published (two round trips: clear, update)."""
        encoded = {key: _wire.dumps(value) for key, value in entries.items()}
        encoded[PUBLISHED] = b"1"
        self._call_once(lambda table: (table.clear(), table.update(encoded)))

    # ------------------------------------------------------------------ plumbing

    def connection_fileno(self) -> int | None:
        """The fd of this thread's connection to the server, if open: readable at EOF, when it dies."""
        proxy = self._proxy
        if proxy is None or self._pid != os.getpid():
            return None
        conn = getattr(proxy._tls, "connection", None)
        return None if conn is None else int(conn.fileno())

    def reset(self) -> None:
        """Forget the proxy (after the server died): the next call makes a new one."""
        with self._lock:
            proxy, self._proxy = self._proxy, None
            self._unacknowledged = 0
        if proxy is not None:
            _discard_proxy(proxy)

    def try_connect(self) -> bool:
        """One attempt to make the proxy and its connection; True if the server answered."""
        try:
            self._call_once(lambda table: table.get(""))
            return True
        except (OSError, EOFError):
            self.reset()
            return False

    def _table(self) -> Any:
        with self._lock:
            if self._proxy is None or self._pid != os.getpid():
                manager = _RegistryManager(address=self.address, authkey=self.authkey)
                try:
                    manager.connect()
                    proxy = manager.table()
                except AuthenticationError as error:
                    # Not retried: a wrong key stays wrong. A ConnectionError, as from a supervisor's
                    # control socket, rather than multiprocess's own class.
                    raise _AuthenticationRefused(
                        f"the session registry at {self.address} refused this client's authkey"
                    ) from error
                # The proxy would re-register with the server from every process forked after this
                # one (BaseProxy._after_fork); forked supervisors do not use it, so opt out.
                for key, value in list(util._afterfork_registry.items()):
                    if value is proxy:
                        del util._afterfork_registry[key]
                self._proxy, self._pid = proxy, os.getpid()
            return self._proxy

    def _call_once(self, operation: Any) -> Any:
        self.flush()  # a synchronous call would otherwise read a pipelined write's reply
        return operation(self._table())

    def _call(self, operation: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                return self._call_once(operation)
            except _AuthenticationRefused:
                raise
            except (OSError, EOFError, _NotPublished) as error:
                if not isinstance(error, _NotPublished):
                    self.reset()
                if time.monotonic() + pause > deadline:
                    raise RegistryUnavailableError(
                        f"the session registry at {self.address} did not answer within {self.timeout} s"
                    ) from error
                time.sleep(pause)
                pause = min(pause * 2, 0.2)


class _AuthenticationRefused(ConnectionError):
    """The registry server rejected this client's authkey."""


class _NotPublished(Exception):
    """The registry server is up but the SessionManager has not republished its sessions yet."""


def _discard_proxy(proxy: Any) -> None:
    """Drop a proxy of a dead server without the decref round trip its finalizer would attempt."""
    finalizer = getattr(proxy, "_close", None)
    if finalizer is not None:
        finalizer.cancel()
    conn = getattr(proxy._tls, "connection", None)
    if conn is not None:
        conn.close()
        del proxy._tls.connection
