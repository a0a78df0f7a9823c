"""
Text views of the CLI's values, with :mod:`rich`: the tree as a tree, tables, one line per event.

Renders the dicts of :mod:`supervisor.cli.snapshot` (the same values ``--json`` prints), so the text
and the JSON never disagree. Colour only on a terminal; lines are never wrapped, so the output greps.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

__all__ = ["console", "duration", "emit_json", "ls_view", "sessions_view", "status_view"]

_STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "backoff": "yellow",
    "restarting": "yellow",
    "stopping": "magenta",
    "stopped": "dim",
}


def console() -> Console:
    """A console on stdout: colour on a terminal only, wide enough never to wrap a line elsewhere."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=250, no_color=True, color_system=None)


def emit_json(value: Any) -> None:
    """Print *value* as one JSON document on stdout."""
    print(json.dumps(value, indent=2, sort_keys=False), flush=True)


def duration(seconds: float | None) -> str:
    """*seconds* as ``H:MM:SS`` (supervisorctl's uptime), ``-`` for None."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _child_line(child: dict[str, Any]) -> Text:
    name = child["id"] if child["id"] is not None else str(child["pid"])
    line = Text()
    line.append(f"{name}", style="bold")
    line.append(f"  {child['state']}", style=_STATE_STYLE.get(child["state"], ""))
    line.append(f"  pid {child['pid'] if child['pid'] is not None else '-'}")
    line.append(f"  uptime {duration(child['uptime_seconds'])}")
    line.append(f"  restarts {child['restarts']}")
    line.append(f"  {child['type']}, {child['restart']}", style="dim")
    if child["last_exit"] is not None:
        line.append(f"  last exit: {child['last_exit']['description']}")
    if not child["healthy"]:
        line.append("  UNHEALTHY", style="bold red")
    return line


def _add_children(node: Tree, children: list[dict[str, Any]]) -> None:
    for child in children:
        if "state" not in child:  # a session's last known child (its supervisor is not running)
            node.add(Text(f"{child['id']}  pid {child['pid'] if child['pid'] is not None else '-'}"))
            continue
        _add_children(node.add(_child_line(child)), child["children"])


def _metadata(metadata: Any) -> str:
    text = json.dumps(metadata, sort_keys=True) if metadata is not None else ""
    return text if len(text) <= 60 else text[:57] + "..."


def status_view(status: dict[str, Any]) -> None:
    """``status``: the tree, then its sessions, then the verdict."""
    out = console()
    head = Text()
    head.append(f"{status['tree']}", style="bold")
    head.append(f"  {status['kind']}  root pid {status['pid']}  uptime {duration(status['uptime_seconds'])}")
    if status["path"] != "root":
        head.append(f"  (showing {status['path']})")
    tree = Tree(head)
    _add_children(tree, status["children"])
    out.print(tree, soft_wrap=True)
    if status["kind"] == "application" and status["path"] == "root":
        sessions = Tree(Text(f"sessions ({len(status['sessions'])})", style="bold"))
        for session in status["sessions"]:
            line = Text()
            line.append(session["session_id"], style="bold")
            line.append(f"  {session['status']}  pid {session['pid'] if session['pid'] is not None else '-'}")
            line.append(f"  created {session['created_at']}  restarts {session['restarts']}")
            if session["metadata"] not in (None, {}, []):
                line.append(f"  {_metadata(session['metadata'])}", style="dim")
            _add_children(sessions.add(line), session["children"])
        out.print(sessions, soft_wrap=True)
    if status["healthy"]:
        out.print(Text("healthy", style="green"), soft_wrap=True)
    else:
        out.print(
            Text(f"UNHEALTHY: not running: {', '.join(status['unhealthy'])}", style="bold red"),
            soft_wrap=True,
        )


def ls_view(trees: list[dict[str, Any]]) -> None:
    """``ls``: one row per running named tree."""
    out = console()
    if not trees:
        out.print("no named tree is running", soft_wrap=True)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "KIND", "PID", "UPTIME", "CHILDREN", "SESSIONS"):
        table.add_column(column)
    for tree in trees:
        children = "?" if tree["children"] is None else f"{tree['running']}/{tree['children']}"
        sessions = "-" if tree["sessions"] is None else str(tree["sessions"])
        table.add_row(
            tree["name"], tree["kind"], str(tree["pid"]), duration(tree["uptime_seconds"]), children, sessions
        )
    out.print(table, soft_wrap=True)


def sessions_view(sessions: list[dict[str, Any]]) -> None:
    """``sessions list``: one row per live session."""
    out = console()
    if not sessions:
        out.print("no live session", soft_wrap=True)
        return
    table = Table(box=None, pad_edge=False)
    clustered = any(session.get("node", "local") != "local" for session in sessions)
    columns = ("SESSION", "NODE") if clustered else ("SESSION",)
    for column in (*columns, "STATUS", "PID", "CREATED", "RESTARTS", "CHILDREN", "METADATA"):
        table.add_column(column)
    for session in sessions:
        table.add_row(
            session["session_id"],
            *((session["node"],) if clustered else ()),
            session["status"],
            str(session["pid"]) if session["pid"] is not None else "-",
            session["created_at"],
            str(session["restarts"]),
            ", ".join(str(child["id"]) for child in session["children"]),
            _metadata(session["metadata"]),
        )
    out.print(table, soft_wrap=True)
