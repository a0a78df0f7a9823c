"""
Chaos: seeded random SIGKILL, SIGSTOP/SIGCONT and SIGTERM at every depth of a session tree, while
threads create and terminate sessions.

After each step (one signal, then SIGCONT for anything stopped) the creators are paused and the test
checks that the registry comes to equal the live SessionSupervisors (ids and pids), that no zombie
outlives ``ZOMBIE_BOUND`` and that no call hung (every call has a timeout; a ``CallTimeout`` fails
the test). The seed is printed; ``SUPERVISOR_CHAOS_SEED`` and ``SUPERVISOR_CHAOS_SECONDS`` replay or
lengthen a run. The root itself is only paused (SIGSTOP/SIGCONT): killing it ends the Application,
which is the orphan tests' subject.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from supervisor import (
    Application,
    ChildSpec,
    RegistryUnavailableError,
    Restart,
    SessionManagerHandle,
    SessionNotFoundError,
    StartError,
    SupervisorGoneError,
)
from supervisor.testing import descendants, process_table
from tests.children import sleep_forever

from .conftest import LogFile

SEED = int(os.environ.get("SUPERVISOR_CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
DURATION = float(os.environ.get("SUPERVISOR_CHAOS_SECONDS", "20"))
CALL_TIMEOUT = 30.0  # a call that takes longer than this hangs
SETTLE_BOUND = 30.0  # the registry must equal the live sessions within this after a step
ZOMBIE_BOUND = 10.0  # a zombie may be seen at most this long
TREE_KILL_GAP = 1.0  # between kills of the registry or the SessionManager
# Intensities high enough that the chaos never makes a supervisor give up: escalation is the
# intensity tests' subject, the registry's agreement with the live sessions is this one's.
MANAGER_MAX_RESTARTS = 1000
ROOT_MAX_RESTARTS = 50
EXPECTED_ERRORS = (SessionNotFoundError, StartError, SupervisorGoneError, RegistryUnavailableError)


class Creators:
    """Threads that create and terminate sessions; ``paused()`` holds them between two calls."""

    def __init__(self, sessions: SessionManagerHandle, seed: int, count: int = 2) -> None:
        self.sessions = sessions
        self.gate = threading.Lock()
        self.stopping = threading.Event()
        self.failures: list[BaseException] = []
        self.calls = 0
        self.threads = [
            threading.Thread(target=self._run, args=(random.Random(seed + n),), daemon=True)
            for n in range(count)
        ]

    def __enter__(self) -> Creators:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(CALL_TIMEOUT * 2)
        assert not any(thread.is_alive() for thread in self.threads), "a creator thread hung"

    def paused(self) -> threading.Lock:
        return self.gate

    def _run(self, rng: random.Random) -> None:
        own: list[str] = []
        while not self.stopping.is_set():
            with self.gate:
                if own and (len(own) >= 6 or rng.random() < 0.4):
                    gone = own.pop(rng.randrange(len(own)))
                    self._call(self.sessions.terminate_session, gone, timeout=CALL_TIMEOUT)
                else:
                    restart = rng.choice([Restart.TEMPORARY, Restart.TEMPORARY, Restart.TRANSIENT])
                    created = self._call(
                        self.sessions.create_session,
                        children=[ChildSpec("worker", sleep_forever)],
                        restart=restart,
                        timeout=CALL_TIMEOUT,
                    )
                    if isinstance(created, str):
                        own.append(created)
            time.sleep(rng.uniform(0.0, 0.05))  # let the checker take the gate

    def _call(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return call(*args, **kwargs)
        except EXPECTED_ERRORS:
            return None
        except BaseException as error:  # a CallTimeout (a hang) or anything unexpected
            self.failures.append(error)
            return None


def live_sessions(app: Application) -> dict[str, int]:
    """The SessionManager's running sessions, id to pid, as its supervisor reports them."""
    return {
        str(info.id): info.pid
        for info in app.session_manager.supervisor.which_children(timeout=CALL_TIMEOUT)
        if info.pid is not None
    }


def registry_matches(app: Application) -> tuple[bool, str]:
    """Whether the registry's entries are exactly the live sessions, ids and pids."""
    try:
        registered = {
            info.session_id: info.pid for info in app.session_manager.list_sessions(timeout=CALL_TIMEOUT)
        }
        live = live_sessions(app)
    except (RegistryUnavailableError, SupervisorGoneError) as error:
        return False, f"not reachable: {error!r}"
    return registered == live, f"registry {registered} != live {live}"


def targets(app: Application) -> list[tuple[str, int]]:
    """Every process of the tree below the root, with its depth's name."""
    found: list[tuple[str, int]] = []
    root_pid = os.getpid()
    table = process_table()
    tree = [entry for entry in descendants(root_pid, table)]
    try:
        top = {str(info.id): info.pid for info in app.supervisor.which_children(timeout=CALL_TIMEOUT)}
        sessions = set(live_sessions(app).values())
    except SupervisorGoneError:
        return found
    for name, pid in top.items():
        if pid is not None:
            found.append((name, pid))
    for entry in tree:
        if entry.state == "Z":
            continue
        if entry.pid in sessions:
            found.append(("session", entry.pid))
        elif entry.ppid in sessions:
            found.append(("worker", entry.pid))
    return found


class Zombies:
    """Remembers when each zombie below this process was first seen; fails one older than the bound."""

    def __init__(self) -> None:
        self.first_seen: dict[int, float] = {}

    def check(self) -> None:
        now = time.monotonic()
        zombies = {entry.pid for entry in descendants(os.getpid()) if entry.state == "Z"}
        self.first_seen = {pid: self.first_seen.get(pid, now) for pid in zombies}
        old = [pid for pid, seen in self.first_seen.items() if now - seen > ZOMBIE_BOUND]
        assert not old, f"zombies outlived {ZOMBIE_BOUND} s: {old} (seed {SEED})"


def settle(app: Application) -> None:
    deadline = time.monotonic() + SETTLE_BOUND
    matched, detail = registry_matches(app)
    while not matched and time.monotonic() < deadline:
        time.sleep(0.05)
        matched, detail = registry_matches(app)
    assert matched, f"after {SETTLE_BOUND} s: {detail} (seed {SEED})"


def test_chaos_keeps_the_registry_equal_to_the_live_sessions(log_file: LogFile) -> None:
    """Signals at every depth beside concurrent creators: registry == live sessions, no hang, no zombie."""
    print(f"chaos seed {SEED}")
    rng = random.Random(SEED)
    zombies = Zombies()
    steps = 0
    last_tree_kill = 0.0
    with (
        Application(
            max_restarts=MANAGER_MAX_RESTARTS,
            root_max_restarts=ROOT_MAX_RESTARTS,
            logging_config=log_file.config,
        ) as app,
        Creators(app.session_manager, SEED) as creators,
    ):
        root = app.supervisor.pid
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            choices = targets(app)
            if rng.random() < 0.1:
                choices.append(("root", root))
            if time.monotonic() - last_tree_kill < TREE_KILL_GAP:
                choices = [(name, pid) for name, pid in choices if name in ("session", "worker", "root")]
            if not choices:
                time.sleep(0.05)
                continue
            name, pid = rng.choice(choices)
            sig = (
                signal.SIGSTOP
                if name == "root"
                else rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP])
            )
            print(f"{time.monotonic() - end + DURATION:7.3f} {signal.Signals(sig).name} {name} {pid}")
            if name in ("registry", "session_manager") and sig != signal.SIGSTOP:
                last_tree_kill = time.monotonic()
            try:
                os.kill(pid, sig)
                if sig == signal.SIGSTOP:
                    time.sleep(rng.uniform(0.0, 0.5))
                    os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            time.sleep(rng.uniform(0.0, 0.2))
            with creators.paused():
                settle(app)
                zombies.check()
            steps += 1
        assert not creators.failures, f"unexpected errors (seed {SEED}): {creators.failures!r}"
    print(f"chaos: {steps} steps, {creators.calls} calls")
    assert steps >= 10
