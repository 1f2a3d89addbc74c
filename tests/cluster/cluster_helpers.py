"""The Ray cluster of the cluster tests: nodes with their own HF cache, unihub cache and bind
address (see conftest.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import unihub

SRC = str(Path(unihub.__file__).resolve().parents[1])


@dataclass
class Node:
    handle: Any
    node_id: str
    address: str
    hub_cache: Path


@dataclass
class RayCluster:
    cluster: Any
    root: Path
    nodes: list[Node] = field(default_factory=list)

    def add(self) -> Node:
        k = len(self.nodes)
        address = f"127.0.0.{k + 2}"
        cache = self.root / f"node{k}" / "hub"
        env = {
            "HF_HUB_CACHE": str(cache),
            "HF_HOME": str(self.root / f"node{k}"),
            "UNIHUB_CACHE": str(self.root / f"node{k}" / "unihub"),
            "UNIHUB_BIND_ADDRESS": address,
            "HF_TOKEN_PATH": str(self.root / "no-token"),
            "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        handle = self.cluster.add_node(
            num_cpus=1,
            object_store_memory=80 * 1024 * 1024,
            env_vars=env,
            include_dashboard=False,
        )
        node = Node(handle, handle.node_id, address, cache)
        self.nodes.append(node)
        return node

    def remove(self, node: Node) -> None:
        self.cluster.remove_node(node.handle, allow_graceful=False)
        self.nodes.remove(node)

    @property
    def ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]
