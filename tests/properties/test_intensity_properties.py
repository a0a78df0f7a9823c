"""add_restart against a model that keeps every restart time ever made."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor._intensity import add_restart

from ..strategies import max_seconds_values

gaps = st.lists(
    st.floats(min_value=0, max_value=20, allow_nan=False) | st.sampled_from([0.0, 1.0, 5.0]), max_size=30
)


def times_from(start: float, steps: list[float]) -> list[float]:
    times, now = [], start
    for step in steps:
        now += step
        times.append(now)
    return times


@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    gaps,
    st.integers(min_value=0, max_value=8),
    max_seconds_values,
)
def test_matches_a_model_of_every_restart(
    start: float, steps: list[float], max_restarts: int, max_seconds: float
) -> None:
    """At each restart, exceeded iff more than max_restarts of all restarts so far are in the window."""
    history: list[float] = []
    kept: tuple[float, ...] = ()
    for now in times_from(start, steps):
        history.append(now)
        kept, exceeded = add_restart(kept, now, max_restarts, max_seconds)

        in_window = [t for t in history if t > now - max_seconds]
        assert list(kept) == in_window
        assert exceeded == (len(in_window) > max_restarts)


@given(gaps, st.integers(min_value=0, max_value=8), max_seconds_values)
def test_a_run_that_never_escalates_keeps_at_most_max_restarts(
    steps: list[float], max_restarts: int, max_seconds: float
) -> None:
    """Until the first escalation the window never holds more than max_restarts times."""
    kept: tuple[float, ...] = ()
    for now in times_from(0.0, steps):
        kept, exceeded = add_restart(kept, now, max_restarts, max_seconds)
        if exceeded:
            assert len(kept) == max_restarts + 1
            break
        assert len(kept) <= max_restarts
