"""``supervisor.logging.JsonFormatter``: one JSON object per line, from records made here."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from supervisor.logging import JsonFormatter


def record(message: str = "hello %s", args: Any = ("world",), **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("supervisor", logging.ERROR, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def formatted(made: logging.LogRecord, formatter: logging.Formatter | None = None) -> dict[str, Any]:
    line = (formatter or JsonFormatter()).format(made)
    assert "\n" not in line
    document: dict[str, Any] = json.loads(line)
    return document


class TestJsonFormatter:
    def test_a_plain_record_has_time_level_logger_process_and_message(self) -> None:
        """The first five keys, in order; the time in UTC with a Z."""
        made = record()
        made.created = 0.25

        document = formatted(made)

        assert list(document) == ["time", "level", "logger", "process", "message"]
        assert {
            "time": "1970-01-01T00:00:00.250Z",
            "level": "ERROR",
            "logger": "supervisor",
            "process": made.process,
            "message": "hello world",
        } == document

    def test_extra_fields_follow_and_a_reports_traceback_leaves_the_message(self) -> None:
        """A report's fields are kept; its traceback, appended to its message for plain formatters, is
        written once, under ``traceback``."""
        trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'
        made = record("report\n%s", (trace,), path="root/a", pid=42, traceback=trace)

        document = formatted(made)

        assert ("report", "root/a", 42, trace) == (
            document["message"],
            document["path"],
            document["pid"],
            document["traceback"],
        )

    def test_a_local_exception_is_the_traceback(self) -> None:
        """A record logged with exc_info carries the formatted exception."""
        try:
            raise KeyError("missing")
        except KeyError:
            made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

        document = formatted(made)

        assert document["message"] == "failed"
        assert document["traceback"].startswith("Traceback (most recent call last)")
        assert "KeyError: 'missing'" in document["traceback"]

    def test_values_json_cannot_hold_are_written_as_their_repr(self) -> None:
        """An object in ``extra`` becomes its repr instead of failing the record."""
        thing = object()

        document = formatted(record(thing=thing, number=complex(1, 2)))

        assert (repr(thing), "(1+2j)") == (document["thing"], document["number"])

    def test_an_extra_field_cannot_replace_the_first_five(self) -> None:
        """``extra={"level": ...}`` does not overwrite the record's level."""
        assert formatted(record(level="fake"))["level"] == "ERROR"

    def test_datefmt_formats_the_time_in_utc(self) -> None:
        """A strftime ``datefmt`` is applied to the UTC time."""
        made = record()
        made.created = 86400.0

        assert formatted(made, JsonFormatter(datefmt="%Y-%m-%d %H:%M"))["time"] == "1970-01-02 00:00"
