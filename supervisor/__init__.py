"""
supervisor: Erlang/OTP supervision trees for Python, over real OS processes (Linux).

Start a tree with :meth:`Supervisor.start`; describe children with :class:`ChildSpec`.
"""

from ._child import ignore_start, notify_ready
from ._root import DynamicSupervisor, Supervisor
from .errors import (
    AuthenticationError,
    BadCombinationError,
    CallTimeout,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRestartingError,
    ChildRunningError,
    DuplicateChildError,
    HandleClosedError,
    MaxChildrenError,
    RegistryUnavailableError,
    SessionNotFoundError,
    SimpleOneForOneError,
    StartError,
    SupervisorError,
    SupervisorGoneError,
    UnreadableRequestError,
)
from .handle import SupervisorHandle
from .info import ChildCounts, ChildInfo, ChildState
from .reasons import ExitKind, ExitReason, RemoteError, ShutdownExit
from .sessions.application import Application
from .sessions.client import SessionManagerHandle
from .sessions.values import (
    MIN_MEMORY_BYTES,
    ChildSummary,
    LimitCeilings,
    SessionInfo,
    SessionOptions,
    SessionStatus,
)
from .specs import (
    IGNORE,
    AutoShutdown,
    Backoff,
    ChildSpec,
    ChildType,
    DynamicSupervisorSpec,
    Restart,
    Shutdown,
    StartMode,
    Strategy,
    SupervisorSpec,
)

__all__ = [
    "IGNORE",
    "MIN_MEMORY_BYTES",
    "Application",
    "AuthenticationError",
    "AutoShutdown",
    "Backoff",
    "BadCombinationError",
    "CallTimeout",
    "ChildCounts",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildNotRunningError",
    "ChildRestartingError",
    "ChildRunningError",
    "ChildSpec",
    "ChildState",
    "ChildSummary",
    "ChildType",
    "DuplicateChildError",
    "DynamicSupervisor",
    "DynamicSupervisorSpec",
    "ExitKind",
    "ExitReason",
    "HandleClosedError",
    "LimitCeilings",
    "MaxChildrenError",
    "RegistryUnavailableError",
    "RemoteError",
    "Restart",
    "SessionInfo",
    "SessionManagerHandle",
    "SessionNotFoundError",
    "SessionOptions",
    "SessionStatus",
    "Shutdown",
    "ShutdownExit",
    "SimpleOneForOneError",
    "StartError",
    "StartMode",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorGoneError",
    "SupervisorHandle",
    "SupervisorSpec",
    "UnreadableRequestError",
    "ignore_start",
    "notify_ready",
]
