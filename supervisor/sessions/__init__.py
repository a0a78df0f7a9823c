"""
The session layer: ``Application`` → ``SessionManager`` → ``SessionSupervisor`` → the session's workers.

Clients (``client``, ``application``, ``registry``, ``values``) import no engine module; the processes
(``manager``, ``publisher``, ``session``, ``registry_server``, ``registry_writer``) run inside the
tree. This package's ``__init__`` imports the client names only (``supervisor.sessions.Application``
and ``SessionManagerHandle`` keep working, pickles of them too), so importing a client module loads no
process code. See ``docs/sessions.md`` and ``docs/architecture.md``.
"""

from .application import Application
from .client import SessionManagerHandle

__all__ = ["Application", "SessionManagerHandle"]
