"""
Reading framed messages from a non-blocking socket, each straight into a buffer of its own size.

The framing is ``multiprocess``'s (a 4-byte big-endian length, or -1 and an 8-byte length, then the
bytes). A message is read header first, then into a ``bytearray`` of exactly its size with
``recv_into``: never through an immutable ``bytes`` or a buffer that grows and is copied, because a
message may carry a key, and every copy of it must be one that can be zeroed before it is freed (a
child forked later inherits its parent's freed memory). Used by the supervisors' control sockets and
by GenServers; this module imports nothing of the package.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["FrameReader", "frame"]

_HEADER = struct.Struct("!i")
_LONG_HEADER = struct.Struct("!Q")


def frame(data: bytes) -> bytes:
    """*data* with its length in front (the framing of ``multiprocess`` connections)."""
    if len(data) < 2**31:
        return _HEADER.pack(len(data)) + data
    return _HEADER.pack(-1) + _LONG_HEADER.pack(len(data)) + data


class FrameReader:
    """The message still coming on one socket: its header, then its body."""

    __slots__ = ("body", "got", "header", "limit")

    def __init__(self, limit: int) -> None:
        """*limit*: the largest message accepted, in bytes."""
        self.header = bytearray(12)
        self.body: bytearray | None = None
        self.got = 0  # bytes read of the header, then of the body
        self.limit = limit

    def receive(self, sock: socket.socket, most: int = 64) -> list[bytearray]:
        """
        Read what *sock* (non-blocking) has now; return the messages that came whole, at most *most*
        (the rest waits for the next call). Each is the caller's to zero once decoded.

        Raises:
            EOFError: the peer closed the connection (in the middle of a message, or between two).
            OSError: the read failed, or a message is larger than the limit.
        """
        frames: list[bytearray] = []
        while len(frames) < most:
            if self.body is None:
                view = memoryview(self.header)[self.got : self._header_size()]
            else:
                view = memoryview(self.body)[self.got :]
            if len(view):
                try:
                    count = sock.recv_into(view)
                except BlockingIOError:
                    return frames
                if count == 0:
                    raise EOFError("the peer closed the connection")
                self.got += count
            if self.body is None:
                if self.got < self._header_size():
                    continue
                self.body, self.got = bytearray(self._body_size()), 0
            if self.got == len(self.body):
                frames.append(self.body)
                self.body, self.got = None, 0
        return frames

    def discard(self) -> None:
        """Zero a message read in part (the connection is going)."""
        if self.body is not None:
            self.body[:] = bytes(len(self.body))

    def _header_size(self) -> int:
        """4 bytes, or 12 for a long message (a length of -1, then 8 bytes of length)."""
        if self.got >= 4 and _HEADER.unpack_from(self.header)[0] == -1:
            return 12
        return 4

    def _body_size(self) -> int:
        (size,) = _HEADER.unpack_from(self.header)
        if size == -1:
            (size,) = _LONG_HEADER.unpack_from(self.header, 4)
        if size < 0 or size > self.limit:
            raise OSError(f"a message of {size} bytes (at most {self.limit})")
        return int(size)
