"""
The registry's writer: the SessionManager's pipelined writes, on top of the registry client.

These try once and raise OSError or EOFError if the server is gone: the SessionManager's loop must not
block on a missing server; it reconnects on a timer of its own instead (``publisher.py``).

``put_later`` and ``delete_later`` are pipelined: the request is sent at once (the server applies
requests in order, so a reader sees it within the server's turnaround), and its reply is read later,
by :meth:`RegistryWriter.acknowledge` when the connection is readable or by
:meth:`RegistryWriter.flush`. The SessionManager flushes before it replies to any caller, so a caller
reads its own writes. One thread only.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from multiprocess.managers import convert_to_error

from .. import _wire
from .registry import PUBLISHED, RegistryClient

__all__ = ["RegistryWriter"]

_PIPELINE_DEPTH = 32
_ACK_TIMEOUT = 2.0


class RegistryWriter(RegistryClient):
    """A registry client that also writes, pipelined; used by one thread of one process."""

    def __init__(self, address: str, authkey: bytes, timeout: float = 5.0) -> None:
        super().__init__(address, authkey, timeout)
        self._unacknowledged = 0

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

    def replace_all_now(self, entries: dict[str, Any]) -> None:
        """Make the dict equal to *entries* and mark it published (two round trips: clear, update)."""
        encoded = {key: _wire.dumps(value) for key, value in entries.items()}
        encoded[PUBLISHED] = b"1"
        self._call_once(lambda table: (table.clear(), table.update(encoded)))

    def connection_fileno(self) -> int | None:
        """The fd of this thread's connection to the server, if open: readable at EOF, when it dies."""
        proxy = self._proxy
        if proxy is None or self._pid != os.getpid():
            return None
        conn = getattr(proxy._tls, "connection", None)
        return None if conn is None else int(conn.fileno())

    def try_connect(self) -> bool:
        """One attempt to make the proxy and its connection; True if the server answered."""
        try:
            self._call_once(lambda table: table.get(""))
            return True
        except (OSError, EOFError):
            self.reset()
            return False

    def reset(self) -> None:
        self._unacknowledged = 0
        super().reset()

    def _before_call(self) -> None:
        self.flush()  # a synchronous call would otherwise read a pipelined write's reply

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
