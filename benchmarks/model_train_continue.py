"""Continues the bundled code model's training run for a wall-clock budget (issue 15 item 4).

The shipped weights' last stage was trained with this script. It resumes the run in ``--run``
(its last checkpoint, optimizer state included; the fixed 5 % document sample, so the model's
``training_docs.txt`` stays the same list) and trains for ``--budget`` seconds with a learning
rate that is a function of the time, not of the step: a linear re-warm from ``--start`` (where
the previous stage ended) to ``--peak`` over the first ``--warm`` share of the budget, then a
cosine down to ``--floor`` at the end of the budget. On a CPU shared with other jobs the number
of steps a budget allows is not known in advance; a schedule of the steps would either stop
before its decay or finish early. A checkpoint is written every ``--checkpoint-every`` steps
and all are kept, to choose one by held-out perplexity afterwards.

Usage (the shipped run: step 1,160 to the end, 1 thread, ``nice -n 5``)::

    nice -n 5 python benchmarks/model_train_continue.py --run RUN --budget 4760

where ``RUN`` holds the tokenizer, ``config.json`` and ``checkpoints/step-0001160`` of the
previous stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path


def time_schedule(*, budget: float, start: float, peak: float, floor: float, warm: float):
    """Returns ``lr(step, seconds)``: re-warm from ``start`` to ``peak``, then cosine to ``floor``."""

    def lr(step: int, seconds: float) -> float:
        p = min(1.0, seconds / budget)
        if p < warm:
            return start + (peak - start) * p / warm
        q = (p - warm) / (1 - warm)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * q))

    return lr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(Path(__file__).resolve().parent / "out" / "model-demo-bundle"))
    parser.add_argument("--run", required=True, help="run folder with the checkpoint to continue")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training (the replay excluded)")
    parser.add_argument("--start", type=float, default=2e-4)
    parser.add_argument("--peak", type=float, default=1.2e-3)
    parser.add_argument("--floor", type=float, default=1e-4)
    parser.add_argument("--warm", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from spacerini.model.training import train

    report = train(
        args.bundle, args.run, steps=100_000, batch_size=4, seq_len=512, lr=args.peak, seed=0, resume=True,
        progress=False, doc_fraction=0.05, fixed_sample=True, sequence_shuffle=1024, threads=args.threads,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=1000, time_limit=args.budget,
        lr_schedule=time_schedule(budget=args.budget, start=args.start, peak=args.peak, floor=args.floor, warm=args.warm),
    )  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
