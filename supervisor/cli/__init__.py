"""
``otp-supervisor`` (and ``python -m supervisor``): find, inspect, follow and act on a running named
tree from another shell. Argument parsing and error reporting only; each command lives in its module.

A client: it reads the published descriptors (:mod:`supervisor._published`) and talks to the tree
through handles, never importing the engine. Exit statuses: 0 done (``status``: healthy), 1 failed or
unhealthy, 2 no such tree, path or session (or bad usage). Errors are one line on stderr (and with
``--json`` an ``{"error", "status"}`` object on stdout), never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from . import commands, follow, top
from .target import CliError

__all__ = ["build_parser", "main"]

_TIMEOUT = 10.0
"""Seconds each call to the tree may take before the command gives up (``--timeout``)."""


def _seconds(option: str, allow_zero: bool) -> Callable[[str], float]:
    """An argparse type: finite seconds, > 0 (or >= 0 with *allow_zero*), named *option* in its error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"{option} must be finite seconds {bound} (got {text!r})")
        return value

    return parse


def _count(text: str) -> int:
    """An argparse type for ``-n/--lines``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"-n/--lines must be a whole number >= 0 (got {text!r})")
    return value


def _common(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """``--tree``, ``--json``, ``--timeout``; *nested* (a sub-command's own parser) keeps the outer values."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if nested else value

    parser.add_argument(
        "--tree",
        metavar="NAME",
        default=default(None),
        help="the tree's published name (optional if only one runs)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON (schema: docs/operating.md)"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds("--timeout", allow_zero=False),
        default=default(_TIMEOUT),
        metavar="SECONDS",
        help="bound on each call to the tree",
    )


def _demo(args: argparse.Namespace) -> int:
    from .._demo import main as demo

    return demo()


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each sets ``func`` to the command to run."""
    parser = argparse.ArgumentParser(
        prog="otp-supervisor", description="OTP supervision trees for Python: operate a running named tree."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help, description=help)
        _common(child)
        child.set_defaults(func=func)
        return child

    command("ls", commands.ls, "the running named trees of this user")
    status = command(
        "status", commands.status, "the tree as a tree; exit 1 if a child should run and does not"
    )
    status.add_argument("path", nargs="?", metavar="PATH", help="only this part: 'api' or 'api/handler'")
    top_parser = command("top", top.top, "a live view of CPU, memory and restarts (q quits)")
    top_parser.add_argument("--once", action="store_true", help="print one frame and exit")
    events = command("events", follow.events, "child and session events, one per line")
    events.add_argument("--follow", "-f", action="store_true", help="until Ctrl-C or the tree stops")
    events.add_argument(
        "--window",
        type=_seconds("--window", allow_zero=True),
        default=1.0,
        metavar="SECONDS",
        help="without --follow: how long to listen",
    )
    for name, func, text in (
        ("start", commands.start, "start a stopped child again (OTP's restart_child)"),
        ("terminate", commands.terminate, "stop a child by its shutdown spec (terminate_child)"),
        ("restart", commands.restart, "terminate a child, then start it again"),
    ):
        command(name, func, text).add_argument(
            "path", metavar="PATH", help="the child: 'worker' or 'api/handler'"
        )
    sessions = command(
        "sessions", commands.sessions, "an Application's sessions: list, info SID, terminate SID"
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    _common(actions.add_parser("list", help="every live session"), nested=True)
    for action in ("info", "terminate"):
        parser_of = actions.add_parser(action, help=f"{action} one session")
        parser_of.add_argument("session_id", metavar="SID")
        _common(parser_of, nested=True)
    tail = command("tail", commands.tail, "the crash reports of a child, from the tree's log file")
    tail.add_argument("path", metavar="PATH", help="the child: 'worker' or 'api/handler'")
    tail.add_argument("-n", "--lines", type=_count, default=0, metavar="N", help="only the last N lines")
    demo = sub.add_parser(
        "demo", help="start a tree and a session Application, crash things, watch them recover"
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Blocks as the command does (``events --follow``, ``top``)."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except CliError as error:
        _fail(args, error.message, error.status)
        return error.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except (ValueError, TypeError) as error:  # a bad value the parser let through: one line, no traceback
        _fail(args, f"{args.command}: {error}", 2)
        return 2


def _fail(args: argparse.Namespace, message: str, status: int) -> None:
    if getattr(args, "json", False):
        import json

        print(json.dumps({"error": message, "status": status}), flush=True)
    print(f"otp-supervisor {args.command}: {message}", file=sys.stderr, flush=True)
