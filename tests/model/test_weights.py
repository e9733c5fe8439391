"""The shipped model: loads offline, has the promised architecture, generates and infills."""

from __future__ import annotations

import math

import pytest

from spacerini.model.errors import ModelError
from spacerini.model.generation import default_model_path, fim_prompt, generate, load_model, model_info

WEIGHTS = default_model_path()
FILES = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}


def test_weights_are_shipped_small_and_pickle_free() -> None:
    names = {p.name for p in WEIGHTS.iterdir()}
    assert FILES <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".pth"))]
    assert sum(p.stat().st_size for p in WEIGHTS.iterdir()) <= 25 * 2**20


def test_weights_load_offline_with_auto_classes() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(WEIGHTS, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(WEIGHTS, local_files_only=True)
    cfg = model.config
    assert type(model).__name__ == "GPTBigCodeForCausalLM" and cfg.model_type == "gpt_bigcode"
    assert cfg.multi_query is True and cfg.n_positions >= 512
    assert sum(p.numel() for p in model.parameters()) <= 10_000_000
    assert cfg.vocab_size == len(tok)
    # StarCoder's special tokens at StarCoder's ids.
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"])
    assert ids == [0, 1, 2, 3, 4]
    assert tok.eos_token == "<|endoftext|>" and cfg.eos_token_id == 0
    code = "def f(x):\n\treturn {'é': x ** 2}  # ünïcode\n"
    assert tok.decode(tok(code)["input_ids"]) == code  # byte-level: lossless


def test_model_info_describes_the_shipped_model() -> None:
    info = model_info()
    assert info["architecture"] == "GPTBigCodeForCausalLM"
    assert info["multi_query"] is True and info["fim_supported"] is True
    assert info["context"] >= 512 and 1_000_000 < info["parameters"] <= 10_000_000
    assert info["device"] == "cpu" or info["device"].startswith("cuda")


def test_the_model_has_learnt_python() -> None:
    import torch

    from spacerini.model.training import build_model

    model, tok = load_model()
    text = "import os\nimport sys\n\n\ndef main():\n    return 0\n\n\nif __name__ == \"__main__\":\n    sys.exit(main())\n"
    ids = torch.tensor([tok(text)["input_ids"]])
    torch.manual_seed(0)
    untrained = build_model(tok).eval()
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss.item()
        baseline = untrained(input_ids=ids, labels=ids).loss.item()
    # An untrained model costs about log(vocab) ~ 9 nats per token; the shipped one (2.8 after
    # 3,005 steps; 3.7 after 1,160; the weights before issue 15 item 4: 5.3) must stay well below it.
    assert baseline > math.log(len(tok)) - 0.5
    assert loss < baseline - 2.5


def test_generation_with_a_seed_is_deterministic() -> None:
    prompt = "def read_file(path):\n"
    a = generate(prompt, seed=123, max_new_tokens=24)
    b = generate(prompt, seed=123, max_new_tokens=24)
    assert isinstance(a, str) and a == b and a
    greedy = generate(prompt, temperature=0, max_new_tokens=24)
    assert greedy == generate(prompt, temperature=0, max_new_tokens=24, seed=5)
    samples = {generate(prompt, seed=s, max_new_tokens=24) for s in range(4)}
    assert len(samples) > 1  # sampling does sample


def test_infilling_uses_the_fim_format(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = load_model()
    seen = {}
    original = model.generate

    def spy(input_ids, **kwargs):
        seen["ids"] = input_ids[0].tolist()
        seen["eos"] = kwargs.get("eos_token_id")
        return original(input_ids, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    middle = generate(prefix, suffix=suffix, seed=0, max_new_tokens=16, model=(model, tok))
    assert isinstance(middle, str)
    assert seen["ids"] == tok(fim_prompt(prefix, suffix), add_special_tokens=False)["input_ids"]
    assert seen["ids"][0] == 1 and seen["ids"][-1] == 2 and seen["ids"].count(3) == 1
    assert 0 in seen["eos"]  # stops at <|endoftext|>
    assert "<fim_" not in middle


def test_infilling_without_fim_tokens_is_a_clear_error() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        ["x = 1\n"] * 5,
        trainers.BpeTrainer(vocab_size=270, special_tokens=["<|endoftext|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    lm = GPTBigCodeForCausalLM(GPTBigCodeConfig(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                                bos_token_id=0, eos_token_id=0))
    assert generate("x = ", max_new_tokens=3, seed=0, model=(lm, tok)) is not None
    with pytest.raises(ModelError, match="FIM"):
        generate("x = ", suffix="\n", model=(lm, tok))


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="cannot load"):
        load_model(tmp_path / "nothing-here")
    with pytest.raises(ModelError):
        generate("x", max_new_tokens=0)


def _middle_nll(model, tok, prefix: str, suffix: str, middle: str) -> float:
    """Mean NLL per token of ``middle`` in the PSM infilling prompt (prefix, suffix)."""
    import torch

    enc = lambda t: tok(t, add_special_tokens=False, verbose=False)["input_ids"]  # noqa: E731
    head = [1, *enc(prefix)[-200:], 3, *enc(suffix)[:200], 2]  # <fim_prefix> ... <fim_suffix> ... <fim_middle>
    mid = enc(middle)[:100]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([head + mid])).logits[0].float()
    logp = torch.log_softmax(logits[len(head) - 1 : -1], dim=-1)
    return float(-logp[torch.arange(len(mid)), torch.tensor(mid)].mean())


def test_infilling_uses_the_suffix() -> None:
    """The model's middle is likelier under its own suffix than under another file's.

    Middles of one to three lines are cut at fixed places from standard-library modules that
    the shipped model was not trained on (not in training_docs.txt); each middle is scored
    after its prefix with its true suffix, and with the suffix of another case. A model that
    ignores the suffix scores both the same (gain 0). On these 40 cases (10 modules x 4): the
    weights shipped before issue 15 item 4 gain 0.011 nats per token (23 wins), the first
    retraining (step 1,160) 0.162 (31 wins), step 3,005 0.107 (23 wins), the shipped weights
    (step 7,445) 0.163 (22 wins). The mean gain is what tells a model that reads the suffix from
    one that ignores it; the win count moves with the training (the benchmark's 39 held-out
    middles: 82 %, 85 %, 74 %), so it is only held to a majority here.
    """
    import random
    import sysconfig
    from pathlib import Path

    from spacerini.model.training import TRAINING_DOCS, read_training_docs

    trained = set(read_training_docs(WEIGHTS / TRAINING_DOCS))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "calendar.py", "heapq.py", "difflib.py", "pprint.py", "csv.py", "ftplib.py"]
    assert not {f"python-stdlib/{n}" for n in names} & trained
    rng = random.Random(0)
    cases = []
    for name in names:
        lines = (stdlib / name).read_text(encoding="utf-8").splitlines(keepends=True)
        for _ in range(4):
            i, k = rng.randrange(10, len(lines) - 15), rng.randint(1, 3)
            cases.append(("".join(lines[max(0, i - 40) : i]), "".join(lines[i : i + k]), "".join(lines[i + k : i + k + 40])))
    model, tok = load_model()
    gains = []
    for j, (prefix, middle, suffix) in enumerate(cases):
        other = cases[(j + 5) % len(cases)][2]
        gains.append(_middle_nll(model, tok, prefix, other, middle) - _middle_nll(model, tok, prefix, suffix, middle))
    wins = sum(g > 0 for g in gains)
    assert sum(gains) / len(gains) > 0.05 and wins > len(gains) // 2, (wins, gains)
