"""
Exit reasons: why a child process ended, as a value.

OTP's reasons map onto OS processes like this (``docs/process-model.md`` has the full table):

=============  ===================================================================  =======
kind           observed as                                                          normal?
=============  ===================================================================  =======
NORMAL         the start function returned, or ``sys.exit(0)``                       yes
SHUTDOWN       SIGTERM from the supervisor, or :class:`ShutdownExit` raised          yes
KILLED         death by SIGKILL (brutal kill, a shutdown timeout, the OOM killer)   no
SIGNALED       death by another signal                                              no
EXIT_CODE      a non-zero exit status with no report                                no
EXCEPTION      an uncaught exception, with its traceback from the child process     no
=============  ===================================================================  =======

A reason the child reported on its report pipe wins over the one its exit status implies.
"""

from __future__ import annotations

import enum
import pickle
import signal
import traceback
from typing import Any

import attrs
from tblib import pickling_support

__all__ = ["ExitKind", "ExitReason", "RemoteError", "ShutdownExit"]


class ExitKind(enum.Enum):
    """The kinds of exit reason."""

    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    KILLED = "killed"
    SIGNALED = "signaled"
    EXIT_CODE = "exit_code"
    EXCEPTION = "exception"


class ShutdownExit(BaseException):
    """
    Raise in a child to exit with reason *shutdown* (OTP's ``exit(shutdown)`` or ``{shutdown, Term}``).

    The supervisor's SIGTERM is turned into this exception in every child, so ``finally`` blocks and
    context managers run. It is normal for transient children: they are not restarted.
    """

    def __init__(self, term: Any = None) -> None:
        super().__init__(term)
        self.term = term


class RemoteError(Exception):
    """
    Stands in for a child's exception that could not be unpickled here (its class is not importable).

    ``type_name`` is the qualified name of the original class; ``str()`` gives its message followed by
    the traceback text from the child process.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}\n\nRemote traceback (text fallback):\n{self.traceback_text}"


@attrs.frozen
class ExitReason:
    """
    Why a child process ended. Build one with the named constructors, not the class.

    Attributes:
        kind: which kind of reason this is.
        term: the term of ``ShutdownExit(term)``, for SHUTDOWN; None otherwise or when absent.
        signal: the signal number, for KILLED and SIGNALED.
        code: the exit status, for EXIT_CODE.
        type_name: the exception's qualified class name, for EXCEPTION.
        message: ``str()`` of the exception, for EXCEPTION; why the supervisor killed it, for KILLED
            (a start timeout), if it did.
        traceback_text: the formatted traceback from the child, chain included, for EXCEPTION.
        exc_pickle: the exception pickled with its traceback (tblib), for EXCEPTION; None if it
            could not be pickled.
    """

    kind: ExitKind
    term: Any = None
    signal: int | None = None
    code: int | None = None
    type_name: str | None = None
    message: str | None = None
    traceback_text: str | None = None
    exc_pickle: bytes | None = attrs.field(default=None, repr=False)

    @classmethod
    def normal(cls) -> ExitReason:
        return cls(ExitKind.NORMAL)

    @classmethod
    def shutdown(cls, term: Any = None) -> ExitReason:
        return cls(ExitKind.SHUTDOWN, term=term)

    @classmethod
    def killed(cls, message: str | None = None) -> ExitReason:
        """Death by SIGKILL; *message* says why, when the supervisor itself sent it (a start timeout)."""
        return cls(ExitKind.KILLED, signal=int(signal.SIGKILL), message=message)

    @classmethod
    def start_timeout(cls, seconds: float) -> ExitReason:
        """A ``StartMode.NOTIFY`` child not ready within its *seconds* of start timeout, then SIGKILLed."""
        return cls.killed(f"start timeout ({float(seconds)} s) passed")

    @classmethod
    def from_exitcode(cls, exitcode: int) -> ExitReason:
        """The reason an exit status implies, as ``Process.exitcode`` gives it (negative: a signal)."""
        if exitcode == 0:
            return cls.normal()
        if exitcode == -signal.SIGKILL:
            return cls.killed()
        if exitcode == -signal.SIGTERM:
            return cls.shutdown()
        if exitcode < 0:
            return cls(ExitKind.SIGNALED, signal=-exitcode)
        return cls(ExitKind.EXIT_CODE, code=exitcode)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ExitReason:
        """
        The reason for an uncaught *exc*, keeping its traceback, ``__cause__`` and ``__context__``.

        The exception is pickled here, in the process that raised it, so the text fallback is always
        available even where the pickle cannot be loaded.
        """
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        pickling_support.install(exc)
        data: bytes | None
        try:
            data = pickle.dumps(exc)
            pickle.loads(data)
        except Exception:
            data = None
        message = _safe_str(exc)
        return cls(
            ExitKind.EXCEPTION,
            type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=message,
            traceback_text=text,
            exc_pickle=data,
        )

    @property
    def is_normal(self) -> bool:
        """True for *normal* and *shutdown*: the reasons a transient child is not restarted for."""
        return self.kind in (ExitKind.NORMAL, ExitKind.SHUTDOWN)

    @property
    def is_abnormal(self) -> bool:
        return not self.is_normal

    def exception(self) -> BaseException | None:
        """
        The child's exception with its remote traceback, for EXCEPTION; None for other kinds.

        If the pickle cannot be loaded here, a :class:`RemoteError` carrying the type name, message and
        traceback text stands in for it.
        """
        if self.kind is not ExitKind.EXCEPTION:
            return None
        if self.exc_pickle is not None:
            try:
                loaded = pickle.loads(self.exc_pickle)
            except Exception:
                loaded = None
            if isinstance(loaded, BaseException):
                return loaded
        return RemoteError(self.type_name or "?", self.message or "", self.traceback_text or "")

    def describe(self) -> str:
        """A one-line human description, as used in logs and error messages."""
        if self.kind is ExitKind.NORMAL:
            return "normal"
        if self.kind is ExitKind.SHUTDOWN:
            return "shutdown" if self.term is None else f"shutdown({self.term!r})"
        if self.kind is ExitKind.KILLED:
            return "killed (SIGKILL)" if self.message is None else f"{self.message}: killed (SIGKILL)"
        if self.kind is ExitKind.SIGNALED:
            return f"signal {_signal_name(self.signal)}"
        if self.kind is ExitKind.EXIT_CODE:
            return f"exit code {self.code}"
        return f"exception {self.type_name}: {self.message}"


def _signal_name(number: int | None) -> str:
    if number is None:
        return "?"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
