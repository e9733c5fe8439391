"""Trains the bundled code model on a lent GPU machine (issue 15 item 4), in three steps.

A session that is lent a device machine (the ``device`` tool: one H200, 15 minutes of device
time for the whole session, no network there, its own Python with PyTorch, transformers,
tokenizers, numpy, pyarrow, safetensors, tqdm and click) runs the middle step there; the other
two run here. Spacerini is not installed there: the command puts the checkout on ``PYTHONPATH``,
and the training path imports nothing beyond that list (``prepare`` checks it here in a fresh
interpreter, with the modules the machine lacks blocked).

1. ``prepare`` (here): writes ``gpu-carry/bundle``, a small bundle of the training documents
   (by default the shipped model's own ``training_docs.txt``, read from the model's demo
   bundle, so the membership ground truth stays the same list; ``--extra N`` adds N more
   documents of that bundle), with only the ``owners`` backend (no JVM, no native index). Add
   ``gpu-carry/`` to ``.git/info/exclude``; it travels with ``carry``.
2. ``train`` (there): fine-tunes from the shipped weights (``--init``) on CUDA with bf16
   autocast, for ``--minutes`` of training with the learning rate a function of the time (as
   ``model_train_continue.py``), and writes into ``$OUT`` the model split into parts under the
   16 MiB a file that comes back, the training report and ``training_docs.txt``.
3. ``collect`` (here): joins the parts into a model folder, checks its SHA-256 against the
   report, and prints the command that measures it (``model_bench.py --model DIR
   --compare-model spacerini/model/weights``). Ship it only if it does better.

One call does step 2 (the machine starts in a minute or two; 6 minutes of training, and the
start and the imports, fit in one call of 600 s)::

    python benchmarks/gpu_model_train.py prepare
    # device run, carry ["gpu-carry"], timeout_s 600:
    #   PYTHONPATH=. python3 benchmarks/gpu_model_train.py train --minutes 6 --out "$OUT"
    python benchmarks/gpu_model_train.py collect FILES_AT --into /tmp/gpu-model

Not yet run on a GPU (no session so far was lent one); ``train --device cpu --minutes 0.2``
runs the same path on a CPU, which is how it was checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CARRY = ROOT / "gpu-carry"
WEIGHTS = ROOT / "spacerini" / "model" / "weights"
DEMO_BUNDLE = ROOT / "benchmarks" / "out" / "model-demo-bundle"
PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may hold
#: What the device machine's Python holds (its image; see the device tool's KINDS.md).
MACHINE_HAS = ("torch", "transformers", "tokenizers", "numpy", "pyarrow", "safetensors", "tqdm", "click")


def prepare(args: argparse.Namespace) -> None:
    from spacerini.bundle import build_bundle, open_bundle
    from spacerini.records import Doc

    wanted = [line for line in (WEIGHTS / "training_docs.txt").read_text(encoding="utf-8").splitlines() if line]
    source = open_bundle(args.bundle)
    store = source.docstore
    docs = [store.get(docid) for docid in wanted]
    if args.extra:
        chosen = set(wanted)
        for doc in store.iter_docs():
            if len(docs) >= len(wanted) + args.extra:
                break
            if doc.id not in chosen:
                docs.append(doc)
    out = Path(args.out)
    bundle = build_bundle(
        [Doc(id=d.id, text=d.text, fields=dict(d.fields), meta=dict(d.meta)) for d in docs],
        out / "bundle", backends=["owners"], progress=False,
    )  # fmt: skip
    size = sum(p.stat().st_size for p in (out / "bundle").rglob("*") if p.is_file())
    print(f"{out / 'bundle'}: {len(bundle):,} documents ({len(wanted)} of the shipped model's training list), {size / 2**20:.1f} MiB")
    _check_imports(out / "bundle")
    print("next: add gpu-carry/ to .git/info/exclude, then run `train` on the device with carry ['gpu-carry']")


def _check_imports(bundle: Path) -> None:
    """Opens the bundle and imports the training path in a fresh interpreter in which every
    third-party module outside :data:`MACHINE_HAS` fails to import, as on the device machine."""
    code = f"""
import builtins, sys
sys.path.insert(0, {str(ROOT)!r})
allowed = set({MACHINE_HAS!r}) | {{"spacerini"}}
real = builtins.__import__
std = set(sys.stdlib_module_names)
def guarded(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.split(".")[0]
    if level == 0 and top not in std and top not in allowed and not top.startswith("_"):
        raise ImportError(f"{{name}} is not on the device machine")
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = guarded
from spacerini.bundle import open_bundle
from spacerini.model.training import iter_training_docs
b = open_bundle({str(bundle)!r})
n = sum(1 for _ in iter_training_docs(b, seed=0, epoch=0))
print("imports and bundle fine on the device machine's packages:", n, "documents")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def train(args: argparse.Namespace) -> None:
    import torch
    from model_train_continue import time_schedule

    from spacerini.model.training import train as run_training

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, device {device}" + (f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else ""), flush=True)
    out = Path(args.out)
    run = Path(args.run)
    budget = args.minutes * 60
    started = time.perf_counter()
    report = run_training(
        str(Path(args.carry) / "bundle"), run, steps=10**9, batch_size=args.batch_size, seq_len=512, lr=args.peak,
        seed=0, resume=False, progress=False, doc_fraction=1.0, fixed_sample=True, sequence_shuffle=args.shuffle,
        checkpoint_every=10**9, keep_checkpoints=1, device=device, time_limit=budget, init_from=args.init,
        lr_schedule=time_schedule(budget=budget, start=args.start, peak=args.peak, floor=args.floor, warm=args.warm),
    )  # fmt: skip
    print(
        f"trained {report['steps']} steps, {report['tokens_this_run']:,} tokens in {time.perf_counter() - started:.0f} s "
        f"({report['tokens_per_second']:,.0f} tokens/s); mean loss of the last 50 steps {report['mean_loss_last_50']}",
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    weights = (run / "model.safetensors").read_bytes()
    for i in range(math.ceil(len(weights) / PART_BYTES)):
        (out / f"model.part{i}").write_bytes(weights[i * PART_BYTES : (i + 1) * PART_BYTES])
    for name in ("training_report.json", "training_docs.txt", "config.json"):
        if (run / name).is_file():
            (out / name).write_bytes((run / name).read_bytes())
    print("sha256", hashlib.sha256(weights).hexdigest(), flush=True)


def collect(args: argparse.Namespace) -> None:
    src, into = Path(args.files_at), Path(args.into)
    into.mkdir(parents=True, exist_ok=True)
    parts = sorted(src.rglob("model.part*"), key=lambda p: int(p.name.removeprefix("model.part")))
    if not parts:
        raise SystemExit(f"{src}: no model.part* files")
    weights = b"".join(p.read_bytes() for p in parts)
    report = json.loads(next(src.rglob("training_report.json")).read_text(encoding="utf-8"))
    digest = hashlib.sha256(weights).hexdigest()
    if report.get("model_sha256") not in (None, digest):
        raise SystemExit(f"the joined weights' SHA-256 {digest} is not the report's {report['model_sha256']}")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json"):
        (into / name).write_bytes((WEIGHTS / name).read_bytes())
    (into / "model.safetensors").write_bytes(weights)
    (into / "training_report.json").write_bytes(next(src.rglob("training_report.json")).read_bytes())
    # The model was trained on the shipped list (its earlier stages) and on what this run fed:
    # the union, in first-fed order, is its membership ground truth.
    shipped = (WEIGHTS / "training_docs.txt").read_text(encoding="utf-8").splitlines()
    found = next(src.rglob("training_docs.txt"), None)
    fed = found.read_text(encoding="utf-8").splitlines() if found is not None else []
    seen = set(shipped)
    (into / "training_docs.txt").write_text(
        "\n".join([*shipped, *(d for d in fed if d and d not in seen)]) + "\n", encoding="utf-8"
    )
    print(f"{into}: {len(weights) / 1e6:.1f} MB, sha256 {digest[:16]}..., {report['steps']} steps, {report['tokens_this_run']:,} tokens")
    print(f"measure: python benchmarks/model_bench.py --model {into} --compare-model {WEIGHTS.relative_to(ROOT)} --threads 2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="here: the small bundle to carry")
    p.add_argument("--bundle", default=str(DEMO_BUNDLE))
    p.add_argument("--out", default=str(CARRY))
    p.add_argument("--extra", type=int, default=0, help="documents of the bundle beyond the training list")
    p.set_defaults(run_step=prepare)
    t = sub.add_parser("train", help="there: fine-tune on the GPU, parts into --out")
    t.add_argument("--carry", default=str(CARRY))
    t.add_argument("--run", default="/tmp/gpu-run")
    t.add_argument("--out", required=True)
    t.add_argument("--init", default=str(WEIGHTS))
    t.add_argument("--minutes", type=float, default=6.0)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--shuffle", type=int, default=256, help="packed sequences in the shuffle buffer")
    t.add_argument("--start", type=float, default=2e-4)
    t.add_argument("--peak", type=float, default=1e-3)
    t.add_argument("--floor", type=float, default=5e-5)
    t.add_argument("--warm", type=float, default=0.05)
    t.add_argument("--device", default=None)
    t.set_defaults(run_step=train)
    c = sub.add_parser("collect", help="here: join the returned parts into a model folder")
    c.add_argument("files_at")
    c.add_argument("--into", required=True)
    c.set_defaults(run_step=collect)
    args = parser.parse_args()
    args.run_step(args)


if __name__ == "__main__":
    main()
