"""should_restart over generated reasons; restart_set against a model of OTP's restart/3."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor import ExitReason, Restart, Strategy
from supervisor._strategy import restart_set, should_restart

from ..strategies import abnormal_reasons, child_ids, exit_reasons, normal_reasons, strategies


@given(exit_reasons)
def test_permanent_is_always_restarted(reason: ExitReason) -> None:
    """A permanent child is restarted whatever its exit reason."""
    assert should_restart(Restart.PERMANENT, reason)


@given(exit_reasons)
def test_temporary_is_never_restarted(reason: ExitReason) -> None:
    """A temporary child is never restarted."""
    assert not should_restart(Restart.TEMPORARY, reason)


@given(normal_reasons)
def test_transient_is_not_restarted_after_a_normal_exit(reason: ExitReason) -> None:
    """A transient child that exits normal or shutdown (any term) stays down."""
    assert not should_restart(Restart.TRANSIENT, reason)


@given(abnormal_reasons)
def test_transient_is_restarted_after_an_abnormal_exit(reason: ExitReason) -> None:
    """A transient child that crashed, was killed or exited non-zero is restarted."""
    assert should_restart(Restart.TRANSIENT, reason)


def model_restart_set(strategy: Strategy, ids: list[str], failed: str) -> list[str]:
    """OTP's restart/3 sets, written from section 3 of the reference."""
    if strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE):
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return ids
    return [i for n, i in enumerate(ids) if n >= ids.index(failed)]


@given(strategies, st.lists(child_ids, min_size=1, max_size=8, unique=True), st.data())
def test_restart_set_matches_the_model(strategy: Strategy, ids: list[str], data: st.DataObject) -> None:
    """For any strategy, children and failed child, restart_set is the model's set, in start order."""
    failed = data.draw(st.sampled_from(ids))

    result = restart_set(strategy, tuple(ids), failed)

    assert result == model_restart_set(strategy, ids, failed)
    assert failed in result
    assert result == [i for i in ids if i in result]
