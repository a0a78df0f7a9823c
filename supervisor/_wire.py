"""
Message encoding on the tree's connections: the C pickler, with dill only where it is needed.

``multiprocess`` connections pickle with dill, whose pure-Python pickler costs about ten times the
standard one on a typical request. Messages are therefore encoded with :mod:`pickle`, falling back to
dill for what it cannot encode (lambdas, closures), and always using dill when the main module has no
file (``python -c``, a notebook): there, functions of ``__main__`` must travel by value, as dill sends
them, because no other process can import them. ``pickle`` loads both encodings.
"""

from __future__ import annotations

import pickle
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
    """Receive one object sent with :func:`send`; raises EOFError at end of file."""
    return pickle.loads(conn.recv_bytes())
