"""
The spawned root's bootstrap: what it knows before it imports the starter's main module.

The root is spawned: a fresh interpreter that imports the starter's ``__main__`` (as
``__mp_main__``) before it unpickles and runs its entry point. A script that starts a tree at import
time, without ``if __name__ == "__main__":``, therefore starts it again inside the root, during that
import. The root enters through :func:`spawn_main`, which notes the descriptor of its result pipe
first, so such a start can be refused with a message that reaches the starter. This module imports
nothing from the package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GUARD_MISSING", "importing_main", "report", "spawn_main"]

GUARD_MISSING = "guard_missing"
"""The kind of the message a root sends its starter when its main module starts a tree at import."""

_result_fd: int | None = None


def spawn_main(pipe_handle: int, result_fd: int) -> None:
    """The spawned root's first code: note *result_fd*, then multiprocess's bootstrap (never returns)."""
    global _result_fd
    _result_fd = result_fd
    from multiprocess.spawn import spawn_main as bootstrap

    bootstrap(pipe_handle=pipe_handle, tracker_fd=None)


def importing_main() -> bool:
    """True in a spawned root that is still importing its starter's main module (does not block)."""
    if _result_fd is None:
        return False
    from multiprocess import process

    return bool(getattr(process.current_process(), "_inheriting", False))


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
