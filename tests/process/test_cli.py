"""
The ``otp-supervisor`` command line, run as a subprocess against live named trees started here.

Each test publishes its trees in a runtime directory of its own (``XDG_RUNTIME_DIR``, inherited by the
CLI), so tests and other runs never see each other's trees. Waits are for output lines and events, with
deadlines only against hangs.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import Application, Backoff, ChildSpec, Supervisor, SupervisorHandle, _published, call, cast
from supervisor.cli import target
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, sleep_forever
from tests.servers import Gate, open_gate

from .conftest import LogFile
from .helpers import kill, settle, worker


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """
    A private XDG_RUNTIME_DIR (0700) for this test's trees and its CLI runs; in the temp directory,
    whose parents another user may traverse, so that the owner check itself is what refuses them.
    """
    directory = Path(tempfile.mkdtemp(prefix="otp-cli-test-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shop(runtime: Path, events: EventSink) -> Iterator[SupervisorHandle]:
    """A plain tree named 'shop': a worker 'cache' and a supervisor 'api' with 'listener' and 'handler'."""
    children = [
        worker(events, "cache"),
        ChildSpec.supervisor("api", [worker(events, "listener"), worker(events, "handler")]),
    ]
    with Supervisor.start(children, name="shop") as handle:
        events.expect_all("started", ["cache", "listener", "handler"])
        yield handle


@pytest.fixture
def agents(runtime: Path) -> Iterator[Application]:
    """An Application named 'agents' with one session (a worker 'ctx', metadata {'task': 'refactor'})."""
    with Application(name="agents") as app:
        app.session_manager.create_session(
            children=[ChildSpec("ctx", sleep_forever)], metadata={"task": "refactor"}
        )
        yield app


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m supervisor ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, timeout=HANG_TIMEOUT * 2
    )


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def assert_clean_error(result: subprocess.CompletedProcess[str], status: int, words: str) -> None:
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr


def child(status: dict[str, Any], path: str) -> dict[str, Any]:
    """The child at *path* in a ``status --json`` document."""
    pending = list(status["children"])
    for session in status["sessions"]:
        pending.extend(session["children"])
    while pending:
        item = pending.pop()
        if item.get("path") == path:
            return item
        pending.extend(item.get("children", []))
    raise AssertionError(f"no child at {path} in {status}")


class LineReader:
    """Lines of a pipe, read with a deadline (select on the descriptor; never a sleep)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def line(self, timeout: float = HANG_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"no line within {timeout} s (so far: {self.buffer!r})")
            data = os.read(self.fd, 65536)
            if not data:
                raise EOFError(f"the pipe ended (so far: {self.buffer!r})")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


class TestFinding:
    def test_ls_lists_both_trees_with_children_and_sessions(
        self, shop: SupervisorHandle, agents: Application
    ) -> None:
        """``ls`` shows every running named tree: kind, root pid, running children and sessions."""
        trees = {tree["name"]: tree for tree in cli_json("ls")["trees"]}
        assert set(trees) == {"shop", "agents"}
        assert (trees["shop"]["kind"], trees["shop"]["pid"]) == ("tree", shop.pid)
        assert (trees["shop"]["children"], trees["shop"]["running"], trees["shop"]["sessions"]) == (
            2,
            2,
            None,
        )
        assert (trees["agents"]["kind"], trees["agents"]["sessions"]) == ("application", 1)
        text = cli("ls")
        assert text.returncode == 0
        assert "shop" in text.stdout and "agents" in text.stdout and str(shop.pid) in text.stdout

    def test_a_tree_without_a_name_publishes_nothing(self, runtime: Path, start_tree: Any) -> None:
        """Without name= nothing is published: ``ls`` lists nothing."""
        start_tree([ChildSpec("w", sleep_forever)])
        assert cli_json("ls") == {"trees": []}

    def test_the_descriptor_is_private_and_removed_on_stop(self, runtime: Path) -> None:
        """The descriptor is mode 0600 in a 0700 directory, and gone once the tree is stopped."""
        with Supervisor.start([ChildSpec("w", sleep_forever)], name="short") as handle:
            descriptor = _published.read("short")
            assert descriptor is not None and descriptor.pid == handle.pid
            assert os.stat(descriptor.file).st_mode & 0o777 == 0o600
            assert os.stat(os.path.dirname(descriptor.file)).st_mode & 0o777 == 0o700
        assert not os.path.exists(descriptor.file)

    def test_a_name_in_use_by_a_running_tree_is_refused(self, shop: SupervisorHandle) -> None:
        """A second tree with a live tree's name raises ValueError naming it; nothing is started."""
        with pytest.raises(ValueError, match="'shop' is already published"):
            Supervisor.start([ChildSpec("w", sleep_forever)], name="shop")

    def test_a_stale_descriptor_of_a_killed_tree_is_ignored(self, runtime: Path) -> None:
        """SIGKILL a named root: its descriptor stays, but ``ls`` and ``status`` ignore it; name free."""
        handle = Supervisor.start([ChildSpec("w", sleep_forever)], name="doomed")
        try:
            descriptor = _published.read("doomed")
            assert descriptor is not None
            os.kill(descriptor.pid, signal.SIGKILL)
            assert wait_gone([descriptor.pid], HANG_TIMEOUT) == []
            assert os.path.exists(descriptor.file)  # nobody removed it: it is stale
            assert cli_json("ls") == {"trees": []}
            assert_clean_error(cli("status", "--tree", "doomed"), 2, "no running tree named 'doomed'")
            with Supervisor.start([ChildSpec("w", sleep_forever)], name="doomed") as again:
                assert [tree["pid"] for tree in cli_json("ls")["trees"]] == [again.pid]
        finally:
            handle.stop(timeout=HANG_TIMEOUT)

    def test_the_root_removes_its_descriptor_when_the_starter_dies(
        self, runtime: Path, tmp_path: Path
    ) -> None:
        """A starter SIGKILLed with its tree running: the root stops and removes the descriptor itself."""
        script = tmp_path / "starter.py"
        script.write_text(
            "import sys\nfrom supervisor import ChildSpec, Supervisor\n"
            "from tests.children import sleep_forever\n"
            "if __name__ == '__main__':\n"
            "    handle = Supervisor.start([ChildSpec('w', sleep_forever)], name='orphaned')\n"
            "    print(handle.pid, flush=True)\n    sys.stdin.read()\n"
        )
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        starter = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        try:
            root = int(LineReader(starter.stdout).line())
            descriptor = _published.read("orphaned")
            assert descriptor is not None and descriptor.pid == root
            starter.kill()
            starter.wait(HANG_TIMEOUT)
            assert wait_gone([root], HANG_TIMEOUT) == []
            assert not os.path.exists(descriptor.file)
        finally:
            starter.kill()
            starter.wait(HANG_TIMEOUT)
            assert starter.stdin is not None and starter.stdout is not None
            starter.stdin.close()
            starter.stdout.close()

    def test_the_only_running_tree_needs_no_name_and_several_do(
        self, shop: SupervisorHandle, agents: Application
    ) -> None:
        """Without --tree, two running trees are an error naming both (exit 2)."""
        assert_clean_error(cli("status"), 2, "several trees are running (agents, shop)")


class TestStatus:
    def test_status_shows_the_tree_and_exits_0_when_healthy(self, shop: SupervisorHandle) -> None:
        """Text: every child with state, pid and restarts under its supervisor; exit 0."""
        result = cli("status", "--tree", "shop")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"shop  tree  root pid {shop.pid}")
        assert any("cache  running  pid" in line for line in lines)
        assert any(line.startswith("    ├── listener  running  pid") for line in lines)  # under api
        assert lines[-1] == "healthy"

    def test_status_json_follows_the_documented_schema(self, shop: SupervisorHandle) -> None:
        """--json: tree, pid, started_at, children with id, path, pid, type, restart, state, ..."""
        status = cli_json("status", "--tree", "shop")
        assert (status["tree"], status["pid"], status["healthy"], status["sessions"]) == (
            "shop",
            shop.pid,
            True,
            [],
        )
        api = child(status, "root/api")
        assert {
            "id",
            "path",
            "pid",
            "type",
            "restart",
            "state",
            "restarts",
            "started_at",
            "last_exit",
        } <= set(api)
        assert (api["type"], api["restart"], api["state"]) == ("supervisor", "permanent", "running")
        assert [item["path"] for item in api["children"]] == ["root/api/listener", "root/api/handler"]
        assert child(status, "root/cache")["pid"] == shop.which_child("cache").pid

    def test_status_of_a_path_shows_that_part(self, shop: SupervisorHandle) -> None:
        """``status api/handler`` shows the one child."""
        status = cli_json("status", "--tree", "shop", "api/handler")
        assert [item["path"] for item in status["children"]] == ["root/api/handler"]

    def test_a_terminated_permanent_child_makes_status_exit_1(self, shop: SupervisorHandle) -> None:
        """A permanent child terminated by the operator is not running although it should: exit 1."""
        shop.child_supervisor("api").terminate_child("handler")
        result = cli("status", "--tree", "shop")
        assert result.returncode == 1
        assert "UNHEALTHY: not running: root/api/handler" in result.stdout
        status = cli_json("status", "--tree", "shop")
        assert (status["healthy"], status["unhealthy"]) == (False, ["root/api/handler"])
        assert child(status, "root/api/handler")["state"] == "stopped"

    def test_a_permanent_child_in_backoff_makes_status_exit_1(self, runtime: Path, events: EventSink) -> None:
        """A child that keeps crashing waits in backoff: status exits 1 and shows its last exit reason."""
        long = Backoff(initial=0.0, base=3600.0, factor=2.0, max=7200.0, jitter=0.0)
        with Supervisor.start([worker(events, "flaky", backoff=long)], name="flaky") as handle:
            kill(events.expect("started", "flaky"))
            kill(events.expect("started", "flaky"))
            settle(handle)  # the second death is handled: the child waits in its backoff
            status = cli_json("status", "--tree", "flaky")
            flaky = child(status, "root/flaky")
            assert (status["healthy"], flaky["pid"]) == (False, None)
            assert flaky["restarts"] >= 1
            assert flaky["last_exit"]["kind"] == "killed"
            assert cli("status", "--tree", "flaky").returncode == 1

    def test_an_application_shows_its_sessions(self, agents: Application) -> None:
        """Sessions come with status, metadata and children; the registry and manager are children."""
        status = cli_json("status", "--tree", "agents")
        assert [item["id"] for item in status["children"]] == ["registry", "session_manager"]
        (session,) = status["sessions"]
        assert (session["status"], session["metadata"], session["restarts"]) == (
            "active",
            {"task": "refactor"},
            0,
        )
        assert [item["id"] for item in session["children"]] == ["ctx"]
        assert session["children"][0]["path"] == f"root/session_manager/{session['session_id']}/ctx"
        text = cli("status", "--tree", "agents").stdout
        assert session["session_id"] in text and '{"task": "refactor"}' in text


class TestActions:
    def test_terminate_start_and_restart_a_child(self, shop: SupervisorHandle) -> None:
        """terminate stops it, start runs it again (a new pid), restart replaces the running one."""
        api = shop.child_supervisor("api")
        first = api.which_child("handler").pid
        result = cli("terminate", "api/handler", "--tree", "shop")
        assert (result.returncode, result.stdout.strip()) == (0, "root/api/handler: terminated")
        assert api.which_child("handler").state.value == "stopped"
        started = cli_json("start", "root/api/handler", "--tree", "shop")
        assert started["pid"] == api.which_child("handler").pid != first
        restarted = cli_json("restart", "cache", "--tree", "shop")
        assert restarted["pid"] == shop.which_child("cache").pid
        assert cli("status", "--tree", "shop").returncode == 0

    def test_unknown_trees_paths_and_sessions_exit_2_without_a_traceback(
        self, shop: SupervisorHandle, agents: Application
    ) -> None:
        """Each names what does not exist, exits 2, and prints no traceback."""
        assert_clean_error(cli("status", "--tree", "nosuch"), 2, "no running tree named 'nosuch'")
        assert_clean_error(cli("status", "--tree", "shop", "api/nosuch"), 2, "no child at root/api/nosuch")
        assert_clean_error(cli("terminate", "nosuch", "--tree", "shop"), 2, "no child at root/nosuch")
        assert_clean_error(cli("start", "nosuch/child", "--tree", "shop"), 2, "no supervisor at root/nosuch")
        assert_clean_error(cli("restart", "cache/x", "--tree", "shop"), 2, "no supervisor at root/cache")
        assert_clean_error(
            cli("sessions", "info", "nosuch", "--tree", "agents"), 2, "no live session 'nosuch'"
        )
        assert_clean_error(cli("sessions", "terminate", "nosuch", "--tree", "agents"), 2, "no live session")
        assert_clean_error(cli("sessions", "list", "--tree", "shop"), 2, "not an Application")
        error = cli("status", "--tree", "nosuch", "--json")
        assert json.loads(error.stdout) == {"error": json.loads(error.stdout)["error"], "status": 2}

    def test_bad_option_values_exit_2_naming_the_option(self, shop: SupervisorHandle) -> None:
        """Bad --timeout, --window, -n and --tree values: one line naming the option, exit 2, no traceback."""
        for value in ("-1", "nan", "inf", "0"):
            assert_clean_error(
                cli("status", "--tree", "shop", "--timeout", value), 2, "--timeout must be finite"
            )
        for value in ("nan", "-5"):
            assert_clean_error(
                cli("events", "--tree", "shop", "--window", value), 2, "--window must be finite"
            )
        assert_clean_error(cli("tail", "cache", "--tree", "shop", "-n", "-1"), 2, "-n/--lines must be")
        assert_clean_error(cli("status", "--tree", "../x"), 2, "--tree must be")

    def test_tail_of_a_path_the_tree_does_not_have_exits_2(
        self, runtime: Path, events: EventSink, log_file: LogFile
    ) -> None:
        with Supervisor.start([worker(events, "w")], name="logged", logging_config=log_file.config):
            events.expect("started", "w")
            assert_clean_error(cli("tail", "nothere", "--tree", "logged"), 2, "no child at root/nothere")
            assert cli("tail", "w", "--tree", "logged").returncode == 0  # no report yet, but it exists

    def test_start_of_a_running_child_is_refused_with_exit_1(self, shop: SupervisorHandle) -> None:
        """OTP's restart_child of a running child is an error: a message and exit 1."""
        assert_clean_error(cli("start", "cache", "--tree", "shop"), 1, "start root/cache")


class TestSessions:
    def test_sessions_list_info_and_terminate(self, agents: Application) -> None:
        """list shows the session, info its entry, terminate removes it."""
        (listed,) = cli_json("sessions", "list", "--tree", "agents")["sessions"]
        session_id = listed["session_id"]
        assert listed["pid"] == agents.session_manager.get_session_pid(session_id)
        text = cli("sessions", "list", "--tree", "agents")
        assert text.returncode == 0 and session_id in text.stdout and "active" in text.stdout
        info = cli_json("sessions", "info", session_id, "--tree", "agents")
        assert (info["session_id"], info["metadata"]) == (session_id, {"task": "refactor"})
        result = cli("sessions", "terminate", session_id, "--tree", "agents")
        assert (result.returncode, result.stdout.strip()) == (0, f"session {session_id}: terminated")
        assert agents.session_manager.list_sessions() == []


class TestTopEventsTail:
    def test_top_once_prints_one_frame_of_every_process(self, shop: SupervisorHandle) -> None:
        """One frame: a row per process (root included) with its pid, CPU and memory."""
        result = cli("top", "--once", "--tree", "shop")
        assert result.returncode == 0, result.stderr
        assert "CPU%" in result.stdout and "RSS MiB" in result.stdout
        for info in [*shop.which_children(), *shop.child_supervisor("api").which_children()]:
            assert str(info.pid) in result.stdout
        assert str(shop.pid) in result.stdout
        frame = cli_json("top", "--once", "--tree", "shop")
        rows = {row["path"]: row for row in frame["processes"]}
        assert rows["root"]["pid"] == shop.pid and rows["root/api/handler"]["rss_bytes"] > 0
        assert rows["root/cache"]["cpu_percent"] >= 0.0

    def test_top_shows_the_mailbox_depth_of_a_genserver(
        self, runtime: Path, events: EventSink, tmp_path: Path
    ) -> None:
        """A server blocked in a handler with two casts queued shows a mailbox of 2; a worker shows none."""
        gate = str(tmp_path / "gate")
        children = [Gate.child_spec("gate", events.path), worker(events, "plain")]
        with Supervisor.start(children, name="mail") as tree:
            ref = tree.whereis("gate")
            assert ref is not None
            holder = threading.Thread(target=call, args=(ref, ("block_until", gate)), kwargs={"timeout": 60})
            holder.start()
            try:
                events.expect("blocked")
                cast(ref, 1)
                cast(ref, 2)
                frame = cli_json("top", "--once", "--tree", "mail")
            finally:
                open_gate(gate)
                holder.join(60)
        rows = {row["path"]: row for row in frame["processes"]}
        assert rows["root/gate"]["mailbox"] == 2
        assert rows["root/plain"]["mailbox"] is None

    def test_events_follow_sees_a_sigkill_and_the_restart(
        self, shop: SupervisorHandle, events: EventSink
    ) -> None:
        """``events --follow --json`` prints the worker's exit (killed) and its restart, line by line."""
        follower = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "events", "--follow", "--json", "--tree", "shop"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert "following tree 'shop'" in LineReader(follower.stderr).line()
            victim = shop.child_supervisor("api").which_child("listener").pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            out = LineReader(follower.stdout)
            seen = [json.loads(out.line())]
            while seen[-1]["kind"] != "restarted" or seen[-1]["path"] != "root/api/listener":
                seen.append(json.loads(out.line()))
            exited = next(event for event in seen if event["kind"] == "exited")
            assert (exited["path"], exited["pid"], exited["reason"]["kind"]) == (
                "root/api/listener",
                victim,
                "killed",
            )
            assert seen[-1]["pid"] == shop.child_supervisor("api").which_child("listener").pid
        finally:
            follower.kill()
            follower.wait(HANG_TIMEOUT)
            assert follower.stdout is not None and follower.stderr is not None
            follower.stdout.close()
            follower.stderr.close()

    def test_events_without_follow_ends_after_its_window(self, agents: Application) -> None:
        """Without --follow the command listens for --window seconds, then exits 0."""
        result = cli("events", "--tree", "agents", "--window", "0.2")
        assert result.returncode == 0, result.stderr

    def test_tail_shows_the_crash_reports_of_a_child(
        self, runtime: Path, log_file: LogFile, events: EventSink
    ) -> None:
        """With a logging_config writing a file, ``tail PATH`` prints that child's reports only."""
        children = [worker(events, "w"), worker(events, "other")]
        with Supervisor.start(children, logging_config=log_file.config, name="logged") as handle:
            kill(events.expect("started", "w"))
            events.expect("started", "w")
            handle.which_child("w")  # the restart is done: its report is written
            result = cli("tail", "w", "--tree", "logged")
            assert result.returncode == 0, result.stderr
            assert "child 'w'" in result.stdout and "killed" in result.stdout
            assert "'other'" not in result.stdout

    def test_tail_without_a_log_file_says_there_is_none(self, shop: SupervisorHandle) -> None:
        """A tree logging to stderr has no log to read: a clear message, exit 1."""
        assert_clean_error(cli("tail", "cache", "--tree", "shop"), 1, "there is no log to read")


@pytest.mark.skipif(
    os.geteuid() != 0, reason="dropping to another user (uid 65534) needs root; runs as non-root"
)
def test_another_user_can_neither_find_read_nor_connect(shop: SupervisorHandle, runtime: Path) -> None:
    """As uid 65534: the runtime directory is not trusted, the descriptor unreadable, the socket closed."""
    descriptor = _published.read("shop")
    assert descriptor is not None
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, try, report, exit without running the test's cleanup
        outcome: dict[str, Any] = {}
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                target.find("shop", 5.0)
                outcome["find"] = "found"
            except target.CliError as error:
                outcome["find"] = error.message
            try:
                open(descriptor.file).close()
                outcome["read"] = "read"
            except PermissionError:
                outcome["read"] = "refused"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                try:
                    sock.connect(descriptor.address)
                    outcome["connect"] = "connected"
                except PermissionError:
                    outcome["connect"] = "refused"
        except BaseException as error:  # reported to the test, which fails on the missing keys
            outcome["error"] = repr(error)
        finally:
            os.write(writer, json.dumps(outcome).encode())
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as report:
        outcome = json.loads(report.read() or "{}")
    os.waitpid(pid, 0)
    assert "error" not in outcome, outcome
    assert outcome["read"] == "refused"
    assert outcome["connect"] == "refused"
    assert "not trusted" in outcome["find"]
