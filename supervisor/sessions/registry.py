"""
The session registry's client: typed reads of a ``multiprocess`` Manager dict (our ETS table).

The dict lives in the registry server process (``registry_server.py``), a worker child of the
Application's supervisor listening on a Unix socket in the tree's private directory with the tree's
authkey. Its address is stable, so when the server dies and is restarted, clients reconnect to the same
place. Nothing but this module and the writer touches the proxies.

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
import threading
import time
from typing import Any

from multiprocess import util
from multiprocess.context import AuthenticationError
from multiprocess.managers import BaseManager, DictProxy

from ..errors import RegistryUnavailableError

__all__ = ["PUBLISHED", "TABLE", "RegistryClient"]

PUBLISHED = "\x00published"
"""The marker key: present once the SessionManager has published its sessions in this server."""
TABLE = "table"
"""The typeid under which the server exposes the dict."""


class _RegistryManager(BaseManager):  # type: ignore[misc]
    pass


_RegistryManager.register(TABLE, proxytype=DictProxy)


class RegistryClient:
    """
    Typed reads of the registry dict from any process and thread.

    Each process makes its own proxy on first use; each thread gets its own connection (the proxy's
    own thread-local connections). Picklable as address, authkey and wait bound.
    """

    def __init__(self, address: str, authkey: bytes, timeout: float = 5.0) -> None:
        self.address = address
        self.authkey = authkey
        self.timeout = timeout
        self._proxy: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.address, self.authkey, self.timeout))

    # ------------------------------------------------------------------ reads

    def get(self, key: str, timeout: float | None = None) -> Any:
        """
        The value under *key*, or None; waits while the registry is being republished, up to
        *timeout* seconds (None: this client's bound).
        """

        def read(table: Any) -> Any:
            value = table.get(key)
            if value is None:
                if PUBLISHED not in table:
                    raise _NotPublished
                return None
            return pickle.loads(value)

        return self._call(read, timeout)

    def snapshot(self, timeout: float | None = None) -> dict[str, Any]:
        """A copy of the whole dict, in one round trip; waits as :meth:`get` does."""

        def read(table: Any) -> dict[str, Any]:
            copy: dict[str, bytes] = table.copy()
            if copy.pop(PUBLISHED, None) is None:
                raise _NotPublished
            return {key: pickle.loads(value) for key, value in copy.items()}

        result: dict[str, Any] = self._call(read, timeout)
        return result

    # ------------------------------------------------------------------ plumbing

    def reset(self) -> None:
        """Forget the proxy (after the server died): the next call makes a new one."""
        with self._lock:
            proxy, self._proxy = self._proxy, None
        if proxy is not None:
            _discard_proxy(proxy)

    def _table(self) -> Any:
        with self._lock:
            if self._proxy is None or self._pid != os.getpid():
                manager = _RegistryManager(address=self.address, authkey=self.authkey)
                try:
                    manager.connect()
                    proxy = getattr(manager, TABLE)()
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

    def _before_call(self) -> None:
        """Called before each synchronous call on the proxy (the writer flushes its pipeline here)."""

    def _call_once(self, operation: Any) -> Any:
        self._before_call()
        return operation(self._table())

    def _call(self, operation: Any, timeout: float | None = None) -> Any:
        bound = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + bound
        pause = 0.005
        while True:
            try:
                return self._call_once(operation)
            except _AuthenticationRefused:
                raise
            except (OSError, EOFError, _NotPublished) as error:
                if not isinstance(error, _NotPublished):
                    self.reset()
                if not os.path.isdir(os.path.dirname(self.address)):
                    # The tree's private directory goes when its root exits: nothing will come back.
                    raise RegistryUnavailableError(
                        f"the session registry at {self.address} is gone: its Application has stopped"
                    ) from error
                if time.monotonic() + pause > deadline:
                    raise RegistryUnavailableError(
                        f"the session registry at {self.address} did not answer within {bound} s"
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
