"""
``python -m supervisor demo``: a tour of the package, written against the public API only.

Part 1 starts a nested tree, SIGKILLs a worker and shows it restarted with its exit reason, crashes a
worker with an exception and shows the remote traceback, then stops the tree. Part 2 starts an
Application, creates sessions, lists them, calls a session's server, crashes it while a monitor
watches and calls it again once restarted, kills a session and shows it cleaned up, and terminates
the rest. The tree is printed with pids as it goes. Workers report their starts on a datagram socket, so
the demo waits for events, never for time.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import tempfile
import time
import traceback

from . import (
    Application,
    Caller,
    ChildSpec,
    GenServer,
    Restart,
    ServerDown,
    SessionManagerHandle,
    StartError,
    StartMode,
    Strategy,
    Supervisor,
    SupervisorHandle,
    monitor,
    notify_ready,
)
from .testing import wait_gone

_LOGGING = {
    "version": 1,
    "formatters": {"report": {"format": "    [log] %(message)s"}},
    "handlers": {
        "out": {"class": "logging.StreamHandler", "formatter": "report", "stream": "ext://sys.stdout"}
    },
    "loggers": {"supervisor": {"handlers": ["out"], "level": "ERROR", "propagate": False}},
}


# ---------------------------------------------------------------------- workers (run in children)


def _emit(path: str, name: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(pickle.dumps((name, os.getpid())), path)


def worker(path: str, name: str) -> None:
    """A worker that reports its start and then serves until stopped."""
    _emit(path, name)
    while True:
        time.sleep(3600)


def faulty_worker(path: str, name: str) -> None:
    """A worker that becomes ready, reports, and then crashes with a chained exception."""
    notify_ready()
    _emit(path, name)
    requests: dict[str, str] = {}
    try:
        requests["missing-key"]
    except KeyError as error:
        raise RuntimeError("the worker could not handle its request") from error


class Context(GenServer):
    """A session's context server: counts the turns of its conversation; crashes when told to."""

    def init(self, path: str, name: str) -> None:
        self.turns: list[str] = []
        _emit(path, name)

    def handle_call(self, request: str, caller: Caller) -> str:
        if request == "crash":
            raise RuntimeError("the context server was told to crash")
        self.turns.append(request)
        return (
            f"session {self.session_id[:8] if self.session_id else '-'}: turn {len(self.turns)} ({request})"
        )


def failing_start() -> None:
    """A child whose initialisation fails (before notify_ready)."""
    raise ConnectionRefusedError("database at db.internal:5432 refused the connection")


# ---------------------------------------------------------------------- printing


def _print_tree(
    handle: SupervisorHandle, indent: str = "  ", sessions: SessionManagerHandle | None = None
) -> None:
    """Print *handle*'s tree; below the SessionManager, through *sessions* (each session's own key)."""
    for child in handle.which_children():
        pid = "not running" if child.pid is None else f"pid {child.pid}"
        name = "-" if child.id is None else child.id  # None: a child known by pid
        print(f"{indent}{name:<14} {child.type.value:<10} {child.restart.value:<9} {pid}")
        if child.type.value != "supervisor" or child.pid is None:
            continue
        if sessions is not None and handle.path == sessions.supervisor.path and child.id is not None:
            # A session's supervisor refuses the tree's key: it answers its own session's handle only.
            _print_tree(sessions.session_supervisor(child.id), indent + "    ")
        else:
            nested = handle.child_supervisor(child.pid if child.id is None else child.id)
            _print_tree(nested, indent + "    ", sessions)


def _print_sessions(sessions: SessionManagerHandle) -> None:
    infos = sessions.list_sessions()
    if not infos:
        print("  (no sessions)")
    for info in infos:
        children = ", ".join(f"{c.id}={c.pid}" for c in info.children)
        print(
            f"  {info.session_id[:8]}  pid {info.pid:<7} {info.status.value:<12} "
            f"task={info.metadata.get('task')!s:<10} children: {children}"
        )


class _Events:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(30)

    def wait_for(self, name: str) -> int:
        while True:
            got, pid = pickle.loads(self.sock.recv(4096))
            if got == name:
                return int(pid)


# ---------------------------------------------------------------------- the tour


def _core_part(events: _Events) -> None:
    path = events.path
    print("== Part 1: a supervision tree ==")
    tree = Supervisor.start(
        [
            ChildSpec("cache", worker, args=(path, "cache")),
            ChildSpec.supervisor(
                "api",
                [
                    ChildSpec("listener", worker, args=(path, "listener")),
                    ChildSpec("handler", worker, args=(path, "handler")),
                ],
                Strategy.REST_FOR_ONE,
            ),
        ],
        Strategy.ONE_FOR_ONE,
        max_restarts=5,
        max_seconds=10,
        logging_config=_LOGGING,
    )
    with tree:
        for name in ("cache", "listener", "handler"):
            events.wait_for(name)
        print(f"started the root supervisor, pid {tree.pid}:")
        _print_tree(tree)

        api = tree.child_supervisor("api")
        victim = next(c.pid for c in api.which_children() if c.id == "listener")
        assert victim is not None
        print(f"\nSIGKILL the worker 'listener' (pid {victim}); rest_for_one restarts it and 'handler':")
        os.kill(victim, signal.SIGKILL)
        events.wait_for("listener")
        events.wait_for("handler")
        _print_tree(tree)

        print("\nstart a temporary worker that crashes once it is ready; it is not restarted:")
        tree.start_child(
            ChildSpec(
                "faulty",
                faulty_worker,
                args=(path, "faulty"),
                restart=Restart.TEMPORARY,
                start_mode=StartMode.NOTIFY,
            )
        )
        events.wait_for("faulty")
        print("  (the supervisor logs its crash report, with the traceback from the child process)")

        print("\nstart a child whose initialisation fails; start_child raises with the remote traceback:")
        try:
            tree.start_child(ChildSpec("db", failing_start, start_mode=StartMode.NOTIFY))
        except StartError as error:
            text = "".join(traceback.format_exception(error))
            print("\n".join("    | " + line for line in text.rstrip().splitlines()))

        print("\nthe tree is unchanged:")
        _print_tree(tree)
        pids = [c.pid for c in tree.which_children() if c.pid is not None] + [tree.pid or 0]
        print("\nstopping the tree (reverse start order, each child by its shutdown spec)...")
    left = wait_gone(pids, 30)
    print(f"stopped; processes left: {left or 'none'}\n")


def _session_part(events: _Events) -> None:
    path = events.path
    print("== Part 2: sessions ==")
    with Application(logging_config=_LOGGING) as app:
        sessions = app.session_manager
        print(f"Application started, root pid {app.supervisor.pid}:")
        _print_tree(app.supervisor, sessions=sessions)
        ids = []
        for task in ("refactor", "review", "tests"):
            children = [
                Context.child_spec("context", path, f"{task}/context"),
                ChildSpec("tools", worker, args=(path, f"{task}/tools")),
            ]
            ids.append(sessions.create_session(children=children, metadata={"task": task}))
        print("\ncreated three sessions; list_sessions():")
        _print_sessions(sessions)

        _server_part(sessions, ids[0])

        doomed = sessions.get_session_info(ids[1])
        print(f"\nSIGKILL the SessionSupervisor of session {doomed.session_id[:8]} (pid {doomed.pid}):")
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
        wait_gone([doomed.pid] + [c.pid for c in doomed.children if c.pid is not None], 30)
        sessions.supervisor.count_children()  # one round trip through the SessionManager's loop
        print("its processes are gone and the registry no longer lists it:")
        _print_sessions(sessions)

        print("\nthe tree now:")
        _print_tree(app.supervisor, sessions=sessions)
        for session_id in (ids[0], ids[2]):
            sessions.terminate_session(session_id)
        print("\nterminated the rest; list_sessions():")
        _print_sessions(sessions)
        print("\nstopping the Application...")
    print("stopped.")


def _server_part(sessions: SessionManagerHandle, session_id: str) -> None:
    print(f"\nthe 'context' child of session {session_id[:8]} is a GenServer; sessions.call(...):")
    print("   ", sessions.call(session_id, "context", "plan the refactor"))
    print("   ", sessions.call(session_id, "context", "write the tests"))
    ref = sessions.whereis(session_id, "context")
    assert ref is not None
    with monitor(ref) as watch:
        print(f"a monitor watches it (pid {ref.pid}); a call that makes it crash:")
        try:
            sessions.call(session_id, "context", "crash")
        except ServerDown as down:
            assert down.reason is not None
            print(f"    ServerDown: {down.reason.describe()}; the remote traceback ends with:")
            print("    " + (down.reason.traceback_text or "").strip().splitlines()[-2].strip())
        reason = watch.wait(30)
        print(f"the monitor reports: {reason.describe() if reason else 'nothing within 30 s'}")
    print("its supervisor restarted it; the next call (by id, resolved now) reaches the new process:")
    print("   ", sessions.call(session_id, "context", "start again", timeout=30))
    new = sessions.whereis(session_id, "context")
    print(f"    pid {ref.pid} -> {new.pid if new else '?'}: a fresh process, a fresh conversation")


def main() -> int:
    """Run the tour; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="supervisor-demo-") as directory:
        events = _Events(os.path.join(directory, "events.sock"))
        try:
            _core_part(events)
            _session_part(events)
        finally:
            events.sock.close()
    return 0
