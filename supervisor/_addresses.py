"""
Where a tree's processes listen: every rule that turns a place in the tree into a path.

A tree has one private directory (mode 0700, made by the starter) and one 32-byte key (a session's
supervisor and what runs below it have the session's own key instead, see :mod:`supervisor._keys`). Each
supervisor listens on a Unix socket in that directory named after a hash of its id path (``root``,
then child ids joined by ``/``), so a restarted supervisor listens where its predecessor did and
handles stay usable. The session layer's two fixed children, the registry server and the
SessionManager, sit under the Application's supervisor at the ids defined here. This module holds
values and path arithmetic only: no sockets, no processes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import attrs

from ._keys import Key

__all__ = [
    "REGISTRY_ID",
    "ROOT_PATH",
    "SESSION_MANAGER_ID",
    "TreeContext",
    "make_private_dir",
    "socket_path",
]

ROOT_PATH = "root"
"""The id path of every tree's root supervisor; the paths of the processes below it begin with it."""
REGISTRY_ID = "registry"
"""The id of the registry server under an Application's supervisor."""
SESSION_MANAGER_ID = "session_manager"
"""The id of the SessionManager under an Application's supervisor."""


def make_private_dir() -> str:
    """A new directory only this user can enter (0700), for the tree's sockets."""
    path = tempfile.mkdtemp(prefix="supervisor-")
    os.chmod(path, 0o700)
    return path


def socket_path(private_dir: str, tree_path: str) -> str:
    """The control socket of the supervisor at *tree_path* (ids joined by '/'): stable across restarts."""
    digest = hashlib.sha256(tree_path.encode()).hexdigest()[:16]
    return os.path.join(private_dir, f"s-{digest}.sock")


@attrs.frozen
class TreeContext:
    """
    A place in a tree: its private directory, the key its supervisor serves with, and an id path.

    The engine passes one to every entry point it starts (the child's own place), so no process
    reads its place from a global.
    """

    private_dir: str
    authkey: Key = attrs.field(repr=False)
    path: str
    scope: str = ""
    """The path whose key *authkey* is: "" for the tree key, a session's path for its own key."""
    tree_name: str = ROOT_PATH
    """The tree's published name (``name=``), or ``"root"`` for an unnamed tree: what process titles
    and log records call the tree."""

    @property
    def shown_path(self) -> str:
        """This place as process titles show it: the tree's name, then the ids below the root (for an
        unnamed tree, the id path itself)."""
        return self.tree_name + self.path[len(ROOT_PATH) :]

    @property
    def address(self) -> str:
        """The control socket of a supervisor at this place (or the socket of a server child)."""
        return socket_path(self.private_dir, self.path)

    def child(self, child_id: str) -> TreeContext:
        """The place of the child *child_id* below this one."""
        return attrs.evolve(self, path=f"{self.path}/{child_id}")

    def parent(self) -> TreeContext:
        """The place of this one's supervisor; the root has none (ValueError)."""
        head, sep, _ = self.path.rpartition("/")
        if not sep:
            raise ValueError(f"the tree path {self.path!r} has no parent")
        return attrs.evolve(self, path=head)

    @classmethod
    def at(cls, address: str, authkey: Key, path: str) -> TreeContext:
        """The place whose supervisor listens at *address* (a socket in the tree's private directory)."""
        return cls(os.path.dirname(address), authkey, path)

    def with_key(self, authkey: Key, scope: str) -> TreeContext:
        """The same place, served with *authkey*, the key of *scope* (a session's own key and path)."""
        return attrs.evolve(self, authkey=authkey, scope=scope)

    @property
    def session_id(self) -> str | None:
        """The id of the session this place is in, None outside sessions."""
        return self.scope.rpartition("/")[2] if self.scope else None

    @property
    def registry(self) -> TreeContext:
        """For an Application's supervisor: the place of its registry server."""
        return self.child(REGISTRY_ID)

    @property
    def session_manager(self) -> TreeContext:
        """For an Application's supervisor: the place of its SessionManager."""
        return self.child(SESSION_MANAGER_ID)
