"""
What ``/proc/<pid>/stat`` says of a process: its start time, to tell it from a later one with its pid,
and its parent.
"""

from __future__ import annotations

__all__ = ["parent_pid", "process_start_time"]


def _running_fields(pid: int) -> list[bytes] | None:
    """The fields of *pid*'s stat line from field 3 (its state) on; None if gone or exited."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ')': split after the last.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # field 3, the state: exited
        return None
    return fields


def process_start_time(pid: int) -> int | None:
    """
    The start time of the process *pid* in clock ticks since boot; None if there is none, or it has
    exited (a zombie, not reaped yet, runs nothing). Reads one small file; does not block.
    """
    fields = _running_fields(pid)
    return None if fields is None else int(fields[19])  # field 22, starttime


def parent_pid(pid: int) -> int | None:
    """The parent of the running process *pid*; None as for :func:`process_start_time`. Does not block."""
    fields = _running_fields(pid)
    return None if fields is None else int(fields[1])  # field 4, ppid
