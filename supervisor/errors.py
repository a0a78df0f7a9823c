"""
Every error the package raises about the state of a tree, under one base class.

Bad arguments are not here: they raise plain ``TypeError`` or ``ValueError`` naming the argument
(but for :class:`BadCombinationError`, a ``ValueError`` that ``start_child`` can also raise from the
supervisor, as its check needs the supervisor's flags).
Each class keeps its details as attributes and round-trips through pickle, because errors are raised
in a supervisor process and re-raised at the caller of a handle. This module imports nothing from
the package except, lazily, the exit-reason type it mentions in annotations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .reasons import ExitReason

__all__ = [
    "AuthenticationError",
    "BadCombinationError",
    "CallTimeout",
    "CallingSelfError",
    "ChildNotFoundError",
    "ChildNotRunningError",
    "ChildRestartingError",
    "ChildRunningError",
    "ClusterUnavailableError",
    "DuplicateChildError",
    "HandleClosedError",
    "MaxChildrenError",
    "NameTakenError",
    "NoCapacityError",
    "NoProc",
    "NodeNotFoundError",
    "NodeUnreachableError",
    "Overloaded",
    "RegistryUnavailableError",
    "RemoteSessionError",
    "ServerDown",
    "SessionNotFoundError",
    "SimpleOneForOneError",
    "StartError",
    "SupervisorError",
    "SupervisorGoneError",
    "UnreadableRequestError",
]


class SupervisorError(Exception):
    """Base class of every error about a supervision tree's state."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[SupervisorError], state: dict[str, Any]) -> SupervisorError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    cause = state.get("reason")
    if isinstance(error, StartError) and cause is not None:
        error.__cause__ = cause.exception()
    return error


class ChildNotFoundError(SupervisorError, LookupError):
    """
    No child of the supervisor has this id (for a temporary child: any more); *child_id* is the pid
    asked for when the supervisor knows its children by pid (simple_one_for_one, DynamicSupervisor).
    """

    def __init__(self, message: str, child_id: str | int) -> None:
        super().__init__(message)
        self.child_id = child_id


class DuplicateChildError(SupervisorError, ValueError):
    """``start_child`` with an id the supervisor already knows; *pid* is None if it is not running."""

    def __init__(self, message: str, child_id: str, pid: int | None) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.pid = pid


class ChildRunningError(SupervisorError):
    """``restart_child`` or ``delete_child`` on a child that is running."""

    def __init__(self, message: str, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class ChildRestartingError(SupervisorError):
    """``restart_child`` or ``delete_child`` on a child whose automatic restart is being retried."""

    def __init__(self, message: str, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class ChildNotRunningError(SupervisorError):
    """An operation that needs a running child found it stopped (for instance, a nested handle)."""

    def __init__(self, message: str, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class StartError(SupervisorError):
    """
    A child failed to start: it raised, exited or timed out before it was ready.

    ``reason`` is the child's :class:`~supervisor.ExitReason`; when the child raised, ``__cause__`` is
    its exception, with the traceback from the child process.
    """

    def __init__(self, message: str, child_id: str, reason: ExitReason) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.reason = reason
        self.__cause__ = reason.exception()


class HandleClosedError(SupervisorError):
    """You stopped this supervisor (or closed this handle): the call cannot be made any more."""


class SupervisorGoneError(SupervisorError):
    """
    The supervisor process died or stopped under you; *reason* is its exit reason when known.
    """

    def __init__(self, message: str, reason: ExitReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class UnreadableRequestError(SupervisorError):
    """
    The supervisor could not decode a request (it could not unpickle something in it, typically a
    function or class it cannot import); it did nothing with it. *why* is the unpickling error.
    """

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class CallTimeout(SupervisorError, TimeoutError):
    """
    A call did not get its reply within its ``timeout``. The request may still run: its effect may
    happen after this was raised. The handle dropped the connection, so a late reply is never read
    by a later call.
    """


class AuthenticationError(SupervisorError, ConnectionError):
    """The peer refused this handle's authkey, or does not hold the tree's: nothing was sent."""


class RegistryUnavailableError(SupervisorError):
    """The session registry could not be reached within the wait bound."""


class ClusterUnavailableError(RegistryUnavailableError):
    """
    The cluster's registry (etcd) did not answer within its bound, or this node is not part of the
    cluster now (it fenced itself after losing its lease, and has not rejoined yet).
    """


class NodeNotFoundError(SupervisorError, LookupError):
    """No live node of the cluster has this name."""

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node


class NodeUnreachableError(SupervisorError, ConnectionError):
    """
    A node of the cluster is listed but did not answer: its node-to-node endpoint refused the
    connection or did not complete the handshake within the bound. The request was not delivered.
    """

    def __init__(self, message: str, node: str) -> None:
        super().__init__(message)
        self.node = node


class NoCapacityError(SupervisorError):
    """Every live node of the cluster runs as many sessions as its capacity: nowhere to place one."""


class RemoteSessionError(SupervisorError):
    """
    The session runs on another node of the cluster, and this operation works on the node's own
    sessions only (its processes and sockets are that node's); ``node`` names the owner.
    """

    def __init__(self, message: str, session_id: str, node: str) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.node = node


class SessionNotFoundError(SupervisorError, LookupError):
    """No live session has this id."""

    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class BadCombinationError(SupervisorError, ValueError):
    """
    Settings that are each valid but not together (OTP's ``bad_combination``): a significant child
    that is permanent, or a significant child under a supervisor whose ``auto_shutdown`` is NEVER.

    Raised where the combination is made: when a :class:`~supervisor.ChildSpec` or a supervisor's
    spec is built (``Supervisor.start``, ``ChildSpec.supervisor``, ``create_session``), or by
    ``start_child`` on a supervisor whose ``auto_shutdown`` is NEVER; nothing is started.
    ``combination`` holds the clashing settings as ``(name, value)`` pairs; ``child_id`` names the
    child (None when the settings are a supervisor's own).
    """

    def __init__(
        self, message: str, combination: tuple[tuple[str, object], ...], child_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.combination = combination
        self.child_id = child_id


class SimpleOneForOneError(SupervisorError):
    """
    A call a simple_one_for_one supervisor does not take (OTP's ``{error, simple_one_for_one}``):
    ``restart_child``, ``delete_child``, or ``terminate_child`` with an id (its children have none).
    *call* names the call.
    """

    def __init__(self, message: str, call: str) -> None:
        super().__init__(message)
        self.call = call


class MaxChildrenError(SupervisorError):
    """
    ``start_child`` on a DynamicSupervisor that already has *max_children* children (Elixir's
    ``{:error, :max_children}``); children being started or restarted count. Nothing was started.
    """

    def __init__(self, message: str, max_children: int) -> None:
        super().__init__(message)
        self.max_children = max_children


class ServerDown(SupervisorError):
    """
    The server died before replying to this call (seen at once: its socket closed or its pidfd fired).

    *reason* is its :class:`~supervisor.ExitReason` (an exception in a handler comes with its remote
    traceback), or None when neither the server nor its supervisor could say. Nothing is retried: the
    request may have run, in part or whole, before the server died.
    """

    def __init__(self, message: str, reason: ExitReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        if reason is not None:
            self.__cause__ = reason.exception()


class NoProc(SupervisorError, LookupError):
    """
    No server by that name, path or reference is running (OTP's ``noproc``): the request was not sent,
    or the process it reached is another incarnation than the reference names. It did not run.
    """


class Overloaded(SupervisorError):
    """
    The server's mailbox held ``mailbox_max`` messages: this call or cast was refused, not queued. It
    did not run; try again later or slow down.
    """


class CallingSelfError(SupervisorError):
    """A server called itself (OTP's ``calling_self``): that call could only deadlock, so it was not sent."""


class NameTakenError(SupervisorError):
    """
    A server's name is held by another running process of the tree (OTP's ``already_started``).
    *holder_path* and *holder_pid* name that process.
    """

    def __init__(self, message: str, name: str, holder_path: str, holder_pid: int) -> None:
        super().__init__(message)
        self.name = name
        self.holder_path = holder_path
        self.holder_pid = holder_pid
