"""
Restart intensity: OTP's ``add_restart``, as pure arithmetic over restart times.

The window is ``(now - max_seconds, now]`` in float seconds of ``time.monotonic()``. OTP counts in
whole seconds with an inclusive bound, which makes its window between ``period`` and ``period + 1``
seconds wide; ours is exactly ``max_seconds`` wide.
"""

from __future__ import annotations

__all__ = ["add_restart"]


def add_restart(
    times: tuple[float, ...], now: float, max_restarts: int, max_seconds: float
) -> tuple[tuple[float, ...], bool]:
    """
    Record a restart at *now*; return the times still in the window and whether intensity is exceeded.

    Exceeded means that, with this restart, more than *max_restarts* restarts fall within the last
    *max_seconds*: at most *max_restarts* fit in a window and the next one escalates, so
    ``max_restarts=0`` escalates on the first.
    """
    kept = (*tuple(t for t in times if t > now - max_seconds), now)
    return kept, len(kept) > max_restarts
