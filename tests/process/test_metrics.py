"""
Prometheus metrics (``supervisor.metrics``): scraped over HTTP from ``Application(metrics_port=0)`` and
from ``collect(handle)`` through ``generate_latest``, after real crashes.

Every wait is on an event stream of the test's own, never on time: once the test has read a
``restarted`` (or ``intensity_reached``) event, a scrape counts it, because a scrape asks every
supervisor first (each has sent its events before it answers) and then reads what the collector was
sent. A session created after the collector subscribed is followed once a scrape (or the collector's
thread) has read the session's start, so the tests scrape once before they kill a session's child.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor import (
    Application,
    CallTimeout,
    ChildSpec,
    NoProc,
    ServerDown,
    SupervisorHandle,
    call,
)
from supervisor.messaging import client
from supervisor.metrics import TreeMetrics, collect, serve
from tests.children import HANG_TIMEOUT, sleep_forever
from tests.servers import Echo

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample *name* with exactly *labels*; 0 when it is absent (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_http(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_TIMEOUT) as response:
        assert response.status == 200
        return parse(response.read().decode())


def scrape(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


def wait_for(stream: Any, kind: str, path: str) -> None:
    """Read *stream* until the event *kind* of *path*; fails the test if it does not come."""
    while True:
        event = stream.next_event(HANG_TIMEOUT)
        assert event is not None, f"no {kind} event of {path} within {HANG_TIMEOUT} s"
        if event.kind == kind and event.path == path:
            return


def running_pid(handle: SupervisorHandle, child_id: str) -> int:
    pid = handle.which_child(child_id).pid
    assert pid is not None
    return pid


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def collected(start_tree: Any, registry: CollectorRegistry) -> Iterator[tuple[SupervisorHandle, TreeMetrics]]:
    """A tree (a worker, a server, a nested supervisor that gives up at its first restart), collected."""
    tree: SupervisorHandle = start_tree(
        [
            ChildSpec("worker", sleep_forever),
            Echo.child_spec("echo", name="echo"),
            ChildSpec.supervisor("fragile", [ChildSpec("inner", sleep_forever)], max_restarts=0),
        ]
    )
    with collect(tree, registry=registry, tree="plain") as metrics:
        yield tree, metrics


def test_sigkilled_child_is_counted_once_with_reason_killed_and_is_up_again(
    collected: tuple[SupervisorHandle, TreeMetrics], registry: CollectorRegistry
) -> None:
    """After a SIGKILL and its restart, the child's restart counter is one more, reason killed; it is up."""
    tree, _ = collected
    before = scrape(registry)
    assert value(before, "otp_supervisor_child_up", tree="plain", child="root/worker") == 1.0
    old_start = value(before, "otp_supervisor_child_start_time_seconds", tree="plain", child="root/worker")
    assert old_start > 0
    with tree.events(subtree=True) as events:
        os.kill(running_pid(tree, "worker"), signal.SIGKILL)
        wait_for(events, "restarted", "root/worker")
    after = scrape(registry)
    restarts = "otp_supervisor_child_restarts_total"
    for reason in ("killed", "exception", "shutdown", "unknown"):
        expected = value(before, restarts, tree="plain", child="root/worker", reason=reason)
        expected += 1 if reason == "killed" else 0
        assert value(after, restarts, tree="plain", child="root/worker", reason=reason) == expected
    assert value(after, "otp_supervisor_child_up", tree="plain", child="root/worker") == 1.0
    assert value(after, "otp_supervisor_child_up", tree="plain", child="root/fragile/inner") == 1.0
    new_start = value(after, "otp_supervisor_child_start_time_seconds", tree="plain", child="root/worker")
    assert new_start >= old_start
    assert value(after, restarts, tree="plain", child="root/echo", reason="killed") == 0
    assert value(after, "otp_supervisor_events_lost_total", tree="plain") == 0


def test_supervisor_that_gives_up_is_counted(
    collected: tuple[SupervisorHandle, TreeMetrics], registry: CollectorRegistry
) -> None:
    """A nested supervisor past its intensity counts one intensity_reached, and its own restart."""
    tree, _ = collected
    fragile = tree.child_supervisor("fragile")
    before = scrape(registry)
    assert (
        value(before, "otp_supervisor_intensity_reached_total", tree="plain", supervisor="root/fragile") == 0
    )
    with tree.events(subtree=True) as events:
        os.kill(running_pid(fragile, "inner"), signal.SIGKILL)
        wait_for(events, "intensity_reached", "root/fragile")
        wait_for(events, "restarted", "root/fragile")
    after = scrape(registry)
    assert (
        value(after, "otp_supervisor_intensity_reached_total", tree="plain", supervisor="root/fragile") == 1
    )
    restarts = "otp_supervisor_child_restarts_total"
    assert value(after, restarts, tree="plain", child="root/fragile", reason="shutdown") == 1
    assert value(after, "otp_supervisor_child_up", tree="plain", child="root/fragile") == 1.0
    assert value(after, "otp_supervisor_child_up", tree="plain", child="root/fragile/inner") == 1.0


def test_calls_made_in_this_process_are_timed_by_outcome(
    collected: tuple[SupervisorHandle, TreeMetrics], registry: CollectorRegistry
) -> None:
    """Replies, timeouts, ServerDown and NoProc of this process's calls land in the histogram's outcomes."""
    tree, _ = collected
    count = "otp_supervisor_call_duration_seconds_count"
    before = scrape(registry)
    ref = tree.whereis("echo")
    assert ref is not None
    for n in range(3):
        assert call(ref, n) == ("echo", n)
    with pytest.raises(CallTimeout):
        call(ref, ("sleep", 2.0), timeout=0.05)
    ref = tree.whereis("echo")  # the timed-out call's connection was dropped; the server still runs
    assert ref is not None
    with tree.events() as events:
        with pytest.raises(ServerDown):
            call(ref, ("crash", "metrics"), timeout=HANG_TIMEOUT)
        wait_for(events, "restarted", "root/echo")
    with pytest.raises(NoProc):
        call(ref, "pid", timeout=HANG_TIMEOUT)  # the old incarnation
    assert tree.call("echo", "again", timeout=HANG_TIMEOUT) == ("echo", "again")
    after = scrape(registry)
    expected = {"reply": 4, "timeout": 1, "server_down": 1, "noproc": 1, "overloaded": 0}
    for outcome, calls in expected.items():
        assert value(after, count, outcome=outcome) - value(before, count, outcome=outcome) == calls, outcome
    assert value(after, "otp_supervisor_call_duration_seconds_sum", outcome="reply") > 0
    assert value(after, "otp_supervisor_call_duration_seconds_bucket", outcome="reply", le="+Inf") == value(
        after, count, outcome="reply"
    )


def test_calls_are_not_observed_once_nothing_collects(start_tree: Any) -> None:
    """The call hook is installed while a collector lives and removed with the last one."""
    tree: SupervisorHandle = start_tree([ChildSpec("worker", sleep_forever)])
    assert client._call_observer is None
    first = collect(tree, registry=CollectorRegistry())
    second = collect(tree, registry=CollectorRegistry())
    assert client._call_observer is not None
    first.close()
    assert client._call_observer is not None
    second.close()
    second.close()
    assert client._call_observer is None
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("otp-supervisor")]


def test_several_trees_share_one_registry_by_their_tree_label(
    start_tree: Any, registry: CollectorRegistry
) -> None:
    """Two trees collected into one registry are one metric family each, told apart by ``tree``."""
    first: SupervisorHandle = start_tree([ChildSpec("worker", sleep_forever)])
    second: SupervisorHandle = start_tree([ChildSpec("worker", sleep_forever)])
    with collect(first, registry=registry, tree="a"), collect(second, registry=registry, tree="b"):
        text = generate_latest(registry).decode()
    assert text.count("# TYPE otp_supervisor_child_up gauge") == 1
    samples = parse(text)
    assert value(samples, "otp_supervisor_child_up", tree="a", child="root/worker") == 1.0
    assert value(samples, "otp_supervisor_child_up", tree="b", child="root/worker") == 1.0
    assert "otp_supervisor_child_up" not in generate_latest(registry).decode()


def test_application_serves_metrics_over_http_until_it_stops() -> None:
    """Application(metrics_port=0): sessions by status, a session child's SIGKILL counted, the port closed."""
    with Application(metrics_port=0) as app:
        port = app.metrics_port
        assert isinstance(port, int) and port > 0
        sessions = app.session_manager
        first = sessions.create_session(children=[ChildSpec("ctx", sleep_forever)])
        second = sessions.create_session(children=[ChildSpec("ctx", sleep_forever)])
        samples = scrape_http(port)  # also follows the new sessions' supervisors from now on
        assert value(samples, "otp_supervisor_sessions", tree="root", status="active") == 2
        assert value(samples, "otp_supervisor_sessions", tree="root", status="initializing") == 0
        assert value(samples, "otp_supervisor_sessions", tree="root", status="terminating") == 0
        ctx = f"root/session_manager/{first}/ctx"
        assert value(samples, "otp_supervisor_child_up", tree="root", child=ctx) == 1.0
        assert value(samples, "otp_supervisor_child_up", tree="root", child="root/registry") == 1.0

        session = sessions.session_supervisor(first)
        with session.events() as events:
            os.kill(running_pid(session, "ctx"), signal.SIGKILL)
            wait_for(events, "restarted", ctx)
        sessions.terminate_session(second)
        samples = scrape_http(port)
        restarts = "otp_supervisor_child_restarts_total"
        assert value(samples, restarts, tree="root", child=ctx, reason="killed") == 1
        assert value(samples, "otp_supervisor_child_up", tree="root", child=ctx) == 1.0
        assert value(samples, "otp_supervisor_sessions", tree="root", status="active") == 1
        assert (
            "otp_supervisor_child_up",
            frozenset({("tree", "root"), ("child", ctx[: -len("/ctx")])}),
        ) in samples
    assert app.metrics_port is None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_TIMEOUT)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("otp-supervisor")]


def test_a_named_application_labels_its_metrics_with_its_name() -> None:
    """``Application(name=..., metrics_port=0)``: the ``tree`` label is the name."""
    name = f"metrics-{uuid.uuid4().hex[:12]}"
    with Application(metrics_port=0, name=name) as app:
        assert app.metrics_port is not None
        samples = scrape_http(app.metrics_port)
    assert value(samples, "otp_supervisor_child_up", tree=name, child="root/registry") == 1.0
    assert value(samples, "otp_supervisor_sessions", tree=name, status="active") == 0.0


def test_serve_answers_404_off_the_metrics_path(start_tree: Any) -> None:
    """``serve(handle)`` answers /metrics and nothing else."""
    tree: SupervisorHandle = start_tree([ChildSpec("worker", sleep_forever)])
    with serve(tree) as server:
        assert (
            value(scrape_http(server.port), "otp_supervisor_child_up", tree="root", child="root/worker") == 1
        )
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=HANG_TIMEOUT)
        assert raised.value.code == 404


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"metrics_port": "9100"}, TypeError),
        ({"metrics_port": True}, TypeError),
        ({"metrics_port": 70000}, ValueError),
        ({"metrics_port": -1}, ValueError),
        ({"metrics_port": 0, "metrics_host": ""}, ValueError),
        ({"metrics_port": 0, "metrics_host": None}, TypeError),
    ],
)
def test_bad_metrics_options_are_refused_before_anything_starts(options: dict[str, Any], error: type) -> None:
    """A bad metrics_port or metrics_host raises at once, naming it."""
    with pytest.raises(error, match="metrics_"):
        Application(**options)


def test_a_taken_metrics_port_stops_the_application_again() -> None:
    """An Application whose metrics port is taken raises OSError and leaves no process behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app = Application(metrics_port=taken.getsockname()[1])
        with pytest.raises(OSError):
            app.start()
    assert app.supervisor.stopped
    assert app.metrics_port is None


_WITHOUT_PROMETHEUS = """
import sys
sys.modules["prometheus_client"] = None  # as if the extra were not installed
import supervisor
try:
    import supervisor.metrics
except ImportError as error:
    print(error)
try:
    supervisor.Application(metrics_port=0).start()
except ImportError as error:
    print("application:", error)
"""


def test_prometheus_client_stays_optional() -> None:
    """``import supervisor`` loads no prometheus_client; without it, metrics say which extra to install."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, supervisor; print('prometheus_client' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
    missing = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PROMETHEUS],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=True,
    )
    lines = missing.stdout.splitlines()
    assert len(lines) == 2, missing
    assert "otp-supervisor[metrics]" in lines[0]
    assert lines[1].startswith("application:") and "otp-supervisor[metrics]" in lines[1]
