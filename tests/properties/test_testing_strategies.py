"""
``supervisor.testing.strategies``: what it draws is valid (many examples, no processes) and
``Supervisor.start`` accepts it and runs it (few examples: each starts real processes).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from supervisor import (
    AutoShutdown,
    ChildSpec,
    ChildState,
    ChildType,
    DynamicSupervisorSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorHandle,
    SupervisorSpec,
)
from supervisor.testing import descendants, wait_gone
from supervisor.testing.children import ENDING_STARTS, STABLE_STARTS, wait_forever
from supervisor.testing.strategies import child_specs, supervisor_specs

PROCESS_SETTINGS = settings(
    # Each example starts a root and every child of its tree: few of them, no shrinking (each
    # shrink attempt would start trees again); the failing tree is printed as drawn.
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
HANG = 60.0


def walk(spec: SupervisorSpec, depth: int = 0) -> list[tuple[SupervisorSpec, int]]:
    """Every static supervisor spec of the tree, with its depth below the root."""
    found = [(spec, depth)]
    for child in spec.children:
        if isinstance(child.nested, SupervisorSpec):
            found.extend(walk(child.nested, depth + 1))
    return found


@settings(max_examples=300, deadline=None)
@given(spec=supervisor_specs(max_depth=2, max_children=4))
def test_drawn_trees_are_valid_and_bounded(spec: SupervisorSpec) -> None:
    """Depth and width are bounded, ids unique, significance only where auto_shutdown takes it."""
    for supervisor, depth in walk(spec):
        assert depth <= 2
        ids = [child.id for child in supervisor.children]
        assert len(ids) == len(set(ids)) <= 4
        if supervisor.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            assert len(supervisor.children) == 1
            assert supervisor.children[0].type is ChildType.WORKER
            assert supervisor.auto_shutdown is AutoShutdown.NEVER
        for child in supervisor.children:
            if child.significant:
                assert supervisor.auto_shutdown is not AutoShutdown.NEVER
                assert child.restart is not Restart.PERMANENT
            if child.type is ChildType.WORKER:
                assert child.start in STABLE_STARTS
            else:
                assert isinstance(child.nested, (SupervisorSpec, DynamicSupervisorSpec))
        # Built again from its fields, it passes every validator again.
        SupervisorSpec(
            list(supervisor.children),
            supervisor.strategy,
            supervisor.max_restarts,
            supervisor.max_seconds,
            supervisor.auto_shutdown,
        )


@settings(max_examples=200, deadline=None)
@given(
    spec=child_specs(starts=ENDING_STARTS, restarts=[Restart.TRANSIENT], significant=True, backoff=False),
    flat=supervisor_specs(max_depth=0, strategies=[Strategy.ONE_FOR_ALL], min_children=2),
)
def test_the_options_narrow_what_is_drawn(spec: ChildSpec, flat: SupervisorSpec) -> None:
    """The options narrow what is drawn: start functions, restart types, significance, depth, strategies."""
    assert spec.start in ENDING_STARTS
    assert spec.restart is Restart.TRANSIENT and spec.significant and spec.backoff is None
    assert flat.strategy is Strategy.ONE_FOR_ALL and len(flat.children) >= 2
    assert all(child.type is ChildType.WORKER for child in flat.children)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: child_specs(starts=[]), TypeError),
        (lambda: child_specs(restarts="permanent"), TypeError),  # type: ignore[arg-type]
        (lambda: child_specs(significant="yes"), TypeError),  # type: ignore[arg-type]
        (lambda: supervisor_specs(max_depth=-1), ValueError),
        (lambda: supervisor_specs(min_children=3, max_children=2), ValueError),
        (lambda: supervisor_specs(children=[ChildSpec("a", wait_forever)]), TypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_options_are_refused_when_the_strategy_is_made(call: Any, error: type[Exception]) -> None:
    """A bad option raises at once, naming it, not when Hypothesis draws."""
    with pytest.raises(error):
        call()


def check_running(handle: SupervisorHandle, spec: SupervisorSpec) -> None:
    """Every child of *spec* runs under *handle*, in order, and so on down every nested supervisor."""
    infos = handle.which_children()
    if spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        assert infos == []  # the template is not started
        return
    assert [info.id for info in infos] == [child.id for child in spec.children]
    for info, child in zip(infos, spec.children, strict=True):
        assert info.state is ChildState.RUNNING, (info, child)
        if isinstance(child.nested, SupervisorSpec):
            check_running(handle.child_supervisor(child.id), child.nested)
        elif isinstance(child.nested, DynamicSupervisorSpec):
            assert handle.child_supervisor(child.id).which_children() == []


@PROCESS_SETTINGS
@given(spec=supervisor_specs(max_depth=2, max_children=3))
def test_supervisor_start_runs_every_drawn_tree(spec: SupervisorSpec) -> None:
    """A drawn tree starts, every child of every level runs, and its stop leaves no process behind."""
    with Supervisor.start(
        spec.children, spec.strategy, spec.max_restarts, spec.max_seconds, auto_shutdown=spec.auto_shutdown
    ) as tree:
        assert tree.pid is not None
        processes = [tree.pid] + [entry.pid for entry in descendants(tree.pid)]
        check_running(tree, spec)
    assert wait_gone(processes, timeout=HANG) == []


@PROCESS_SETTINGS
@given(children=st.lists(child_specs(), min_size=1, max_size=4, unique_by=lambda child: child.id))
def test_drawn_workers_start_as_children_of_a_running_tree(children: list[ChildSpec]) -> None:
    """Each drawn worker spec is accepted by ``start_child`` and runs."""
    with Supervisor.start([]) as tree:
        for child in children:
            pid = tree.start_child(child)
            info = tree.which_child(child.id)
            assert (info.pid, info.state) == (pid, ChildState.RUNNING)
