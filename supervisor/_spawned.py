"""
The spawned root's bootstrap: what it knows before it imports the starter's main module.

The root is spawned: a fresh interpreter that imports the starter's ``__main__`` (as
``__mp_main__``) before it unpickles and runs its entry point. A script that starts a tree at import
time, without ``if __name__ == "__main__":``, therefore starts it again inside the root, during that
import. The root's bootstrap calls :func:`begin`, which notes the descriptor of its result pipe,
and marks that import with :func:`set_importing_main`, so such a start can be refused with a
message that reaches the starter. This module imports nothing from the package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GUARD_MISSING", "begin", "importing_main", "report", "set_importing_main"]

GUARD_MISSING = "guard_missing"
"""The kind of the message a root sends its starter when its main module starts a tree at import."""

_result_fd: int | None = None
_importing_main = False


def begin(result_fd: int) -> None:
    """The root's first step: note *result_fd*, the starter's result pipe (does not block)."""
    global _result_fd
    _result_fd = result_fd


def set_importing_main(importing: bool) -> None:
    """Say whether the root is importing its starter's main module (does not block)."""
    global _importing_main
    _importing_main = importing


def importing_main() -> bool:
    """True in a spawned root that is still importing its starter's main module (does not block)."""
    return _result_fd is not None and _importing_main


def report(kind: str, value: Any) -> None:
    """Send ``(kind, value)`` to the starter on the root's result pipe, if it still listens (may block)."""
    if _result_fd is None:
        return
    import os

    from multiprocess.connection import Connection

    try:
        conn = Connection(os.dup(_result_fd), readable=False)
    except OSError:
        return
    try:
        conn.send((kind, value))
    except OSError:
        pass
    finally:
        conn.close()
