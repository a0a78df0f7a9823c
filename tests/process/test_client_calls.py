"""
Client calls under trouble: interrupted, timed out, against a stopped or hung supervisor.

Every failure reaches the caller as a ``SupervisorError``; no call reads another call's reply; a
call with ``timeout=`` returns within it; ``stop()`` always ends. ``HANG_TIMEOUT`` only guards
against hangs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import (
    Application,
    AuthenticationError,
    CallTimeout,
    ChildCounts,
    ChildNotFoundError,
    ChildSpec,
    RegistryUnavailableError,
    StartMode,
    SupervisorError,
    SupervisorHandle,
)
from supervisor.handle import SupervisorHandle as _Handle
from supervisor.sessions.registry import RegistryClient
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, ready_on_sigusr1, sleep_forever


class Interrupted(Exception):
    """Raised by the test's signal handler in the middle of a call."""


def slow_child(events: EventSink, child_id: str = "slow") -> ChildSpec:
    return ChildSpec(child_id, ready_on_sigusr1, args=(events.path, child_id), start_mode=StartMode.NOTIFY)


@pytest.fixture
def interrupting_handler() -> Iterator[None]:
    def raise_interrupted(signum: int, frame: Any) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGUSR2, raise_interrupted)
    yield
    signal.signal(signal.SIGUSR2, previous)


def in_thread(function: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def signal_pending(pid: int, signum: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("ShdPnd:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


class TestInterruptedCalls:
    def test_an_interrupted_call_does_not_desynchronize_the_handle(
        self, start_tree: Any, events: EventSink, interrupting_handler: None
    ) -> None:
        """A call interrupted by a signal handler drops its connection: later calls read their own replies."""
        handle = start_tree([])
        main = threading.get_ident()

        def interrupt_once_started() -> None:
            events.expect("started", "slow")
            signal.pthread_kill(main, signal.SIGUSR2)

        interrupter = threading.Thread(target=interrupt_once_started)
        interrupter.start()
        with pytest.raises(Interrupted):
            handle.start_child(slow_child(events))
        interrupter.join(HANG_TIMEOUT)
        pid = events.seen[-1][2]
        # The interrupted start completes while the next call waits behind it in the supervisor's
        # lane: its late reply must not be read as that call's.
        releaser = threading.Timer(0.3, os.kill, (pid, signal.SIGUSR1))
        releaser.start()

        with pytest.raises(ChildNotFoundError):
            handle.delete_child("nope")
        releaser.join(HANG_TIMEOUT)
        assert [("slow", pid)] == [(info.id, info.pid) for info in handle.which_children()]
        counts = handle.count_children()
        assert isinstance(counts, ChildCounts)
        assert counts.active == 1

    def test_a_call_that_times_out_leaves_the_handle_usable(self, start_tree: Any, events: EventSink) -> None:
        """start_child(timeout=) raises CallTimeout; the late reply is never read by a later call."""
        handle = start_tree([])

        with pytest.raises(CallTimeout, match=r"did not reply within 0\.5 s"):
            handle.start_child(slow_child(events), timeout=0.5)
        pid = events.expect("started", "slow")
        os.kill(pid, signal.SIGUSR1)
        events.expect("ready", "slow")

        with pytest.raises(ChildNotFoundError):
            handle.delete_child("nope", timeout=HANG_TIMEOUT)
        assert [("slow", pid)] == [(info.id, info.pid) for info in handle.which_children()]

    @pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf")])
    def test_a_bad_timeout_is_a_value_error_and_sends_nothing(self, start_tree: Any, timeout: float) -> None:
        """timeout= must be finite seconds >= 0: a ValueError naming it, before anything is sent."""
        handle = start_tree([ChildSpec("a", sleep_forever)])

        with pytest.raises(ValueError, match="'timeout'"):
            handle.terminate_child("a", timeout=timeout)

        assert handle.which_children()[0].pid is not None

    def test_a_timeout_of_the_wrong_type_is_a_type_error(self, start_tree: Any) -> None:
        """timeout='1' is a TypeError naming it, for calls and for stop()."""
        handle = start_tree([])

        with pytest.raises(TypeError, match="'timeout'"):
            handle.which_children(timeout="1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'timeout'"):
            handle.stop(timeout="1")  # type: ignore[arg-type]


class TestOnlySupervisorErrors:
    def test_a_stopped_supervisor_gives_call_timeout_not_an_os_error(self, start_tree: Any) -> None:
        """A supervisor that does not answer the handshake raises CallTimeout, a SupervisorError."""
        handle = start_tree([ChildSpec.supervisor("sub", [ChildSpec("leaf", sleep_forever)])])
        sub_pid = handle.which_children()[0].pid
        assert sub_pid is not None
        fresh: SupervisorHandle = pickle.loads(pickle.dumps(handle.child_supervisor("sub")))
        os.kill(sub_pid, signal.SIGSTOP)
        try:
            with pytest.raises(SupervisorError) as info:
                fresh.which_children()
        finally:
            os.kill(sub_pid, signal.SIGCONT)

        assert isinstance(info.value, CallTimeout)
        assert [child.id for child in fresh.which_children()] == ["leaf"]

    def test_a_wrong_authkey_is_an_authentication_error(self, start_tree: Any) -> None:
        """A handle with another tree's key gets AuthenticationError (a SupervisorError); nothing changes."""
        handle = start_tree([ChildSpec("a", sleep_forever)])
        intruder = _Handle(handle._address, b"w" * 32, handle.path)

        with pytest.raises(AuthenticationError, match="refused this handle's authkey") as info:
            intruder.terminate_child("a")

        assert "closed the connection" not in str(info.value)  # refused in so many words, not guessed
        assert handle.which_children()[0].pid is not None

    def test_a_handshake_cut_by_the_server_is_a_timeout_not_a_refused_key(self, tmp_path: Any) -> None:
        """A server hanging up mid-handshake without refusing the key (at its deadline) is a CallTimeout."""
        with (
            handshake_cutter(tmp_path) as address,
            pytest.raises(CallTimeout, match="closed the connection twice during the handshake"),
        ):
            _Handle(address, b"k" * 32, "cuts").which_children(timeout=HANG_TIMEOUT)

    def test_a_registry_that_cuts_handshakes_is_unavailable_not_a_refused_key(self, tmp_path: Any) -> None:
        """The registry client retries cut handshakes until its bound, then says it is unavailable."""
        with (
            handshake_cutter(tmp_path) as address,
            pytest.raises(RegistryUnavailableError, match=r"did not answer within 0\.5 s"),
        ):
            RegistryClient(address, b"k" * 32, timeout=0.5).snapshot()


@contextlib.contextmanager
def handshake_cutter(tmp_path: Any) -> Iterator[str]:
    """A Unix socket server that answers each connection's handshake with a nonce, then hangs up."""
    address = str(tmp_path / "cuts.sock")
    stop = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(address)
        listener.listen(16)
        listener.settimeout(0.05)

        def cut_handshakes() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn, contextlib.suppress(OSError):  # a client that gave up first
                    conn.settimeout(HANG_TIMEOUT)
                    conn.sendall(os.urandom(32))
                    conn.recv(64)  # the client's digest and nonce; then hang up, as at a deadline

        server = threading.Thread(target=cut_handshakes, daemon=True)
        server.start()
        try:
            yield address
        finally:
            stop.set()
            server.join(HANG_TIMEOUT)
            assert not server.is_alive()


class TestStop:
    def test_stop_of_a_root_that_does_not_answer_falls_back_to_sigterm(self, start_tree: Any) -> None:
        """stop() of a root whose handshake cannot complete sends it SIGTERM, so the stop still ends."""
        handle = start_tree([ChildSpec("a", sleep_forever)])
        root = handle.pid
        worker = handle.which_children()[0].pid
        os.kill(root, signal.SIGSTOP)
        stopper, outcome = in_thread(handle.stop)
        try:
            for _ in range(int(HANG_TIMEOUT * 20)):
                if signal_pending(root, signal.SIGTERM):
                    break
                stopper.join(0.05)
            assert signal_pending(root, signal.SIGTERM)
        finally:
            os.kill(root, signal.SIGCONT)
        stopper.join(HANG_TIMEOUT)

        assert not stopper.is_alive()
        assert "error" not in outcome
        assert handle.stopped
        assert wait_gone([worker], HANG_TIMEOUT) == []


class TestStoppedApplication:
    def test_reads_after_the_application_stopped_fail_at_once(self) -> None:
        """A kept SessionManagerHandle raises RegistryUnavailableError at once, not after its wait bound."""
        with Application(registry_timeout=HANG_TIMEOUT * 4) as app:
            sessions = app.session_manager
        reader, outcome = in_thread(sessions.list_sessions)
        reader.join(HANG_TIMEOUT)

        assert not reader.is_alive()
        assert isinstance(outcome.get("error"), RegistryUnavailableError)
        assert "stopped" in str(outcome["error"])
