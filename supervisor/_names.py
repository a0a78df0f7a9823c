"""
Where a tree's servers are: entries in the tree's private directory, by id path and by name.

A GenServer child, once it listens, publishes a *server entry* at its id path (its pid, incarnation,
process start time and key scope) and, when its spec names it, claims a *name entry* (the name's id
path and scope). Its supervisor removes the server entry when it reaps the process (its pidfd fired:
no polling), and the name entry when it forgets the child's spec: a name outlives a restart (a call
by name waits for the restarted process) but not its child. A name is held by a running process: a
claim fails while another path's process holds it alive, and takes over a name whose holder is gone.

Entries are small JSON files written whole and renamed into place, so a reader sees an old entry or a
new one, never half of one. The directory is the tree's (mode 0700): only its user reads them. This
module holds values and file operations, no sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import attrs

from ._entrypoint import EntryPoint
from ._procstat import process_start_time

__all__ = [
    "GEN_SERVER",
    "NameEntry",
    "NameTaken",
    "ServerEntry",
    "claim_name",
    "forget_name",
    "forget_server",
    "name_file",
    "process_start_time",
    "publish_server",
    "read_name",
    "read_server",
    "server_file",
]

GEN_SERVER = EntryPoint("supervisor.messaging.runtime", "run_gen_server")
"""The start of every GenServer child: its supervisor knows a server by it, to remove its entries."""


@attrs.frozen
class ServerEntry:
    """A running server: its id path, process, incarnation and key scope ("" for the tree key)."""

    path: str
    pid: int
    incarnation: int
    started: int  # the process's start time in clock ticks: tells a reused pid from this process
    scope: str

    def is_alive(self) -> bool:
        """True while this entry's process runs (not a later process that reuses its pid)."""
        return process_start_time(self.pid) == self.started


@attrs.frozen
class NameEntry:
    """
    A registered name: the id path of the child that holds it, that child's key scope, and the
    process that claimed it (its pid and start time), alive from its claim to its exit.
    """

    name: str
    path: str
    scope: str
    pid: int = 0
    started: int = 0

    def claimant_alive(self) -> bool:
        """True while the process that claimed the name runs (not a later one that reuses its pid)."""
        return self.pid > 0 and process_start_time(self.pid) == self.started


class NameTaken(Exception):
    """Another child's running process holds the name."""

    def __init__(self, name: str, path: str, pid: int) -> None:
        super().__init__(f"the name {name!r} is held by {path} (pid {pid})")
        self.path = path
        self.pid = pid


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def server_file(private_dir: str, path: str) -> str:
    """The server entry file of the child at *path*."""
    return os.path.join(private_dir, f"p-{_digest(path)}.srv")


def name_file(private_dir: str, name: str) -> str:
    """The name entry file of *name*."""
    return os.path.join(private_dir, f"n-{_digest(name)}.name")


def _write(target: str, record: dict[str, object]) -> str:
    """Write *record* to a new temporary file beside *target*; return its path."""
    temporary = f"{target}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    return temporary


def _read(target: str) -> dict[str, object] | None:
    try:
        with open(target, "rb") as entry:
            record = json.loads(entry.read())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def publish_server(private_dir: str, entry: ServerEntry) -> None:
    """Publish *entry* at its path, replacing what was there (an earlier incarnation's)."""
    target = server_file(private_dir, entry.path)
    os.replace(_write(target, attrs.asdict(entry)), target)


def read_server(private_dir: str, path: str) -> ServerEntry | None:
    """The server entry at *path*, None if there is none (the child is not a running server)."""
    record = _read(server_file(private_dir, path))
    if record is None:
        return None
    try:
        return ServerEntry(
            path=str(record["path"]),
            pid=int(record["pid"]),  # type: ignore[call-overload]
            incarnation=int(record["incarnation"]),  # type: ignore[call-overload]
            started=int(record["started"]),  # type: ignore[call-overload]
            scope=str(record["scope"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_name(private_dir: str, name: str) -> NameEntry | None:
    """The entry of *name*, None if no child registers it."""
    record = _read(name_file(private_dir, name))
    if record is None or record.get("name") != name:
        return None
    try:
        return NameEntry(
            name=name,
            path=str(record["path"]),
            scope=str(record["scope"]),
            pid=int(record.get("pid", 0)),  # type: ignore[call-overload]
            started=int(record.get("started", 0)),  # type: ignore[call-overload]
        )
    except (KeyError, TypeError, ValueError):
        return None


def claim_name(private_dir: str, entry: NameEntry) -> None:
    """
    Register *entry*'s name for its path.

    Raises:
        NameTaken: another path's running process holds the name.
    """
    target = name_file(private_dir, entry.name)
    temporary = _write(target, attrs.asdict(entry))
    try:
        try:
            os.link(temporary, target)
            return
        except FileExistsError:
            pass
        current = read_name(private_dir, entry.name)
        if current is not None and current.path != entry.path and current.claimant_alive():
            raise NameTaken(entry.name, current.path, current.pid)
        os.replace(temporary, target)  # ours from an earlier incarnation, or a claimant that is gone
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    current = read_name(private_dir, entry.name)
    if current is None or (current.pid, current.started) != (entry.pid, entry.started):
        # Another claim of a stale name won the race between our read and our replace.
        raise NameTaken(entry.name, current.path if current else "?", current.pid if current else 0)


def forget_server(private_dir: str, path: str) -> None:
    """Remove the server entry at *path*, if any; does not block."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(server_file(private_dir, path))


def forget_name(private_dir: str, name: str, path: str) -> None:
    """Remove *name*'s entry if the child at *path* holds it (not if another took it over)."""
    current = read_name(private_dir, name)
    if current is not None and current.path == path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name_file(private_dir, name))
