"""
What the operating system says about processes, not what a handle says: who is alive, who is a zombie.

Read from ``/proc``; public (through :mod:`supervisor.testing`) so that users can check their own
trees the same way the package's tests do.
"""

from __future__ import annotations

import os
import select
import time

import attrs

__all__ = ["ProcessEntry", "assert_no_leftovers", "descendants", "process_table", "wait_gone"]


@attrs.frozen
class ProcessEntry:
    """One row of the process table: pid, parent pid, state letter (``Z`` for a zombie), command."""

    pid: int
    ppid: int
    state: str
    name: str


def process_table() -> dict[int, ProcessEntry]:
    """A snapshot of every process, read from ``/proc``."""
    table: dict[int, ProcessEntry] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                data = stat.read()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        name = data[data.index("(") + 1 : data.rindex(")")]
        fields = data[data.rindex(")") + 2 :].split()
        table[int(entry)] = ProcessEntry(int(entry), int(fields[1]), fields[0], name)
    return table


def descendants(pid: int, table: dict[int, ProcessEntry] | None = None) -> list[ProcessEntry]:
    """Every process below *pid* in the process tree, zombies included."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for entry in table.values():
        children.setdefault(entry.ppid, []).append(entry.pid)
    found: list[ProcessEntry] = []
    stack = list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(table[current])
        stack.extend(children.get(current, []))
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """
    Wait until every process in *pids* has terminated; return those still running at *timeout*.

    Waits on pidfds, so it works for processes that are not this process's children. A terminated
    process that is not yet reaped counts as gone here; :func:`assert_no_leftovers` catches zombies.
    """
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        alive = set(fds)
        while alive:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                alive.discard(fd)
                poller.unregister(fd)
        return sorted(fds[fd] for fd in alive)
    finally:
        for fd in fds:
            os.close(fd)


def assert_no_leftovers(pid: int, before: set[int]) -> None:
    """
    Fail if *pid* has a descendant that was not in *before*, or a zombie child.

    Raises:
        AssertionError: listing the leftover processes.
    """
    leftovers = [e for e in descendants(pid) if e.pid not in before or e.state == "Z"]
    assert not leftovers, f"processes left behind: {leftovers}"
