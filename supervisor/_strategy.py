"""
Pure restart decisions: whether an exit leads to a restart, and which children that restart touches.

These follow OTP's ``do_restart`` and ``restart/3`` exactly (see ``docs/semantics.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .reasons import ExitReason
from .specs import Restart, Strategy

__all__ = ["restart_set", "should_restart"]


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """True if a child with restart type *restart* that exited for *reason* is to be restarted."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason.is_abnormal
    return False


def restart_set(strategy: Strategy, ids_in_start_order: Sequence[str], failed_id: str) -> list[str]:
    """
    The ids, in start order, that a restart of *failed_id* stops and starts again under *strategy*.

    The caller terminates the others in the set in reverse start order, drops the temporary ones among
    them, then starts the rest of the set in start order.
    """
    if strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
        return [failed_id]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(ids_in_start_order)
    position = list(ids_in_start_order).index(failed_id)
    return list(ids_in_start_order[position:])
