"""
supervisor: Erlang/OTP supervision trees for Python, over real OS processes (Linux).

Start a tree with :meth:`Supervisor.start`; describe children with :class:`ChildSpec`.
"""

from ._child import ignore_start, notify_ready, whoami
from ._root import DynamicSupervisor, Supervisor
from .errors import (
    AuthenticationError,
    BadCombinationError,
    CallingSelfError,
    CallTimeout,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRestartingError,
    ChildRunningError,
    DuplicateChildError,
    HandleClosedError,
    MaxChildrenError,
    NameTakenError,
    NoProc,
    Overloaded,
    RegistryUnavailableError,
    ServerDown,
    SessionNotFoundError,
    SimpleOneForOneError,
    StartError,
    SupervisorError,
    SupervisorGoneError,
    UnreadableRequestError,
)
from .handle import SupervisorHandle
from .info import ChildCounts, ChildInfo, ChildState, Identity
from .messaging.client import Monitor, call, cast, monitor
from .messaging.events import Event, EventStream
from .messaging.genserver import NOREPLY, Caller, Down, GenServer, Stop, TimerRef
from .messaging.ref import ServerRef
from .reasons import ExitKind, ExitReason, RemoteError, ShutdownExit
from .sessions.application import Application
from .sessions.client import SessionManagerHandle
from .sessions.events import SessionEvent, SessionEventStream
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
    "NOREPLY",
    "Application",
    "AuthenticationError",
    "AutoShutdown",
    "Backoff",
    "BadCombinationError",
    "CallTimeout",
    "Caller",
    "CallingSelfError",
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
    "Down",
    "DuplicateChildError",
    "DynamicSupervisor",
    "DynamicSupervisorSpec",
    "Event",
    "EventStream",
    "ExitKind",
    "ExitReason",
    "GenServer",
    "HandleClosedError",
    "Identity",
    "LimitCeilings",
    "MaxChildrenError",
    "Monitor",
    "NameTakenError",
    "NoProc",
    "Overloaded",
    "RegistryUnavailableError",
    "RemoteError",
    "Restart",
    "ServerDown",
    "ServerRef",
    "SessionEvent",
    "SessionEventStream",
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
    "Stop",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorGoneError",
    "SupervisorHandle",
    "SupervisorSpec",
    "TimerRef",
    "UnreadableRequestError",
    "call",
    "cast",
    "ignore_start",
    "monitor",
    "notify_ready",
    "whoami",
]
