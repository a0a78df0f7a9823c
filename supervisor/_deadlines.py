"""Timeouts as deadlines: validated where a caller gives them, then counted down on the monotonic clock."""

from __future__ import annotations

import math
import time

__all__ = ["deadline_from", "remaining"]


def deadline_from(name: str, timeout: object) -> float | None:
    """The monotonic deadline *timeout* seconds from now (None: no bound); validates *timeout*."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(
            f"'{name}' must be seconds >= 0 or None (got {timeout!r} that is a {type(timeout).__name__})"
        )
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"'{name}' must be finite seconds >= 0 or None (got {timeout!r})")
    return time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until *deadline* (monotonic), never negative; None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
