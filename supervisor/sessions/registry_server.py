"""
The registry server: the process that holds the session registry's dict and serves it.

A worker child of the Application's supervisor (``StartMode.NOTIFY``), ready once it listens. Its
accepter and connection threads live only in this leaf process, which never forks; it serves until
SIGTERM (``ShutdownExit``). It serves bytes, tuples and tokens only: its connections use the C pickler
instead of dill's pure-Python one, several times faster per request; clients load either.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from typing import Any

import multiprocess.connection
from multiprocess.managers import BaseManager, DictProxy

from .. import _child
from .._addresses import TreeContext
from .registry import TABLE

__all__ = ["run_registry_server"]

_table: dict[str, Any] = {}


def _get_table() -> dict[str, Any]:
    return _table


class _ServingManager(BaseManager):  # type: ignore[misc]
    pass


_ServingManager.register(TABLE, callable=_get_table, proxytype=DictProxy)


class _CPickler:
    """The standard pickler, in the shape ``multiprocess.connection`` expects of its pickler."""

    @staticmethod
    def dumps(obj: Any, protocol: int | None = None) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: Any) -> Any:
        return pickle.loads(data)


def run_registry_server(tree: TreeContext) -> None:
    """The start of the registry server child at *tree*: serve the dict until stopped; never returns."""
    address = tree.address
    multiprocess.connection._ForkingPickler = _CPickler
    try:
        os.unlink(address)  # a stale socket left by a predecessor that was killed
    except FileNotFoundError:
        pass
    manager = _ServingManager(address=address, authkey=tree.authkey)
    server = manager.get_server()
    server.stop_event = threading.Event()  # serve_forever would set it; we serve without it
    os.chmod(address, 0o600)
    accepter = threading.Thread(target=server.accepter, name="registry-accepter", daemon=True)
    accepter.start()
    _child.notify_ready()
    while True:
        signal.pause()  # SIGTERM raises ShutdownExit here
