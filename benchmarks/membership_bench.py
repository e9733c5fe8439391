"""Benchmark: model-based membership inference against the exact index (ROC-AUC per method).

Ground truth by construction. ``--n`` Python standard-library files that are *not* in the
shipped model's training corpus (the demo corpus keeps only the first 1 MB of the standard
library) are cut to their first ``--max-chars`` characters and split at random (a hash of the
path) into members and non-members of the same distribution. A copy of the shipped model is
fine-tuned on the members (``train(init_from=...)``, the shipped recipe: FIM 0.5, batch 4 x 512
tokens, cosine schedule) for ``--epochs`` epochs or ``--minutes`` minutes, whichever ends first.
The run's ``training_docs.txt`` is the ground truth: members are the documents it lists (a
member the run never reached, or one of the 1% held out by ``is_heldout``, is dropped).

Then, for prefixes of ``--lengths`` tokens, ROC-AUC (members vs non-members; sklearn, else an
exact Mann-Whitney count) with a bootstrap 95% interval, for:

* the four reference-free scores of :mod:`spacerini.model.membership` (loss, zlib, Min-K%,
  Min-K%++) under the fine-tuned model;
* the same scores under the shipped (base) model: a control, which should sit near 0.5 since the
  split is random and the base model saw neither side;
* ``ref``: the fine-tuned loss minus the base model's (Carlini et al.'s reference-model attack;
  an auditor rarely has the base model, so it is an upper line, not one of the four);
* the exact index (a bundle over the members): the whole prefix occurs verbatim, and the
  coverage of verbatim spans. It is the reference: 1.0 by construction unless a non-member's
  prefix also occurs in a member (shared boilerplate).

``--shipped N`` also scores the shipped model on its own corpus, where the member set is only
approximate (its training report lists no documents and its training bundle is gone; the corpus
enumerated today differs from the one it was trained on): (a) the 1% held-out documents against
the others, as ``is_heldout`` splits them (a perfect attack scores at most 0.5 + f/2 there, f the
share of non-held-out documents ever trained on), and (b) documents that the per-document
sampling hash (seed 0, ``doc_fraction`` 0.12) put into epoch 0, which the run consumed whole
(checked by counting its tokens), against held-out documents and documents sampled in neither
epoch 0 nor epoch 1.

Usage::

    python benchmarks/membership_bench.py [--n 200] [--minutes 8] [--epochs 4] [--shipped 150]

Prints a JSON summary (also written to ``--out``/results.json) and a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.preprocess_bench import stdlib_sources  # noqa: E402
from spacerini.records import Doc  # noqa: E402

METHODS = ("loss", "zlib", "min_k", "min_k_plus_plus")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC of scores where ``pos`` should rank above ``neg`` (ties count one half)."""
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return mann_whitney_auc(pos, neg)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact AUC from the Mann-Whitney U statistic: ranks of the pooled scores, tied scores
    sharing their average rank (so a tie counts one half)."""
    vals = np.r_[pos, neg].astype(np.float64)
    _, inverse, counts = np.unique(vals, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def auc_ci(pos: np.ndarray, neg: np.ndarray, *, rounds: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """AUC and a bootstrap 95% interval (members and non-members resampled separately)."""
    rng = np.random.default_rng(seed)
    a = auc(pos, neg)
    if len(pos) < 2 or len(neg) < 2:
        return a, float("nan"), float("nan")
    boot = [auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(rounds)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return a, float(lo), float(hi)


def pick_docs(n: int, max_chars: int, min_chars: int, excluded: set[str]) -> list[Doc]:
    """``n`` standard-library files outside ``excluded`` (ids), by a hash of the path, cut to ``max_chars``."""
    candidates = [
        (rel, text) for rel, text in stdlib_sources()
        if len(text) >= min_chars and f"python-stdlib/{rel}" not in excluded and "\x00" not in text
    ]  # fmt: skip
    candidates.sort(key=lambda rt: _unit("pick", rt[0]))
    return [Doc(f"stdlib/{rel}", text[:max_chars], meta={"path": rel}) for rel, text in candidates[:n]]


def score_all(texts: list[str], model: Any, max_len: int) -> list[Any]:
    from spacerini.model.membership import token_stats

    return token_stats(texts, model=model, max_tokens=max_len, batch_size=4)


def prefix_scores(stats: Any, tokenizer: Any, length: int) -> Any:
    from spacerini.model.membership import prefix_text, scores_from_stats

    head = stats.prefix(length)
    return scores_from_stats(head, prefix_text(tokenizer, head.ids))


def table_rows(name: str, pos_s: list[Any], neg_s: list[Any]) -> dict[str, list[float]]:
    out = {}
    for m in METHODS:
        pos = np.array([s.oriented()[m] for s in pos_s])
        neg = np.array([s.oriented()[m] for s in neg_s])
        out[f"{name}:{m}"] = [round(x, 3) for x in auc_ci(pos, neg)]
    return out


def evaluate(
    member_stats: list[Any], nonmember_stats: list[Any], tokenizer: Any, lengths: list[int], *, name: str,
    base: tuple[list[Any], list[Any]] | None = None, exact: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """AUC per method and prefix length (only texts with at least that many tokens)."""
    results: dict[str, Any] = {}
    for length in lengths:
        pi = [i for i, s in enumerate(member_stats) if len(s.ids) >= length]
        ni = [i for i, s in enumerate(nonmember_stats) if len(s.ids) >= length]
        if len(pi) < 5 or len(ni) < 5:
            results[str(length)] = {"members": len(pi), "nonmembers": len(ni), "skipped": "fewer than 5 texts a side"}
            continue
        pos = [prefix_scores(member_stats[i], tokenizer, length) for i in pi]
        neg = [prefix_scores(nonmember_stats[i], tokenizer, length) for i in ni]
        row: dict[str, Any] = {"members": len(pi), "nonmembers": len(ni)}
        row.update(table_rows(name, pos, neg))
        if base is not None:
            bpos = [prefix_scores(base[0][i], tokenizer, length) for i in pi]
            bneg = [prefix_scores(base[1][i], tokenizer, length) for i in ni]
            row.update(table_rows("base", bpos, bneg))
            ref_p = np.array([b.loss - s.loss for s, b in zip(pos, bpos, strict=True)])
            ref_n = np.array([b.loss - s.loss for s, b in zip(neg, bneg, strict=True)])
            row["ref:loss-base"] = [round(x, 3) for x in auc_ci(ref_p, ref_n)]
        if exact is not None:
            answers = [[exact(prefix_text_of(s, tokenizer, length)) for s in group] for group in
                       ([member_stats[i] for i in pi], [nonmember_stats[i] for i in ni])]  # fmt: skip
            for key, field in (("exact:verbatim", "verbatim"), ("exact:coverage", "coverage")):
                p = np.array([float(getattr(a, field)) for a in answers[0]])
                n = np.array([float(getattr(a, field)) for a in answers[1]])
                row[key] = [round(x, 3) for x in auc_ci(p, n)]
            row["exact:nonmembers_found_verbatim"] = int(sum(a.verbatim for a in answers[1]))
        results[str(length)] = row
    return results


def prefix_text_of(stats: Any, tokenizer: Any, length: int) -> str:
    from spacerini.model.membership import prefix_text

    return prefix_text(tokenizer, stats.ids[:length])


def finetune_experiment(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from spacerini.bundle import build_bundle
    from spacerini.corpus.default import python_source_corpus
    from spacerini.model import default_model_path, load_model
    from spacerini.model.membership import exact_answer
    from spacerini.model.training import TRAINING_DOCS, read_training_docs, train
    from spacerini.service import Service

    demo_ids = {d.id for d in python_source_corpus(progress=False) if d.id.startswith("python-stdlib/")}
    docs = pick_docs(args.n, args.max_chars, args.min_chars, demo_ids)
    members = [d for d in docs if _unit("split", args.seed, d.id) < 0.5]
    nonmembers = [d for d in docs if _unit("split", args.seed, d.id) >= 0.5]
    base_model, tokenizer = load_model(default_model_path(), device="cpu")
    member_tokens = sum(len(tokenizer(d.text, add_special_tokens=False, verbose=False)["input_ids"]) + 1 for d in members)
    tokens_per_step = args.batch_size * args.seq_len
    steps = max(1, math.ceil(args.epochs * member_tokens / tokens_per_step))
    logging.info("%d members (%d tokens), %d non-members; %d steps planned", len(members), member_tokens, len(nonmembers), steps)

    bundle = build_bundle(members, out / "members-bundle", backends=["exact"], progress=False)
    run = out / "finetuned"
    t0 = time.perf_counter()
    report = train(
        bundle.path, run, steps=steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, seed=args.seed,
        resume=False, progress=False, init_from=default_model_path(), fim_rate=args.fim_rate, threads=args.threads,
        time_limit=args.minutes * 60, checkpoint_every=10_000, device="cpu",
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    trained = set(read_training_docs(run / TRAINING_DOCS))
    pos_docs = [d for d in members if d.id in trained]
    dropped = len(members) - len(pos_docs)
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(run, local_files_only=True).eval()
    max_len = max(args.lengths)
    t1 = time.perf_counter()
    pos = score_all([d.text for d in pos_docs], (tuned, tokenizer), max_len)
    neg = score_all([d.text for d in nonmembers], (tuned, tokenizer), max_len)
    base_pos = score_all([d.text for d in pos_docs], (base_model, tokenizer), max_len)
    base_neg = score_all([d.text for d in nonmembers], (base_model, tokenizer), max_len)
    score_s = time.perf_counter() - t1
    service = Service(bundle, redact_pii=False, max_text=10_000_000)
    aucs = evaluate(
        pos, neg, tokenizer, args.lengths, name="tuned", base=(base_pos, base_neg),
        exact=lambda text: exact_answer(service, text),
    )  # fmt: skip
    return {
        "docs": len(docs), "members_split": len(members), "members_trained": len(pos_docs),
        "members_dropped_not_trained": dropped, "nonmembers": len(nonmembers), "member_tokens_per_epoch": member_tokens,
        "steps_planned": steps, "steps_done": report["steps"], "epochs_started": report["training_docs"]["epochs"],
        "epochs_done": round(report["steps"] * tokens_per_step / member_tokens, 2),
        "final_loss": report["final_loss"], "mean_loss_last_50": report["mean_loss_last_50"],
        "train_seconds": round(train_s, 1), "score_seconds": round(score_s, 1),
        "tokens_per_second": report["tokens_per_second"], "auc": aucs,
    }  # fmt: skip


def shipped_exact_experiment(args: argparse.Namespace, model: Any, tokenizer: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The shipped model against its exact ground truth: the documents ``training_docs.txt``
    lists (members) vs the same corpus's others (held-out files and files never sampled), read
    from the bundle it was trained on (``model_bench.py`` builds it)."""
    from spacerini.bundle import open_bundle
    from spacerini.model import default_model_path
    from spacerini.model.training import TRAINING_DOCS, is_heldout, read_training_docs

    folder = ROOT / "benchmarks" / "out" / "model-demo-bundle"
    if not (folder / "spacerini.json").is_file():
        raise SystemExit(f"{folder}: build it first with `python benchmarks/model_bench.py`")
    bundle = open_bundle(folder)
    members = set(read_training_docs(default_model_path() / TRAINING_DOCS))
    docs = [d for d in bundle.iter_docs() if d.text]
    k = args.shipped
    pick_in = sorted((d for d in docs if d.id in members), key=lambda d: _unit("exact", d.id))[:k]
    heldout = [d for d in docs if is_heldout(d.id)]
    others = sorted((d for d in docs if d.id not in members and not is_heldout(d.id)), key=lambda d: _unit("exact", d.id))
    pick_out = [*heldout, *others][:k]
    texts = [d.text for d in [*pick_in, *pick_out]]
    stats = score_all(texts, (model, tokenizer), max(args.lengths))
    auc = evaluate(stats[: len(pick_in)], stats[len(pick_in) :], tokenizer, args.lengths, name="shipped")
    return {"members": len(pick_in), "nonmembers": len(pick_out), "heldout_in_nonmembers": min(len(heldout), len(pick_out)),
            "training_docs": len(members), "epochs": report.get("training_docs", {}).get("epochs"), "auc": auc}  # fmt: skip


def shipped_experiment(args: argparse.Namespace) -> dict[str, Any]:
    from spacerini.corpus.default import python_source_corpus
    from spacerini.model import default_model_path, load_model
    from spacerini.model.training import _unit_hash, is_heldout

    model, tokenizer = load_model(default_model_path(), device="cpu")
    report = json.loads((default_model_path() / "training_report.json").read_text())
    if report.get("fixed_sample") and "training_docs" in report:
        # Exact ground truth: the approximate splits below were for a model without one.
        return {"exact": shipped_exact_experiment(args, model, tokenizer, report)}
    frac, seed = float(report["doc_fraction"]), int(report["seed"])
    every = list(python_source_corpus(progress=False))
    docs = [d for d in every if d.text]
    heldout = [d for d in docs if is_heldout(d.id)]
    rest = [d for d in docs if not is_heldout(d.id)]
    epoch0 = [d for d in rest if _unit_hash(seed, 0, d.id) < frac]
    epoch1 = {d.id for d in rest if _unit_hash(seed, 1, d.id) < frac}
    never = [d for d in rest if d.id not in epoch1 and _unit_hash(seed, 0, d.id) >= frac]
    epoch0_tokens = sum(len(tokenizer(d.text, add_special_tokens=False, verbose=False)["input_ids"]) + 1 for d in epoch0)
    trained_tokens = int(report["tokens_total"])
    k = args.shipped
    pick = sorted(epoch0, key=lambda d: _unit("ship", d.id))[:k]
    pick_never = sorted(never, key=lambda d: _unit("ship", d.id))[: max(0, k - len(heldout))]
    pick_rest = sorted(rest, key=lambda d: _unit("ship", d.id))[:k]
    max_len = max(args.lengths)
    cache: dict[str, Any] = {}
    need = {d.id: d.text for d in [*pick, *pick_never, *pick_rest, *heldout]}
    ids = list(need)
    for docid, st in zip(ids, score_all([need[i] for i in ids], (model, tokenizer), max_len), strict=True):
        cache[docid] = st
    a = evaluate([cache[d.id] for d in pick_rest], [cache[d.id] for d in heldout], tokenizer, args.lengths, name="shipped")
    b = evaluate(
        [cache[d.id] for d in pick], [cache[d.id] for d in [*heldout, *pick_never]], tokenizer, args.lengths, name="shipped"
    )
    return {
        "corpus_files_now": len(every), "corpus_files_at_training": 6229, "nonempty_docs_now": len(docs),
        "heldout": len(heldout),
        "epoch0_sample": len(epoch0), "epoch0_tokens": epoch0_tokens, "tokens_trained": trained_tokens,
        "epoch0_consumed_whole": trained_tokens > epoch0_tokens,
        "share_of_rest_trained_at_most": round((len(epoch0) + len(epoch1 - {d.id for d in epoch0})) / len(rest), 3),
        "a_nonheldout_vs_heldout": a, "b_epoch0_vs_heldout_and_never_sampled": b,
        "b_members": len(pick), "b_nonmembers": len(heldout) + len(pick_never),
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = []

    def block(title: str, aucs: dict[str, Any]) -> None:
        keys = [k for row in aucs.values() for k in row if isinstance(row.get(k), list)]
        keys = list(dict.fromkeys(keys))
        lines.append(f"\n{title}\n")
        lines.append("| method | " + " | ".join(f"{length} tok" for length in aucs) + " |")
        lines.append("|---|" + "---|" * len(aucs))
        lines.append("| members / non-members | " + " | ".join(f"{r['members']} / {r['nonmembers']}" for r in aucs.values()) + " |")
        for key in keys:
            cells = []
            for row in aucs.values():
                v = row.get(key)
                cells.append(f"{v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]" if isinstance(v, list) else "-")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")

    if "finetune" in result:
        block("Fine-tuned copy of the shipped model (AUC [bootstrap 95%])", result["finetune"]["auc"])
    if "shipped" in result and "exact" in result["shipped"]:
        block("Shipped model: its training documents vs the corpus's others (exact ground truth)", result["shipped"]["exact"]["auc"])
    elif "shipped" in result:
        block("Shipped model (a): non-held-out vs held-out", result["shipped"]["a_nonheldout_vs_heldout"])
        block("Shipped model (b): epoch-0 sample vs held-out + never sampled", result["shipped"]["b_epoch0_vs_heldout_and_never_sampled"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="Standard-library files (members + non-members).")
    parser.add_argument("--max-chars", type=int, default=2000, help="Each file is cut to its first N characters.")
    parser.add_argument("--min-chars", type=int, default=2000, help="Only files at least this long.")
    parser.add_argument("--minutes", type=float, default=8.0, help="Training time budget.")
    parser.add_argument("--epochs", type=float, default=4.0, help="Planned epochs over the members.")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--fim-rate", type=float, default=0.5, help="The shipped recipe's 0.5.")
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128, 256, 512])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shipped", type=int, default=0, help="Also score the shipped model on N docs per side.")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "membership")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "load_before": os.getloadavg()}  # fmt: skip
    if not args.skip_finetune:
        result["finetune"] = finetune_experiment(args, args.out)
    if args.shipped:
        result["shipped"] = shipped_experiment(args)
    result["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
