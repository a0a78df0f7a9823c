"""
GenServers for tests, at module level so every process can import them.

They report through an :class:`~tests.children.EventSink` where a test must see something happen
inside the server (``emit(sink, "terminated", reason)``); tests block on the sink, never sleep.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from supervisor import (
    NOREPLY,
    Caller,
    Down,
    GenServer,
    ServerRef,
    Stop,
    call,
    cast,
    whoami,
)
from supervisor.errors import CallingSelfError

from .children import HANG_TIMEOUT, emit


class Echo(GenServer):
    """Replies with what it is asked; keeps every cast; crashes on request."""

    def init(self, sink: str | None = None, label: str = "echo") -> None:
        self.sink = sink
        self.label = label
        self.casts: list[Any] = []
        self.executions = 0
        if sink is not None:
            emit(sink, "started", label)

    def handle_call(self, request: Any, caller: Caller) -> Any:
        self.executions += 1
        match request:
            case ("crash", message):
                raise ValueError(message)
            case ("sleep", seconds):
                if self.sink is not None:
                    emit(self.sink, "sleeping", self.label)
                time.sleep(seconds)
                return "slept"
            case "casts":
                return list(self.casts)
            case "pid":
                return os.getpid()
            case "whoami":
                return whoami()
            case "identity":
                return (self.path, self.session_id)
            case "executions":
                return self.executions
            case ("stop", reason, reply):
                return Stop(reason, reply)
            case "call_self":
                assert self.ref is not None
                try:
                    call(self.ref, "pid")
                except CallingSelfError as error:
                    return ("refused", type(error).__name__)
                return "no error"
            case _:
                return ("echo", request)

    def handle_cast(self, message: Any) -> Any:
        self.casts.append(message)
        if message == "stop":
            return Stop("normal")
        return None

    def terminate(self, reason: Any) -> None:
        if self.sink is not None:
            emit(self.sink, "terminated", (self.label, reason))


class Deferred(GenServer):
    """Holds calls until a cast releases them: replies later, through ``caller.reply``."""

    def init(self) -> None:
        self.waiting: list[Caller] = []

    def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "hold":
            self.waiting.append(caller)
            return NOREPLY
        if request == "held":
            return len(self.waiting)
        if request == "reply_from_thread":
            threading.Thread(target=caller.reply, args=("from a thread",)).start()
            return NOREPLY
        return request

    def handle_cast(self, message: Any) -> None:
        for caller in self.waiting:
            caller.reply(("released", message))
        self.waiting.clear()


def wait_at_gate(gate: str, sink: str, kind: str, key: Any = None) -> None:
    """
    Bind the datagram socket *gate*, report *kind* on *sink*, then block until the test sends a
    datagram to *gate* (:func:`open_gate`); HANG_TIMEOUT only guards a hang.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waiting:
        waiting.bind(gate)
        emit(sink, kind, key)
        waiting.settimeout(HANG_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            waiting.recv(1)


def open_gate(gate: str) -> None:
    """Let a process waiting at *gate* go on (nothing happens if none waits there yet or any more)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as opener, contextlib.suppress(OSError):
        opener.sendto(b"!", gate)


class Gate(GenServer):
    """A handler that blocks until the test opens its gate: fills the mailbox behind it for overload tests."""

    def init(self, sink: str) -> None:
        self.sink = sink

    def handle_call(self, request: Any, caller: Caller) -> Any:
        if isinstance(request, tuple) and request[0] == "block_until":
            wait_at_gate(request[1], self.sink, "blocked")
            return "opened"
        return request

    def handle_cast(self, message: Any) -> None:
        return None


class Ticker(GenServer):
    """Sets timers and watches other servers; reports what reaches handle_info."""

    def init(self, sink: str) -> None:
        self.sink = sink

    def handle_call(self, request: Any, caller: Caller) -> Any:
        match request:
            case ("after", seconds, message):
                self.send_after(seconds, message)
                return "set"
            case ("after_cancelled", seconds, message):
                timer = self.send_after(seconds, message)
                return self.cancel_timer(timer)
            case ("watch", ref):
                self.monitor(ref)
                return "watching"
        return None

    def handle_info(self, message: Any) -> None:
        if isinstance(message, Down):
            self.demonitor(message.monitor)  # the usual clean-up, after the notice: must not crash
            emit(self.sink, "down", (message.monitor.target.path, message.reason))
        else:
            emit(self.sink, "info", message)


class Forwarder(GenServer):
    """Calls another server it was given a ref of (a call from inside a server)."""

    def init(self, target: ServerRef) -> None:
        self.target = target

    def handle_call(self, request: Any, caller: Caller) -> Any:
        return ("forwarded", call(self.target, request))

    def handle_cast(self, message: Any) -> None:
        cast(self.target, message)


class FailsInit(GenServer):
    """Raises in init: a start failure."""

    def init(self, message: str) -> None:
        raise RuntimeError(message)


def report_identity(sink: str) -> None:
    """A plain worker (not a server): reports who it is, then waits to be stopped."""
    emit(sink, "identity", whoami())
    threading.Event().wait()


def call_through_sessions(sessions: Any, session_id: str, child_id: str, sink: str) -> None:
    """A worker given the sessions handle: calls another session's server, reports the reply, waits."""
    emit(sink, "reply", sessions.call(session_id, child_id, "from another session", timeout=HANG_TIMEOUT))
    threading.Event().wait()


class SlowToTerminate(GenServer):
    """Reports when its terminate begins, then waits in it at the test's gate: calls meanwhile are refused."""

    def init(self, sink: str, gate: str) -> None:
        self.sink, self.gate = sink, gate

    def handle_call(self, request: Any, caller: Caller) -> Any:
        return request

    def terminate(self, reason: Any) -> None:
        wait_at_gate(self.gate, self.sink, "terminating", os.getpid())


class SlowInit(GenServer):
    """Reports that its init began, then waits in it until the test opens its gate."""

    def init(self, sink: str, gate: str) -> None:
        wait_at_gate(gate, sink, "initializing", os.getpid())

    def handle_call(self, request: Any, caller: Caller) -> Any:
        return request
