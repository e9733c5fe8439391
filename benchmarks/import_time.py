"""`import spacerini` time, against `import pyserini.search.lucene` (the peer) measured in the same run.

Usage: .venv/bin/python benchmarks/import_time.py [--repeat 5]
Prints one JSON line. Goal: spacerini <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys


def _time_import(stmt: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        code = f"import time,os; os.environ.setdefault('OPENAI_API_KEY','x'); t=time.perf_counter(); {stmt}; print(time.perf_counter()-t)"
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ours = _time_import("import spacerini", args.repeat)
    peer = _time_import("import spacerini.java as j; j.ensure_jvm(); import pyserini.search.lucene", max(1, args.repeat // 2))
    print(
        json.dumps(
            {
                "bench": "import_time",
                "spacerini_s": round(ours, 4),
                "pyserini_search_lucene_s": round(peer, 3),
                "ratio_peer_over_ours": round(peer / ours, 1),
                "goal_spacerini_s": 0.3,
                "meets_goal": ours <= 0.3,
            }
        )
    )


if __name__ == "__main__":
    main()
