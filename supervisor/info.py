"""What a supervisor reports about its children: frozen values returned by the handle."""

from __future__ import annotations

from typing import Any

import attrs

from .specs import ChildType, Restart

__all__ = ["ChildCounts", "ChildInfo"]


@attrs.frozen
class ChildInfo:
    """
    One child as ``which_children()`` reports it.

    ``pid`` is None while the child is not running; ``restarting`` is True between a failed automatic
    restart and its retry (OTP's ``restarting``), when ``pid`` is None too. ``start_info`` is what
    the running process passed to :func:`supervisor.notify_ready` (OTP's ``{ok, Pid, Info}``), kept
    while that process runs; None when it passed nothing, is not running, or is a nested supervisor.
    ``id`` is None for the children of a simple_one_for_one supervisor or a DynamicSupervisor (OTP's
    ``undefined``): they are known by pid.
    """

    id: str | None
    pid: int | None
    type: ChildType
    restart: Restart
    restarting: bool = False
    start_info: Any = None


@attrs.frozen
class ChildCounts:
    """``count_children()``: all specs, live children, and specs by type (alive or not)."""

    specs: int
    active: int
    supervisors: int
    workers: int
