"""
Shared Hypothesis strategies: child spec fields (valid and invalid, per field), specs, exit reasons.

Start functions come from :mod:`tests.children`, so every spec drawn here pickles and could run.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from supervisor import (
    ChildSpec,
    ChildType,
    ExitKind,
    ExitReason,
    Restart,
    Shutdown,
    StartMode,
    Strategy,
)

from . import children

# ---------------------------------------------------------------------------- valid field values

child_ids = st.text(min_size=1, max_size=12).filter(lambda text: "/" not in text)
start_functions = st.sampled_from(
    [children.sleep_forever, children.return_at_once, children.exit_with, children.crash]
)
picklable_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)
args_values = st.lists(picklable_values, max_size=4) | st.lists(picklable_values, max_size=4).map(tuple)
kwargs_values = st.dictionaries(st.text(max_size=8), picklable_values, max_size=4)
restarts = st.sampled_from(Restart)
child_types = st.sampled_from(ChildType)
start_modes = st.sampled_from(StartMode)
strategies = st.sampled_from(Strategy)

seconds_ge_0 = st.integers(min_value=0, max_value=10**6) | st.floats(
    min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False
)
seconds_gt_0 = st.integers(min_value=1, max_value=10**6) | st.floats(
    min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False
)
shutdowns = seconds_ge_0 | st.sampled_from(Shutdown)
start_timeouts = st.none() | seconds_gt_0
max_restarts_values = st.integers(min_value=0, max_value=10**6)
max_seconds_values = seconds_gt_0

VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": child_ids,
    "start": start_functions,
    "args": args_values,
    "kwargs": kwargs_values,
    "restart": restarts,
    "shutdown": shutdowns,
    "type": child_types,
    "start_mode": start_modes,
    "start_timeout": start_timeouts,
}
"""A strategy of valid values for every ChildSpec field."""


@st.composite
def child_spec_kwargs(draw: st.DrawFn, id: st.SearchStrategy[str] = child_ids) -> dict[str, Any]:
    """Keyword arguments for ``ChildSpec``: ``id`` and ``start``, and any subset of the optional fields."""
    kwargs = {"id": draw(id), "start": draw(start_functions)}
    for name in ("args", "kwargs", "restart", "shutdown", "type", "start_mode", "start_timeout"):
        if draw(st.booleans()):
            kwargs[name] = draw(VALID_FIELDS[name])
    return kwargs


child_specs = child_spec_kwargs().map(lambda kwargs: ChildSpec(**kwargs))


@st.composite
def child_spec_lists(draw: st.DrawFn, max_size: int = 5) -> list[ChildSpec]:
    """Child specs with unique ids, as a supervisor accepts them."""
    ids = draw(st.lists(child_ids, max_size=max_size, unique=True))
    return [ChildSpec(**draw(child_spec_kwargs(id=st.just(i)))) for i in ids]


# ---------------------------------------------------------------------------- invalid field values

not_numbers = st.one_of(
    st.text(max_size=4),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
negative_seconds = st.integers(max_value=-1) | st.floats(
    max_value=-1e-9, allow_nan=False, allow_infinity=False
)
non_positive_seconds = negative_seconds | st.sampled_from([0, 0.0, -0.0])


def _other_enum_values(cls: type) -> st.SearchStrategy[Any]:
    """Values that are not members of *cls*: its members' values and names, members of other enums."""
    others = [
        m for e in (Restart, ChildType, StartMode, Strategy, Shutdown, ExitKind) if e is not cls for m in e
    ]
    return st.one_of(
        st.sampled_from([m.value for m in cls]),  # type: ignore[attr-defined]
        st.sampled_from([m.name for m in cls]),  # type: ignore[attr-defined]
        st.sampled_from(others),
        st.integers(),
        st.none(),
    )


INVALID_FIELDS: dict[str, list[tuple[type[Exception], st.SearchStrategy[Any]]]] = {
    "id": [
        (
            TypeError,
            st.one_of(st.integers(), st.none(), st.binary(max_size=4), st.lists(st.text(), max_size=2)),
        ),
        (ValueError, st.just("")),
        (ValueError, st.text(max_size=4).map(lambda text: text + "/" + text)),
    ],
    "start": [(TypeError, st.one_of(st.integers(), st.none(), st.text(max_size=4), st.lists(st.integers())))],
    "args": [
        (
            TypeError,
            st.one_of(
                st.integers(), st.none(), st.text(max_size=4), st.dictionaries(st.text(), st.integers())
            ),
        )
    ],
    "kwargs": [
        (TypeError, st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))),
        (TypeError, st.dictionaries(st.integers() | st.none(), st.integers(), min_size=1, max_size=2)),
    ],
    "restart": [(TypeError, _other_enum_values(Restart))],
    "shutdown": [
        (
            TypeError,
            not_numbers.filter(lambda v: v is not None) | st.sampled_from([ChildType.WORKER, "infinity"]),
        ),
        (ValueError, negative_seconds | non_finite),
    ],
    "type": [(TypeError, _other_enum_values(ChildType))],
    "start_mode": [(TypeError, _other_enum_values(StartMode))],
    "start_timeout": [
        (TypeError, not_numbers.filter(lambda v: v is not None) | st.just(Shutdown.INFINITY)),
        (ValueError, non_positive_seconds | non_finite),
    ],
}
"""For every ChildSpec field: (the error class expected, a strategy of values that raise it)."""


@st.composite
def invalid_child_field(draw: st.DrawFn) -> tuple[str, type[Exception], Any]:
    """One (field name, expected error class, bad value) for ChildSpec."""
    name = draw(st.sampled_from(sorted(INVALID_FIELDS)))
    error, values = draw(st.sampled_from(INVALID_FIELDS[name]))
    return name, error, draw(values)


INVALID_FLAGS: dict[str, list[tuple[type[Exception], st.SearchStrategy[Any]]]] = {
    "strategy": [(TypeError, _other_enum_values(Strategy))],
    "max_restarts": [
        (TypeError, not_numbers | st.floats(allow_nan=False) | st.just(math.inf)),
        (ValueError, st.integers(max_value=-1)),
    ],
    "max_seconds": [
        (TypeError, not_numbers),
        (ValueError, non_positive_seconds | non_finite),
    ],
}
"""For every SupervisorSpec flag: (the error class expected, a strategy of values that raise it)."""


# ---------------------------------------------------------------------------- exit reasons

signal_numbers = st.integers(min_value=1, max_value=64)
exit_codes = st.integers(min_value=1, max_value=255)


def _raised(exc: BaseException) -> ExitReason:
    try:
        raise exc
    except BaseException as caught:
        return ExitReason.from_exception(caught)


exceptions = st.builds(
    lambda cls, message: cls(message),
    st.sampled_from([ValueError, KeyError, RuntimeError, OSError, ZeroDivisionError]),
    st.text(max_size=10),
)

exit_reasons_by_kind: dict[ExitKind, st.SearchStrategy[ExitReason]] = {
    ExitKind.NORMAL: st.just(ExitReason.normal()),
    ExitKind.SHUTDOWN: st.builds(ExitReason.shutdown, st.none() | st.integers() | st.text(max_size=6)),
    ExitKind.KILLED: st.just(ExitReason.killed()),
    ExitKind.SIGNALED: signal_numbers.filter(lambda n: n not in (9, 15)).map(
        lambda n: ExitReason.from_exitcode(-n)
    ),
    ExitKind.EXIT_CODE: exit_codes.map(ExitReason.from_exitcode),
    ExitKind.EXCEPTION: exceptions.map(_raised),
}
exit_reasons = st.one_of(*exit_reasons_by_kind.values())
normal_reasons = st.one_of(exit_reasons_by_kind[ExitKind.NORMAL], exit_reasons_by_kind[ExitKind.SHUTDOWN])
abnormal_reasons = st.one_of(
    *(s for kind, s in exit_reasons_by_kind.items() if kind not in (ExitKind.NORMAL, ExitKind.SHUTDOWN))
)
