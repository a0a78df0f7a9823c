"""
Messaging: GenServers in supervised processes, and the calls, casts and monitors that reach them.

:mod:`.ref` holds the picklable reference to one server process; :mod:`.client` the calls, casts,
monitors and name resolution (any process); :mod:`.genserver` the class users subclass;
:mod:`.runtime` the loop that runs one in its child process. The public names are exported from
``supervisor``.
"""
