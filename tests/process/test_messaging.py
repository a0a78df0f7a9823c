"""
GenServers under supervisors: call, cast, replies, crashes, timeouts, overload, names, monitors.

Through the public API with real processes. ``HANG_TIMEOUT`` only guards against hangs; where a test
shows that something is seen "at once" it compares with a call timeout many times longer.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    Application,
    Backoff,
    CallTimeout,
    ChildSpec,
    ChildState,
    ExitKind,
    GenServer,
    Identity,
    NameTakenError,
    NoProc,
    Overloaded,
    Restart,
    ServerDown,
    ServerRef,
    StartError,
    Stop,
    call,
    cast,
    monitor,
)
from supervisor._keys import Key
from supervisor._transport import authenticate, connect, listen
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, Unpicklable
from tests.servers import (
    Deferred,
    Echo,
    FailsInit,
    Forwarder,
    Gate,
    SlowInit,
    SlowToTerminate,
    Ticker,
    call_through_sessions,
    open_gate,
    report_identity,
)

LONG_CALL = 120.0
"""A call timeout no test waits out: failures must come long before it."""


def ref_of(tree: Any, target: str) -> ServerRef:
    ref = tree.whereis(target)
    assert ref is not None, f"no server {target!r}"
    return ref  # type: ignore[no-any-return]


def kill(pid: int) -> None:
    """SIGKILL *pid* and return once it has ended (a call made before that may reach it dying)."""
    os.kill(pid, signal.SIGKILL)
    assert wait_gone([pid], HANG_TIMEOUT) == []


def restarted(tree: Any, target: str, old: ServerRef) -> ServerRef:
    """The next incarnation of *target* once it runs (a call by name waits for it)."""
    pid = tree.call(target, "pid", timeout=HANG_TIMEOUT)
    ref = ref_of(tree, target)
    assert ref.pid == pid != old.pid
    return ref


class TestCall:
    def test_a_call_returns_the_reply_and_state_stays_on_self(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo", name="echo")])
        ref = ref_of(tree, "echo")

        first = call(ref, "hello", timeout=HANG_TIMEOUT)
        cast(ref, "note")
        cast(ref, "more")
        casts = call(ref, "casts", timeout=HANG_TIMEOUT)

        assert first == ("echo", "hello")
        assert casts == ["note", "more"]  # casts then a call from one caller: handled in send order
        assert call(ref, "executions") == 3

    def test_the_readme_example(self, start_tree: Any) -> None:
        """The issue's example: a Conversation server called by ref and by name."""
        tree = start_tree([Conversation.child_spec("conv", "be brief", name="conv")])
        ref = tree.whereis("conv")

        assert call(ref, "hello", timeout=5.0) == 2
        cast(ref, "note")
        assert tree.call("conv", "again") == 4
        assert isinstance(ref, ServerRef) and ref.path == "root/conv"

    def test_a_ref_pickles_and_works_in_another_thread(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = pickle.loads(pickle.dumps(ref_of(tree, "echo")))
        results: list[Any] = []
        thread = threading.Thread(target=lambda: results.append(call(ref, "x")))
        thread.start()
        thread.join(HANG_TIMEOUT)

        assert results == [("echo", "x")]
        assert (ref.path, ref.pid) == ("root/echo", tree.which_child("echo").pid)

    def test_a_path_reaches_a_server_in_a_nested_supervisor(self, start_tree: Any) -> None:
        tree = start_tree([ChildSpec.supervisor("api", [Echo.child_spec("handler")])])

        assert tree.call("api/handler", "hi") == ("echo", "hi")
        assert ref_of(tree, "api/handler").path == "root/api/handler"
        assert tree.whereis("api/nothing") is None

    def test_bad_arguments_are_named_and_send_nothing(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")

        with pytest.raises(TypeError, match="'target' must be a ServerRef"):
            call("echo", "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="'timeout'"):
            call(ref, "x", timeout=-1)
        with pytest.raises(TypeError, match="cannot be pickled"):
            call(ref, Unpicklable())
        with pytest.raises(ValueError, match="'name_or_path'"):
            tree.call("", "x")
        with pytest.raises(TypeError, match="'name_or_path'"):
            tree.call(3, "x")  # type: ignore[arg-type]
        assert call(ref, "executions") == 1  # only this call ran


class TestCrash:
    def test_an_exception_in_handle_call_is_server_down_with_the_remote_traceback(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """Let it crash: the caller gets the exception; terminate runs; the server is restarted."""
        tree = start_tree([Echo.child_spec("echo", events.path, name="echo")])
        events.expect("started", "echo")
        old = ref_of(tree, "echo")

        with pytest.raises(ServerDown) as info:
            call(old, ("crash", "no database"), timeout=LONG_CALL)

        reason = info.value.reason
        assert reason is not None and reason.kind is ExitKind.EXCEPTION
        assert reason.type_name == "builtins.ValueError" and reason.message == "no database"
        assert "raise ValueError(message)" in (reason.traceback_text or "")
        assert isinstance(info.value.__cause__, ValueError)
        kind, (label, terminate_reason), _ = events.next()
        assert (kind, label, terminate_reason.type_name) == ("terminated", "echo", "builtins.ValueError")
        new = restarted(tree, "echo", old)
        assert new.incarnation != old.incarnation
        assert tree.which_child("echo").restarts == 1

    def test_sigkill_mid_call_is_server_down_at_once_with_killed(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")
        threading.Timer(0.2, os.kill, (ref.pid, signal.SIGKILL)).start()
        began = time.monotonic()

        with pytest.raises(ServerDown) as info:
            call(ref, ("sleep", LONG_CALL), timeout=LONG_CALL)

        assert time.monotonic() - began < LONG_CALL / 4  # seen by pidfd/EOF, not at the timeout
        assert info.value.reason is not None and info.value.reason.kind is ExitKind.KILLED

    def test_an_old_incarnation_gets_noproc_never_the_new_process(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo", name="echo")])
        old = ref_of(tree, "echo")
        kill(old.pid)
        new = restarted(tree, "echo", old)
        reused = ServerRef(old.path, new.pid, old.incarnation, old.private_dir, old.scope, old.key)

        with pytest.raises(NoProc):
            call(old, "x")
        with pytest.raises(NoProc):
            call(reused, "x")  # the new process at the old incarnation: refused, not run
        assert call(new, "executions") == 2  # restarted()'s 'pid' call, then this one


class TestTimeout:
    def test_a_timed_out_call_raises_and_its_late_reply_never_surfaces(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")

        with pytest.raises(CallTimeout, match="may still run"):
            call(ref, ("sleep", 0.5), timeout=0.1)
        after = call(ref, "next", timeout=HANG_TIMEOUT)

        assert after == ("echo", "next")  # not "slept", the first call's late reply
        assert call(ref, "executions") == 3  # the timed-out request still ran, once

    def test_an_answer_that_stops_half_way_times_out(self, tmp_path: Path) -> None:
        """A server stopped in the middle of a frame cannot hold the caller past its timeout."""
        key = Key(b"k" * 32)
        ref = ServerRef("root/stalls", os.getpid(), 1, str(tmp_path), "", key)
        listener = listen(ref.address)
        held: list[Any] = []

        def half_an_answer() -> None:
            sock, _ = listener.accept()
            conn = authenticate(sock, key)
            assert conn is not None
            conn.recv_bytes()
            conn._send(struct.pack("!i", 1000) + b"half")  # a header, then a few of its 1000 bytes
            held.append(conn)

        server = threading.Thread(target=half_an_answer)
        server.start()
        try:
            with pytest.raises(CallTimeout):
                call(ref, "x", timeout=0.5)
        finally:
            server.join(HANG_TIMEOUT)
            for conn in held:
                conn.close()
            listener.close()

    def test_none_waits_for_ever_and_zero_times_out_at_once(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")

        assert call(ref, ("sleep", 0.2), timeout=None) == "slept"
        with pytest.raises(CallTimeout):
            call(ref, ("sleep", 0.2), timeout=0)


class TestReplies:
    def test_a_deferred_reply_comes_from_a_later_message(self, start_tree: Any) -> None:
        tree = start_tree([Deferred.child_spec("d")])
        ref = ref_of(tree, "d")
        results: list[Any] = []
        waiter = threading.Thread(target=lambda: results.append(call(ref, "hold", timeout=HANG_TIMEOUT)))
        waiter.start()
        deadline = time.monotonic() + HANG_TIMEOUT
        while call(ref, "held") == 0 and time.monotonic() < deadline:
            pass  # a call round trip per check: the server says when the first call is held

        cast(ref, "go")
        waiter.join(HANG_TIMEOUT)

        assert results == [("released", "go")]
        assert call(ref, "reply_from_thread") == "from a thread"

    def test_stop_replies_then_ends_the_server_normally(self, start_tree: Any, events: EventSink) -> None:
        tree = start_tree([Echo.child_spec("echo", events.path, restart=Restart.TRANSIENT)])
        events.expect("started", "echo")
        ref = ref_of(tree, "echo")

        assert call(ref, ("stop", "normal", "bye")) == "bye"
        _, (_, reason), _ = events.next()
        assert reason.kind is ExitKind.NORMAL
        assert wait_gone([ref.pid], HANG_TIMEOUT) == []
        info = tree.which_child("echo")
        assert (info.state, info.restarts) == (ChildState.STOPPED, 0)  # transient, normal: not restarted
        assert tree.whereis("echo") is None

    def test_a_server_calling_itself_is_refused_not_deadlocked(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])

        assert tree.call("echo", "call_self", timeout=HANG_TIMEOUT) == ("refused", "CallingSelfError")

    def test_a_server_calls_and_casts_another(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        target = ref_of(tree, "echo")
        tree.start_child(Forwarder.child_spec("fwd", target))

        assert tree.call("fwd", "x") == ("forwarded", ("echo", "x"))
        tree.cast("fwd", "via fwd")
        tree.call("fwd", "after the cast")  # fwd has cast to echo (and echo queued it) before this
        assert call(target, "casts", timeout=HANG_TIMEOUT) == ["via fwd"]


class TestOverload:
    def test_a_full_mailbox_refuses_casts_and_calls(
        self, start_tree: Any, tmp_path: Path, events: EventSink
    ) -> None:
        tree = start_tree([Gate.child_spec("gate", events.path, mailbox_max=2)])
        ref = ref_of(tree, "gate")
        gate = str(tmp_path / "open")
        blocked: list[Any] = []
        holder = threading.Thread(
            target=lambda: blocked.append(call(ref, ("block_until", gate), timeout=HANG_TIMEOUT))
        )
        holder.start()
        try:
            events.expect("blocked")
            # The mailbox thread answers casts at once while the handler is blocked: two fit.
            cast(ref, 1)
            cast(ref, 2)
            with pytest.raises(Overloaded):
                cast(ref, "one too many")
            with pytest.raises(Overloaded):
                call(ref, "one too many")
        finally:
            open_gate(gate)
            holder.join(HANG_TIMEOUT)
        assert blocked == ["opened"]
        assert call(ref, "after") == "after"


class TestNames:
    def test_a_name_is_unique_in_the_tree(self, start_tree: Any) -> None:
        tree = start_tree([ChildSpec.supervisor("a", [Echo.child_spec("one", name="shared")])])

        with pytest.raises(StartError) as info:
            tree.start_child(Echo.child_spec("two", name="shared"))

        cause = info.value.__cause__
        assert isinstance(cause, NameTakenError)
        assert (cause.holder_path, cause.name) == ("root/a/one", "shared")
        assert ref_of(tree, "shared").path == "root/a/one"

    def test_a_name_is_held_from_the_claim_so_a_second_claim_during_init_fails(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        gate = str(tmp_path / "gate")
        tree = start_tree([ChildSpec.supervisor("a", []), ChildSpec.supervisor("b", [])])
        first = threading.Thread(
            target=tree.child_supervisor("a").start_child,
            args=(SlowInit.child_spec("slow", events.path, gate, name="x"),),
        )
        first.start()
        try:
            events.expect("initializing")
            with pytest.raises(StartError) as info:
                tree.child_supervisor("b").start_child(Echo.child_spec("fast", name="x"))
        finally:
            open_gate(gate)
            first.join(HANG_TIMEOUT)

        assert isinstance(info.value.__cause__, NameTakenError)
        assert info.value.__cause__.holder_path == "root/a/slow"
        assert ref_of(tree, "x").path == "root/a/slow"

    def test_a_name_follows_restarts_and_a_call_by_name_waits_for_the_restart(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo", name="svc")])
        old = ref_of(tree, "svc")
        kill(old.pid)

        reply = tree.call("svc", "pid", timeout=HANG_TIMEOUT)  # may run while it restarts: waits

        assert reply != old.pid
        assert ref_of(tree, "svc").pid == reply

    def test_a_name_is_gone_with_its_child(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo", name="svc", restart=Restart.TEMPORARY)])
        ref = ref_of(tree, "svc")

        tree.terminate_child("echo")

        assert tree.whereis("svc") is None
        with pytest.raises(NoProc):
            tree.call("svc", "x")
        with pytest.raises(NoProc):
            call(ref, "x")
        tree.cast("svc", "nobody")  # a cast to nobody does nothing

    def test_a_stopped_child_fails_fast_without_waiting(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo", name="svc")])
        tree.terminate_child("echo")

        began = time.monotonic()
        with pytest.raises(NoProc):
            tree.call("svc", "x", timeout=LONG_CALL)  # by name: its supervisor says it is stopped
        with pytest.raises(NoProc):
            tree.call("echo", "x", timeout=LONG_CALL)  # by path: the same
        assert time.monotonic() - began < LONG_CALL / 4
        with pytest.raises(NoProc):
            tree.call("svc", "x", timeout=LONG_CALL, wait_for_restart=False)

    @pytest.mark.parametrize("ending", ["terminate_child", "stop"])
    def test_a_call_waiting_for_a_restart_learns_when_it_will_not_come(
        self, start_tree: Any, ending: str
    ) -> None:
        """A call by name with no timeout, waiting out an hour's backoff, ends when the child is ended."""
        hour = Backoff(initial=0.0, base=3600.0, factor=1.0, max=3600.0, jitter=0.0)
        tree = start_tree([Echo.child_spec("echo", name="svc", backoff=hour)])
        first = ref_of(tree, "svc")
        kill(first.pid)
        second = restarted(tree, "svc", first)
        kill(second.pid)  # the second consecutive restart waits an hour
        outcome: list[BaseException] = []

        def waiting_call() -> None:
            try:
                tree.call("svc", "x", timeout=None)
            except BaseException as error:
                outcome.append(error)

        caller = threading.Thread(target=waiting_call)
        caller.start()
        deadline = time.monotonic() + HANG_TIMEOUT
        while tree.which_child("echo").state is not ChildState.BACKOFF and time.monotonic() < deadline:
            pass  # one round trip per check
        if ending == "terminate_child":
            tree.terminate_child("echo")
        else:
            tree.stop()
        caller.join(HANG_TIMEOUT)

        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], NoProc)

    def test_a_call_to_a_session_that_does_not_exist_is_noproc_at_once(self) -> None:
        with Application() as app:
            began = time.monotonic()
            with pytest.raises(NoProc):
                app.session_manager.call("no-such-session", "ctx", "x", timeout=None)
            assert time.monotonic() - began < HANG_TIMEOUT / 3

    def test_a_failed_init_is_a_start_error(self, start_tree: Any) -> None:
        tree = start_tree([])

        with pytest.raises(StartError, match="cannot start") as info:
            tree.start_child(FailsInit.child_spec("f", "cannot start"))

        assert isinstance(info.value.__cause__, RuntimeError)
        assert tree.whereis("f") is None


class TestMonitor:
    def test_a_monitor_reports_the_exit_reason_and_its_fd_becomes_readable(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")

        with monitor(ref) as watch:
            assert watch.wait(0) is None
            assert select.select([watch], [], [], 0)[0] == []
            os.kill(ref.pid, signal.SIGKILL)
            assert select.select([watch], [], [], HANG_TIMEOUT)[0] == [watch]
            reason = watch.wait(0)

        assert reason is not None and reason.kind is ExitKind.KILLED

    def test_an_unread_monitor_of_a_big_exit_reason_does_not_stall_the_supervisor(
        self, start_tree: Any
    ) -> None:
        """The reason (a 1 MB message and its traceback) waits in the monitor's buffer, not in a send."""
        tree = start_tree([Echo.child_spec("echo", name="echo")])
        ref = ref_of(tree, "echo")
        unread = monitor(ref)
        try:
            with pytest.raises(ServerDown):
                call(ref, ("crash", "x" * 1_000_000), timeout=HANG_TIMEOUT)

            new = restarted(tree, "echo", ref)  # the supervisor restarted it, and answers
            assert tree.which_child("echo", timeout=HANG_TIMEOUT).pid == new.pid
            reason = unread.wait(HANG_TIMEOUT)  # and the monitor still gets the whole reason
            assert reason is not None and reason.message == "x" * 1_000_000
        finally:
            unread.close()

    def test_a_monitor_of_a_process_long_gone_is_noproc(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")
        gone = ServerRef(ref.path, 2**22 + 12345, 1, ref.private_dir, ref.scope, ref.key)

        with monitor(gone) as watch, pytest.raises(NoProc):
            watch.wait(HANG_TIMEOUT)

    def test_inside_a_server_a_monitor_notice_and_a_timer_reach_handle_info(
        self, start_tree: Any, events: EventSink
    ) -> None:
        tree = start_tree([Echo.child_spec("echo"), Ticker.child_spec("ticker", events.path)])
        watched = ref_of(tree, "echo")

        assert tree.call("ticker", ("after", 0.05, "tick")) == "set"
        assert tree.call("ticker", ("after_cancelled", 60, "never")) is True
        assert events.next()[:2] == ("info", "tick")
        assert tree.call("ticker", ("watch", watched)) == "watching"
        call(watched, ("stop", "shutdown", "ok"))

        kind, (path, reason), _ = events.next()
        assert (kind, path, reason.kind) == ("down", "root/echo", ExitKind.SHUTDOWN)


class TestTimersAndMonitorsEdges:
    def test_a_timer_beyond_epolls_limit_is_waited_for_in_steps(
        self, start_tree: Any, events: EventSink
    ) -> None:
        tree = start_tree([Ticker.child_spec("ticker", events.path)])
        pid = tree.call("ticker", "pid_of_nothing")  # Ticker answers None: a turn of its loop

        assert tree.call("ticker", ("after", 30 * 86400, "in a month")) == "set"
        assert tree.call("ticker", ("after", 0, "now")) == "set"
        assert events.next()[:2] == ("info", "now")
        assert pid is None and tree.which_child("ticker").restarts == 0

    def test_an_infinite_timer_is_a_value_error_in_the_handler(self, start_tree: Any) -> None:
        tree = start_tree([Ticker.child_spec("ticker", "unused")])

        with pytest.raises(ServerDown) as info:
            tree.call("ticker", ("after", float("inf"), "never"))

        assert info.value.reason is not None and "'seconds' must be finite" in (
            info.value.reason.message or ""
        )

    def test_stop_takes_an_exception_not_a_system_exit(self) -> None:
        with pytest.raises(TypeError, match="'reason' must be an Exception"):
            Stop(SystemExit(0))
        with pytest.raises(ValueError, match="'reason'"):
            Stop("crash")


class TestShutdown:
    def test_a_call_during_terminate_is_refused_not_run(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        """The call comes while terminate waits at the gate: refused then, not answered after it."""
        gate = str(tmp_path / "gate")
        tree = start_tree([SlowToTerminate.child_spec("slow", events.path, gate, shutdown=HANG_TIMEOUT)])
        ref = ref_of(tree, "slow")
        assert call(ref, "cached") == "cached"  # this thread's connection is open from now on
        stopper = threading.Thread(target=tree.terminate_child, args=("slow",))
        stopper.start()
        events.expect("terminating")
        try:
            with pytest.raises(NoProc):
                call(ref, "during terminate", timeout=LONG_CALL)
        finally:
            open_gate(gate)
            stopper.join(HANG_TIMEOUT)

    def test_sigterm_runs_terminate_after_the_message_in_progress(
        self, start_tree: Any, events: EventSink
    ) -> None:
        tree = start_tree([Echo.child_spec("echo", events.path)])
        events.expect("started", "echo")
        ref = ref_of(tree, "echo")
        replies: list[Any] = []
        caller = threading.Thread(
            target=lambda: replies.append(call(ref, ("sleep", 0.5), timeout=HANG_TIMEOUT))
        )
        caller.start()
        events.expect("sleeping", "echo")

        tree.terminate_child("echo")
        caller.join(HANG_TIMEOUT)

        assert replies == ["slept"]  # the message in progress finished and was answered
        kind, (_, reason), _ = events.next()
        assert (kind, reason.kind) == ("terminated", ExitKind.SHUTDOWN)


class TestConcurrency:
    def test_a_hundred_callers_from_threads_and_processes(self, start_tree: Any) -> None:
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")
        results: list[Any] = []
        lock = threading.Lock()

        def caller(n: int) -> None:
            for i in range(5):
                reply = call(ref, (n, i), timeout=HANG_TIMEOUT)
                with lock:
                    results.append(reply)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(80)]
        for thread in threads:
            thread.start()
        pids = [_fork_caller(ref, n) for n in range(20)]
        for thread in threads:
            thread.join(HANG_TIMEOUT)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]

        assert sorted(results) == sorted(("echo", (n, i)) for n in range(80) for i in range(5))
        assert statuses == [0] * 20
        assert call(ref, "executions") == 80 * 5 + 20 * 5 + 1


class TestPeersCannotStallAServer:
    def test_a_caller_that_never_reads_its_receipts_does_not_deafen_the_server(self, start_tree: Any) -> None:
        """Receipts a caller leaves unread wait in its own buffer; other callers are served meanwhile."""
        tree = start_tree([Gate.child_spec("gate", "unused", mailbox_max=1_000_000)])
        ref = ref_of(tree, "gate")
        rude = connect(ref.address, ref.key)
        rude_sock = socket.socket(fileno=os.dup(rude.fileno()))
        rude.close()
        try:
            rude_sock.settimeout(HANG_TIMEOUT)
            frame = pickle.dumps(("cast", 1, ref.incarnation, "x" * 200))
            # 20,000 casts, their receipts never read: far more than the sockets' buffers hold.
            rude_sock.sendall((struct.pack("!i", len(frame)) + frame) * 20_000)

            for n in range(20):
                assert call(ref, ("polite", n), timeout=HANG_TIMEOUT) == ("polite", n)
        finally:
            rude_sock.close()


class TestDescriptors:
    def test_callers_and_monitors_that_leave_leave_no_descriptor_behind(self, start_tree: Any) -> None:
        """The server's and its supervisor's descriptors come back to their counts once callers go."""
        tree = start_tree([Echo.child_spec("echo")])
        ref = ref_of(tree, "echo")
        call(ref, "warm up")  # this thread's connection: one for the rest of the test
        tree.count_children()  # and this thread's connection to the supervisor
        server_before, supervisor_before = fd_count(ref.pid), fd_count(tree.pid)

        def caller() -> None:
            call(ref, "from a thread that ends")  # its connection goes with the thread
            with monitor(ref):
                pass

        for _ in range(3):
            threads = [threading.Thread(target=caller) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(HANG_TIMEOUT)
        gc.collect()
        call(ref, "settle")  # the mailbox thread has read every end of file before this call

        deadline = time.monotonic() + HANG_TIMEOUT
        while fd_count(ref.pid) > server_before and time.monotonic() < deadline:
            call(ref, "settle")  # each call is a turn of the server's loops: no sleep
        assert fd_count(ref.pid) == server_before
        while fd_count(tree.pid) > supervisor_before and time.monotonic() < deadline:
            tree.count_children()  # a turn of the supervisor's loop: it reads the monitors' ends of file
        assert fd_count(tree.pid) == supervisor_before

    def test_a_caller_of_many_short_lived_servers_keeps_descriptors_for_the_live_ones(
        self, start_tree: Any
    ) -> None:
        tree = start_tree([])
        tree.start_child(Echo.child_spec("first", restart=Restart.TEMPORARY))
        tree.call("first", "warm up")
        before = fd_count(os.getpid())

        for n in range(30):
            tree.start_child(Echo.child_spec(f"s{n}", restart=Restart.TEMPORARY))
            assert tree.call(f"s{n}", n) == ("echo", n)
            tree.terminate_child(f"s{n}")
        tree.start_child(Echo.child_spec("last", restart=Restart.TEMPORARY))
        tree.call("last", "sweeps the links and watches of the servers that are gone")

        assert fd_count(os.getpid()) <= before + 2  # the last server's link and pidfd


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fork_caller(ref: ServerRef, n: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = all(call(ref, (n, i), timeout=HANG_TIMEOUT) == ("echo", (n, i)) for i in range(5))
            code = 0 if ok else 2
        finally:
            os._exit(code)
    return pid


class TestSessions:
    def test_a_sessions_server_is_called_from_the_user_and_from_another_sessions_worker(
        self, events: EventSink
    ) -> None:
        with Application() as app:
            sessions = app.session_manager
            sid = sessions.create_session(children=[Echo.child_spec("ctx")])
            own = sessions.session_supervisor(sid)
            other = sessions.create_session(
                children=[Forwarder.child_spec("fwd", sessions.whereis(sid, "ctx"))]
            )

            assert sessions.call(sid, "ctx", "hi") == ("echo", "hi")
            assert sessions.call(other, "fwd", "via") == ("forwarded", ("echo", "via"))
            identity = sessions.call(sid, "ctx", "whoami")
            assert identity == Identity(f"{own.path}/ctx", sid)
            assert sessions.call(sid, "ctx", "identity") == (f"{own.path}/ctx", sid)
            ref = sessions.whereis(sid, "ctx")
            assert ref is not None and ref.session_id == sid
            assert own.whereis("ctx") == ref  # the session's own handle opens its servers
            sessions.cast(sid, "ctx", "noted")
            assert sessions.call(sid, "ctx", "casts") == ["noted"]
            with pytest.raises(NoProc):
                sessions.call(sid, "missing", "x", timeout=0.2)

    def test_a_worker_in_another_session_given_the_sessions_handle_calls_a_server(
        self, events: EventSink
    ) -> None:
        with Application() as app:
            sessions = app.session_manager
            sid = sessions.create_session(children=[Echo.child_spec("ctx")])
            sessions.create_session(
                children=[
                    ChildSpec("caller", call_through_sessions, args=(sessions, sid, "ctx", events.path))
                ]
            )

            kind, reply, _ = events.next()

        assert (kind, reply) == ("reply", ("echo", "from another session"))

    def test_whoami_in_a_plain_worker_and_in_a_session(self, start_tree: Any, events: EventSink) -> None:
        start_tree([ChildSpec.supervisor("sub", [ChildSpec("w", report_identity, args=(events.path,))])])
        assert events.next()[:2] == ("identity", Identity("root/sub/w", None))
        with Application() as app:
            sid = app.session_manager.create_session(
                children=[ChildSpec("w", report_identity, args=(events.path,))]
            )
            _, identity, _ = events.next()

        assert identity.session_id == sid and identity.path.endswith(f"/{sid}/w")

    def test_a_session_key_does_not_open_another_sessions_server(self) -> None:
        with Application() as app:
            sessions = app.session_manager
            first = sessions.create_session(children=[Echo.child_spec("ctx", name="first-ctx")])
            second = sessions.create_session(children=[Echo.child_spec("ctx")])
            second_handle = sessions.session_supervisor(second)

            assert app.supervisor.whereis("first-ctx") == sessions.whereis(first, "ctx")
            with pytest.raises(Exception, match="does not open"):
                second_handle.whereis("first-ctx")


class Conversation(GenServer):
    """The issue's example server."""

    def init(self, system_prompt: str) -> None:
        self.history = [system_prompt]

    def handle_call(self, request: Any, caller: Any) -> int:
        self.history.append(request)
        return len(self.history)

    def handle_cast(self, message: Any) -> None:
        self.history.append(message)
