"""Robustness of `model membership` and `model train`: long texts, labels, bad options, Ctrl-C."""

from __future__ import annotations

import json
import math
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from spacerini.model import membership
from spacerini.model.errors import TrainingError
from spacerini.model.membership import head_ids, score_text
from spacerini.model.training import train
from tests.cli_helpers import run as _run
from tests.model.test_membership import _one_line_error, model_dir, tiny_lm  # noqa: F401 (fixtures)
from tests.model.test_train import OPTIONS

CODE = (Path(membership.__file__).read_text(encoding="utf-8") + " héllo 日本語 😀  \t\n\n   x" * 3)


def _shipped_tokenizer():
    from transformers import AutoTokenizer

    from spacerini.model.generation import default_model_path

    return AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)


def test_head_ids_are_the_first_tokens_of_the_whole_text() -> None:
    tok = _shipped_tokenizer()
    rng = random.Random(0)
    for _ in range(40):
        a = rng.randrange(len(CODE))
        text = " " * rng.choice([0, 1, 700]) + CODE[a : a + rng.randrange(1, 6000)]
        full = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
        for m in (1, 2, 7, 100, 1500):
            assert head_ids(tok, text, m) == full[:m], (a, m)


def test_max_tokens_tokenizes_only_the_head_of_a_long_text() -> None:
    """A 2 MB file scored with --max-tokens 50 used to be tokenized whole (20 MB: 17 s, 3.4 GB)."""
    from spacerini.model.generation import load_model
    from spacerini.model.membership import token_stats

    model, tok = load_model(None, device="cpu")
    seen: list[int] = []
    backend = tok.backend_tokenizer

    class Backend:  # the real tokenizer, with the length of each text it is given noted
        pre_tokenizer, normalizer = backend.pre_tokenizer, backend.normalizer

        def encode(self, text, **kw):
            seen.append(len(text))
            return backend.encode(text, **kw)

    class Recording:
        backend_tokenizer = Backend()

        def __call__(self, text, **kw):
            seen.append(len(text))
            return tok(text, **kw)

        def __getattr__(self, name):
            return getattr(tok, name)

    text = (CODE * (2_000_000 // len(CODE) + 1))[:2_000_000]
    stats = token_stats([text], model=(model, Recording()), max_tokens=50, device="cpu")[0]
    assert stats.ids.tolist() == tok(text[:5000], add_special_tokens=False)["input_ids"][:50]
    assert seen and max(seen) < 100_000


def _reference(model, tokenizer, text: str, ids: list[int], k: float) -> dict[str, float]:
    import torch

    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[eos, *ids]])).logits[0, :-1].double()
    lp = torch.log_softmax(logits, -1)
    p = lp.exp()
    mu = (p * lp).sum(-1)
    sigma = ((p * (lp - mu[:, None]) ** 2).sum(-1)).sqrt()
    logp = lp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    z = ((logp - mu) / sigma).numpy()
    logp = logp.numpy()
    n = max(1, int(len(logp) * k))
    loss = float(-logp.mean())
    return {
        "tokens": len(ids),
        "loss": loss,
        "zlib": loss / len(zlib.compress(text.encode("utf-8"))),
        "min_k": float(np.sort(logp)[:n].mean()),
        "min_k_plus_plus": float(np.sort(z)[:n].mean()),
    }


def test_cli_refuses_a_huge_text_at_once_and_scores_its_head(model_dir, tiny_lm, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(membership, "MAX_SCORED_CHARS", 2000)
    big = tmp_path / "big.py"
    big.write_text(CODE[:5000], encoding="utf-8")
    m = ["--model", str(model_dir)]
    _one_line_error(*_run(["model", "membership", str(big), *m], capsys)[::2], "--max-tokens")
    code, out, err = _run(["model", "membership", str(big), "--max-tokens", "12", "--k", "0.5", "--json", *m], capsys)
    assert code == 0, err
    got = json.loads(out)["scores"]
    model, tok = tiny_lm
    ids = tok(CODE[:5000], add_special_tokens=False)["input_ids"][:12]
    want = _reference(model, tok, tok.decode(ids), ids, 0.5)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_cli_names_a_small_k_as_it_is(model_dir, capsys) -> None:  # noqa: F811
    code, out, err = _run(["model", "membership", "def f(x): return x", "--k", "0.001", "--model", str(model_dir)], capsys)
    assert code == 0, err
    assert "Min-0.1% Prob" in out and "Min-0%" not in out


def test_shipped_model_scores_match_plain_torch() -> None:
    """The shipped model, one token, two tokens and a short function; k rounding to one token and k=1."""
    from spacerini.model.generation import load_model

    model, tok = load_model(None, device="cpu")
    for text in ("x", "import os", "def f(x):\n    return x + 1\n"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for k in (0.01, 0.2, 1.0):
            got = score_text(text, k=k, device="cpu")
            for key, value in _reference(model, tok, text, ids, k).items():
                assert getattr(got, key) == pytest.approx(value, rel=1e-4, abs=1e-6), (text, k, key)
            assert got.perplexity == pytest.approx(math.exp(got.loss))


def test_train_refuses_an_output_folder_inside_the_bundle(tiny_bundle, tmp_path, capsys) -> None:
    before = sorted(p.relative_to(tiny_bundle.path) for p in Path(tiny_bundle.path).rglob("*"))
    for out in (tiny_bundle.path, Path(tiny_bundle.path) / "model"):
        with pytest.raises(TrainingError, match="inside the bundle"):
            train(tiny_bundle.path, out, steps=1, **OPTIONS)
    args = ["model", "train", "--bundle", str(tiny_bundle.path), "--steps", "1", "--threads", "1"]
    _one_line_error(*_run([*args, "--out", str(Path(tiny_bundle.path) / "m")], capsys)[::2], "inside the bundle")
    assert sorted(p.relative_to(tiny_bundle.path) for p in Path(tiny_bundle.path).rglob("*")) == before


def test_train_refuses_nonsense_numbers_before_any_work(tiny_bundle, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    for bad in ({"lr": math.nan}, {"lr": math.inf}, {"lr": -1.0}, {"time_limit": -1.0}):
        with pytest.raises(TrainingError):
            train(tiny_bundle.path, out, steps=1, **{**OPTIONS, **bad})
    assert not out.exists()  # refused before the tokenizer is trained
    args = ["model", "train", "--bundle", str(tiny_bundle.path), "--out", str(out), "--steps", "1"]
    _one_line_error(*_run([*args, "--lr", "nan"], capsys)[::2], "lr")
    _one_line_error(*_run([*args, "--time-limit", "-1"], capsys)[::2], "--time-limit")
    # a fresh model has as many positions as --seq-len: 100000 was out of memory, not an error
    _one_line_error(*_run([*args, "--seq-len", "100000"], capsys)[::2], "--seq-len")
    assert not out.exists()


def test_ctrl_c_writes_a_checkpoint_that_resumes_to_the_same_model(tiny_bundle, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    options = {**OPTIONS, "checkpoint_every": 100, "warmup_steps": 1}

    def schedule(step: int, seconds: float) -> float:
        return 3e-3 * (1 - step / 10)

    def interrupted(step: int, seconds: float) -> float:
        if step == 3:  # three steps done, the fourth not begun: Ctrl-C
            raise KeyboardInterrupt
        return schedule(step, seconds)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_bundle.path, out, steps=5, lr_schedule=interrupted, **options)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000003"]
    assert not (out / "model.safetensors").exists()
    state = json.loads((out / "checkpoints" / "step-0000003" / "state.json").read_text())
    assert state["step"] == 3 and len(state["losses"]) == 3

    resumed = train(tiny_bundle.path, out, steps=5, lr_schedule=schedule, **options)
    straight = train(tiny_bundle.path, tmp_path / "straight", steps=5, lr_schedule=schedule, **options)
    assert resumed["start_step"] == 3 and resumed["resumed_from"] == "checkpoints/step-0000003"
    assert resumed["training_docs"]["sha256"] == straight["training_docs"]["sha256"]
    a = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "straight", local_files_only=True).state_dict()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() < 1e-4, name
    assert not (out / ".final.tmp").exists()
