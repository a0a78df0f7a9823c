"""
The registry's writer: the SessionManager's one link to the registry server, and its pipelined writes.

Nothing here waits on the server beyond ``ACK_TIMEOUT``: the SessionManager's loop must not block on a
server that is gone, stopped or hung. Connecting has two forms: :meth:`RegistryWriter.connect_now`,
bounded, for the SessionManager's start, and :meth:`RegistryWriter.begin_connect` with
:meth:`RegistryWriter.advance`, which never block, for the loop to drive from the link's readiness
(``publisher.py``).

``put_later``, ``delete_later`` and ``replace_all_later`` are pipelined: the request is sent at once
(the server applies one connection's requests in order, so a reader sees it within the server's
turnaround), and its reply is read later, by :meth:`RegistryWriter.acknowledge` when the link is
readable or by :meth:`RegistryWriter.flush`. The SessionManager flushes before it replies to any
caller, so a caller reads its own writes. One thread only.
"""

from __future__ import annotations

import time
from typing import Any

from .. import _wire
from .._keys import Key
from .registry import PUBLISHED, RegistryLink

__all__ = ["ACK_TIMEOUT", "RegistryWriter"]

ACK_TIMEOUT = 2.0
"""Seconds the SessionManager waits on the registry server at most, for any one thing."""
_PIPELINE_DEPTH = 32


class RegistryWriter:
    """
    The SessionManager's link to the registry: a bounded or non-blocking connect, pipelined writes.

    Every method that talks to the server raises OSError (TimeoutError included) or EOFError when the
    link failed; the link is then spoilt and the caller must :meth:`close` it and connect again.
    """

    def __init__(self, address: str, authkey: Key | bytes) -> None:
        self.address = address
        self.authkey = authkey
        self.link: RegistryLink | None = None
        self._unacknowledged = 0

    @property
    def connected(self) -> bool:
        """True once the link is authenticated and usable for writes."""
        return self.link is not None and self.link.handshake is None

    def fileno(self) -> int | None:
        """The link's fd (readable when the server answers, or at EOF), if there is a link."""
        return None if self.link is None else self.link.fileno()

    def close(self) -> None:
        """Drop the link (the fd is closed: unwatch it first), and forget unread replies."""
        link, self.link = self.link, None
        self._unacknowledged = 0
        if link is not None:
            link.close()

    # ------------------------------------------------------------------ connecting

    def connect_now(self, timeout: float = ACK_TIMEOUT) -> None:
        """Connect and authenticate; blocks *timeout* seconds at most."""
        self.close()
        self.link = RegistryLink.open(self.address, self.authkey, time.monotonic() + timeout)

    def begin_connect(self) -> None:
        """Start connecting without blocking; :meth:`advance` when the fd is readable."""
        self.close()
        self.link = RegistryLink.begin(self.address, self.authkey)

    def advance(self) -> bool:
        """Run the handshake on what has arrived, without blocking; True once connected."""
        assert self.link is not None
        return self.link.advance()

    # ------------------------------------------------------------------ writes

    def put_later(self, key: str, value: Any) -> None:
        self._send_later("put", key, _wire.dumps(value))

    def delete_later(self, key: str) -> None:
        self._send_later("remove", key)

    def replace_all_later(self, entries: dict[str, Any]) -> None:
        """Make the registry exactly *entries*, marked published, in one request."""
        encoded = {key: _wire.dumps(value) for key, value in entries.items()}
        encoded[PUBLISHED] = b"1"
        self._send_later("replace_all", encoded)

    def acknowledge(self) -> None:
        """Read the replies that have arrived, without blocking; EOFError if the server closed the link."""
        link = self._link()
        link.fill()
        while (frame := link.take_frame()) is not None:
            self._acknowledged(frame)

    def flush(self, timeout: float = ACK_TIMEOUT) -> None:
        """Wait for the reply of every pipelined write; blocks *timeout* seconds at most (TimeoutError)."""
        if not self._unacknowledged:
            return
        link = self._link()
        deadline = time.monotonic() + timeout
        while self._unacknowledged:
            self._acknowledged(link.recv_frame(deadline))

    def _send_later(self, method: str, *args: Any) -> None:
        link = self._link()
        deadline = time.monotonic() + ACK_TIMEOUT
        # A bounded pipeline: with too many replies unread, the server would block writing them and
        # stop reading, and so would we, writing to it.
        if self._unacknowledged >= _PIPELINE_DEPTH:
            self.acknowledge()
        while self._unacknowledged >= _PIPELINE_DEPTH:
            self._acknowledged(link.recv_frame(deadline))
        link.send_frame(RegistryLink.request(method, *args), deadline)
        self._unacknowledged += 1

    def _acknowledged(self, frame: bytes) -> None:
        if not self._unacknowledged:
            raise ConnectionError("the session registry server sent a reply nobody asked for")
        self._unacknowledged -= 1
        RegistryLink.reply(frame)  # raises RemoteFailure (a ConnectionError) for an error reply

    def _link(self) -> RegistryLink:
        if not self.connected:
            raise ConnectionError("not connected to the session registry server")
        assert self.link is not None
        return self.link
