"""Shared fixtures: every test must leave no process behind, and trees are always stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import Supervisor, SupervisorHandle
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


@pytest.fixture
def start_tree() -> Iterator[Any]:
    """``Supervisor.start`` that stops every tree it started when the test ends, pass or fail."""
    handles: list[SupervisorHandle] = []

    def start(*args: Any, **kwargs: Any) -> SupervisorHandle:
        handle = Supervisor.start(*args, **kwargs)
        handles.append(handle)
        return handle

    yield start
    for handle in reversed(handles):
        handle.stop(timeout=30)
