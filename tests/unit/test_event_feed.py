"""
The engine's event feed without a supervisor: a socket pair stands for a subscriber's connection.

The feed must never block on a subscriber: publishing thousands of notices to a socket nobody reads
returns at once each time (a blocking write would hang this test, which ``pytest-timeout`` bounds).
What the subscriber then reads is the notices that fit, a ``lost`` notice counting the rest, and,
after it, new notices again. The loop's epoll set is a recording stand-in.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from multiprocess.connection import Connection

from supervisor import ChildSpec, ExitReason
from supervisor._engine import events as events_module
from supervisor._engine.events import EventFeed
from supervisor._engine.hooks import ChildEvent
from supervisor._protocol import (
    NEWS_EXITED,
    NEWS_KINDS,
    NEWS_LOST,
    NEWS_RESTARTED,
    NEWS_STARTED,
    Notice,
    Subscribe,
)
from supervisor._wire import loads, recv_frame

from .. import children


class FakeReactor:
    """What the feed asks of the loop's epoll set, recorded."""

    def __init__(self) -> None:
        self.watched: dict[int, Any] = {}
        self.writable: dict[int, bool] = {}

    def watch(self, fd: int, owner: Any = None) -> int:
        self.watched[fd] = owner
        return fd

    def unwatch(self, fd: int) -> None:
        self.watched.pop(fd, None)
        self.writable.pop(fd, None)

    def want_writable(self, fd: int, wanted: bool) -> None:
        assert fd in self.watched
        self.writable[fd] = wanted


SPEC = ChildSpec("w", children.sleep_forever)
NESTED = ChildSpec.supervisor("sub", [SPEC])


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    """The supervisor's end (a Connection, as the control server hands it over) and the client's."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn = Connection(ours.detach())
    yield conn, theirs
    theirs.close()
    if not conn.closed:
        conn.close()


def read_available(sock: socket.socket) -> list[Any]:
    """Every whole frame the client can read now, decoded, without blocking (stops at the end)."""
    found: list[Any] = []
    while select.select([sock], [], [], 0)[0]:
        try:
            found.append(loads(recv_frame(sock)))
        except EOFError:
            break
    return found


def subscribed(
    pair: tuple[Connection, socket.socket], *, buffer: int = 1000, nested: bool = False
) -> tuple[EventFeed, FakeReactor, Any]:
    reactor = FakeReactor()
    feed = EventFeed(reactor, lambda: [("sub", 4242)])  # type: ignore[arg-type]
    feed.subscribe(pair[0], Subscribe(NEWS_KINDS, buffer, nested))
    return feed, reactor, pair[0].fileno()


class TestSubscription:
    def test_the_first_frame_is_the_answer_with_the_pid_and_the_nested_supervisors(
        self, pair: tuple[Connection, socket.socket]
    ) -> None:
        feed, reactor, fd = subscribed(pair, nested=True)

        frames = read_available(pair[1])

        assert frames[0][0] == "ok"
        assert frames[0][1][1] == [("sub", 4242)]
        assert reactor.watched == {fd: feed}

    def test_notices_follow_in_the_order_of_the_hooks(self, pair: tuple[Connection, socket.socket]) -> None:
        feed, _, _ = subscribed(pair)
        feed.child_ready(ChildEvent("w", 10, SPEC), None)
        feed.child_down(ChildEvent("w", None, SPEC, last_pid=10), ExitReason.killed(), True)
        feed.child_ready(ChildEvent("w", 11, SPEC, last_pid=10, automatic=True), None)
        feed.child_ready(ChildEvent("sub", 12, NESTED), None)

        notices = read_available(pair[1])[1:]

        assert [(n.kind, n.child_id, n.pid) for n in notices] == [
            (NEWS_STARTED, "w", 10),
            (NEWS_EXITED, "w", 10),
            (NEWS_RESTARTED, "w", 11),
            (NEWS_STARTED, "sub", 12),
        ]
        assert notices[1].reason == ExitReason.killed() and notices[1].restarting
        assert [n.supervisor for n in notices] == [False, False, False, True]

    def test_only_the_kinds_asked_for_are_sent(self, pair: tuple[Connection, socket.socket]) -> None:
        reactor = FakeReactor()
        feed = EventFeed(reactor, list)  # type: ignore[arg-type]
        feed.subscribe(pair[0], Subscribe(frozenset({NEWS_EXITED})))
        feed.child_starting(ChildEvent("w", 10, SPEC))
        feed.child_ready(ChildEvent("w", 10, SPEC), None)
        feed.child_down(ChildEvent("w", None, SPEC, last_pid=10), ExitReason.normal(), False)
        feed.child_removed(ChildEvent("w", None, SPEC, last_pid=10))

        notices = read_available(pair[1])[1:]

        assert [n.kind for n in notices] == [NEWS_EXITED]

    def test_a_subscriber_that_closes_is_dropped_and_its_descriptor_closed(
        self, pair: tuple[Connection, socket.socket]
    ) -> None:
        feed, reactor, fd = subscribed(pair)
        pair[1].close()

        feed.on_ready(fd)

        assert feed.subscribers == {} and reactor.watched == {}
        assert pair[0].closed or _closed(pair[0])
        feed.child_ready(ChildEvent("w", 10, SPEC), None)  # nobody to tell: nothing happens


class TestSlowSubscriber:
    def test_a_full_socket_buffers_then_counts_and_sends_lost_once_caught_up(
        self, pair: tuple[Connection, socket.socket]
    ) -> None:
        """Nobody reads: every publish returns; then the reader gets k notices, lost(n - k), then new ones."""
        feed, reactor, fd = subscribed(pair, buffer=20)
        total = 5000
        for pid in range(total):
            feed.child_ready(ChildEvent("w", pid, SPEC), None)
        assert reactor.writable[fd] is True  # the loop now wakes when the socket drains

        received: list[Notice] = []
        while True:
            frames = read_available(pair[1])
            received.extend(f for f in frames if isinstance(f, Notice))
            if not reactor.writable.get(fd):
                break
            feed.on_ready(fd)  # the loop saw the socket writable

        kept = [n for n in received if n.kind != NEWS_LOST]
        lost = [n for n in received if n.kind == NEWS_LOST]
        assert [n.pid for n in kept] == list(range(len(kept)))
        assert len(lost) == 1 and received[-1] is lost[0]
        assert lost[0].count == total - len(kept) > 0

        feed.child_ready(ChildEvent("w", total, SPEC), None)

        assert [n.pid for n in read_available(pair[1])] == [total]

    def test_waiting_notices_are_bounded_in_bytes_too(
        self, pair: tuple[Connection, socket.socket], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Big exit reasons cannot pile up past MAX_QUEUED_BYTES: the rest is counted as lost."""
        monkeypatch.setattr(events_module, "MAX_QUEUED_BYTES", 256 * 1024)
        feed, _, _ = subscribed(pair, buffer=1_000_000)
        big = ExitReason.from_exception(ValueError("x" * 100_000))
        for pid in range(200):  # ~20 MB of notices offered to a reader that reads nothing
            feed.child_down(ChildEvent("w", None, SPEC, last_pid=pid), big, False)

        subscriber = next(iter(feed.subscribers.values()))

        assert subscriber.queued_bytes <= 256 * 1024
        assert subscriber.lost > 0

    def test_close_sends_what_fits_and_closes(self, pair: tuple[Connection, socket.socket]) -> None:
        feed, reactor, _ = subscribed(pair)
        feed.child_ready(ChildEvent("w", 10, SPEC), None)

        feed.close()

        assert feed.subscribers == {} and reactor.watched == {}
        assert [getattr(f, "pid", None) for f in read_available(pair[1])][1:] == [10]
        assert pair[1].recv(1) == b""  # the end of the stream


def _closed(conn: Connection) -> bool:
    try:
        conn.fileno()
    except OSError:
        return True
    return False
