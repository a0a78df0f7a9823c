"""
Restart backoff: the delay before an automatic restart, as pure arithmetic over a count of consecutive
restarts, and the clock a supervisor measures a child's run time with.

The first restart after a healthy period (``n = 1``) waits ``initial``; the n-th consecutive one
(``n >= 2``) waits ``min(max, base * factor ** (n - 2))``; either is spread by ``± jitter`` times
itself. A child that ran ``reset_after`` seconds before it exited starts the count again at 1. OTP has
no backoff (it rejected one because a delay can hide a crash storm); here the restart intensity counts
each exit when it happens, before any delay (see ``docs/semantics.md``), so it cannot. This module
decides delays only: it neither waits nor arms a timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .specs import Backoff

__all__ = ["clock", "consecutive_restarts", "nominal_delay", "restart_delay"]

clock: Callable[[], float] = time.monotonic
"""Seconds on a monotonic clock: what a supervisor measures a child's run time with, for
``reset_after``. A seam for tests, which replace it in a supervisor process of their own to make a
child seem to have run an hour; the engine reads it at each use (``_backoff.clock()``)."""


def nominal_delay(backoff: Backoff, n: int) -> float:
    """
    The delay before the *n*-th consecutive restart, before jitter: ``initial`` for ``n = 1``, else
    ``min(max, base * factor ** (n - 2))`` (``max`` when the power overflows a float).

    Raises:
        ValueError: *n* < 1.
    """
    if n < 1:
        raise ValueError(f"'n' must be an int >= 1 (got {n!r})")
    if n == 1:
        return backoff.initial
    try:
        grown = backoff.base * backoff.factor ** (n - 2)
    except OverflowError:
        return backoff.max
    return min(backoff.max, grown)


def restart_delay(backoff: Backoff, n: int, spread: float) -> float:
    """
    The delay before the *n*-th consecutive restart: :func:`nominal_delay` times
    ``1 + jitter * spread``, for *spread* in ``[-1, 1]`` (uniformly random in the engine). Never
    negative (``jitter <= 1``); 0 when the nominal delay is 0.
    """
    return nominal_delay(backoff, n) * (1.0 + backoff.jitter * spread)


def consecutive_restarts(backoff: Backoff, previous: int, ran: float | None) -> int:
    """
    The consecutive count of a restart that follows *previous* ones: 1 if the child had run
    ``reset_after`` seconds or more (*ran*; None when it never became ready), else ``previous + 1``.
    """
    if ran is not None and ran >= backoff.reset_after:
        return 1
    return previous + 1
