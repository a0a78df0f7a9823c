"""Strategies: exactly which children a restart stops and starts again, and in which order."""

from __future__ import annotations

import os
import signal

from supervisor import Restart, Strategy
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink

from .helpers import kill, pids, settle, worker

IDS = ("a", "b", "c")


def start_abc(start_tree, events: EventSink, strategy: Strategy, **flags):
    handle = start_tree([worker(events, i) for i in IDS], strategy, **flags)
    return handle, events.expect_all("started", IDS)


class TestOneForOne:
    def test_only_the_dead_child_restarts(self, start_tree, events: EventSink) -> None:
        """Under one_for_one the siblings of a dead child keep their pids."""
        handle, old = start_abc(start_tree, events, Strategy.ONE_FOR_ONE)

        kill(old["b"])
        new_b = events.expect("started", "b")
        settle(handle)

        assert pids(handle) == {"a": old["a"], "b": new_b, "c": old["c"]}


class TestOneForAll:
    def test_every_child_restarts_in_start_order_after_the_others_stop_in_reverse(
        self, start_tree, events: EventSink
    ) -> None:
        """Under one_for_all the others stop in reverse, then all start in order; no old pid survives."""
        handle, old = start_abc(start_tree, events, Strategy.ONE_FOR_ALL)

        kill(old["b"])
        seen = [events.next()[:2] for _ in range(5)]

        assert seen == [
            ("stopping", "c"),
            ("stopping", "a"),
            ("started", "a"),
            ("started", "b"),
            ("started", "c"),
        ]
        assert wait_gone(list(old.values()), HANG_TIMEOUT) == []
        new = pids(handle)
        assert set(new.values()).isdisjoint(old.values())
        assert None not in new.values()

    def test_temporary_bystander_is_terminated_and_removed(self, start_tree, events: EventSink) -> None:
        """A temporary sibling is stopped by the group restart and forgotten, not restarted."""
        specs = [worker(events, "a"), worker(events, "t", restart=Restart.TEMPORARY), worker(events, "c")]
        handle = start_tree(specs, Strategy.ONE_FOR_ALL)
        old = events.expect_all("started", {"a", "t", "c"})

        kill(old["a"])
        events.expect_all("started", {"a", "c"})
        settle(handle)

        assert wait_gone([old["t"]], HANG_TIMEOUT) == []
        assert list(pids(handle)) == ["a", "c"]

    def test_child_stopped_by_terminate_child_is_restarted_with_the_group(
        self, start_tree, events: EventSink
    ) -> None:
        """one_for_all starts every non-temporary child, including one stopped through the API."""
        handle, old = start_abc(start_tree, events, Strategy.ONE_FOR_ALL)
        handle.terminate_child("c")
        assert pids(handle)["c"] is None

        kill(old["a"])
        new = events.expect_all("started", IDS)
        settle(handle)

        assert pids(handle) == new

    def test_group_restart_counts_as_one_restart(self, start_tree, events: EventSink) -> None:
        """Restarting three children for one death counts once: max_restarts=1 allows it."""
        handle, old = start_abc(start_tree, events, Strategy.ONE_FOR_ALL, max_restarts=1, max_seconds=60)

        kill(old["a"])
        new = events.expect_all("started", IDS)
        settle(handle)

        assert not handle.stopped
        assert pids(handle) == new


class TestRestForOne:
    def test_the_dead_child_and_later_ones_restart_earlier_ones_keep_their_pids(
        self, start_tree, events: EventSink
    ) -> None:
        """Under rest_for_one the later children stop in reverse and restart in order; earlier ones stay."""
        specs = [worker(events, i) for i in ("a", "b", "c", "d")]
        handle = start_tree(specs, Strategy.REST_FOR_ONE)
        old = events.expect_all("started", {"a", "b", "c", "d"})

        kill(old["b"])
        seen = [events.next()[:2] for _ in range(5)]
        settle(handle)

        assert seen == [
            ("stopping", "d"),
            ("stopping", "c"),
            ("started", "b"),
            ("started", "c"),
            ("started", "d"),
        ]
        assert wait_gone([old["c"], old["d"]], HANG_TIMEOUT) == []
        new = pids(handle)
        assert new["a"] == old["a"]
        assert {new["b"], new["c"], new["d"]}.isdisjoint(old.values())

    def test_last_child_dying_restarts_only_itself(self, start_tree, events: EventSink) -> None:
        """Under rest_for_one the death of the last child touches no sibling."""
        handle, old = start_abc(start_tree, events, Strategy.REST_FOR_ONE)

        kill(old["c"])
        new_c = events.expect("started", "c")
        settle(handle)

        assert pids(handle) == {"a": old["a"], "b": old["b"], "c": new_c}


def test_transient_normal_exit_touches_no_sibling(start_tree, events: EventSink) -> None:
    """A transient child's normal exit is no restart, so one_for_all leaves its siblings alone."""
    specs = [worker(events, "a"), worker(events, "t", restart=Restart.TRANSIENT), worker(events, "c")]
    handle = start_tree(specs, Strategy.ONE_FOR_ALL)
    old = events.expect_all("started", {"a", "t", "c"})

    os.kill(old["t"], signal.SIGTERM)
    assert wait_gone([old["t"]], HANG_TIMEOUT) == []
    settle(handle)

    assert pids(handle) == {"a": old["a"], "t": None, "c": old["c"]}


def test_order_of_children(start_tree, events: EventSink) -> None:
    """
    Children start in spec order; a rest_for_one restart stops the later ones in reverse, then starts
    them in order, each back in its place; a stop then goes in reverse start order, restarted ones included.
    """
    ids = ("a", "b", "c", "d", "e")
    handle = start_tree([worker(events, i) for i in ids], Strategy.REST_FOR_ONE)
    assert [events.next()[:2] for _ in ids] == [("started", i) for i in ids]
    old = pids(handle)

    kill(old["c"])
    seen = [events.next()[:2] for _ in range(5)]
    settle(handle)

    assert seen == [
        ("stopping", "e"),
        ("stopping", "d"),
        ("started", "c"),
        ("started", "d"),
        ("started", "e"),
    ]
    assert list(pids(handle)) == list(ids)
    handle.stop()
    assert [events.next()[:2] for _ in ids] == [("stopping", i) for i in reversed(ids)]
