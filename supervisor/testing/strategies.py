"""
Hypothesis strategies for valid child specs and supervision trees, to property-test your own trees.

:func:`child_specs` draws :class:`~supervisor.ChildSpec` values for workers, :func:`supervisor_specs`
draws whole trees as :class:`~supervisor.SupervisorSpec` values: strategies, restart intensities,
``auto_shutdown`` with significant children, and nested supervisors (static ones and
DynamicSupervisors) down to a bounded depth. Every value drawn is valid: building it raised nothing,
and :meth:`Supervisor.start <supervisor.Supervisor.start>` accepts it (the ``supervisor_tree``
fixture of :mod:`supervisor.testing.plugin` takes a ``SupervisorSpec`` as it is). By default the
workers' start functions are those of :mod:`supervisor.testing.children` that run until stopped
(:data:`~supervisor.testing.children.STABLE_STARTS`), so a drawn tree stays up; pass ``starts=`` to
draw your own functions (module-level ones, so every process can import them) or
:data:`~supervisor.testing.children.ENDING_STARTS`, whose children end at once.

This is the only module of the package that imports Hypothesis, an optional dependency
(``pip install otp-supervisor[testing]``); :mod:`supervisor.testing` does not import it.

Every child of a drawn tree is a process: keep ``max_examples`` small and ``deadline=None`` in a
test that starts them, and the trees small (``max_depth``, ``max_children``).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import strategies as st

from ..specs import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    Restart,
    Shutdown,
    StartMode,
    Strategy,
    SupervisorSpec,
)
from .children import STABLE_STARTS

__all__ = [
    "backoffs",
    "child_ids",
    "child_specs",
    "intensities",
    "shutdowns",
    "supervisor_specs",
]

_ID_ALPHABET = string.ascii_lowercase + string.digits + "_-."
_MAX_STARTUP_SECONDS = 60.0


def child_ids(max_size: int = 8) -> st.SearchStrategy[str]:
    """
    Valid child ids: 1 to *max_size* characters from lowercase letters, digits, ``_``, ``-`` and ``.``.

    Any non-empty str without ``/`` is a valid id; this alphabet keeps them readable in reports.
    """
    return st.text(alphabet=_ID_ALPHABET, min_size=1, max_size=max_size)


def shutdowns() -> st.SearchStrategy[float | Shutdown]:
    """Shutdown specs: ``Shutdown.BRUTAL_KILL``, ``Shutdown.INFINITY`` or 0 to 5 seconds."""
    seconds = st.floats(min_value=0.0, max_value=5.0, allow_nan=False, allow_infinity=False)
    return st.sampled_from(Shutdown) | seconds


def backoffs() -> st.SearchStrategy[Backoff]:
    """Restart backoffs with short delays (at most a second before jitter), so tests stay quick."""
    short = st.floats(min_value=0.0, max_value=0.2, allow_nan=False, allow_infinity=False)
    return st.builds(
        Backoff,
        initial=short,
        base=short,
        factor=st.floats(min_value=1.0, max_value=3.0, allow_nan=False, allow_infinity=False),
        max=st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False),
        jitter=st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False),
        reset_after=st.floats(min_value=0.1, max_value=60.0, allow_nan=False, allow_infinity=False),
    )


def intensities() -> st.SearchStrategy[tuple[int, float]]:
    """Restart intensities ``(max_restarts, max_seconds)``: 0 to 10 restarts in 0.5 to 60 seconds."""
    return st.tuples(
        st.integers(min_value=0, max_value=10),
        st.floats(min_value=0.5, max_value=60.0, allow_nan=False, allow_infinity=False),
    )


def _as_strategy(value: Any, name: str) -> st.SearchStrategy[Any]:
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (list, tuple)) and value:
        return st.sampled_from(value)
    raise TypeError(
        f"'{name}' must be a SearchStrategy or a non-empty sequence of values to sample from "
        f"(got {value!r} that is a {type(value).__name__})"
    )


def _flags(value: bool | st.SearchStrategy[bool], name: str) -> st.SearchStrategy[bool]:
    if isinstance(value, bool):
        return st.just(value)
    if isinstance(value, st.SearchStrategy):
        return value
    raise TypeError(f"'{name}' must be a bool or a SearchStrategy of bool (got {value!r})")


def child_specs(
    *,
    ids: st.SearchStrategy[str] | None = None,
    starts: st.SearchStrategy[Callable[..., Any]] | Sequence[Callable[..., Any]] | None = None,
    restarts: st.SearchStrategy[Restart] | Sequence[Restart] | None = None,
    significant: bool | st.SearchStrategy[bool] = False,
    backoff: bool = True,
) -> st.SearchStrategy[ChildSpec]:
    """
    Valid worker specs: every field drawn, each child ready under either start mode.

    Args:
        ids: the ids to draw (default :func:`child_ids`).
        starts: the start functions to draw, called with no arguments: a strategy or a sequence
            to sample from. They must call :func:`supervisor.notify_ready` (a no-op for an
            ``IMMEDIATE`` child), since the start mode is drawn too. Default:
            :data:`~supervisor.testing.children.STABLE_STARTS`, children that run until stopped.
        restarts: the restart types to draw (default: all three).
        significant: whether the specs are significant, or a strategy of it; a permanent child
            is never significant, whatever this says. A significant spec needs a supervisor with
            ``auto_shutdown`` other than NEVER: :func:`supervisor_specs` places them so.
        backoff: whether a spec may have a :class:`~supervisor.Backoff` (drawn by :func:`backoffs`).

    Raises:
        TypeError: an argument is neither a strategy nor a non-empty sequence (or a bool).
    """
    id_strategy = child_ids() if ids is None else _as_strategy(ids, "ids")
    start_strategy = _as_strategy(STABLE_STARTS if starts is None else starts, "starts")
    restart_strategy = _as_strategy(list(Restart) if restarts is None else restarts, "restarts")
    significant_strategy = _flags(significant, "significant")
    backoff_strategy: st.SearchStrategy[Backoff | None] = st.none() | backoffs() if backoff else st.none()
    start_timeouts = st.none() | st.floats(min_value=10.0, max_value=_MAX_STARTUP_SECONDS)

    @st.composite
    def draw_spec(draw: st.DrawFn) -> ChildSpec:
        restart = draw(restart_strategy)
        start_mode = draw(st.sampled_from(StartMode))
        return ChildSpec(
            id=draw(id_strategy),
            start=draw(start_strategy),
            restart=restart,
            shutdown=draw(shutdowns()),
            start_mode=start_mode,
            start_timeout=draw(start_timeouts) if start_mode is StartMode.NOTIFY else None,
            significant=restart is not Restart.PERMANENT and draw(significant_strategy),
            backoff=draw(backoff_strategy),
        )

    return draw_spec()


def supervisor_specs(
    *,
    children: st.SearchStrategy[ChildSpec] | None = None,
    strategies: st.SearchStrategy[Strategy] | Sequence[Strategy] | None = None,
    max_depth: int = 2,
    min_children: int = 0,
    max_children: int = 3,
    dynamic: bool = True,
) -> st.SearchStrategy[SupervisorSpec]:
    """
    Valid supervision trees: a root :class:`~supervisor.SupervisorSpec` with workers and nested supervisors.

    Each supervisor draws its strategy, its restart intensity (:func:`intensities`) and its
    ``auto_shutdown``; its children have unique ids; a child is significant only under a supervisor
    whose ``auto_shutdown`` is not NEVER (a significant worker drawn elsewhere is made not
    significant); a ``SIMPLE_ONE_FOR_ONE`` supervisor has exactly one child, its template, a worker
    (it starts with no child). Nested supervisors, down to *max_depth* levels below the root, are
    static supervisors (:meth:`ChildSpec.supervisor <supervisor.ChildSpec.supervisor>`, with their
    own restart type, shutdown, backoff and significance) and, with *dynamic*, empty
    DynamicSupervisors (:meth:`ChildSpec.dynamic_supervisor <supervisor.ChildSpec.dynamic_supervisor>`).

    Start a drawn tree with the ``supervisor_tree`` fixture (``supervisor_tree(spec)``), or with
    ``Supervisor.start(spec.children, spec.strategy, spec.max_restarts, spec.max_seconds,
    auto_shutdown=spec.auto_shutdown)``.

    Args:
        children: the workers to draw (default ``child_specs(significant=st.booleans())``).
        strategies: the strategies to draw for every supervisor (default: all four).
        max_depth: how many levels of nested supervisors below the root, at most (0: none).
        min_children, max_children: how many children each supervisor has (a simple_one_for_one
            supervisor: one).

    Raises:
        TypeError, ValueError: a bad argument, named.
    """
    for name, value in (
        ("max_depth", max_depth),
        ("min_children", min_children),
        ("max_children", max_children),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"'{name}' must be an int >= 0 (got {value!r})")
    if min_children > max_children:
        raise ValueError(
            f"'min_children' must be at most 'max_children' (got {min_children} > {max_children})"
        )
    workers = child_specs(significant=st.booleans()) if children is None else children
    if not isinstance(workers, st.SearchStrategy):
        raise TypeError(f"'children' must be a SearchStrategy of ChildSpec (got {workers!r})")
    strategy_strategy = _as_strategy(list(Strategy) if strategies is None else strategies, "strategies")
    shape = _Shape(workers, strategy_strategy, min_children, max_children, dynamic)
    return shape.trees(max_depth)


@attrs.frozen
class _Shape:
    """What every level of a drawn tree is made of; ``trees(depth)`` builds the levels' strategies."""

    workers: st.SearchStrategy[ChildSpec]
    strategies: st.SearchStrategy[Strategy]
    min_children: int
    max_children: int
    dynamic: bool

    def trees(self, depth: int) -> st.SearchStrategy[SupervisorSpec]:
        """Supervisor specs with nested supervisors down to *depth* levels below."""
        nested = self._nested(depth - 1) if depth > 0 else None

        @st.composite
        def draw_tree(draw: st.DrawFn) -> SupervisorSpec:
            strategy = draw(self.strategies)
            max_restarts, max_seconds = draw(intensities())
            if strategy is Strategy.SIMPLE_ONE_FOR_ONE:
                template = attrs.evolve(draw(self.workers), significant=False)
                return SupervisorSpec([template], strategy, max_restarts, max_seconds)
            auto_shutdown = draw(st.sampled_from(AutoShutdown))
            kinds = self.workers if nested is None else st.one_of(self.workers, nested)
            drawn = draw(
                st.lists(
                    kinds,
                    min_size=self.min_children,
                    max_size=self.max_children,
                    unique_by=lambda child: child.id,
                )
            )
            if auto_shutdown is AutoShutdown.NEVER:
                drawn = [
                    attrs.evolve(child, significant=False) if child.significant else child for child in drawn
                ]
            return SupervisorSpec(drawn, strategy, max_restarts, max_seconds, auto_shutdown)

        return draw_tree()

    def _nested(self, depth: int) -> st.SearchStrategy[ChildSpec]:
        """Child specs of nested supervisors: static ones *depth* levels deep, and DynamicSupervisors."""
        inner = self.trees(depth)

        @st.composite
        def draw_static(draw: st.DrawFn) -> ChildSpec:
            spec = draw(inner)
            restart = draw(st.sampled_from(Restart))
            return ChildSpec.supervisor(
                draw(child_ids()),
                spec.children,
                spec.strategy,
                spec.max_restarts,
                spec.max_seconds,
                restart=restart,
                shutdown=draw(shutdowns()),
                auto_shutdown=spec.auto_shutdown,
                significant=restart is not Restart.PERMANENT and draw(st.booleans()),
                backoff=draw(st.none() | backoffs()),
            )

        @st.composite
        def draw_dynamic(draw: st.DrawFn) -> ChildSpec:
            max_restarts, max_seconds = draw(intensities())
            return ChildSpec.dynamic_supervisor(
                draw(child_ids()),
                max_restarts,
                max_seconds,
                max_children=draw(st.none() | st.integers(min_value=0, max_value=10)),
                restart=draw(st.sampled_from(Restart)),
            )

        return st.one_of(draw_static(), draw_dynamic()) if self.dynamic else draw_static()
