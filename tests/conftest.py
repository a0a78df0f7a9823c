"""Shared fixtures: every test must leave no process behind, and trees are always stopped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from supervisor import DynamicSupervisor, Supervisor, SupervisorHandle
from supervisor.testing import assert_no_leftovers, descendants

from .children import EventSink


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a new descendant process or a zombie behind."""
    before = {entry.pid for entry in descendants(os.getpid())}
    yield
    assert_no_leftovers(os.getpid(), before)


@pytest.fixture
def events(tmp_path: Any) -> Iterator[EventSink]:
    """A sink children report events to; tests block on it instead of sleeping."""
    sink = EventSink(str(tmp_path / "events.sock"))
    yield sink
    sink.close()


def stopped_at_the_end(start: Callable[..., SupervisorHandle]) -> Iterator[Callable[..., SupervisorHandle]]:
    """Yield *start*, then stop every supervisor it started, last first (a fixture's body)."""
    handles: list[SupervisorHandle] = []

    def started(*args: Any, **kwargs: Any) -> SupervisorHandle:
        handle = start(*args, **kwargs)
        handles.append(handle)
        return handle

    yield started
    for handle in reversed(handles):
        handle.stop(timeout=30)


@pytest.fixture
def start_tree() -> Iterator[Any]:
    """``Supervisor.start`` that stops every tree it started when the test ends, pass or fail."""
    yield from stopped_at_the_end(Supervisor.start)


@pytest.fixture
def start_dynamic() -> Iterator[Any]:
    """``DynamicSupervisor.start`` that stops every supervisor it started when the test ends."""
    yield from stopped_at_the_end(DynamicSupervisor.start)
