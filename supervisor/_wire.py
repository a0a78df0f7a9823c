"""
Message encoding on the tree's connections: the C pickler, with dill only where it is needed.

``multiprocess`` connections pickle with dill, whose pure-Python pickler costs about ten times the
standard one on a typical request. Messages are therefore encoded with :mod:`pickle`, falling back to
dill for what it cannot encode (lambdas, closures) and for what refers to ``__main__`` (a function or
class of the main module, which the receiver's copy of ``__main__`` may lack), and always using dill
when the main module has no file (``python -c``, a notebook): there, functions of ``__main__`` must
travel by value, as dill sends them, because no other process can import them. ``pickle`` loads both
encodings.

dill encodes with ``recurse=True``: a function sent by value carries the globals it uses (the
modules it names, the values it reads), not a reference to the sender's ``__main__`` namespace,
which the receiver does not have (the spawned root's ``__main__`` is the starter's script imported
again, without what ran under ``if __name__ == "__main__":``; under ``python -c`` it is empty).

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

__all__ = ["by_value", "dumps", "loads", "recv", "recv_frame", "send", "send_bytes", "zero"]

_MAIN = b"__main__"


def by_value(obj: Any) -> bool:
    """
    True if *obj* must be encoded by dill with ``recurse=True`` (the rule :func:`dumps` follows): the
    main module has no file, the C pickler cannot encode it, or it refers to ``__main__``.
    """
    if getattr(sys.modules.get("__main__"), "__file__", None) is None:
        return True
    try:
        return _MAIN in pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return True


def dumps(obj: Any) -> bytes:
    """
    Encode *obj* for another process of the tree.

    Raises:
        Exception: whatever the picklers raise for what neither can encode (a lock, a socket...).
    """
    if getattr(sys.modules.get("__main__"), "__file__", None) is not None:
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            pass
        else:
            if _MAIN not in data:
                return data
            # Something of __main__ went by reference: the receiver's __main__ may lack it (defined
            # under the guard), so send it by value, unless dill cannot (an unpicklable global).
            try:
                by_value: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
            except Exception:
                return data
            return by_value
    encoded: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
    return encoded


def loads(data: bytes | bytearray) -> Any:
    """Decode what :func:`dumps` encoded; raises what unpickling raises (a missing attribute...)."""
    return pickle.loads(data)


def send(conn: Any, obj: Any) -> None:
    """Send *obj* on the ``multiprocess`` connection *conn*."""
    conn.send_bytes(dumps(obj))


def send_bytes(conn: Any, data: bytes) -> None:
    """Send *data*, already encoded with :func:`dumps`, on the ``multiprocess`` connection *conn*."""
    conn.send_bytes(data)


def recv(conn: Any) -> Any:
    """
    Receive one object sent with :func:`send`; blocks until it has come whole.

    Raises:
        EOFError: the peer closed the connection before a message began.
        OSError: it closed it in the middle of one, or the read failed.
        Exception: what unpickling raises for a message that cannot be decoded here.
    """
    frame = recv_frame(conn)
    try:
        return loads(frame)
    finally:
        zero(frame)


def recv_frame(conn: Any) -> bytearray:
    """
    One encoded message from *conn*, undecoded, in a buffer to :func:`zero` once it is decoded.

    Blocks until it has come whole.

    Raises:
        EOFError: the peer closed the connection before a message began.
        OSError: it closed it in the middle of one, or the read failed.
    """
    fd = conn.fileno()
    (size,) = struct.unpack("!i", _read(fd, 4, first=True))
    if size == -1:
        (size,) = struct.unpack("!Q", _read(fd, 8))
    return _read(fd, size)


def zero(frame: bytearray) -> None:
    """Overwrite *frame* with zero bytes in place (does not block)."""
    frame[:] = bytes(len(frame))


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
