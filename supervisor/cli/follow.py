"""
``events``: the tree's child events (every supervisor below the root) and, for an Application, its
session events, one line each (or one JSON object per line), flushed per event.

Without ``--follow`` it prints what comes within ``--window`` seconds (1 by default), then exits;
with ``--follow`` it runs until Ctrl-C or until the tree stops. Once subscribed it says so on stderr
(``following tree NAME ...``): every event after that line is printed. Both streams are pushed by
the supervisors (no polling): this waits on their descriptors with :func:`select.select`.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
from typing import Any

from ..errors import SupervisorError
from ..messaging.events import Event
from ..sessions.events import SessionEvent
from . import snapshot
from .target import CliError, find

__all__ = ["event_json", "events"]


def event_json(event: Event | SessionEvent) -> dict[str, Any]:
    """An event as the JSON line ``events --json`` prints."""
    if isinstance(event, SessionEvent):
        return {
            "source": "session",
            "kind": event.kind,
            "session_id": event.session_id,
            "path": None,
            "pid": event.pid,
            "reason": snapshot.reason_json(event.reason),
            "at": event.at.isoformat(),
            "count": event.count,
        }
    return {
        "source": "child",
        "kind": event.kind,
        "session_id": None,
        "path": event.path,
        "pid": event.pid,
        "reason": snapshot.reason_json(event.reason),
        "at": event.at.isoformat(),
        "count": event.count,
    }


def _line(record: dict[str, Any]) -> str:
    who = record["path"] if record["source"] == "child" else f"session {record['session_id']}"
    text = f"{record['at']} {record['kind']} {who} pid {record['pid']}"
    if record["reason"] is not None:
        text += f" reason: {record['reason']['description']}"
    if record["kind"] == "lost":
        text += f" ({record['count']} events dropped)"
    return text


def events(args: argparse.Namespace) -> int:
    """Print the events as they come; see the module docstring for when it ends."""
    target = find(args.tree, args.timeout)
    streams: list[Any] = []
    try:
        streams.append(target.root.events(subtree=True, timeout=target.timeout))
        if target.sessions is not None:
            streams.append(target.sessions.events(timeout=target.timeout))
    except SupervisorError as error:
        for stream in streams:
            stream.close()
        raise CliError(f"tree {target.name!r}: events: {error}", 1) from error
    # On stderr, so that stdout holds events only: from here on no event is missed.
    until = "Ctrl-C or the tree's end" if args.follow else f"{args.window} s"
    print(f"following tree {target.name!r} until {until}", file=sys.stderr, flush=True)
    deadline = None if args.follow else time.monotonic() + args.window
    try:
        _pump(streams, deadline, args.json)
    finally:
        for stream in streams:
            stream.close()
    return 0


def _pump(streams: list[Any], deadline: float | None, as_json: bool) -> None:
    """Print events until *deadline* (monotonic; None: until every stream has ended)."""
    live = list(streams)
    while live:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        readable, _, _ = select.select(live, [], [], left)
        for stream in readable:
            event = stream.next_event(0)
            while event is not None:
                record = event_json(event)
                print(json.dumps(record) if as_json else _line(record), flush=True)
                event = stream.next_event(0)
            if stream.ended:
                live.remove(stream)
