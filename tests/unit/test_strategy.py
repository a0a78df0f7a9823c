"""should_restart and restart_set: OTP's do_restart and restart/3 decisions."""

from __future__ import annotations

import pytest

from supervisor import ExitKind, ExitReason, Restart, Strategy
from supervisor._strategy import restart_set, should_restart

from .. import children


def crashed() -> ExitReason:
    try:
        children.crash()
    except ValueError as exc:
        return ExitReason.from_exception(exc)
    raise AssertionError("crash() did not raise")


REASONS = {
    ExitKind.NORMAL: ExitReason.normal(),
    ExitKind.SHUTDOWN: ExitReason.shutdown(),
    ExitKind.KILLED: ExitReason.killed(),
    ExitKind.SIGNALED: ExitReason.from_exitcode(-11),
    ExitKind.EXIT_CODE: ExitReason.from_exitcode(3),
    ExitKind.EXCEPTION: crashed(),
}

EXPECTED = {
    Restart.PERMANENT: set(ExitKind),
    Restart.TRANSIENT: {ExitKind.KILLED, ExitKind.SIGNALED, ExitKind.EXIT_CODE, ExitKind.EXCEPTION},
    Restart.TEMPORARY: set(),
}
"""For each restart type, the reason kinds after which the child is restarted."""


class TestShouldRestart:
    def test_table_covers_every_kind(self) -> None:
        """The table below has a reason for every ExitKind, so no pair goes untested."""
        assert set(REASONS) == set(ExitKind)

    @pytest.mark.parametrize("restart", list(Restart))
    @pytest.mark.parametrize("kind", list(ExitKind))
    def test_every_restart_type_and_reason_kind(self, restart: Restart, kind: ExitKind) -> None:
        """Permanent: always; transient: only after an abnormal exit; temporary: never."""
        assert should_restart(restart, REASONS[kind]) == (kind in EXPECTED[restart])

    def test_transient_is_not_restarted_after_shutdown_with_a_term(self) -> None:
        """A transient child's exit with shutdown(term) is normal, as OTP's {shutdown, Term}."""
        assert not should_restart(Restart.TRANSIENT, ExitReason.shutdown("bye"))


class TestRestartSet:
    IDS = ["a", "b", "c", "d"]

    @pytest.mark.parametrize("failed", IDS)
    def test_one_for_one_restarts_only_the_failed_child(self, failed: str) -> None:
        """ONE_FOR_ONE: the set is the dead child alone."""
        assert restart_set(Strategy.ONE_FOR_ONE, self.IDS, failed) == [failed]

    @pytest.mark.parametrize("failed", IDS)
    def test_one_for_all_restarts_every_child_in_start_order(self, failed: str) -> None:
        """ONE_FOR_ALL: the set is every child, in start order, whichever one died."""
        assert restart_set(Strategy.ONE_FOR_ALL, self.IDS, failed) == self.IDS

    @pytest.mark.parametrize(
        ("failed", "expected"),
        [("a", ["a", "b", "c", "d"]), ("b", ["b", "c", "d"]), ("c", ["c", "d"]), ("d", ["d"])],
    )
    def test_rest_for_one_restarts_the_failed_child_and_those_after_it(
        self, failed: str, expected: list[str]
    ) -> None:
        """REST_FOR_ONE: the dead child and every child started after it; earlier ones are untouched."""
        assert restart_set(Strategy.REST_FOR_ONE, self.IDS, failed) == expected

    def test_input_order_is_not_changed(self) -> None:
        """restart_set returns a new list and leaves the caller's ids alone."""
        ids = list(self.IDS)

        result = restart_set(Strategy.ONE_FOR_ALL, ids, "a")
        result.append("x")

        assert ids == self.IDS
