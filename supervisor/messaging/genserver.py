"""
GenServer: the class a server subclasses, and the values its handlers return.

A subclass keeps its state on ``self`` and overrides the callbacks it needs; they all run in the
server's child process, one message at a time, on its main thread. ``child_spec`` makes the
:class:`~supervisor.ChildSpec` that runs it under any supervisor (``StartMode.NOTIFY``: the server is
ready once ``init`` has returned and it listens).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from .. import _names
from ..specs import ChildSpec, ChildType, StartMode
from .client import Monitor, monitor
from .ref import ServerRef

__all__ = ["NOREPLY", "Caller", "Down", "GenServer", "Stop", "TimerRef"]


class _NoReply:
    def __repr__(self) -> str:
        return "NOREPLY"

    def __reduce__(self) -> str:
        return "NOREPLY"


NOREPLY: Any = _NoReply()
"""Returned by ``handle_call``: the reply comes later, through ``caller.reply(value)``."""

DEFAULT_MAILBOX_MAX = 10_000
"""Messages a server's mailbox holds by default (calls and casts waiting, not the one being handled)."""


@attrs.frozen
class Stop:
    """
    Returned by a handler: end the server, after sending *reply* to the caller (``handle_call``
    only; leave it out to send none). ``terminate(reason)`` runs first.

    *reason*: ``"normal"`` (a normal exit: a transient server is not restarted), ``"shutdown"``, or an
    exception instance, which the server exits with (abnormal: restarted by its restart type).
    """

    reason: str | Exception = "normal"
    reply: Any = NOREPLY

    def __attrs_post_init__(self) -> None:
        if isinstance(self.reason, BaseException) and not isinstance(self.reason, Exception):
            raise TypeError(
                f"'reason' must be an Exception, not a {type(self.reason).__name__} (SystemExit, "
                "KeyboardInterrupt...): use 'normal' or 'shutdown' for an orderly end"
            )
        if not isinstance(self.reason, BaseException) and self.reason not in ("normal", "shutdown"):
            raise ValueError(
                f"'reason' must be 'normal', 'shutdown' or an exception instance (got {self.reason!r})"
            )


@attrs.frozen
class Down:
    """The notice ``handle_info`` gets when a monitored process ends: the monitor and the exit reason."""

    monitor: Monitor
    reason: Any


@attrs.frozen(eq=False)
class TimerRef:
    """A timer set by ``send_after``; give it to ``cancel_timer``."""

    due: float
    message: Any


class Caller:
    """
    Who sent the call being handled: give it to ``reply`` later (after returning ``NOREPLY``). Valid
    in the server's process only; ``reply`` may be called from any of its threads, once.
    """

    __slots__ = ("_lock", "_replied", "_send")

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        self._replied = False
        self._lock = threading.Lock()

    def reply(self, value: Any) -> None:
        """
        Send *value* as the call's reply; does not block on the caller (a caller that timed out or
        left is not an error). A second reply raises ``RuntimeError``.
        """
        with self._lock:
            if self._replied:
                raise RuntimeError("this call was already replied to")
            self._replied = True
        self._send(value)

    @property
    def replied(self) -> bool:
        return self._replied


class GenServer:
    """
    A server in a supervised process (OTP's gen_server). Subclass it, override the callbacks, and
    start it with :meth:`child_spec` under a supervisor.

    Callbacks (each optional; all run on the server's main thread, one message at a time):

    - ``init(*args, **kwargs)``: runs in the child; returning means ready, raising is a start failure.
    - ``handle_call(request, caller)``: its return value is the reply; return ``NOREPLY`` to reply
      later with ``caller.reply(value)``, or a :class:`Stop` to end the server.
    - ``handle_cast(message)``: no reply; may return a :class:`Stop`.
    - ``handle_info(message)``: timers (``send_after``), monitor notices (:class:`Down`).
    - ``terminate(reason)``: on the way out, with the :class:`~supervisor.ExitReason`: after SIGTERM
      (once the message in progress is done), a ``Stop``, or a crash in a handler.

    An exception in a handler crashes the server (let it crash): the caller gets ``ServerDown`` with
    the exception and its traceback, and the supervisor restarts the server by its restart type. To
    answer with an error instead, return it as a value (``return ("error", why)``).
    """

    mailbox_max: ClassVar[int] = DEFAULT_MAILBOX_MAX
    path: str = ""
    """This server's id path in its tree (set before ``init`` runs)."""
    session_id: str | None = None
    """The id of the session this server runs in; None outside sessions."""
    ref: ServerRef | None = None
    """A reference to this server (set before ``init`` runs)."""
    _runtime: Any = None

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Set up the state; runs in the child before the server is ready."""

    def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer *request*; the default has no calls and crashes the server, as OTP's does."""
        raise NotImplementedError(f"{type(self).__qualname__} does not handle calls (got {request!r})")

    def handle_cast(self, message: Any) -> Any:
        """Handle *message*; the default crashes the server, as OTP's does."""
        raise NotImplementedError(f"{type(self).__qualname__} does not handle casts (got {message!r})")

    def handle_info(self, message: Any) -> Any:
        """Handle a timer's message or a monitor's :class:`Down`; the default ignores it (OTP logs it)."""
        return None

    def terminate(self, reason: Any) -> None:
        """Clean up on the way out; *reason* is the :class:`~supervisor.ExitReason`."""

    # ------------------------------------------------------------------ for the handlers

    def send_after(self, seconds: float, message: Any) -> TimerRef:
        """``handle_info(message)`` in *seconds*; does not block. Returns what ``cancel_timer`` takes."""
        return self._active().send_after(seconds, message)  # type: ignore[no-any-return]

    def cancel_timer(self, timer: TimerRef) -> bool:
        """Cancel *timer*; True if it had not fired yet."""
        return self._active().cancel_timer(timer)  # type: ignore[no-any-return]

    def monitor(self, target: ServerRef) -> Monitor:
        """Watch *target*: ``handle_info(Down(monitor, reason))`` when its process ends."""
        watch = monitor(target)
        self._active().watch(watch)
        return watch

    def demonitor(self, watch: Monitor) -> None:
        """Stop watching: no notice will come for *watch*."""
        self._active().unwatch(watch)

    def _active(self) -> Any:
        if self._runtime is None:
            raise RuntimeError("only a running server (in its own process) has timers and monitors")
        return self._runtime

    # ------------------------------------------------------------------ starting one

    @classmethod
    def child_spec(
        cls,
        id: str,
        *args: Any,
        name: str | None = None,
        mailbox_max: int | None = None,
        **spec_options: Any,
    ) -> ChildSpec:
        """
        The ChildSpec that runs this server as the child *id*: ``init(*args)`` in the child. *name*
        registers it (unique in the tree); *mailbox_max* bounds its mailbox (default
        ``cls.mailbox_max``); *spec_options* are ChildSpec's (``restart``, ``shutdown``, ``backoff``...).
        Keyword arguments for ``init`` go in ``init_kwargs={...}``.

        Raises:
            TypeError, ValueError: an argument is invalid; the message names it.
        """
        if not isinstance(cls, type) or not issubclass(cls, GenServer):
            raise TypeError("child_spec must be called on a GenServer subclass")
        bound = cls.mailbox_max if mailbox_max is None else mailbox_max
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 1:
            raise ValueError(f"'mailbox_max' must be an int >= 1 (got {bound!r})")
        init_kwargs = spec_options.pop("init_kwargs", {})
        if not isinstance(init_kwargs, dict):
            raise TypeError(f"'init_kwargs' must be a dict (got a {type(init_kwargs).__name__})")
        for option in ("start", "args", "kwargs", "start_mode", "type"):
            if option in spec_options:
                raise TypeError(f"child_spec: '{option}' is set by the GenServer, not by you")
        return ChildSpec(
            id,
            _names.GEN_SERVER,
            args=(cls, args, init_kwargs, name, bound),
            start_mode=StartMode.NOTIFY,
            type=ChildType.WORKER,
            name=name,
            **spec_options,
        )
