"""The Ray engine: shard builds (:class:`~spacerini.bundle.shards.ShardTask`) run as Ray tasks.

``spacerini index SOURCE --out B --shards N --engine ray [--ray-address ADDR] [--memory-budget 2GB]``
lands here through :func:`spacerini.bundle.shards.run_tasks`. Ray is the ``[distributed]`` extra:
nothing here imports it until :func:`run_tasks` or :func:`session` is called, and without it they
raise :class:`~spacerini.errors.DependencyMissingError`.
"""

from __future__ import annotations

from spacerini.distributed.engine import last_nodes, last_tasks, parse_memory, run_tasks, session

__all__ = ["last_nodes", "last_tasks", "parse_memory", "run_tasks", "session"]
