"""
Structured reports: a tree logging through ``supervisor.logging.JsonFormatter`` writes one JSON
object per line, and each report carries the tree, the paths, the pid, the exit kind and the restarts.

The configs here leave ``disable_existing_loggers`` out and hang the handler on the root logger: that
the supervisor's reports arrive at all shows the library's loggers survive ``dictConfig``. Each test
waits for an event that comes after the report was written (a restart's new child reports only once
its supervisor has logged the exit that led to it, or the call that caused it has returned).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
from pathlib import Path
from typing import Any

from supervisor import ChildSpec, StartMode
from tests.children import EventSink, exit_once, fail_if_marker, ignore_sigterm

from .helpers import pids, worker


def json_config(path: Path) -> dict[str, Any]:
    """A ``logging_config`` writing every record of the tree's processes to *path* as JSON lines."""
    return {
        "version": 1,
        "formatters": {"json": {"()": "supervisor.logging.JsonFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "json"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }


def reports(path: Path, context: str) -> list[dict[str, Any]]:
    """The records of the reports named *context* in *path*; every line must be one JSON object."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in records if record.get("supervisor_context") == context]


def fields(record: dict[str, Any]) -> dict[str, Any]:
    """A report's structured fields, without time, message and traceback."""
    keys = ("tree", "supervisor", "path", "child_id", "pid", "reason_kind", "restarts")
    return {key: record[key] for key in keys}


class TestCrashReports:
    def test_a_crash_in_a_nested_supervisor_is_a_json_line_with_its_fields(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        """child_terminated of a nested worker: paths, pid, kind, restart count and the remote traceback."""
        log = tmp_path / "tree.jsonl"
        marker = str(tmp_path / "crashed")
        spec = ChildSpec("w", exit_once, args=("exception", marker, events.path, "w"))
        handle = start_tree([ChildSpec.supervisor("sub", [spec])], logging_config=json_config(log))
        first = events.expect("started", "w")
        second = events.expect("started", "w")  # restarted: the crash was logged before

        os.kill(second, signal.SIGKILL)
        events.expect("started", "w")

        crashed, killed = reports(log, "child_terminated")
        sub = pids(handle)["sub"]
        assert {
            "tree": "root",
            "supervisor": "root/sub",
            "path": "root/sub/w",
            "child_id": "w",
            "pid": first,
            "reason_kind": "exception",
            "restarts": 0,
        } == fields(crashed)
        assert (crashed["level"], crashed["logger"], crashed["process"]) == ("ERROR", "supervisor", sub)
        assert crashed["message"].startswith("supervisor root/sub: child_terminated: child 'w' (permanent")
        assert "\n" not in crashed["message"]
        assert crashed["traceback"].startswith("Traceback (most recent call last)")
        assert "ValueError: boom" in crashed["traceback"]
        logged_at = datetime.datetime.fromisoformat(crashed["time"].replace("Z", "+00:00"))
        assert logged_at.utcoffset() == datetime.timedelta(0)
        assert {"pid": second, "reason_kind": "killed", "restarts": 1, "traceback": None} == {
            key: killed[key] for key in ("pid", "reason_kind", "restarts", "traceback")
        }

    def test_reaching_the_restart_intensity_is_a_json_line_with_its_fields(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        """A nested supervisor that gives up logs shutdown/reached_max_restart_intensity for the child."""
        log = tmp_path / "tree.jsonl"
        inner = ChildSpec.supervisor("inner", [worker(events, "w")], max_restarts=0, max_seconds=60)
        handle = start_tree([inner], logging_config=json_config(log))
        old = events.expect("started", "w")
        old_inner = pids(handle)["inner"]

        os.kill(old, signal.SIGKILL)
        events.expect("started", "w")  # under the inner supervisor's replacement

        (intensity,) = reports(log, "shutdown")
        assert {
            "tree": "root",
            "supervisor": "root/inner",
            "path": "root/inner/w",
            "child_id": "w",
            "pid": old,
            "reason_kind": "killed",
            "restarts": 0,
        } == fields(intensity)
        assert (intensity["level"], intensity["process"]) == ("ERROR", old_inner)
        assert intensity["message"].endswith("reason=reached_max_restart_intensity")
        gave_up = [record for record in reports(log, "child_terminated") if record["child_id"] == "inner"]
        assert [("root/inner", old_inner, "shutdown", 0)] == [
            (record["path"], record["pid"], record["reason_kind"], record["restarts"]) for record in gave_up
        ]


class TestOtherReports:
    def test_a_failed_restart_is_a_start_error_line_with_the_pid_that_failed(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        """start_error of an automatic restart: the failed process's pid, its exception, restarts 1."""
        log = tmp_path / "tree.jsonl"
        marker = tmp_path / "refuse"
        spec = ChildSpec(
            "x", fail_if_marker, args=(str(marker), events.path, "x"), start_mode=StartMode.NOTIFY
        )
        start_tree([spec], max_restarts=1000, max_seconds=60, logging_config=json_config(log))
        running = events.expect("started", "x")
        marker.touch()

        os.kill(running, signal.SIGKILL)
        refused = events.expect("refused", "x")
        events.expect("refused", "x")  # the retry: the first failure was logged before it was queued
        marker.unlink()
        events.expect("started", "x")

        first = reports(log, "start_error")[0]
        assert {
            "tree": "root",
            "supervisor": "root",
            "path": "root/x",
            "child_id": "x",
            "pid": refused,
            "reason_kind": "exception",
            "restarts": 1,
        } == fields(first)
        assert "RuntimeError: marker" in first["traceback"]

    def test_a_child_killed_at_its_shutdown_deadline_is_a_shutdown_error_line(
        self, start_tree: Any, events: EventSink, tmp_path: Path, private_runtime_dir: Path
    ) -> None:
        """shutdown_error of a child that ignored SIGTERM: killed, with its pid; ``tree`` is the name
        of a named tree (the paths stay id paths)."""
        log = tmp_path / "tree.jsonl"
        spec = ChildSpec("stubborn", ignore_sigterm, args=(events.path, "stubborn"), shutdown=0.2)
        handle = start_tree([spec], logging_config=json_config(log), name="shop")
        pid = events.expect("started", "stubborn")

        handle.terminate_child("stubborn")  # returns once the report is written

        (error,) = reports(log, "shutdown_error")
        assert {
            "tree": "shop",
            "supervisor": "root",
            "path": "root/stubborn",
            "child_id": "stubborn",
            "pid": pid,
            "reason_kind": "killed",
            "restarts": 0,
        } == fields(error)
        assert error["traceback"] is None
