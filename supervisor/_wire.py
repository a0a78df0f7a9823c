"""
Message encoding on the tree's connections: the C pickler, with dill only where it is needed.

``multiprocess`` connections pickle with dill, whose pure-Python pickler costs about ten times the
standard one on a typical request. Messages are therefore encoded with :mod:`pickle`, falling back to
dill for what it cannot encode (lambdas, closures) and for functions and classes of ``__main__``
that the receiver's copy of ``__main__`` lacks (those the script defines under its
``if __name__ == "__main__":`` guard, found by reading the script once), and always using dill
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

import ast
import functools
import os
import pickle
import struct
import sys
import types
from typing import Any

import dill

__all__ = ["dumps", "loads", "recv", "recv_frame", "send", "send_bytes", "zero"]

_MAIN = b"__main__"


def dumps(obj: Any) -> bytes:
    """
    Encode *obj* for another process of the tree.

    Does not block. A function or class of ``__main__`` goes by reference when the receiver's
    ``__main__`` defines it too (the starter's script defines it at top level, outside the
    ``if __name__ == "__main__":`` guard), else by value.

    Raises:
        Exception: whatever the picklers raise for what neither can encode (a lock, a socket...).
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None:
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            pass
        else:
            if _MAIN not in data or _defined_on_import(obj, main_file):
                return data
            # Something of __main__ went by reference that the receiver's __main__ lacks (defined
            # under the guard): send it by value, unless dill cannot (an unpicklable global).
            try:
                by_value: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
            except Exception:
                return data
            return by_value
    encoded: bytes = dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
    return encoded


class _MainReferences(pickle.Pickler):
    """Pickles into nothing, noting the functions and classes of ``__main__`` it meets."""

    def __init__(self) -> None:
        super().__init__(_Discard(), protocol=pickle.HIGHEST_PROTOCOL)
        self.found: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            self.found.append(obj)
        return NotImplemented


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _defined_on_import(obj: Any, main_file: str) -> bool:
    """Whether every function and class of ``__main__`` that *obj* refers to is defined when the
    main module is imported under another name (as the spawned root imports it)."""
    references = _MainReferences()
    try:
        references.dump(obj)
    except Exception:
        return False
    main = sys.modules["__main__"]
    names = _import_time_names(main_file)
    return all(
        ref.__qualname__ in names and getattr(main, ref.__qualname__, None) is ref for ref in references.found
    )


@functools.lru_cache(maxsize=8)
def _import_time_names(path: str) -> frozenset[str]:
    """The names a script defines at top level outside ``if __name__ == "__main__":`` blocks."""
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), path)
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    _collect(tree.body, names)
    return frozenset(names)


def _collect(body: list[ast.stmt], names: set[str]) -> None:
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names.update(
                node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
            )
        elif isinstance(stmt, ast.If):
            if not _is_main_guard(stmt.test):
                _collect(stmt.body, names)
            _collect(stmt.orelse, names)
        elif isinstance(stmt, (ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                _collect(getattr(stmt, field, []), names)
            for handler in getattr(stmt, "handlers", []):
                _collect(handler.body, names)


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides) and any(
        isinstance(side, ast.Constant) and side.value == "__main__" for side in sides
    )


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
