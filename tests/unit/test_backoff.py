"""Backoff: the value and its validation, the delay sequence as pure arithmetic, the reactor's timers."""

from __future__ import annotations

import datetime
import math
import pickle

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import Backoff, ChildInfo, ChildSpec, ChildState, ChildType, Restart, SessionOptions
from supervisor._backoff import consecutive_restarts, nominal_delay, restart_delay
from supervisor._engine.reactor import Timers
from tests.children import sleep_forever

seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
backoffs = st.builds(
    Backoff,
    initial=seconds,
    base=seconds,
    factor=st.floats(min_value=1.0, max_value=100.0),
    max=seconds,
    jitter=st.floats(min_value=0.0, max_value=1.0),
    reset_after=st.floats(min_value=1e-6, max_value=1e6),
)
counts = st.integers(min_value=1, max_value=5000)
spreads = st.floats(min_value=-1.0, max_value=1.0)


class TestBackoffValue:
    def test_defaults_are_the_documented_ones(self) -> None:
        """Backoff() is initial 0, base 0.1, factor 2, max 30, jitter 0.2, reset_after 60."""
        assert attrs.astuple(Backoff()) == (0.0, 0.1, 2.0, 30.0, 0.2, 60.0)

    def test_ints_become_float_seconds(self) -> None:
        """Every field is a float, whatever number it was given as."""
        backoff = Backoff(initial=1, base=2, factor=3, max=40, jitter=0, reset_after=5)

        assert all(type(value) is float for value in attrs.astuple(backoff))

    def test_is_frozen_and_pickles(self) -> None:
        """A Backoff cannot change in place and comes back equal from pickle."""
        backoff = Backoff(base=1.5)

        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            backoff.base = 2.0  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(backoff)) == backoff

    @pytest.mark.parametrize(
        ("field", "value", "error", "expected"),
        [
            ("initial", -0.5, ValueError, "seconds >= 0"),
            ("initial", math.inf, ValueError, "seconds >= 0"),
            ("base", -1, ValueError, "seconds >= 0"),
            ("base", "1", TypeError, "seconds >= 0"),
            ("factor", 0.5, ValueError, "a number >= 1"),
            ("factor", math.nan, ValueError, "a number >= 1"),
            ("max", -1.0, ValueError, "seconds >= 0"),
            ("max", None, TypeError, "seconds >= 0"),
            ("jitter", 1.5, ValueError, "a fraction from 0 to 1"),
            ("jitter", -0.1, ValueError, "a fraction from 0 to 1"),
            ("jitter", True, TypeError, "a fraction from 0 to 1"),
            ("reset_after", 0, ValueError, "seconds > 0"),
            ("reset_after", math.inf, ValueError, "seconds > 0"),
        ],
    )
    def test_a_bad_field_is_named_with_its_value(
        self, field: str, value: object, error: type[Exception], expected: str
    ) -> None:
        """The error names the field, what it must be and the value it got."""
        with pytest.raises(error) as raised:
            Backoff(**{field: value})  # type: ignore[arg-type]

        assert f"'{field}' must be {expected}" in str(raised.value)
        assert repr(value) in str(raised.value)

    def test_child_spec_takes_a_backoff_and_defaults_to_none(self) -> None:
        """ChildSpec.backoff is None unless given; ChildSpec.supervisor passes one on."""
        nested = ChildSpec.supervisor("sub", [], backoff=Backoff(base=1))

        assert ChildSpec("w", sleep_forever).backoff is None
        assert ChildSpec("w", sleep_forever, backoff=Backoff()).backoff == Backoff()
        assert nested.backoff == Backoff(base=1)

    def test_child_spec_refuses_a_backoff_that_is_not_one(self) -> None:
        """A dict where a Backoff belongs raises TypeError naming 'backoff'."""
        with pytest.raises(TypeError, match=r"'backoff' must be a Backoff or None \(got \{'base': 1\}"):
            ChildSpec("w", sleep_forever, backoff={"base": 1})  # type: ignore[arg-type]

    def test_session_options_take_a_backoff_and_refuse_anything_else(self) -> None:
        """SessionOptions.backoff is validated by name; a valid one is kept."""
        options = SessionOptions(restart=Restart.PERMANENT, backoff=Backoff(base=2))

        assert options.backoff == Backoff(base=2)
        with pytest.raises(TypeError, match="'backoff' must be a Backoff or None"):
            SessionOptions(backoff=2.0)  # type: ignore[arg-type]


class TestDelaySequence:
    def test_the_sequence_of_the_documented_example(self) -> None:
        """initial, then base, base*factor, ... capped at max (no jitter)."""
        backoff = Backoff(initial=0.0, base=0.1, factor=2.0, max=0.5, jitter=0.0)

        delays = [restart_delay(backoff, n, 1.0) for n in range(1, 7)]

        assert delays == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.5, 0.5])

    def test_a_huge_count_gives_max_instead_of_overflowing(self) -> None:
        """factor ** n beyond a float's range is the cap."""
        assert nominal_delay(Backoff(base=1.0, factor=10.0, max=7.0), 10_000) == 7.0

    def test_count_below_one_is_refused(self) -> None:
        """There is no 0-th restart."""
        with pytest.raises(ValueError, match="'n' must be an int >= 1"):
            nominal_delay(Backoff(), 0)

    @given(backoffs, counts)
    def test_nominal_delay_is_initial_then_capped_growth(self, backoff: Backoff, n: int) -> None:
        """delay(1) is initial; delay(n >= 2) is min(max, base * factor ** (n - 2)), never above max."""
        delay = nominal_delay(backoff, n)

        if n == 1:
            assert delay == backoff.initial
        else:
            assert 0.0 <= delay <= backoff.max
            try:
                grown = backoff.base * backoff.factor ** (n - 2)
            except OverflowError:
                grown = math.inf
            assert delay == min(backoff.max, grown)

    @given(backoffs, st.integers(min_value=2, max_value=5000))
    def test_nominal_delay_never_shrinks_from_the_second_restart_on(self, backoff: Backoff, n: int) -> None:
        """With factor >= 1, each consecutive delay is at least the one before."""
        assert nominal_delay(backoff, n + 1) >= nominal_delay(backoff, n)

    @given(backoffs, counts, spreads)
    def test_jitter_stays_within_plus_or_minus_jitter_times_the_delay(
        self, backoff: Backoff, n: int, spread: float
    ) -> None:
        """The spread delay is within [d * (1 - jitter), d * (1 + jitter)] and never negative."""
        nominal = nominal_delay(backoff, n)
        delay = restart_delay(backoff, n, spread)

        assert delay >= 0.0
        assert nominal * (1 - backoff.jitter) - 1e-9 * nominal <= delay
        assert delay <= nominal * (1 + backoff.jitter) + 1e-9 * nominal

    @given(backoffs, counts)
    def test_zero_jitter_or_zero_spread_gives_the_nominal_delay(self, backoff: Backoff, n: int) -> None:
        """Without spread the delay is exactly the nominal one."""
        assert restart_delay(backoff, n, 0.0) == nominal_delay(backoff, n)
        assert restart_delay(attrs.evolve(backoff, jitter=0.0), n, 1.0) == nominal_delay(backoff, n)

    @given(backoffs, spreads)
    def test_a_zero_initial_first_restart_is_immediate_whatever_the_jitter(
        self, backoff: Backoff, spread: float
    ) -> None:
        """With initial 0 the first restart has no delay (the fast path: no timer)."""
        assert restart_delay(attrs.evolve(backoff, initial=0.0), 1, spread) == 0.0


class TestReset:
    @given(backoffs, st.integers(min_value=0, max_value=10_000), st.floats(min_value=0.0, max_value=1e7))
    def test_a_long_enough_run_starts_the_sequence_again(
        self, backoff: Backoff, previous: int, ran: float
    ) -> None:
        """ran >= reset_after gives 1; a shorter run gives previous + 1."""
        count = consecutive_restarts(backoff, previous, ran)

        assert count == (1 if ran >= backoff.reset_after else previous + 1)

    @given(backoffs, st.integers(min_value=0, max_value=10_000))
    def test_a_child_that_never_became_ready_continues_the_sequence(
        self, backoff: Backoff, previous: int
    ) -> None:
        """A failed start (no run time) is the next restart of the sequence."""
        assert consecutive_restarts(backoff, previous, None) == previous + 1

    def test_the_sequence_after_a_reset_repeats_from_initial(self) -> None:
        """Counts 1, 2, 3, then a long run: 1 again, so the delay is initial again."""
        backoff = Backoff(initial=0.0, base=1.0, factor=2.0, jitter=0.0, reset_after=10.0)
        count = 0
        for ran in (None, 0.5, 0.5):
            count = consecutive_restarts(backoff, count, ran)
        assert (count, restart_delay(backoff, count, 0.0)) == (3, 2.0)

        count = consecutive_restarts(backoff, count, 10.0)

        assert (count, restart_delay(backoff, count, 0.0)) == (1, 0.0)


class TestChildInfo:
    def test_old_positional_form_still_builds_and_derives_a_state(self) -> None:
        """ChildInfo(id, pid, type, restart[, restarting]) keeps working; state follows pid/restarting."""
        running = ChildInfo("a", 42, ChildType.WORKER, Restart.PERMANENT)
        stopped = ChildInfo("b", None, ChildType.WORKER, Restart.PERMANENT)
        restarting = ChildInfo("c", None, ChildType.WORKER, Restart.PERMANENT, True)

        assert (running.state, stopped.state, restarting.state) == (
            ChildState.RUNNING,
            ChildState.STOPPED,
            ChildState.RESTARTING,
        )
        assert (running.restarts, running.last_exit, running.started_at, running.retry_at) == (
            0,
            None,
            None,
            None,
        )

    def test_new_fields_come_last_and_pickle(self) -> None:
        """The new fields follow the old ones (start_info included), in order, and a full value pickles."""
        names = [field.name for field in attrs.fields(ChildInfo)]
        when = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        info = ChildInfo(
            "a",
            None,
            ChildType.WORKER,
            Restart.PERMANENT,
            False,
            None,
            ChildState.BACKOFF,
            2,
            None,
            None,
            when,
        )

        assert names == [
            *("id", "pid", "type", "restart", "restarting", "start_info"),
            *("state", "restarts", "last_exit", "started_at", "retry_at"),
        ]
        assert pickle.loads(pickle.dumps(info)) == info


class TestTimers:
    def test_due_timers_run_once_in_time_order_and_cancelled_ones_never(self) -> None:
        """run_due runs what is due, earliest first, once; a cancelled timer is skipped and not a deadline."""
        timers = Timers()
        ran: list[str] = []
        timers.call_at(2.0, lambda: ran.append("b"))
        first = timers.call_at(1.0, lambda: ran.append("a"))
        cancelled = timers.call_at(0.5, lambda: ran.append("never"))
        timers.call_at(9.0, lambda: ran.append("later"))
        Timers.cancel(cancelled)

        assert timers.deadline() == 1.0
        timers.run_due(2.0)
        Timers.cancel(first)  # already run: nothing changes
        timers.run_due(2.0)

        assert ran == ["a", "b"]
        assert timers.deadline() == 9.0
