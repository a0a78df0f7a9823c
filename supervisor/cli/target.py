"""
Which running tree a command talks to: the published descriptor of ``--tree NAME``, and its handles.

A client only: it builds handles from a descriptor (the root's address and the tree's key) and never
imports the engine. Errors an operator can cause (no such tree, a path or session that does not exist)
are :class:`CliError` with exit status 2, so the command prints a message, never a traceback.
"""

from __future__ import annotations

import attrs

from .. import _published
from .._keys import Key
from ..errors import ChildNotFoundError, SessionNotFoundError, SupervisorError
from ..handle import SupervisorHandle
from ..info import ChildInfo
from ..sessions.client import SessionManagerHandle

__all__ = ["EXIT_NOT_FOUND", "CliError", "Target", "find", "split_path"]

EXIT_NOT_FOUND = 2
"""The exit status for a tree, path or session that does not exist (and for bad usage, as argparse's)."""
_MANAGER = "root/session_manager"


class CliError(Exception):
    """A failure the CLI reports as one message and an exit status (2: not found; 1: refused, failed)."""

    def __init__(self, message: str, status: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@attrs.frozen
class Target:
    """A running published tree and the handles a command uses (each call bounded by *timeout*)."""

    descriptor: _published.Descriptor
    root: SupervisorHandle
    sessions: SessionManagerHandle | None
    timeout: float

    @property
    def name(self) -> str:
        return self.descriptor.name

    @classmethod
    def of(cls, descriptor: _published.Descriptor, timeout: float) -> Target:
        """Handles for *descriptor*'s tree; sends nothing."""
        key = Key(bytearray(descriptor.key))
        root = SupervisorHandle(descriptor.address, key, "root")
        sessions = None
        if descriptor.kind == _published.KIND_APPLICATION:
            sessions = SessionManagerHandle(descriptor.address, "root", key)
        return cls(descriptor, root, sessions, timeout)

    def supervisor_at(self, ids: list[str]) -> SupervisorHandle:
        """
        The handle of the supervisor at the id path *ids* below the root (a session's, by its id, below
        ``session_manager`` in an Application). Blocks for one call per level.

        Raises:
            CliError: no such supervisor (status 2), or it is not running (status 1).
        """
        handle = self.root
        for child_id in ids:
            try:
                if self.sessions is not None and handle.path == _MANAGER:
                    handle = self.sessions.session_supervisor(child_id, timeout=self.timeout)
                else:
                    handle = handle.child_supervisor(_child_key(child_id), timeout=self.timeout)
            except (ChildNotFoundError, SessionNotFoundError) as error:
                raise CliError(
                    f"tree {self.name!r}: no supervisor at {handle.path}/{child_id}: {error}"
                ) from error
            except SupervisorError as error:
                raise CliError(f"tree {self.name!r}: {handle.path}/{child_id}: {error}", 1) from error
        return handle

    def child_at(self, ids: list[str]) -> tuple[SupervisorHandle, ChildInfo]:
        """
        The supervisor of the child at *ids* and the child's info. Blocks for a call per level.

        Raises:
            CliError: no such child (status 2).
        """
        if not ids:
            raise CliError(f"tree {self.name!r}: the root is not a child: name a path such as 'worker'")
        parent = self.supervisor_at(ids[:-1])
        try:
            info = parent.which_child(_child_key(ids[-1]), timeout=self.timeout)
        except ChildNotFoundError as error:
            raise CliError(f"tree {self.name!r}: no child at {parent.path}/{ids[-1]}: {error}") from error
        return parent, info


def _child_key(child_id: str) -> str | int:
    """A child's id, or its pid for children known by pid (shown as digits in paths)."""
    return int(child_id) if child_id.isdigit() else child_id


def split_path(path: str | None) -> list[str]:
    """The ids of a path given on the command line: ``api/handler`` or ``root/api/handler``."""
    if not path:
        return []
    ids = [part for part in path.strip("/").split("/") if part]
    return ids[1:] if ids and ids[0] == "root" else ids


def find(name: str | None, timeout: float) -> Target:
    """
    The running tree *name*, or the only running tree of this user when *name* is None. Does not block.

    Raises:
        CliError: no such tree, none running, several running without *name* (status 2), or the
            runtime directory is not private (status 1).
    """
    try:
        if name is not None:
            descriptor = _published.read(name)
            if descriptor is None:
                names = ", ".join(d.name for d in _published.running()) or "none"
                raise CliError(f"no running tree named {name!r} (running: {names})")
            return Target.of(descriptor, timeout)
        found = _published.running()
    except PermissionError as error:
        raise CliError(str(error), 1) from error
    except ValueError as error:  # a name that cannot be a tree's: say it of the option the user typed
        raise CliError(str(error).replace("'name'", "--tree", 1)) from error
    if not found:
        raise CliError("no named tree of this user is running (start one with name=...)")
    if len(found) > 1:
        names = ", ".join(d.name for d in found)
        raise CliError(f"several trees are running ({names}): choose one with --tree NAME")
    return Target.of(found[0], timeout)
