"""A small Ray cluster on this machine for the multi-node tests (always shut down)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def two_node_cluster(object_store_memory: int) -> Iterator[Any]:
    """A head and one worker node, one CPU each; shut down however the block ends."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": object_store_memory})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=object_store_memory)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
