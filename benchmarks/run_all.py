"""Runs every benchmark script in this folder and appends their JSON lines to benchmarks/out/results.jsonl.

Usage: .venv/bin/python benchmarks/run_all.py [NAME ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    wanted = set(sys.argv[1:])
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    results = out_dir / "results.jsonl"
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in {"run_all.py", "__init__.py"} and not p.name.startswith("_"))
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        print(f"== {script.name}", file=sys.stderr, flush=True)
        started = time.time()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        with results.open("a") as fh:
            for line in lines:
                record = json.loads(line)
                record["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                record["wall_s"] = round(time.time() - started, 1)
                fh.write(json.dumps(record) + "\n")
                print(line)


if __name__ == "__main__":
    main()
