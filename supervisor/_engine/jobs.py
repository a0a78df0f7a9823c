"""
Jobs: the supervisor's work that waits on children, as generators run in lanes.

A job is a generator that yields a :class:`Wait` (fds, a deadline) and is resumed with the fds that
became ready (an empty list: the deadline passed). Starting a child until it is ready, stopping one by
its shutdown spec, a group restart: each is a job, so the loop keeps serving while it waits.

Jobs in one lane run one at a time in arrival order, as OTP's supervisor handles one message at a
time. A static supervisor has one lane; a concurrent (dynamic) one has a lane per child, so one
child's slow start delays no other child. :meth:`Scheduler.take_all` empties every lane at once: a
stop preempts whatever runs. This module schedules; it decides nothing about children.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Generator
from typing import Any

import attrs

__all__ = ["Job", "Lane", "Pending", "Scheduler", "Wait", "all_of"]


@attrs.frozen
class Wait:
    """What a job waits for: any of *fds* ready, or *deadline* (monotonic seconds) passed."""

    fds: tuple[Any, ...]
    deadline: float | None = None


Job = Generator[Wait, list[Any], Any]


@attrs.define
class Pending:
    """A queued or running job, the client connection awaiting its reply (if any), and its wait."""

    job: Job
    conn: Any = None
    wait: Wait | None = None


@attrs.define
class Lane:
    """Jobs that run one at a time: all of a static supervisor's, or one child's in a dynamic one."""

    current: Pending | None = None
    queue: collections.deque[Pending] = attrs.Factory(collections.deque)


class Scheduler:
    """
    The lanes of one supervisor, and the running of their jobs.

    Args:
        concurrent: a lane per child key instead of one for all.
        on_done: called when a job returns.
        on_crash: called when a job raises (it is already out of its lane); the exception is active.
    """

    def __init__(
        self,
        concurrent: bool,
        on_done: Callable[[Pending], None],
        on_crash: Callable[[Pending], None],
    ) -> None:
        self.concurrent = concurrent
        self.lanes: dict[str, Lane] = {}
        self.halted = False  # set once the supervisor has finished: nothing more is started
        self._on_done = on_done
        self._on_crash = on_crash

    def enqueue(self, key: str, pending: Pending) -> None:
        """Queue *pending* in the lane of *key* (the child's id; ignored unless concurrent)."""
        lane_key = key if self.concurrent else ""
        self.lanes.setdefault(lane_key, Lane()).queue.append(pending)

    def schedule(self) -> None:
        """Start the next job of every idle lane, until each lane is busy or empty."""
        progressed = True
        while progressed and not self.halted:
            progressed = False
            for key, lane in list(self.lanes.items()):
                if lane.current is None and lane.queue:
                    lane.current = lane.queue.popleft()
                    self.advance(lane, None)
                    progressed = True
                elif lane.current is None and self.lanes.get(key) is lane:
                    del self.lanes[key]

    def waits(self) -> list[tuple[Lane, Wait]]:
        """Every running job's current wait, with its lane."""
        return [
            (lane, lane.current.wait) for lane in self.lanes.values() if lane.current and lane.current.wait
        ]

    def resume(self, waits: list[tuple[Lane, Wait]], ready: set[Any], now: float) -> None:
        """Resume each job of *waits* (taken before the turn's wait) whose fds fired or deadline passed."""
        for lane, job_wait in waits:
            if lane.current is None or lane.current.wait is not job_wait:
                continue
            fired = [fd for fd in job_wait.fds if fd in ready]
            if fired or (job_wait.deadline is not None and now >= job_wait.deadline):
                self.advance(lane, fired)

    def advance(self, lane: Lane, fired: list[Any] | None) -> None:
        """Resume the lane's running job with *fired* (None to start it)."""
        pending = lane.current
        assert pending is not None
        try:
            pending.wait = pending.job.send(fired)  # type: ignore[arg-type]
        except StopIteration:
            lane.current = None
            self._on_done(pending)
        except Exception:
            lane.current = None
            self._on_crash(pending)

    def take_all(self) -> list[Pending]:
        """Empty every lane; return the running and queued jobs, lane by lane, for the caller to close."""
        taken: list[Pending] = []
        lanes, self.lanes = list(self.lanes.values()), {}
        for lane in lanes:
            if lane.current is not None:
                taken.append(lane.current)
            taken.extend(lane.queue)
            lane.current = None
            lane.queue.clear()
        return taken


def all_of(jobs: list[Job]) -> Job:
    """One job that runs *jobs* at once, each resumed with its own fds, until all have returned."""
    waits: dict[int, Wait] = {}
    for index, job in enumerate(jobs):
        waits[index] = next(job)
    while waits:
        deadlines = [w.deadline for w in waits.values() if w.deadline is not None]
        fds = tuple(fd for w in waits.values() for fd in w.fds)
        fired = yield Wait(fds, min(deadlines) if deadlines else None)
        now = time.monotonic()
        for index, job_wait in list(waits.items()):
            mine = [fd for fd in job_wait.fds if fd in fired]
            if mine or (job_wait.deadline is not None and now >= job_wait.deadline):
                try:
                    waits[index] = jobs[index].send(mine)
                except StopIteration:
                    del waits[index]
