"""
Session events: the SessionManager's children's events, as sessions, pushed to the client.

:meth:`SessionManagerHandle.events() <supervisor.SessionManagerHandle.events>` subscribes to the
SessionManager (a supervisor whose children are the sessions' SessionSupervisors) exactly as
:class:`~supervisor.EventStream` subscribes to a supervisor, and yields :class:`SessionEvent`
values. A client module: it imports values, the wire and the transport only.
"""

from __future__ import annotations

import datetime

import attrs

from .._protocol import (
    NEWS_EXITED,
    NEWS_FORKED,
    NEWS_LOST,
    NEWS_REMOVED,
    NEWS_RESTARTED,
    NEWS_STARTED,
    Notice,
)
from ..messaging.events import NoticeStream, Subscription
from ..reasons import ExitReason

__all__ = ["SESSION_EVENT_KINDS", "SessionEvent", "SessionEventStream"]

_KINDS = {
    NEWS_FORKED: "created",
    NEWS_STARTED: "active",
    NEWS_RESTARTED: "active",
    NEWS_EXITED: "down",
    NEWS_REMOVED: "terminated",
    NEWS_LOST: "lost",
}
SESSION_EVENT_KINDS = frozenset(_KINDS.values())
"""The kinds of :class:`SessionEvent`."""


@attrs.frozen
class SessionEvent:
    """
    One event of a session, as a :class:`SessionEventStream` yields it.

    Attributes:
        kind: ``"created"`` (the session's SessionSupervisor was forked: by ``create_session``, or
            again by a restart of a restartable session), ``"active"`` (it is ready: every child of
            the session started), ``"down"`` (its process was reaped, with the exit reason; a
            session whose start failed too), ``"terminated"`` (the session was removed, its spec
            forgotten: ``terminate_session``, a temporary session that ended, the SessionManager's
            stop), or ``"lost"`` (the SessionManager dropped *count* events of this stream, which
            did not keep up).
        session_id: the session's id; None for ``lost``.
        pid: the SessionSupervisor's process (for ``down``, the one reaped); for ``lost``, the
            SessionManager's.
        reason: the exit reason, for ``down``; else None.
        at: when the SessionManager saw it, a timezone-aware UTC ``datetime``.
        count: how many events were dropped, for ``lost``; else 0.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(SESSION_EVENT_KINDS))
    session_id: str | None
    pid: int | None
    reason: ExitReason | None
    at: datetime.datetime
    count: int = 0


class SessionEventStream(NoticeStream[SessionEvent]):
    """
    The sessions' events, as :class:`SessionEvent` values; from ``SessionManagerHandle.events()``.

    Subscribed when it is returned: every event after that is delivered, in the order the
    SessionManager saw them. Iterate it (blocks for each event; ends when the SessionManager exits,
    restarted or not: subscribe again then), call :meth:`next_event` with a timeout, or wait on
    :meth:`fileno`. Close it (or leave its ``with`` block) to unsubscribe. Not for use by several
    threads at once.
    """

    _KINDS = frozenset({NEWS_FORKED, NEWS_STARTED, NEWS_RESTARTED, NEWS_EXITED, NEWS_REMOVED})

    def _convert(self, sub: Subscription, notice: Notice) -> SessionEvent | None:
        kind = _KINDS.get(notice.kind)
        if kind is None:
            return None
        reason = notice.reason if notice.kind == NEWS_EXITED else None
        return SessionEvent(kind, notice.child_id, notice.pid, reason, notice.at, notice.count)
