"""
``top``: a live view of a tree's processes, at most once a second: CPU and memory per process (read
from ``/proc/<pid>/stat`` and ``/proc/<pid>/statm``), state and restart counts from the supervisors.

``--once`` prints one frame and exits (its CPU column is the average since each process started);
otherwise frames follow, each CPU figure over the time since the last frame, until ``q`` (on a
terminal) or Ctrl-C. ``--json`` prints each frame as one JSON line instead. The supervisors are asked
once per frame; processes are only read, never signalled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

from rich.live import Live
from rich.table import Table

from ..errors import SupervisorError
from ..messaging.client import resolve, server_status
from . import render, snapshot
from .target import CliError, Target, find

__all__ = ["ProcessSample", "frame", "measure", "sample", "top"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_INTERVAL = 1.0


class ProcessSample:
    """One reading of a process: CPU seconds used, seconds since it started, resident bytes."""

    def __init__(self, cpu_seconds: float, age_seconds: float, rss_bytes: int, at: float) -> None:
        self.cpu_seconds = cpu_seconds
        self.age_seconds = age_seconds
        self.rss_bytes = rss_bytes
        self.at = at


def sample(pid: int) -> ProcessSample | None:
    """Read the process *pid* from /proc; None if it is gone. Does not block."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        with open(f"/proc/{pid}/statm", "rb") as file:
            statm = file.read().split()
        with open("/proc/uptime", "rb") as file:
            uptime = float(file.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15
    age = max(uptime - int(fields[19]) / _TICKS, 1e-6)  # starttime: field 22
    return ProcessSample(cpu, age, int(statm[1]) * _PAGE, time.monotonic())


def _rows(status: dict[str, Any]) -> Iterator[tuple[str, int | None, str, int]]:
    """(path, pid, state, restarts) for the root, every child and every session, depth first."""
    yield "root", status["pid"], "running", 0

    def walk(children: list[dict[str, Any]]) -> Iterator[tuple[str, int | None, str, int]]:
        for child in children:
            if "state" in child:
                yield child["path"], child["pid"], child["state"], child["restarts"]
                yield from walk(child["children"])

    yield from walk(status["children"])
    for session in status["sessions"]:
        yield f"session {session['session_id']}", session["pid"], session["status"], session["restarts"]
        yield from walk(session["children"])


def measure(target: Target, previous: dict[int, ProcessSample]) -> dict[str, Any]:
    """
    One frame's values (``top --json``): the tree's head and a row per process; *previous* (pid ->
    last sample) is updated for the next frame. Blocks for a call per supervisor.
    """
    try:
        status = snapshot.status_json(target, [])
    except SupervisorError as error:
        raise CliError(f"tree {target.name!r}: {error}", 1) from error
    rows = []
    seen: dict[int, ProcessSample] = {}
    for path, pid, state, restarts in _rows(status):
        reading = sample(pid) if pid is not None else None
        cpu = rss = None
        if reading is not None and pid is not None:
            before = previous.get(pid)
            if before is not None and reading.at > before.at:
                share = (reading.cpu_seconds - before.cpu_seconds) / (reading.at - before.at)
            else:
                share = reading.cpu_seconds / reading.age_seconds
            cpu, rss = round(100 * share, 1), reading.rss_bytes
            seen[pid] = reading
        rows.append(
            {
                "path": path,
                "pid": pid,
                "state": state,
                "cpu_percent": cpu,
                "rss_bytes": rss,
                "restarts": restarts,
                "mailbox": _mailbox(target, path),
            }
        )
    previous.clear()
    previous.update(seen)
    head = snapshot.tree_json(target)
    head["processes"] = rows
    return head


def _mailbox(target: Target, path: str) -> int | None:
    """The mailbox depth of the GenServer at *path*; None if none runs there (or it did not say)."""
    try:
        ref = resolve(os.path.dirname(target.descriptor.address), target.root._authkey, "", path)
        if ref is None:
            return None
        return int(server_status(ref, timeout=min(target.timeout, 1.0))["mailbox"])
    except (SupervisorError, OSError, KeyError, TypeError, ValueError):
        return None


def frame(target: Target, previous: dict[int, ProcessSample]) -> Table:
    """One frame as a table (see :func:`measure`)."""
    values = measure(target, previous)
    title = f"{values['tree']}: root pid {values['pid']}, uptime {render.duration(values['uptime_seconds'])}"
    table = Table(title=title)
    for column in ("PATH", "PID", "STATE", "CPU%", "RSS MiB", "RESTARTS", "MAILBOX"):
        table.add_column(column, justify="left" if column in ("PATH", "STATE") else "right")
    for row in values["processes"]:
        table.add_row(
            row["path"],
            "-" if row["pid"] is None else str(row["pid"]),
            row["state"],
            "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}",
            "-" if row["rss_bytes"] is None else f"{row['rss_bytes'] / (1 << 20):.1f}",
            str(row["restarts"]),
            "-" if row["mailbox"] is None else str(row["mailbox"]),
        )
    return table


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Single keypresses from a terminal stdin (yields True), else nothing to read (False)."""
    if not sys.stdin.isatty():
        yield False
        return
    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield True
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def top(args: argparse.Namespace) -> int:
    """Show frames until ``q`` or Ctrl-C (``--once``: one frame)."""
    target = find(args.tree, args.timeout)
    previous: dict[int, ProcessSample] = {}
    out = render.console()
    if args.json:  # one frame per line, each a JSON object (--once: one)
        while True:
            print(json.dumps(measure(target, previous)), flush=True)
            if args.once:
                return 0
            time.sleep(_INTERVAL)  # the view's refresh period (Ctrl-C ends it)
    if args.once:
        out.print(frame(target, previous), soft_wrap=True)
        return 0
    with _keys() as interactive, Live(frame(target, previous), console=out, auto_refresh=False) as live:
        while True:
            next_frame = time.monotonic() + _INTERVAL
            while (left := next_frame - time.monotonic()) > 0:
                if not interactive:
                    time.sleep(left)  # nothing to read: wait for the next frame (Ctrl-C ends it)
                    continue
                readable, _, _ = select.select([sys.stdin], [], [], left)
                if readable and sys.stdin.read(1) in ("q", "Q"):
                    return 0
            live.update(frame(target, previous), refresh=True)
