"""
The session layer: ``Application`` → ``SessionManager`` → ``SessionSupervisor`` → the session's workers.

Clients (``client``, ``application``, ``registry``, ``values``) import no engine module; the processes
(``manager``, ``publisher``, ``session``, ``registry_server``, ``registry_writer``) run inside the
tree. This package's ``__init__`` imports nothing, so importing one client module loads no process
code. See ``docs/sessions.md`` and ``docs/architecture.md``.
"""
