"""
Structured logs: :class:`JsonFormatter`, one JSON object per line, for a tree's ``logging_config``.

The supervisor's reports (``child_terminated``, ``start_error``, ``shutdown_error``, the intensity's
``shutdown`` and the others; see ``docs/operating.md``) carry structured fields: the tree, the
supervisor's and the child's id paths, the child's id and pid, the exit reason's kind, the restart
count and the remote traceback. A plain formatter shows them as one line plus the traceback; this one
writes them as JSON, for log shippers and ``jq``::

    Supervisor.start(children, logging_config={
        "version": 1,
        "formatters": {"json": {"()": "supervisor.logging.JsonFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": "tree.log", "formatter": "json"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    })

This module imports nothing of the package and nothing outside the standard library: a tree's
root imports it when it applies its ``logging_config``, and so can any program.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

__all__ = ["JsonFormatter"]

# The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """
    A :class:`logging.Formatter` that writes each record as one JSON object on one line.

    Its keys, in order: ``time`` (UTC, ISO 8601 with milliseconds and ``Z``), ``level`` (the level's
    name), ``logger``, ``process`` (the pid of the process that logged: the supervisor, for a
    report), ``message`` (the record's message), then every field the record was given through
    ``extra`` (a supervisor report's ``supervisor_context``, ``tree``, ``supervisor``, ``path``,
    ``child_id``, ``pid``, ``reason_kind``, ``restarts``, ``traceback``; a user's own), and last
    ``traceback`` and ``stack`` when the record has them. ``traceback`` is the remote traceback of a
    report (its text is then left out of ``message``, where plain formatters show it) or, for a
    record logged with ``exc_info``, the local one. An ``extra`` field named like one of the first
    five keys is left out. A value JSON cannot hold is written as its ``repr``; newlines inside
    values are escaped, so a line is always a whole record.

    Takes :class:`logging.Formatter`'s arguments, of which only ``datefmt`` matters (a ``strftime``
    format for ``time``, in UTC); in a ``dictConfig`` give it as ``{"()":
    "supervisor.logging.JsonFormatter"}``. Formatting does not block.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line (without the newline) of *record*."""
        message = record.getMessage()
        extra = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        traceback = extra.pop("traceback", None)
        if isinstance(traceback, str) and message.endswith("\n" + traceback):
            message = message[: -len(traceback) - 1]
        if record.exc_info:
            local = self.formatException(record.exc_info)
            traceback = local if traceback is None else f"{traceback}\n{local}"
        elif record.exc_text:
            traceback = record.exc_text if traceback is None else f"{traceback}\n{record.exc_text}"
        document: dict[str, Any] = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": message,
        }
        for key, value in extra.items():
            document.setdefault(key, value)
        if traceback is not None or "traceback" in vars(record):
            document["traceback"] = traceback
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=_fallback, ensure_ascii=False)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """*record*'s creation time in UTC: ``strftime(datefmt)`` if given, else ISO 8601 with ``Z``."""
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        if datefmt is not None:
            return moment.strftime(datefmt)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fallback(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"
