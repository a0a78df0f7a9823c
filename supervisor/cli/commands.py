"""
The CLI's commands that ask and act once: ls, status, start, terminate, restart, sessions, tail.

Each takes the parsed arguments and returns the exit status; what it prints is the text view, or with
``--json`` one JSON document (schema in ``docs/operating.md``). Errors an operator can cause are
:class:`~supervisor.cli.target.CliError`; the caller prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from .. import _published
from ..errors import ChildNotFoundError, SessionNotFoundError, SupervisorError
from ..sessions.values import LOCAL_NODE
from . import render, snapshot
from .target import CliError, Target, find, split_path

__all__ = ["ls", "restart", "sessions", "start", "status", "tail", "terminate"]


def _target(args: argparse.Namespace) -> Target:
    return find(args.tree, args.timeout)


def ls(args: argparse.Namespace) -> int:
    """``ls``: every running named tree of this user, with its children and sessions counted."""
    try:
        found = [_published.read(args.tree)] if args.tree else _published.running()
    except PermissionError as error:
        raise CliError(str(error), 1) from error
    except ValueError as error:
        raise CliError(str(error)) from error
    trees = [_ls_row(Target.of(descriptor, args.timeout)) for descriptor in found if descriptor is not None]
    if args.tree and not trees:
        raise CliError(f"no running tree named {args.tree!r}")
    if args.json:
        render.emit_json({"trees": trees})
    else:
        render.ls_view(trees)
    return 0


def _ls_row(target: Target) -> dict[str, Any]:
    row = snapshot.tree_json(target)
    row["name"] = row.pop("tree")
    row["children"] = row["running"] = row["sessions"] = None
    try:
        children = target.root.which_children(timeout=target.timeout)
        row["children"] = len(children)
        row["running"] = sum(1 for child in children if child.pid is not None)
        if target.sessions is not None:
            row["sessions"] = len(target.sessions.list_sessions(timeout=target.timeout))
    except SupervisorError:
        pass  # it stopped or does not answer now: shown as unknown
    return row


def status(args: argparse.Namespace) -> int:
    """``status [PATH]``: the tree as a tree; exit 1 when a child should run and does not."""
    target = _target(args)
    try:
        result = snapshot.status_json(target, split_path(args.path))
    except SupervisorError as error:
        raise CliError(f"tree {target.name!r}: {error}", 1) from error
    if args.json:
        render.emit_json(result)
    else:
        render.status_view(result)
    return snapshot.health(result)


def _act(args: argparse.Namespace, verb: str) -> int:
    target = _target(args)
    ids = split_path(args.path)
    parent, info = target.child_at(ids)
    key: str | int = info.id if info.id is not None else int(ids[-1])
    path = f"{parent.path}/{key}"
    try:
        if verb in ("terminate", "restart"):
            parent.terminate_child(key, timeout=target.timeout)
        pid = None
        if verb in ("start", "restart"):
            if not isinstance(key, str):
                raise CliError(f"tree {target.name!r}: {path} is known by pid: it cannot be started again", 1)
            pid = parent.restart_child(key, timeout=target.timeout)
    except ChildNotFoundError as error:
        raise CliError(f"tree {target.name!r}: no child at {path}: {error}") from error
    except SupervisorError as error:
        raise CliError(f"tree {target.name!r}: {verb} {path}: {error}", 1) from error
    done = {"start": "started", "terminate": "terminated", "restart": "restarted"}[verb]
    if args.json:
        render.emit_json({"tree": target.name, "path": path, "action": verb, "pid": pid})
    else:
        suffix = f", pid {pid}" if pid is not None else ""
        render.console().print(f"{path}: {done}{suffix}", soft_wrap=True)
    return 0


def start(args: argparse.Namespace) -> int:
    """``start PATH``: OTP's restart_child of a stopped child."""
    return _act(args, "start")


def terminate(args: argparse.Namespace) -> int:
    """``terminate PATH``: terminate_child (its spec is kept, unless it is temporary)."""
    return _act(args, "terminate")


def restart(args: argparse.Namespace) -> int:
    """``restart PATH``: an operator's restart: terminate_child, then restart_child."""
    return _act(args, "restart")


def sessions(args: argparse.Namespace) -> int:
    """``sessions list | info SID | terminate SID`` of an Application."""
    target = _target(args)
    manager = target.sessions
    if manager is None:
        raise CliError(f"tree {target.name!r} is a plain tree, not an Application: it has no sessions")
    try:
        if args.action == "list":
            found = snapshot.sessions_json(target)
            if args.json:
                render.emit_json({"tree": target.name, "sessions": found})
            else:
                render.sessions_view(found)
            return 0
        info = manager.get_session_info(args.session_id, timeout=target.timeout)
        if args.action == "info":
            session = snapshot.session_json(target, info)
            if args.json:
                render.emit_json(session)
            else:
                render.console().print_json(json.dumps(session))
            return 0
        if info.node != LOCAL_NODE:  # a node of a cluster: the session may be another node's
            manager = manager.discover_node(target.timeout)
        manager.terminate_session(args.session_id, timeout=target.timeout)
    except SessionNotFoundError as error:
        raise CliError(f"tree {target.name!r}: no live session {args.session_id!r}") from error
    except SupervisorError as error:
        raise CliError(f"tree {target.name!r}: sessions {args.action}: {error}", 1) from error
    if args.json:
        render.emit_json({"tree": target.name, "session_id": args.session_id, "action": "terminate"})
    else:
        render.console().print(f"session {args.session_id}: terminated", soft_wrap=True)
    return 0


_RECORD = re.compile(r"supervisor (\S+): (\w+): child '([^']*)'")


def crash_reports(lines: list[str], path: str) -> list[str]:
    """
    The records of *lines* (a supervisor log) about the child at *path* (``root/...``): a report line
    (``supervisor PARENT: CONTEXT: child 'ID' ...``, or a JSON line naming the path) and the traceback
    lines that follow it.
    """
    parent, _, child_id = path.rpartition("/")
    records: list[str] = []
    keep = False
    for line in lines:
        match = _RECORD.search(line)
        if match is not None:
            keep = match.group(1) == parent and match.group(3) == child_id
        elif line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                keep = record.get("path") == path or (
                    record.get("child_id") == child_id and record.get("supervisor") == parent
                )
        if keep:
            records.append(line)
    return records


def tail(args: argparse.Namespace) -> int:
    """``tail PATH``: the crash reports of a child, from the log files of the tree's logging_config."""
    target = _target(args)
    path = "/".join(["root", *split_path(args.path)])
    files = target.descriptor.log_files
    if not files:
        raise CliError(
            f"tree {target.name!r} was started without a logging_config that writes a file: "
            "there is no log to read (its reports go to the root's stderr)",
            1,
        )
    lines: list[str] = []
    for file in files:
        try:
            with open(file, errors="replace") as log:
                lines.extend(log.read().splitlines())
        except OSError as error:
            raise CliError(f"tree {target.name!r}: cannot read its log {file}: {error}", 1) from error
    records = crash_reports(lines, path)[-args.lines :] if args.lines else crash_reports(lines, path)
    if not records:
        target.child_at(split_path(args.path))  # no report: a path the tree does not have is exit 2
    if args.json:
        render.emit_json({"tree": target.name, "path": path, "log_files": list(files), "lines": records})
    else:
        print(os.linesep.join(records) if records else f"no report about {path} in {', '.join(files)}")
    return 0
