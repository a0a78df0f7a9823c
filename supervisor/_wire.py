"""
Message encoding on the tree's connections: the C pickler, with dill only where it is needed.

``multiprocess`` connections pickle with dill, whose pure-Python pickler costs about ten times the
standard one on a typical request. Messages are therefore encoded with :mod:`pickle`, falling back to
dill for what it cannot encode (lambdas, closures), and always using dill when the main module has no
file (``python -c``, a notebook): there, functions of ``__main__`` must travel by value, as dill sends
them, because no other process can import them. ``pickle`` loads both encodings.

A message is read into a ``bytearray`` that is zeroed once decoded: a handle in a request carries its
key, and a frame left in freed memory would hand that key to every child the receiver forks later.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import Any

import dill

__all__ = ["dumps", "recv", "send"]


def dumps(obj: Any) -> bytes:
    """Encode *obj* for another process of the tree."""
    if getattr(sys.modules.get("__main__"), "__file__", None) is not None:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            pass
    data: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def send(conn: Any, obj: Any) -> None:
    """Send *obj* on the ``multiprocess`` connection *conn*."""
    conn.send_bytes(dumps(obj))


def recv(conn: Any) -> Any:
    """
    Receive one object sent with :func:`send`; blocks until it has come whole.

    Raises:
        EOFError: the peer closed the connection before a message began.
        OSError: it closed it in the middle of one, or the read failed.
    """
    fd = conn.fileno()
    (size,) = struct.unpack("!i", _read(fd, 4, first=True))
    if size == -1:
        (size,) = struct.unpack("!Q", _read(fd, 8))
    frame = _read(fd, size)
    try:
        return pickle.loads(frame)
    finally:
        frame[:] = bytes(size)


def _read(fd: int, size: int, first: bool = False) -> bytearray:
    """*size* bytes from *fd* (the framing of ``multiprocess`` connections), into a bytearray."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            if first and got == 0:
                raise EOFError
            raise OSError("got end of file during message")
        got += n
    return buffer
