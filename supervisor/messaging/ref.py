"""
A reference to one server process, and which key opens which server.

A :class:`ServerRef` names one incarnation of a GenServer child: its id path, pid and incarnation,
the tree's private directory (where its socket is) and the key of its scope, which it carries as a
handle does (a ref opens its server and that server's supervisors: give one only to code you would
give the supervisor's handle). Servers authenticate with the key of their scope: the tree key, or
in a session the session's own key, derived from the tree key and the session's path.
"""

from __future__ import annotations

from typing import Any

import attrs

from .._addresses import socket_path
from .._keys import Key
from ..errors import AuthenticationError

__all__ = ["ServerRef", "key_for_scope"]


@attrs.frozen
class ServerRef:
    """
    One incarnation of a server: picklable, compared by path, pid and incarnation.

    Attributes:
        path: the server child's id path in its tree (``root/...``).
        pid: its process.
        incarnation: this process's random incarnation number: a ref never reaches a restarted
            process by accident (that gets ``NoProc`` or ``ServerDown``).
    """

    path: str
    pid: int
    incarnation: int
    private_dir: str = attrs.field(repr=False)
    scope: str = attrs.field(repr=False)
    key: Key = attrs.field(repr=False, eq=False)
    address: str = attrs.field(init=False, repr=False, eq=False)
    """The server's socket."""

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "address", socket_path(self.private_dir, self.path))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServerRef, (self.path, self.pid, self.incarnation, self.private_dir, self.scope, self.key))

    @property
    def supervisor_address(self) -> str:
        """The control socket of the server's supervisor."""
        return socket_path(self.private_dir, self.path.rpartition("/")[0])

    @property
    def session_id(self) -> str | None:
        """The id of the session the server runs in; None outside sessions."""
        return self.scope.rpartition("/")[2] if self.scope else None


def key_for_scope(held: Key, held_scope: str, scope: str, what: str) -> Key:
    """
    The key of *scope*, from the key *held* (of *held_scope*): the same key, or a session's derived
    from the tree key. Does not block.

    Raises:
        AuthenticationError: *held* cannot open *scope* (a session's key, for another scope); *what*
            names what was looked up.
    """
    if held_scope == scope:
        return held
    if not held_scope:
        return held.derive(scope)
    raise AuthenticationError(
        f"{what} is in {scope or 'the tree outside sessions'}, which this key (of {held_scope}) does not open"
    )
