"""Benchmark of the PII detector: precision/recall per kind and per context, and throughput.

Measured in the same run:

* precision, recall and F1 of :func:`spacerini.preprocess.pii.find_pii` per kind (KEY, PASSWORD,
  EMAIL, IP_ADDRESS, and PHONE, which is off by default and named here) on the labelled set
  ``tests/data/pii_labelled.jsonl`` (made by ``tests/data/pii_make_labelled.py``), and per
  context (AWS secret, ``mysql -p``, ``Authorization`` header, version string, ...); with
  ``--against REV`` the detector of that revision is scored on the same set too. The same
  scores on ``tests/data/pii_heldout.jsonl``, 30 hand-written texts (Terraform, .netrc,
  Kubernetes secrets, JDBC URLs, ...) written after the rules and not tuned on at first;
* MB/s of ``find_pii`` (default kinds) on Python standard-library source, held in memory; with
  ``--against REV`` the ``pii.py`` of that git revision is loaded from ``git show`` and timed in
  the same process, interleaved, so both figures share the machine's load. The number of spans
  each finds on that source is printed too: the standard library holds next to no real
  secrets, so what is found there is mostly false alarms. ``find_pii`` with PHONE turned on,
  and the "pii" step (index mode) on the same files as Docs with a code-like ``meta`` (path,
  owner, licence, language: the step now scans the provenance too), are timed as well.

With ``--against REV --compare-on FOLDER`` both versions also run on the text files under a
folder (e.g. ``.venv/lib/python3.11/site-packages``, shuffled with seed 0, up to
``--compare-mb``), and the spans only one of them finds are printed: new false alarms (or
new finds) on real code.

Prints a Markdown table and one JSON line. Usage:
``python benchmarks/pii_bench.py [--mb 4] [--repeats 3] [--against HEAD~1 [--compare-on DIR]]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spacerini.preprocess import pii  # noqa: E402
from spacerini.records import Doc  # noqa: E402

LABELLED = ROOT / "tests" / "data" / "pii_labelled.jsonl"
HELDOUT = ROOT / "tests" / "data" / "pii_heldout.jsonl"
SCORED_KINDS = (pii.KEY, pii.PASSWORD, pii.EMAIL, pii.IP_ADDRESS, pii.PHONE)


def stdlib_texts(limit_chars: int) -> list[str]:
    """Standard-library .py sources up to ``limit_chars`` characters (the preprocessing benchmark's set)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from preprocess_bench import stdlib_docs

    return [doc.text for doc in stdlib_docs(limit_chars)]


def module_at(revision: str) -> ModuleType:
    """Loads ``spacerini/preprocess/pii.py`` as it was at a git revision, as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{revision}:spacerini/preprocess/pii.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="pii_bench_"))
    path = folder / "pii_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pii_before", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pii_before"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def read_jsonl(path: Path) -> list[dict]:
    """Reads a labelled JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def time_find(module: ModuleType, texts: list[str]) -> tuple[float, Counter[str]]:
    """Returns the seconds ``module.find_pii`` takes over ``texts`` and the kinds it found."""
    find = module.find_pii
    found: Counter[str] = Counter()
    started = time.perf_counter()
    for text in texts:
        found.update(s.kind for s in find(text))
    return time.perf_counter() - started, found


def time_step(module: ModuleType, docs: list[Doc]) -> float:
    """Returns the seconds ``module.PiiStep(mode="index")`` takes over ``docs``."""
    step = module.PiiStep(mode="index")
    started = time.perf_counter()
    for _ in step(docs):
        pass
    return time.perf_counter() - started


COMPARED_SUFFIXES = frozenset({".py", ".md", ".txt", ".cfg", ".ini", ".yaml", ".yml", ".json", ".sh", ".toml", ".js"})


def compare_on(folder: Path, limit_chars: int, now: ModuleType, before: ModuleType) -> dict:
    """Runs both detectors on the text files under ``folder``; returns counts and the spans only one found."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix in COMPARED_SUFFIXES and p.is_file())
    random.Random(0).shuffle(paths)
    total = 0
    counts: dict[str, Counter[str]] = {"now": Counter(), "before": Counter()}
    only: dict[str, list[list[str]]] = {"now": [], "before": []}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(text) > 2_000_000:
            continue
        total += len(text)
        found_now = {(s.kind, s.text) for s in now.find_pii(text)}
        found_before = {(s.kind, s.text) for s in before.find_pii(text)}
        counts["now"].update(kind for kind, _ in found_now)
        counts["before"].update(kind for kind, _ in found_before)
        name = path.relative_to(folder).as_posix()
        only["now"].extend([name, kind, value] for kind, value in sorted(found_now - found_before))
        only["before"].extend([name, kind, value] for kind, value in sorted(found_before - found_now))
        if total >= limit_chars:
            break
    return {"mb": round(total / 1e6, 2), "counts": {k: dict(v) for k, v in counts.items()}, "only": only}


def score_by_context(rows: list[dict]) -> dict[str, dict[str, float | int]]:
    """Scores each context of the labelled set on its own (all scored kinds together)."""
    contexts: dict[str, list[dict]] = {}
    for row in rows:
        contexts.setdefault(row.get("context", "?"), []).append(row)
    scores = {name: pii.score_labelled(group, kinds=SCORED_KINDS)["all"] for name, group in sorted(contexts.items())}
    return {name: {k: s[k] for k in ("tp", "fp", "fn")} for name, s in scores.items()}


def main() -> None:
    """Runs the benchmark and prints the tables and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="MB of standard-library source to time on")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per version (best is kept)")
    parser.add_argument("--against", help="a git revision whose pii.py is timed in the same run")
    parser.add_argument("--compare-on", type=Path, help="a folder of text files to run both versions on")
    parser.add_argument("--compare-mb", type=float, default=60.0, help="MB of that folder to read")
    args = parser.parse_args()
    if args.compare_on and not args.against:
        parser.error("--compare-on needs --against")

    rows = read_jsonl(LABELLED)
    heldout = read_jsonl(HELDOUT)
    positives = sum(len(r["spans"]) for r in rows)
    negatives = sum(1 for r in rows if not r["spans"])
    kinds = pii.score_labelled(rows, kinds=SCORED_KINDS)
    contexts = score_by_context(rows)

    texts = stdlib_texts(int(args.mb * 1_000_000))
    chars = sum(len(t) for t in texts)
    versions = {"now": pii}
    if args.against:
        versions[f"at {args.against}"] = module_at(args.against)
    before = heldout_before = None
    heldout_now = pii.score_labelled(heldout)
    if args.against:
        old = versions[f"at {args.against}"]
        before = old.score_labelled(rows, kinds=tuple(k for k in SCORED_KINDS if k in old.KINDS))
        heldout_before = old.score_labelled(heldout)
    docs = [
        Doc(f"lib/{i}.py", text, meta={"path": f"Lib/{i}.py", "owner": "python", "licence": "PSF-2.0", "language": "Python"})
        for i, text in enumerate(texts)
    ]
    best = {name: float("inf") for name in versions}
    best_step = dict(best)
    best_phone = float("inf")
    found: dict[str, Counter[str]] = {}
    with_phone = (*pii.RULE_KINDS, pii.PHONE)
    for _ in range(args.repeats):
        for name, module in versions.items():
            seconds, found[name] = time_find(module, texts)
            best[name] = min(best[name], seconds)
            best_step[name] = min(best_step[name], time_step(module, docs))
        started = time.perf_counter()
        for text in texts:
            pii.find_pii(text, kinds=with_phone)
        best_phone = min(best_phone, time.perf_counter() - started)
    speed = {name: round(chars / 1e6 / seconds, 2) for name, seconds in best.items()}
    step_speed = {name: round(chars / 1e6 / seconds, 2) for name, seconds in best_step.items()}
    phone_speed = round(chars / 1e6 / best_phone, 2)

    print(f"labelled set: {len(rows)} texts, {positives} labelled spans, {negatives} texts with none")
    head = "| kind | tp | fp | fn | precision | recall | F1 |"
    if before is not None:
        head += f" precision / recall at {args.against} |"
    print(f"\n{head}\n|{'---|' * (head.count('|') - 1)}")
    for kind, s in kinds.items():
        line = f"| {kind} | {s['tp']} | {s['fp']} | {s['fn']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |"
        if before is not None:
            old_scores = before.get(kind)
            line += " (not a kind) |" if old_scores is None else f" {old_scores['precision']:.3f} / {old_scores['recall']:.3f} |"
        print(line)
    print(f"\nheld-out set: {len(heldout)} texts, {sum(len(r['spans']) for r in heldout)} labelled spans")
    print("\n| kind | tp | fp | fn | precision | recall |" + (f" precision / recall at {args.against} |" if heldout_before else ""))
    print("|---|---|---|---|---|---|" + ("---|" if heldout_before else ""))
    for kind, s in heldout_now.items():
        line = f"| {kind} | {s['tp']} | {s['fp']} | {s['fn']} | {s['precision']:.3f} | {s['recall']:.3f} |"
        if heldout_before:
            line += f" {heldout_before[kind]['precision']:.3f} / {heldout_before[kind]['recall']:.3f} |"
        print(line)
    print("\n| context | texts | tp | fp | fn |\n|---|---|---|---|---|")
    sizes = Counter(r.get("context", "?") for r in rows)
    for name, s in contexts.items():
        print(f"| {name} | {sizes[name]} | {s['tp']} | {s['fp']} | {s['fn']} |")
    print(f"\nfind_pii on {chars / 1e6:.2f} MB of standard-library source ({len(texts)} files), best of {args.repeats}:")
    for name in versions:
        print(
            f"  {name}: find_pii {speed[name]} MB/s, spans found {dict(sorted(found[name].items()))}; "
            f"pii step {step_speed[name]} MB/s"
        )
    print(f"  now, find_pii with PHONE on: {phone_speed} MB/s")
    compared = None
    if args.compare_on:
        compared = compare_on(args.compare_on, int(args.compare_mb * 1e6), pii, versions[f"at {args.against}"])
        print(f"\nboth versions on {compared['mb']} MB under {args.compare_on}: {compared['counts']}")
        for side, rows_only in compared["only"].items():
            print(f"  found only {side}: {len(rows_only)}")
            for name, kind, value in rows_only[:50]:
                print(f"    {name}: {kind} {value[:80]!r}")
    print(
        json.dumps(
            {
                "texts": len(rows), "positives": positives, "negatives": negatives, "kinds": kinds,
                "contexts": contexts, "kinds_before": before, "heldout": heldout_now, "heldout_before": heldout_before, "mb": round(chars / 1e6, 2), "mb_per_s": speed, "step_mb_per_s": step_speed, "phone_mb_per_s": phone_speed,
                "stdlib_spans": {k: dict(v) for k, v in found.items()}, "compared": compared,
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
