"""Training the small StarCoder-style model on a bundle's documents.

Documents stream from the bundle's docstore (a shuffle buffer mixes them, an optional
``doc_fraction`` samples them), are tokenized, joined with ``<|endoftext|>`` and cut into
sequences of ``seq_len`` tokens; the FIM transformation (:mod:`spacerini.model.fim`) is applied
to each document of each sequence. Training uses AdamW (the fused
kernel where torch has one for the device: on 2 shared CPU cores its step took 0.02-0.05 s
where the per-tensor loop, whose many small operations suffer most from busy cores, took
0.1-2.8 s) with linear warm-up and a cosine decay. Every ``checkpoint_every`` steps a checkpoint is written::

    OUT/checkpoints/step-0000200/
        model.safetensors   weights (safetensors, never pickle)
        optimizer.pt        optimizer tensors (read back with torch.load(weights_only=True))
        state.json          step, losses, seed, config, training seconds so far

A run started again with ``resume=True`` continues from the last checkpoint: the data stream
is a function of the seed, so the sequences already seen are skipped and the step counter,
the learning-rate schedule and the optimizer state continue where they were. Ctrl-C (or
SIGTERM under the CLI) writes a checkpoint of the steps completed before it stops (the last
one stays when it lands inside an optimizer update), and a checkpoint or the finished model is
written beside its destination and moved in, so no weights file is ever half-written. The finished
model (config, weights, tokenizer, generation config) is saved in ``OUT`` itself, in the
layout that ``AutoModelForCausalLM.from_pretrained(OUT)`` reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spacerini.backends import iter_batches
from spacerini.model.errors import TrainingError
from spacerini.model.fim import FimTokens, apply_fim
from spacerini.model.tokenizer import EOS, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX
from spacerini.progress import wanted

logger = logging.getLogger(__name__)

#: The shipped architecture: GPTBigCode with multi-query attention, ~5M parameters.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "n_embd": 256,
    "n_layer": 4,
    "n_head": 4,
    "n_inner": 1024,
    "n_positions": 512,
    "multi_query": True,
    "activation_function": "gelu_pytorch_tanh",
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
#: Share of documents held out of training (chosen by a hash of the doc id) for evaluation.
HELDOUT_FRACTION = 0.01
CHECKPOINTS = "checkpoints"


def _unit_hash(*parts: object) -> float:
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_heldout(docid: str, *, fraction: float = HELDOUT_FRACTION) -> bool:
    """Returns whether ``docid`` belongs to the held-out evaluation documents (a fixed hash split)."""
    return _unit_hash("heldout", docid) < fraction


def iter_training_docs(
    bundle: Any,
    *,
    seed: int,
    epoch: int = 0,
    doc_fraction: float = 1.0,
    shuffle_buffer: int = 256,
    fixed_sample: bool = False,
) -> Iterator[tuple[str, str]]:
    """Streams the training documents ``(id, text)`` of one epoch, held-out documents left out.

    Args:
        bundle: An opened bundle.
        seed: Seed of the sampling and the shuffle.
        epoch: The epoch (changes the order, and the sample unless ``fixed_sample``).
        doc_fraction: Keep each document with this probability (a hash of seed, epoch, doc id).
        shuffle_buffer: Documents held to shuffle the stream locally (1: corpus order).
        fixed_sample: Draw the ``doc_fraction`` sample once (as for epoch 0) and pass over the
            same documents every epoch: a small training set seen several times.

    Yields:
        ``(doc id, text)`` pairs, in training order.
    """
    rng = random.Random(f"{seed}:{epoch}")
    sample_epoch = 0 if fixed_sample else epoch
    buffer: list[tuple[str, str]] = []
    for doc in bundle.iter_docs():
        if not doc.text or is_heldout(doc.id):
            continue
        if doc_fraction < 1.0 and _unit_hash(seed, sample_epoch, doc.id) >= doc_fraction:
            continue
        if len(buffer) < shuffle_buffer:
            buffer.append((doc.id, doc.text))
            continue
        i = rng.randrange(len(buffer))
        yield buffer[i]
        buffer[i] = (doc.id, doc.text)
    rng.shuffle(buffer)
    yield from buffer


def iter_training_texts(
    bundle: Any,
    *,
    seed: int,
    epoch: int = 0,
    doc_fraction: float = 1.0,
    shuffle_buffer: int = 256,
    fixed_sample: bool = False,
) -> Iterator[str]:
    """The texts of :func:`iter_training_docs` (same arguments, same order)."""
    docs = iter_training_docs(
        bundle, seed=seed, epoch=epoch, doc_fraction=doc_fraction, shuffle_buffer=shuffle_buffer, fixed_sample=fixed_sample
    )
    for _, text in docs:
        yield text


class DocLedger:
    """Which documents a training stream fed into which packed sequence.

    :func:`iter_sequences` records, for each document it packs, the epoch and the range of packed
    sequences (0-based, counted over the whole stream in packing order) that hold its tokens, and
    the order in which packed sequences are yielded (packing order, unless a sequence shuffle
    buffer reorders them). A run that consumed ``n`` sequences trained on exactly the documents
    with a token in one of the first ``n`` yielded sequences: the ground truth of membership for
    the model it wrote. (A document cut by the last consumed sequence was trained on in part.)
    """

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, int, str]] = []  # (first sequence, last sequence, epoch, doc id)
        self.order: list[int] = []  # packing index of each yielded sequence, in yield order

    def record(self, sequence: int, epoch: int, docid: str, last: int | None = None) -> None:
        """Notes that ``docid`` (of ``epoch``) has tokens in packed sequences ``sequence`` to ``last``."""
        self.entries.append((sequence, sequence if last is None else last, epoch, docid))

    def yielded(self, sequence: int) -> None:
        """Notes that packed sequence number ``sequence`` is the next one yielded."""
        self.order.append(sequence)

    def fed(self, sequences: int) -> list[tuple[int, str]]:
        """``(epoch, doc id)`` of every document with a token in one of the first ``sequences`` yielded sequences."""
        consumed = self.order[:sequences] if self.order else list(range(sequences))
        if not consumed:
            return []
        if consumed == list(range(len(consumed))):  # packing order: a prefix of the stream
            return [(epoch, docid) for first, _, epoch, docid in self.entries if first < len(consumed)]
        mask = np.zeros(max(consumed) + 2, dtype=np.int64)
        mask[consumed] = 1
        prefix = np.concatenate([[0], np.cumsum(mask)])  # prefix[i]: consumed sequences below i
        top = len(mask)
        out = []
        for first, last, epoch, docid in self.entries:
            lo, hi = min(first, top), min(last + 1, top)
            if prefix[hi] - prefix[lo] > 0:
                out.append((epoch, docid))
        return out


#: File in a run folder that lists the documents the model was trained on (one id a line).
TRAINING_DOCS = "training_docs.txt"


def _id_line(docid: str) -> str:
    # An id that could be misread as a line of its own is written as a JSON string.
    if docid.startswith('"') or docid != docid.strip() or any(c in docid for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return json.dumps(docid)
    return docid


def write_training_docs(path: str | os.PathLike[str], docids: list[str]) -> str:
    """Writes the trained-on document ids, one a line, and returns the file's SHA-256.

    Ids are written as they are (bundles and their ids are public); an id that starts with
    ``"``, has surrounding white space or holds a line break is written as a JSON string.
    """
    data = "".join(_id_line(d) + "\n" for d in docids).encode("utf-8")
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read_training_docs(path: str | os.PathLike[str]) -> list[str]:
    """Reads a list written by :func:`write_training_docs` (``training_docs.txt`` of a run).

    Raises:
        TrainingError: The file is missing or unreadable.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: cannot read the list of training documents ({exc})") from exc
    out = []
    for line in lines[:-1] if lines and lines[-1] == "" else lines:
        out.append(json.loads(line) if line.startswith('"') else line)
    return out


def iter_sequences(
    bundle: Any,
    tokenizer: Any,
    *,
    seq_len: int,
    seed: int,
    doc_fraction: float = 1.0,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
    shuffle_buffer: int = 256,
    epochs: int | None = None,
    ledger: DocLedger | None = None,
    fixed_sample: bool = False,
    sequence_shuffle: int = 0,
) -> Iterator[np.ndarray]:
    """Streams packed, FIM-transformed training sequences of ``seq_len`` tokens.

    The stream depends only on its arguments, so a resumed run can skip what it has seen.

    Args:
        bundle: An opened bundle.
        tokenizer: A fast tokenizer with StarCoder's special tokens.
        seq_len: Tokens per sequence.
        seed: Seed of sampling, order and FIM.
        doc_fraction: Share of documents used per epoch.
        fim_rate: FIM probability per document.
        spm_rate: SPM probability given FIM.
        shuffle_buffer: Documents held for shuffling.
        epochs: Stop after this many passes (None: never stop).
        ledger: Records which document starts in which sequence (see :class:`DocLedger`).
        fixed_sample: The same ``doc_fraction`` sample every epoch (see :func:`iter_training_docs`).
        sequence_shuffle: Packed sequences held in a shuffle buffer (0: packing order). Packing
            keeps a long file in consecutive sequences, so without it a batch (and the next
            dozens of batches) can come from one file; the buffer mixes files across batches.

    Yields:
        int64 arrays of length ``seq_len``.

    Raises:
        TrainingError: An epoch yields no tokens (empty bundle or everything held out).
    """
    backend = tokenizer.backend_tokenizer
    vocab = tokenizer.get_vocab()
    fim = FimTokens(vocab[FIM_PREFIX], vocab[FIM_MIDDLE], vocab[FIM_SUFFIX], vocab[FIM_PAD], vocab[EOS])

    def encode(text: str) -> list[int]:
        return backend.encode(text, add_special_tokens=False).ids

    def decode(ids: Any) -> str:
        return backend.decode(ids, skip_special_tokens=False)

    rng = np.random.default_rng(seed)
    order_rng = random.Random(f"sequences:{seed}")
    pool: list[tuple[int, np.ndarray]] = []  # the sequence shuffle buffer: (packing index, sequence)
    buf: list[int] = []
    epoch = 0
    packed = 0

    def emit(index: int, seq: np.ndarray) -> np.ndarray:
        if ledger is not None:
            ledger.yielded(index)
        return seq

    while epochs is None or epoch < epochs:
        produced = False
        docs = iter_training_docs(
            bundle, seed=seed, epoch=epoch, doc_fraction=doc_fraction, shuffle_buffer=shuffle_buffer, fixed_sample=fixed_sample
        )
        for batch in iter_batches(docs, 16):
            for (docid, _), enc in zip(batch, backend.encode_batch([t for _, t in batch], add_special_tokens=False), strict=True):
                if ledger is not None:
                    ledger.record(packed + len(buf) // seq_len, epoch, docid, last=packed + (len(buf) + len(enc.ids)) // seq_len)
                buf.extend(enc.ids)
                buf.append(fim.eod)
            while len(buf) >= seq_len:
                produced = True
                seq = np.asarray(buf[:seq_len], dtype=np.int64)
                del buf[:seq_len]
                seq = apply_fim(seq, rng, encode=encode, decode=decode, tokens=fim, fim_rate=fim_rate, spm_rate=spm_rate)
                packed += 1
                if sequence_shuffle <= 1:
                    yield emit(packed - 1, seq)
                elif len(pool) < sequence_shuffle:
                    pool.append((packed - 1, seq))
                else:
                    i = order_rng.randrange(len(pool))
                    out, pool[i] = pool[i], (packed - 1, seq)
                    yield emit(*out)
        if not produced and not buf:
            raise TrainingError("the bundle yields no training tokens (is it empty, or is every document held out?)")
        epoch += 1
    order_rng.shuffle(pool)
    for index, seq in pool:
        yield emit(index, seq)


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float = 0.1) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay to ``min_lr_ratio * lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _texts_for_tokenizer(bundle: Any, *, seed: int, max_bytes: int) -> Iterator[str]:
    total = 0
    for doc in bundle.iter_docs():
        if not doc.text or is_heldout(doc.id):
            continue
        # Spread the sample over the whole corpus rather than its first packages.
        if _unit_hash("tok", seed, doc.id) >= 0.5:
            continue
        yield doc.text
        total += len(doc.text)
        if total >= max_bytes:
            return


def _load_or_train_tokenizer(bundle: Any, out: Path, *, vocab_size: int, seq_len: int, seed: int, max_bytes: int) -> Any:
    from transformers import AutoTokenizer

    from spacerini.model.tokenizer import save_tokenizer, train_tokenizer

    if (out / "tokenizer.json").is_file():
        logger.info("using the tokenizer in %s", out)
        return AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    t0 = time.perf_counter()
    tok = train_tokenizer(_texts_for_tokenizer(bundle, seed=seed, max_bytes=max_bytes), vocab_size=vocab_size, max_length=seq_len)
    logger.info("trained a %d-token BPE tokenizer in %.1f s", len(tok), time.perf_counter() - t0)
    save_tokenizer(tok, out)
    return tok


def _load_pretrained(folder: Path, *, seq_len: int) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: cannot load a model to fine-tune ({str(exc).splitlines()[0]})") from exc
    context = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if isinstance(context, int) and seq_len > context:
        raise TrainingError(f"seq_len {seq_len} exceeds the context of {folder} ({context} tokens)")
    return tokenizer, model


def _check_out_outside_bundle(out: Path, bundle_path: str | os.PathLike[str]) -> None:
    """Refuses an output folder that is the bundle or inside it: the model, tokenizer and
    checkpoints would be written among the bundle's files (and shipped with it)."""
    out_r, bundle_r = out.resolve(), Path(bundle_path).expanduser().resolve()
    if out_r == bundle_r or bundle_r in out_r.parents:
        raise TrainingError(f"{out}: the output folder is inside the bundle {bundle_path}; choose a folder outside it")


def _checkpoints(out: Path) -> list[Path]:
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file())


def _save_checkpoint(out: Path, model: Any, optimizer: Any, state: dict[str, Any], *, keep: int) -> Path:
    import torch
    from safetensors.torch import save_model

    folder = out / CHECKPOINTS / f"step-{state['step']:07d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    for old in _checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint at step %d: %s", state["step"], folder)
    return folder


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, device: Any) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_model

    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        load_model(model, str(folder / "model.safetensors"), device=str(device))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise TrainingError(f"{folder}: cannot resume from this checkpoint ({exc}); remove it or pass resume=False") from exc
    return state


class ThreadTuner:
    """Keeps picking the faster torch thread count while a shared CPU's load changes.

    On a machine whose cores other jobs use too, more threads are not always faster: each torch
    operation ends at a barrier that waits for its slowest thread, and a thread that the
    scheduler has set aside stalls them all. (Measured on 2 shared cores: 2 threads train
    2.3x faster than 1 on an idle machine and 1.6x slower at a load of 8.) The tuner times
    ``trial_steps`` steps with each thread count from 1 to ``max_threads``, uses the one with
    the lowest median step time for ``period`` steps, then measures again.

    Args:
        max_threads: The most threads to use.
        trial_steps: Steps timed per candidate.
        period: Steps run with the chosen count before the next trial.
    """

    def __init__(self, max_threads: int, *, trial_steps: int = 6, period: int = 150) -> None:
        self.candidates = list(range(1, max(1, max_threads) + 1))
        self.trial_steps, self.period = trial_steps, period
        self.times: dict[int, list[float]] = {}
        self.best = self.candidates[-1]
        self._step = 0

    def threads_for_next_step(self) -> int:
        """The thread count to run the next step with (the caller sets it)."""
        cycle = len(self.candidates) * self.trial_steps + self.period
        pos = self._step % cycle
        if len(self.candidates) > 1 and pos < len(self.candidates) * self.trial_steps:
            return self.candidates[pos // self.trial_steps]
        return self.best

    def record(self, threads: int, seconds: float) -> None:
        """Records the duration of a step run with ``threads`` threads."""
        cycle = len(self.candidates) * self.trial_steps + self.period
        trials = len(self.candidates) * self.trial_steps
        pos = self._step % cycle
        self._step += 1
        if len(self.candidates) < 2 or pos >= trials:
            return
        if pos == 0:
            self.times = {}
        self.times.setdefault(threads, []).append(seconds)
        if pos == trials - 1:
            medians = {t: float(np.median(v)) for t, v in self.times.items()}
            self.best = min(medians, key=medians.__getitem__)
            logger.info("thread trial (median s/step by threads): %s; using %d", {t: round(m, 3) for t, m in medians.items()}, self.best)


def make_optimizer(groups: list[dict[str, Any]], *, lr: float, device: Any) -> Any:
    """Returns AdamW (betas 0.9/0.95) over ``groups``, fused when torch supports it on ``device``.

    The fused and the per-tensor AdamW keep the same state (``step``, ``exp_avg``,
    ``exp_avg_sq``), so checkpoints of either resume with either.
    """
    import torch

    options: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.95), "eps": 1e-8}
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cpu", "cuda"), **options)
    except (RuntimeError, TypeError, ValueError) as exc:  # an older torch or a device without the kernel
        logger.info("fused AdamW unavailable (%s); using the foreach implementation", exc)
        return torch.optim.AdamW(groups, foreach=True, **options)


def build_model(tokenizer: Any, *, config: Mapping[str, Any] | None = None, seq_len: int = 512) -> Any:
    """Returns a freshly initialised ``GPTBigCodeForCausalLM`` for ``tokenizer``.

    Args:
        tokenizer: The tokenizer (its size sets the vocabulary).
        config: Overrides of :data:`DEFAULT_CONFIG`.
        seq_len: Training context; ``n_positions`` is raised to it when smaller.
    """
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    options = {**DEFAULT_CONFIG, **(config or {})}
    options["n_positions"] = max(int(options["n_positions"]), seq_len)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    cfg = GPTBigCodeConfig(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, **options)
    return GPTBigCodeForCausalLM(cfg)


def train(
    bundle_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    steps: int = 1000,
    batch_size: int = 8,
    seq_len: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    warmup_steps: int | None = None,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
    doc_fraction: float = 1.0,
    fixed_sample: bool = False,
    sequence_shuffle: int = 0,
    vocab_size: int = 8192,
    tokenizer_max_bytes: int = 20_000_000,
    config: Mapping[str, Any] | None = None,
    checkpoint_every: int = 200,
    keep_checkpoints: int = 2,
    device: str | None = None,
    threads: int | None = None,
    adapt_threads: bool = False,
    time_limit: float | None = None,
    init_from: str | os.PathLike[str] | None = None,
    lr_schedule: Callable[[int, float], float] | None = None,
) -> dict[str, Any]:
    """Trains (or continues training) the StarCoder-style model on a bundle.

    Args:
        bundle_path: The bundle whose documents are the training data.
        out_dir: Where the tokenizer, checkpoints and the finished model go.
        steps: Total optimizer steps (a resumed run counts the steps already done).
        batch_size: Sequences per step.
        seq_len: Tokens per sequence (the context trained on).
        lr: Peak learning rate.
        seed: Seed of initialisation, data order and FIM.
        resume: Continue from the last checkpoint in ``out_dir`` when there is one.
        progress: Show a progress bar.
        warmup_steps: Linear warm-up steps (default: 5% of ``steps``).
        weight_decay: AdamW weight decay of the matrices (not of biases, norms or embeddings).
        grad_clip: Gradient-norm clip.
        fim_rate: FIM probability per document.
        spm_rate: SPM probability given FIM.
        doc_fraction: Share of documents used per epoch (samples a large corpus).
        fixed_sample: Train on the same ``doc_fraction`` sample every epoch (a small training
            set seen several times, as code models see their data) instead of a new one.
        sequence_shuffle: Packed sequences held in a shuffle buffer, so that a batch mixes
            files (0: packing order, where a long file fills consecutive batches).
        vocab_size: Vocabulary of a newly trained tokenizer.
        tokenizer_max_bytes: Characters of text the tokenizer is trained on.
        config: Overrides of :data:`DEFAULT_CONFIG` (``n_embd``, ``n_layer``, ...).
        checkpoint_every: Steps between checkpoints (the last step always gets one).
        keep_checkpoints: Checkpoints kept (older ones are removed).
        device: Torch device (default: :func:`spacerini.model.device.choose_device`).
        threads: CPU threads for torch (default: torch's own).
        adapt_threads: On a CPU, keep choosing between 1 and ``threads`` threads by timing
            steps (:class:`ThreadTuner`; for shared machines).
        time_limit: Stop (with a checkpoint) after this many seconds of training.
        init_from: Fine-tune: start from this model folder's weights and tokenizer (e.g.
            :func:`spacerini.model.default_model_path`) instead of a fresh model; ``config``,
            ``vocab_size`` and ``tokenizer_max_bytes`` are then unused.
        lr_schedule: The learning rate of each step as a function of ``(step, seconds)``: the
            0-based step and the seconds of training so far in this run (the stream replay of
            a resumed run excluded). Default: :func:`lr_at` with ``lr``, ``steps`` and
            ``warmup_steps``. With ``time_limit``, a schedule of the seconds ends its decay
            when the time runs out whatever the throughput (on a shared CPU, the steps a time
            budget allows are not known in advance).

    Returns:
        A JSON-serialisable report (also written to ``out_dir/training_report.json``): steps,
        tokens, losses, seconds, tokens/s, parameters, device, ``model_sha256`` (of the
        ``model.safetensors`` it describes: the report stays tied to its weights when the folder
        is copied), the checkpoints resumed from and written (relative to ``out_dir``), and ``training_docs``: the file (:data:`TRAINING_DOCS`, in ``out_dir``) that
        lists, one id a line in the order first fed, every document with at least one token
        in a sequence of the steps taken (all epochs, a resumed run's earlier steps included:
        the stream is deterministic, so they are replayed), with its count and SHA-256.

    Raises:
        TrainingError: Bad options, no data or an unusable checkpoint.
        BundleNotFoundError: No bundle at ``bundle_path``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    from spacerini.bundle import open_bundle
    from spacerini.model.device import choose_device

    if steps < 1 or batch_size < 1 or seq_len < 8 or not 0 < lr < math.inf or checkpoint_every < 1:
        raise TrainingError(
            f"steps, batch_size and checkpoint_every must be >= 1, seq_len >= 8 and lr a number > 0 (lr is {lr!r})"
        )
    if not (0 <= fim_rate <= 1 and 0 <= spm_rate <= 1 and 0 < doc_fraction <= 1):
        raise TrainingError("fim_rate and spm_rate must be in [0, 1] and doc_fraction in (0, 1]")
    if time_limit is not None and not 0 <= time_limit <= math.inf:
        raise TrainingError(f"time_limit must be a number of seconds >= 0, not {time_limit!r}")
    bundle = open_bundle(bundle_path)
    _check_out_outside_bundle(Path(out_dir).expanduser(), bundle.path)
    if threads:
        torch.set_num_threads(threads)
    dev = choose_device(device)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    warmup = max(1, steps // 20) if warmup_steps is None else warmup_steps

    torch.manual_seed(seed)
    if init_from is not None:
        tokenizer, model = _load_pretrained(Path(init_from).expanduser(), seq_len=seq_len)
        model = model.to(dev)
    else:
        tokenizer = _load_or_train_tokenizer(
            bundle, out, vocab_size=vocab_size, seq_len=seq_len, seed=seed, max_bytes=tokenizer_max_bytes
        )
        model = build_model(tokenizer, config=config, seq_len=seq_len).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "wte" not in n and "wpe" not in n)]
    optimizer = make_optimizer(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, device=dev
    )

    start_step, losses, resumed_from, seconds_before = 0, [], None, 0.0
    previous = _checkpoints(out) if resume else []
    if previous:
        state = _load_checkpoint(previous[-1], model, optimizer, dev)
        stream_options = {"doc_fraction": doc_fraction, "fixed_sample": fixed_sample, "sequence_shuffle": sequence_shuffle}
        changed = [k for k, v in stream_options.items() if k in state and state[k] != v]
        if changed:
            raise TrainingError(f"{previous[-1]}: the checkpoint was trained with other {', '.join(changed)}; resume with the same values or resume=False")
        if state.get("seed") != seed or state.get("batch_size") != batch_size or state.get("seq_len") != seq_len:
            raise TrainingError(
                f"{previous[-1]}: the checkpoint was trained with seed/batch_size/seq_len "
                f"{state.get('seed')}/{state.get('batch_size')}/{state.get('seq_len')}; resume with the same values or resume=False"
            )
        start_step, losses, resumed_from = int(state["step"]), list(state.get("losses", [])), str(previous[-1])
        seconds_before = float(state.get("train_seconds", 0.0))
        logger.info("resuming from %s at step %d", previous[-1], start_step)
    elif not resume and (out / CHECKPOINTS).is_dir():
        shutil.rmtree(out / CHECKPOINTS)

    ledger = DocLedger()
    stream = iter_sequences(
        bundle, tokenizer, seq_len=seq_len, seed=seed, doc_fraction=doc_fraction, fim_rate=fim_rate, spm_rate=spm_rate,
        ledger=ledger, fixed_sample=fixed_sample, sequence_shuffle=sequence_shuffle,
    )  # fmt: skip
    for _ in range(start_step * batch_size):  # the sequences a resumed run has already seen
        next(stream)
    pad_id = tokenizer.convert_tokens_to_ids(FIM_PAD)
    use_amp = dev.type == "cuda"
    model.train()
    bar = tqdm(total=steps, initial=start_step, desc="train", unit="step", disable=not wanted(progress))
    t0 = time.perf_counter()
    step = start_step
    last_ckpt = resumed_from
    tokens_this_run = 0
    tuner = ThreadTuner(torch.get_num_threads()) if adapt_threads and dev.type == "cpu" else None

    def checkpoint() -> str:
        state = {
            "step": step,
            "steps": steps,
            "seed": seed,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "doc_fraction": doc_fraction,
            "fixed_sample": fixed_sample,
            "sequence_shuffle": sequence_shuffle,
            "lr": lr,
            "losses": losses,
            "train_seconds": round(seconds_before + time.perf_counter() - t0, 2),
            "config": model.config.to_diff_dict() if hasattr(model.config, "to_diff_dict") else {},
        }
        return str(_save_checkpoint(out, model, optimizer, state, keep=keep_checkpoints))

    # Ctrl-C (or SIGTERM, which the CLI raises as KeyboardInterrupt) writes a checkpoint of the
    # steps completed, unless it arrived inside an optimizer update; then the last one stays.
    consistent = True
    try:
        while step < steps:
            if tuner is not None:
                n_threads = tuner.threads_for_next_step()
                torch.set_num_threads(n_threads)
                step_t0 = time.perf_counter()
            batch = torch.from_numpy(np.stack([next(stream) for _ in range(batch_size)])).to(dev)
            labels = batch.masked_fill(batch == pad_id, -100)
            step_lr = (
                lr_at(step, lr=lr, steps=steps, warmup_steps=warmup)
                if lr_schedule is None
                else float(lr_schedule(step, time.perf_counter() - t0))
            )
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = model(input_ids=batch, labels=labels).loss
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at step {step + 1}: lower the learning rate")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            consistent = False  # until the step is counted: a checkpoint now would hold a half-applied update
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if tuner is not None:
                tuner.record(n_threads, time.perf_counter() - step_t0)
            step += 1
            tokens_this_run += batch.numel()
            losses.append(round(float(loss.item()), 4))
            consistent = True
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            out_of_time = time_limit is not None and time.perf_counter() - t0 >= time_limit
            if step % checkpoint_every == 0 or step == steps or out_of_time:
                last_ckpt = checkpoint()
                elapsed = time.perf_counter() - t0
                logger.info(
                    "step %d: loss %.3f (mean of the last 50: %.3f), lr %.2e, %.0f tokens/s",
                    step, losses[-1], sum(losses[-50:]) / len(losses[-50:]), optimizer.param_groups[0]["lr"],
                    tokens_this_run / elapsed if elapsed > 0 else float("nan"),
                )
            if out_of_time:
                logger.warning("stopping at step %d: time limit of %.0f s reached", step, time_limit)
                break
    except KeyboardInterrupt:
        bar.close()
        done = last_ckpt is not None and Path(last_ckpt).name == f"step-{step:07d}"
        if consistent and step > start_step and not done:
            written = checkpoint()  # a second Ctrl-C stops this too: the earlier checkpoint stays
            logger.warning("interrupted at step %d: checkpoint %s written; run again to resume", step, written)
        else:
            logger.warning("interrupted at step %d; the last checkpoint is %s", step, last_ckpt)
        raise
    bar.close()
    seconds = time.perf_counter() - t0

    model.eval()
    # Written beside OUT's files and moved in one by one: an interrupted save leaves no
    # half-written weights file (each file is either the old one or the new one).
    staging = out / ".final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    eos = tokenizer.convert_tokens_to_ids(EOS)
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(str(staging))
    for item in sorted(staging.iterdir(), key=lambda p: p.name == "model.safetensors"):
        os.replace(item, out / item.name)
    staging.rmdir()
    fed = ledger.fed(step * batch_size)
    docids = list(dict.fromkeys(docid for _, docid in fed))
    docs_sha256 = write_training_docs(out / TRAINING_DOCS, docids)
    tail = losses[-50:]
    def relative(path: str | os.PathLike[str], base: Path) -> str:  # as it is when outside ``base``
        try:
            return Path(path).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return str(path)

    def in_run(path: str | None) -> str | None:  # checkpoint paths relative to the run folder
        return None if path is None else relative(path, out)

    def shown(path: Path) -> str:  # relative to the working folder when inside it: no machine's layout is shipped
        return relative(path, Path.cwd())

    report = {
        "bundle": shown(bundle.path),
        "model_sha256": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest(),
        "start_step": start_step,
        "steps": step,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "seed": seed,
        "fim_rate": fim_rate,
        "spm_rate": spm_rate,
        "doc_fraction": doc_fraction,
        "fixed_sample": fixed_sample,
        "sequence_shuffle": sequence_shuffle,
        "tokens_this_run": tokens_this_run,
        "tokens_total": step * batch_size * seq_len,
        "seconds": round(seconds, 2),
        "seconds_total": round(seconds_before + seconds, 2),
        "tokens_per_second": round(tokens_this_run / seconds, 1) if seconds > 0 else None,
        "final_loss": losses[-1] if losses else None,
        "mean_loss_last_50": round(sum(tail) / len(tail), 4) if tail else None,
        "parameters": n_params,
        "device": str(dev),
        "resumed_from": in_run(resumed_from),
        "checkpoint": in_run(last_ckpt),
        "init_from": str(init_from) if init_from is not None else None,
        "training_docs": {
            "file": TRAINING_DOCS,
            "count": len(docids),
            "sha256": docs_sha256,
            "epochs": len({epoch for epoch, _ in fed}),
            "rule": "every document with at least one token in a sequence of the steps taken",
        },
    }
    report_tmp = out / "training_report.json.tmp"
    report_tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    os.replace(report_tmp, out / "training_report.json")
    logger.info("trained to step %d in %.1f s (loss %.3f)", step, seconds, report["final_loss"] or float("nan"))
    return report
