"""
Process titles: each process of a tree names its role and place in ``ps``, ``top`` and ``/proc``.

A title reads ``otp-supervisor: ROLE PATH``, where PATH is the process's place as
:attr:`~supervisor._addresses.TreeContext.shown_path` gives it (the tree's name, or ``root`` for an
unnamed tree, then child ids joined by ``/``) and ROLE is a :data:`Role`: ``root``, ``supervisor``,
``worker``, ``server`` (a GenServer), and in an Application ``registry``, ``manager`` and ``session``
(whose path ends with the full session id). The title is set once, in the process itself, before its start
function runs: a worker that sets its own title later keeps it.

``setproctitle`` writes the title over the process's command line (its ``argv`` memory), which the
kernel shows as ``/proc/<pid>/cmdline``; the short command name (``comm``, 15 bytes) becomes the title's
first 15 bytes, ``otp-supervisor:``. It is told, at the first call in a process, not to take the
environment block's memory too (``SPT_NOENV``): ``/proc/<pid>/environ`` must keep showing the
environment the tree was given (``docs/sessions.md``). So a title has the room of the root's command
line, which the starter makes at least :data:`TITLE_ROOM` bytes long; a longer title is cut there.
Processes forked from a supervisor inherit its initialised ``setproctitle`` state (the module is
imported by every supervisor before it forks), so a child's call only copies the title; a worker's
title is built by its supervisor before the fork (``ChildLaunch.title``), so the child runs no
Python beyond the call (each first write to a page the fork shares is a page copy).

This module imports nothing of the package; it starts nothing and never blocks.
"""

from __future__ import annotations

import os
from typing import Literal

from setproctitle import setproctitle

__all__ = ["PREFIX", "TITLE_ROOM", "Role", "set_title", "show", "title"]

PREFIX = "otp-supervisor: "
"""What every title of a tree's process begins with (``pgrep -f 'otp-supervisor: '`` finds them)."""

TITLE_ROOM = 256
"""The fewest bytes the root's command line has, padded by the starter: the room for every title."""

_NO_ENV = "SPT_NOENV"
_set_up = False  # this process, or the supervisor it was forked from, has called setproctitle


Role = Literal["root", "supervisor", "worker", "server", "registry", "agent", "manager", "session"]
"""What a process of a tree is, as its title says. Plain strings: an Enum's ``value`` runs Python code
in the child whose objects' pages a fork shares, and each first write to one is a page copy."""


def title(role: Role, path: str) -> str:
    """The title of the process of *role* at *path* (a shown path): ``otp-supervisor: ROLE PATH``."""
    return f"{PREFIX}{role} {path}"


def set_title(role: Role, path: str) -> None:
    """Show this process as ``otp-supervisor: ROLE PATH`` (see :func:`title` and :func:`show`)."""
    show(title(role, path))


def show(text: str) -> None:
    """
    Make *text* this process's title; does not block.

    The first call in a process that did not inherit a set-up one (the root) keeps
    ``setproctitle`` off the environment block; its variables are left as they were.
    """
    global _set_up
    if _set_up:
        setproctitle(text)
        return
    # setproctitle reads SPT_NOENV once, at its first call in a process; a user's own setting stays.
    added = _NO_ENV not in os.environ
    if added:
        os.environ[_NO_ENV] = "1"
    try:
        setproctitle(text)
    finally:
        if added:
            del os.environ[_NO_ENV]
    _set_up = True
