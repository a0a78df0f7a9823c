"""
The supervisor's reports through :mod:`logging`, as OTP's supervisor reports.

``start_error``, ``child_terminated``, ``child_exited``, ``shutdown_error`` and ``shutdown`` (with
``reached_max_restart_intensity``) go to the logger ``supervisor``, with the child's remote traceback
when its exit reason has one, and ``supervisor_context`` and ``child_id`` as extra fields for
handlers that filter on them.
"""

from __future__ import annotations

import logging
from typing import Any

from ..reasons import ExitReason
from ..specs import ChildSpec

__all__ = ["log", "log_report"]

log = logging.getLogger("supervisor")


def log_report(
    path: str, context: str, spec: ChildSpec, reason: ExitReason | None, level: int, detail: str | None = None
) -> None:
    """Log the report *context* about the child *spec* of the supervisor at *path*."""
    text = detail if reason is None else reason.describe()
    message = "supervisor %s: %s: child %r (%s, %s) reason=%s"
    args: list[Any] = [path, context, spec.id, spec.restart.value, spec.type.value, text]
    if reason is not None and reason.traceback_text:
        message += "\n%s"
        args.append(reason.traceback_text.rstrip())
    log.log(level, message, *args, extra={"supervisor_context": context, "child_id": spec.id})
