"""
The cluster: Applications on several machines sharing one session registry in etcd.

:class:`EtcdCluster` (``config.py``) is the option; the node agent (``agent.py``) is the process that
holds the node's lease and serves the node-to-node endpoint, in place of the registry server. Only
the agent imports etcd's client (the ``cluster`` extra).
"""

from .config import EtcdCluster, TlsFiles

__all__ = ["EtcdCluster", "TlsFiles"]
