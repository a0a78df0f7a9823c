"""
The node agent's entry point, named in the Application's child spec.

The Application's supervisor resolves a child's entry point before it forks, so what this module
imports is in every process forked after it: the SessionManager and every session. It imports the
agent (and with it etcd's client, ``requests`` and the rest) only in the agent's own process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..._addresses import TreeContext
    from .config import EtcdCluster

__all__ = ["run_cluster_agent"]


def run_cluster_agent(tree: TreeContext, config: EtcdCluster, registry_timeout: float = 5.0) -> None:
    """Run the node agent at *tree* (see ``agent.run_cluster_agent``); never returns."""
    from .agent import run_cluster_agent as run  # here, in the agent's process only

    run(tree, config, registry_timeout)
