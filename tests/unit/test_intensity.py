"""add_restart: OTP's restart intensity as arithmetic over restart times."""

from __future__ import annotations

import pytest

from supervisor._intensity import add_restart


def restarts_until_escalation(times: list[float], max_restarts: int, max_seconds: float) -> int | None:
    """Feed restarts at *times*; the index of the first that escalates, or None."""
    kept: tuple[float, ...] = ()
    for index, now in enumerate(times):
        kept, exceeded = add_restart(kept, now, max_restarts, max_seconds)
        if exceeded:
            return index
    return None


class TestAddRestart:
    def test_zero_max_restarts_escalates_at_the_first_restart(self) -> None:
        """With max_restarts=0, the very first restart exceeds the intensity."""
        kept, exceeded = add_restart((), 100.0, 0, 5.0)

        assert exceeded
        assert kept == (100.0,)

    @pytest.mark.parametrize("max_restarts", [1, 2, 3, 10])
    def test_max_restarts_fit_in_a_window_and_the_next_escalates(self, max_restarts: int) -> None:
        """Restarts at one instant: the first max_restarts fit, the one after escalates."""
        times = [50.0] * (max_restarts + 1)

        assert restarts_until_escalation(times, max_restarts, 5.0) == max_restarts

    def test_restart_is_recorded_last(self) -> None:
        """The returned times keep the old ones still in the window, in order, then now."""
        kept, exceeded = add_restart((1.0, 2.0), 3.0, 5, 5.0)

        assert kept == (1.0, 2.0, 3.0)
        assert not exceeded

    def test_entries_older_than_max_seconds_are_dropped(self) -> None:
        """Times at or before now - max_seconds leave the window; later ones stay."""
        kept, exceeded = add_restart((0.0, 4.0, 5.0, 5.5), 10.0, 3, 5.0)

        assert kept == (5.5, 10.0)
        assert not exceeded

    def test_window_is_exactly_max_seconds_wide(self) -> None:
        """A restart exactly max_seconds ago is out of the window: it is (now - max_seconds, now]."""
        kept, exceeded = add_restart((5.0,), 10.0, 1, 5.0)

        assert kept == (10.0,)
        assert not exceeded

    def test_restart_just_inside_the_window_counts(self) -> None:
        """A restart a little less than max_seconds ago still counts."""
        kept, exceeded = add_restart((5.25,), 10.0, 1, 5.0)

        assert kept == (5.25, 10.0)
        assert exceeded

    def test_spaced_out_restarts_never_escalate(self) -> None:
        """One restart every max_seconds never escalates with max_restarts=1."""
        times = [float(5 * i) for i in range(100)]

        assert restarts_until_escalation(times, 1, 5.0) is None

    def test_burst_after_quiet_period_escalates_only_on_its_own_count(self) -> None:
        """Old restarts do not add to a later burst once they have left the window."""
        times = [0.0, 1.0, 2.0, 100.0, 100.5, 101.0, 101.5]

        assert restarts_until_escalation(times, 3, 5.0) == 6

    def test_input_is_not_changed(self) -> None:
        """add_restart is pure: the tuple passed in is left as it was."""
        times = (1.0, 2.0)

        add_restart(times, 10.0, 3, 5.0)

        assert times == (1.0, 2.0)
