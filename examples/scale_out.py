"""Scaling out: a sharded bundle built and served on a Ray cluster.

A corpus too big for one machine is split into shards. Each shard is indexed as a Ray task on
whichever node has room, and the shards are searched by Ray actors. Spacerini's promise is that
none of this changes an answer: a sharded bundle built on a cluster ranks, scores and counts
exactly like one index built in one process. This script checks that promise on a real Ray
cluster of two nodes, started on this machine with `ray.cluster_utils.Cluster` (a head and a
worker, one CPU each), as the test suite does. On real hardware the only change is the address:
`ray start --head` on one machine, `ray start --address HEAD:6379` on the others, and the bundle
on storage that every node mounts. The corpus is made on the fly from the Python standard
library. The last cell shuts the cluster down, and the script does so however it ends.

Usage:
    .venv/bin/python examples/scale_out.py
"""

import atexit
import json
import os
import shutil
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("SPACERINI_NO_PROGRESS", "1")

import matplotlib.pyplot as plt
from ray.cluster_utils import Cluster

import spacerini
from spacerini.distributed import last_tasks, session
from spacerini.eval import trec_lines

work = Path(tempfile.mkdtemp(prefix="spacerini-scale-out-"))


# ## 1. A two-node Ray cluster
#
# `atexit` makes sure the cluster goes away even if a later step fails.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 200 * 10**6})
atexit.register(cluster.shutdown)
cluster.add_node(num_cpus=1, object_store_memory=200 * 10**6)
cluster.wait_for_nodes()
node_names = {cluster.head_node.node_id: "head", cluster.list_all_nodes()[1].node_id: "worker"}
print("cluster at", cluster.address, "with nodes:", {v: k[:12] for k, v in node_names.items()})


# ## 2. The corpus
#
# Every module of the standard library's top level becomes one document, about 5 MB of text. The
# file name is its title.
stdlib = Path(sysconfig.get_paths()["stdlib"])
corpus_path = work / "stdlib.jsonl"
with corpus_path.open("w", encoding="utf-8") as fh:
    for path in sorted(stdlib.glob("*.py")):
        fh.write(json.dumps({"id": path.stem, "title": path.name, "contents": path.read_text(encoding="utf-8", errors="replace")}) + "\n")
print(f"{sum(1 for _ in corpus_path.open())} documents, {corpus_path.stat().st_size / 1e6:.1f} MB")


# ## 3. Build: one process, then four shards on the cluster
#
# The reference is an ordinary single-process build. The sharded build passes `shards=4,
# engine="ray"` and the cluster's address; `session` keeps one connection open across the
# backends, so each worker starts its JVM once. Every shard is a task: BM25 collects global
# statistics (document count, term and document frequencies over all shards), so that each shard
# scores with the statistics of the whole collection.
local = spacerini.build_bundle(corpus_path, work / "local", backends=["bm25", "exact"], fields=["contents"], progress=False)
with session(address=cluster.address):
    sharded = spacerini.build_bundle(corpus_path, work / "sharded", backends=["bm25", "exact"], fields=["contents"],
                                     shards=4, engine="ray", ray_address=cluster.address, progress=False)
    tasks = last_tasks()  # the tasks of the last backend built (exact)
print(repr(local))
print(repr(sharded))
for shard in sharded.info()["shards"]:
    print("  shard", shard["id"], "rows", shard["first_doc"], "..", shard["first_doc"] + shard["docs"] - 1)
print("exact shard tasks ran on:", dict(Counter(node_names.get(t["node"], t["node"][:12]) for t in tasks)))
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.bar([f"shard {i}" for i in range(len(tasks))], [t["seconds"] for t in tasks],
       color=["tab:blue" if node_names.get(t["node"]) == "head" else "tab:orange" for t in tasks])
ax.set_ylabel("seconds in the task")
ax.set_title("Exact-index shard tasks (blue: head node, orange: worker node)", fontsize=10)
fig.savefig(work / "tasks.png", dpi=90, bbox_inches="tight")
plt.close(fig)
print(f"figure: {work / 'tasks.png'}")


# ## 4. Same answers?
#
# We run a batch of queries at depth 1000 on both bundles and compare the TREC runs line by line:
# document ids, ranks and scores to six decimals. Exact counts must also agree with each other
# and with Python's own `str.count` over the corpus.
queries = [("q1", "parse command line arguments"), ("q2", "read and write zip archives"),
           ("q3", "thread lock condition variable"), ("q4", "decimal floating point arithmetic"),
           ("q5", "send email over smtp"), ("q6", "regular expression"), ("q7", "temporary file directory")]
run_local = list(trec_lines(local.batch_search(queries, k=1000)))
run_sharded = list(trec_lines(sharded.batch_search(queries, k=1000)))
print(f"{len(run_local)} run lines; identical: {run_local == run_sharded}")
print("\n".join(run_sharded[:3]))

texts = [json.loads(line)["contents"] for line in corpus_path.open(encoding="utf-8")]
for needle in ("def __init__(self", "import os", "raise ValueError("):
    a, b = local.searcher("exact").count(needle), sharded.searcher("exact").count(needle)
    print(f"{needle!r:<22} local {a:>5}  sharded {b:>5}  str.count {sum(t.count(needle) for t in texts):>5}")


# ## 5. Serving from Ray actors
#
# `open_bundle(..., engine="ray")` puts each shard's BM25 and exact searchers in a Ray actor. Those
# actors get the collection's statistics once, and their answers are merged as the local engine
# merges them. A bundle too big for one process is served this way, and the hits, scores and
# snippets stay the same.
served = spacerini.open_bundle(work / "sharded", engine="ray", ray_address=cluster.address)
hits = served.search("parse command line arguments", k=3)
for h in hits:
    print(h.rank, h.docid, round(h.score, 4))
print("same as the local bundle:", hits == local.search("parse command line arguments", k=3))
print("count via actors:", served.searcher("exact").count("def __init__(self"))
print("actors on nodes:", dict(Counter(node_names.get(n, n[:12]) for n in served.engine.actor_nodes())))
served.close()


# ## 6. Shut down
#
# Closing the bundles and shutting the cluster down stops every Ray process this script started.
local.close()
sharded.close()
atexit.unregister(cluster.shutdown)
cluster.shutdown()
shutil.rmtree(work, ignore_errors=True)
print("cluster shut down")
