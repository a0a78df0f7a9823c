"""
The supervisor process: everything that runs inside a supervisor, and nothing a client needs.

``reactor`` (the epoll set and signals), ``jobs`` (generator jobs in lanes), ``processes`` (fork,
drain, reap), ``hooks`` (what a process built on the engine, the SessionManager, is told) and
``reports`` (logging) ← ``state`` (OTP's ``#state``) ← ``lifecycle`` (one child's start and
shutdown) ← ``supervisor`` (OTP's semantics) and ``server`` (the control socket) ← ``loop`` (the
process and its turn) ← ``entry`` (the root's and a nested supervisor's entry points). See
``docs/architecture.md``.

Client modules (``supervisor.handle``, the session client, the registry client) never import this
package; an import-linter contract keeps it so.
"""
