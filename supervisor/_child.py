"""
What runs first in every child process, right after the supervisor forks it.

In order: close every descriptor it inherited but its own, zero every key it was not given (a
worker is given none but those its arguments carry; the package's own processes keep their
context's), arm the parent-death signal (checked
against the supervisor's pid captured before the fork), turn SIGTERM into
:class:`~supervisor.ShutdownExit` (raised once: later SIGTERMs, which the supervisor re-sends while it
waits, are ignored) and ignore SIGINT, report ready (an ``IMMEDIATE`` child), lead a process group of
its own, then run the start function and report how it ended on the report pipe before exiting. The
report is the exit reason the supervisor uses; the exit status is only the fallback for a child that
could not report (SIGKILL, a crash in C). Only the child itself reports: a process it forks forgets
the report pipe. Just before the start function, a worker's process title becomes ``otp-supervisor:
worker PATH`` (:mod:`supervisor._titles`; built by the supervisor), so a title the start function
sets itself wins.

A start function that is an :class:`~supervisor._entrypoint.EntryPoint` (the package's own processes)
is called with the child's place in the tree first. This module runs in the child, but for the
:class:`ChildLaunch` and :func:`logging_fds` its supervisor makes before the fork; it never imports the
engine that forked it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import sys
import threading
from types import FrameType
from typing import Any

import attrs
import multiprocess
from setproctitle import setproctitle

from . import _wire
from ._addresses import TreeContext
from ._entrypoint import EntryPoint
from ._keys import keep_only
from ._linux import arm_parent_death_signal, close_fds_except
from .info import Identity
from .reasons import ExitKind, ExitReason, ShutdownExit
from .specs import ChildSpec, StartMode

__all__ = ["ChildLaunch", "child_main", "ignore_start", "notify_ready", "whoami"]

_report: Any = None
_identity: Identity | None = None
_ready_sent = False
_child_pid = 0  # this child's pid, set in child_main: a process it forks is not it
_forking_pid = 0
_forking_from_main_thread = False
_fork_hook_registered = False

_READY = _wire.dumps(("ready", None))  # encoded once, in the supervisor, before any fork

SUPERVISED_SIGNALS = {signal.SIGTERM, signal.SIGCHLD}
"""Blocked in a supervisor across each fork, and unblocked by the child once its handlers are set."""


@attrs.frozen
class ChildLaunch:
    """Everything a child needs from its supervisor, passed through the fork."""

    spec: ChildSpec
    report: Any  # the write end of the report pipe (a multiprocess Connection)
    supervisor_pid: int
    logging_fds: tuple[int, ...]  # the supervisor's logging handlers' descriptors, kept in the child
    context: TreeContext  # the child's own place in the tree, for entry points
    title: str | None = None  # a worker's process title, built before the fork; entry points set their own


def notify_ready(info: Any = None) -> None:
    """
    Tell the supervisor this child is ready, for children with ``StartMode.NOTIFY``.

    The supervisor starts the next child (or returns from ``start_child``) only then. A second call
    does nothing, and so does a call from an ``IMMEDIATE`` child, which was ready when it began.
    Does not block (the report is a few bytes on a pipe).

    *info* is the child's start info (OTP's ``{ok, Pid, Info}``): its supervisor keeps it as
    ``ChildInfo.start_info`` while this process runs. It must survive a pickle round trip here;
    one that does not raises ``TypeError`` and nothing is sent, so the child is still not ready
    (uncaught, that is its start failure, with the ``TypeError`` as the ``StartError``'s cause).

    Raises:
        RuntimeError: not called in a process started by a supervisor.
        TypeError: *info* cannot be pickled and unpickled; the child is not ready.
    """
    global _ready_sent
    if _report is None:
        raise RuntimeError("notify_ready() must be called in a child process started by a supervisor")
    if not _ready_sent:
        data = _READY if info is None else _encode_ready(info)
        _ready_sent = True
        _report.send_bytes(data)


def _encode_ready(info: Any) -> bytes:
    """The ``ready`` report carrying *info*, checked to load again, as the supervisor will load it."""
    try:
        data = _wire.dumps(("ready", info))
        pickle.loads(data)
    except Exception as error:
        raise TypeError(
            f"notify_ready: 'info' must be picklable (got {_safe_repr(info)} that is a "
            f"{type(info).__name__}: {type(error).__name__}: {error})"
        ) from error
    return data


def whoami() -> Identity:
    """
    This child's place in its tree: its id path and, in a session, the session's id. Does not block.

    Raises:
        RuntimeError: not called in a process started by a supervisor (or in a process it forked).
    """
    if _identity is None:
        raise RuntimeError("whoami() must be called in a child process started by a supervisor")
    return _identity


def ignore_start() -> None:
    """
    Decline to start, as OTP's ``ignore``: the child exits normally and its spec is kept, not running.

    Only meaningful before :func:`notify_ready` in a ``StartMode.NOTIFY`` child; afterwards it is a
    plain normal exit. Does not return.
    """
    if _report is None:
        raise RuntimeError("ignore_start() must be called in a child process started by a supervisor")
    if not _ready_sent:
        _wire.send(_report, ("ignore", None))
    raise SystemExit(0)


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    # Once only: the supervisor re-sends SIGTERM while it waits (one that lands just before a
    # blocking call is handled only when the call returns), and a repeat must not cut short the
    # cleanup the first one began.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise ShutdownExit()


def _before_fork() -> None:
    # Runs in the forking process, on the forking thread: in the new process, threading's own
    # after-fork hook makes whichever thread forked the main thread, so the question is asked here.
    global _forking_pid, _forking_from_main_thread
    _forking_pid = os.getpid()
    _forking_from_main_thread = threading.current_thread() is threading.main_thread()


def _after_fork_in_grandchild() -> None:
    global _report, _ready_sent, _identity
    # Only the child itself may report: a process it forks (which may return or raise out of the
    # start function, or call notify_ready) must not speak for it on the inherited report pipe.
    report, _report, _ready_sent = _report, None, True
    _identity = None
    if report is not None:
        with contextlib.suppress(OSError):
            report.close()
    # A process forked from a worker's main thread dies with the worker, so user code that forks
    # cannot leave orphans behind. Forks from other threads are left alone: PR_SET_PDEATHSIG would
    # fire when that thread ends, not when the worker does.
    if _forking_pid and _forking_from_main_thread:
        arm_parent_death_signal(_forking_pid)


def _register_fork_hook() -> None:
    # At-fork hooks are inherited by forked children; nested supervisors' children would otherwise
    # register one more at each level.
    global _fork_hook_registered
    if not _fork_hook_registered:
        _fork_hook_registered = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_grandchild)


def logging_fds() -> tuple[int, ...]:
    """
    The descriptors of this process's logging handlers (files, sockets); does not block.

    Called by the supervisor before each fork: the child keeps them, as it logs through the handlers
    it inherits (``logging_config``), and looking them up there would copy pages in the child.
    """
    fds: set[int] = set()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):  # a PlaceHolder has none
            for name in ("stream", "socket", "sock"):
                fileno = getattr(getattr(handler, name, None), "fileno", None)
                if fileno is not None:
                    with contextlib.suppress(OSError, ValueError):  # closed, or not a real file
                        fds.add(int(fileno()))
    return tuple(sorted(fds))


def _close_inherited_fds(launch: ChildLaunch) -> None:
    """
    Close every descriptor this child inherited but its own; one close_range(2) per gap.

    It keeps standard input, output and error, its report pipe's write end, the descriptor by which
    ``multiprocess`` tells a child its parent died (``parent_process().sentinel``: a pidfd of the
    supervisor), and the logging handlers' descriptors. Everything else is the supervisor's (sockets,
    epoll set, signal pipe) or a sibling's (pidfds, report pipes): closed, so no child holds another's
    descriptors and a child's count does not grow with its siblings'.
    """
    keep = {0, 1, 2, launch.report.fileno(), *launch.logging_fds}
    parent = multiprocess.parent_process()
    if parent is not None and parent.sentinel is not None:
        keep.add(parent.sentinel)
    close_fds_except(keep)


def _exit_status(reason: ExitReason) -> int:
    if reason.is_normal:
        return 0
    if reason.code is not None:
        return reason.code
    return 1


def child_main(launch: ChildLaunch) -> None:
    """The target of every child process: set up, run the start function, report, exit."""
    global _report, _ready_sent, _child_pid, _identity
    # Everything inherited from the supervisor leaves the collector's view: a collection here would
    # otherwise touch every inherited object and copy the supervisor's whole heap page by page.
    gc.freeze()
    # The supervisor forks with SIGTERM and SIGCHLD blocked (see SUPERVISED_SIGNALS): its handlers,
    # inherited here, would write into its wake-up pipe. They stay blocked until ours are set.
    signal.set_wakeup_fd(-1)
    _close_inherited_fds(launch)
    spec = launch.spec
    # The supervisor's memory is this child's: its keys too. A worker keeps only the keys its own
    # arguments carry (a handle it was given); an entry point also keeps its context's key.
    keep_only(
        launch.context.authkey if isinstance(spec.start, EntryPoint) else None, (spec.args, spec.kwargs)
    )
    _report, _ready_sent, _child_pid = launch.report, False, os.getpid()
    _identity = Identity(launch.context.path, launch.context.session_id)
    arm_parent_death_signal(launch.supervisor_pid)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    if spec.start_mode is StartMode.IMMEDIATE:
        # Ready once SIGTERM is handled (the supervisor may stop it as soon as it reads this), and
        # before the rest of the set-up: every page it touches is a copy-on-write fault (tens of
        # microseconds each in a VM) that would delay the supervisor.
        notify_ready()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _register_fork_hook()
    if launch.title is not None:
        # After an IMMEDIATE child's ready, so its supervisor does not wait for it. The C function
        # itself, not _titles.show: every supervisor titles itself before it forks, so setproctitle
        # is set up here, and each Python object touched is a page the child copies.
        setproctitle(launch.title)

    try:
        # A SIGTERM that came during the set-up is delivered here, as ShutdownExit.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISED_SIGNALS)
        if isinstance(spec.start, EntryPoint):
            spec.start(launch.context, *spec.args, **spec.kwargs)
        else:
            spec.start(*spec.args, **spec.kwargs)
        reason = ExitReason.normal()
    except ShutdownExit as exc:
        reason = ExitReason.shutdown(exc.term)
    except SystemExit as exc:
        reason = _reason_for_system_exit(exc)
    except BaseException as exc:
        reason = ExitReason.from_exception(exc)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getpid() == _child_pid:
        # Not in a process the start function forked and that returned or raised out of it.
        try:
            launch.report.send_bytes(_encode_exit(reason))
        except (OSError, ValueError):
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(_exit_status(reason))


def _encode_exit(reason: ExitReason) -> bytes:
    """The ``exit`` report of *reason*; a term that does not survive a pickle round trip becomes its repr."""
    try:
        data = _wire.dumps(("exit", reason))
        pickle.loads(data)
        return data
    except Exception:
        if reason.kind is not ExitKind.SHUTDOWN:
            raise
    return _wire.dumps(("exit", ExitReason.shutdown(_safe_repr(reason.term))))


def _safe_repr(term: Any) -> str:
    try:
        return repr(term)
    except Exception:
        return f"<unprintable {type(term).__qualname__}>"


def _reason_for_system_exit(exc: SystemExit) -> ExitReason:
    code = exc.code
    if code is None or code == 0:
        return ExitReason.normal()
    if isinstance(code, int):
        return ExitReason.from_exitcode(code if 0 < code < 256 else 1)
    print(code, file=sys.stderr)
    return ExitReason.from_exitcode(1)
