"""
The supervisor's reports through :mod:`logging`, as OTP's supervisor reports.

``start_error``, ``child_terminated``, ``child_exited``, ``shutdown_error``, ``shutdown`` (with
``reached_max_restart_intensity``) and ``auto_shutdown`` go to the logger ``supervisor``, with the
child's remote traceback when its exit reason has one. Each record carries structured fields (its
``extra``), for handlers that filter on them and for :class:`supervisor.logging.JsonFormatter`:
``supervisor_context`` (the report's name, OTP's ``errorContext``), ``tree`` (the tree's name, or
``root`` for an unnamed tree),
``supervisor`` and ``path`` (the supervisor's and the child's id paths), ``child_id``, ``pid`` (the
child's process; None if none was forked), ``reason_kind`` (the exit reason's
:class:`~supervisor.ExitKind` value; None when the report has none), ``restarts`` (the child's
automatic restart count) and ``traceback`` (the remote traceback text, or None). The message stays
one readable line, plus the traceback, for plain formatters.
"""

from __future__ import annotations

import logging
from typing import Any

from .._addresses import TreeContext
from ..reasons import ExitKind, ExitReason
from ..specs import ChildSpec

__all__ = ["log", "log_report"]

log = logging.getLogger("supervisor")


def log_report(
    tree: TreeContext,
    context: str,
    spec: ChildSpec,
    reason: ExitReason | None,
    level: int,
    detail: str | None = None,
    *,
    pid: int | None = None,
    restarts: int = 0,
    reason_kind: ExitKind | None = None,
) -> None:
    """
    Log the report *context* about the child *spec* of the supervisor at *tree*; does not block on
    anything but the handlers.

    The message says *detail* when there is no *reason*. *pid* is the child's process (the one that
    ended, or failed to start), *restarts* its restart count; *reason_kind* is the exit kind the
    record carries, *reason*'s by default (the intensity report has no reason of its own and
    passes the kind of the exit that exceeded it).
    """
    text = detail if reason is None else reason.describe()
    message = "supervisor %s: %s: child %r (%s, %s) reason=%s"
    args: list[Any] = [tree.path, context, spec.id, spec.restart.value, spec.type.value, text]
    traceback = reason.traceback_text.rstrip() if reason is not None and reason.traceback_text else None
    if traceback is not None:
        message += "\n%s"
        args.append(traceback)
    if reason_kind is None and reason is not None:
        reason_kind = reason.kind
    fields = {
        "supervisor_context": context,
        "tree": tree.tree_name,
        "supervisor": tree.path,
        "path": f"{tree.path}/{spec.id}",
        "child_id": spec.id,
        "pid": pid,
        "reason_kind": None if reason_kind is None else reason_kind.value,
        "restarts": restarts,
        "traceback": traceback,
    }
    log.log(level, message, *args, extra=fields)
