"""Model-based membership scores against a direct computation, by hand, in windows; the CLI."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from spacerini.errors import QueryError
from spacerini.model.errors import ModelError
from spacerini.model.membership import (
    TokenStats,
    exact_answer,
    lowest_mean,
    score_text,
    score_texts,
    scores_from_stats,
    token_stats,
    windows,
)
from tests.cli_helpers import run as _run
from tests.model.conftest import corpus_docs

CONTEXT = 16
SHORT = "def f(x):\n    return x\n"
LONG = corpus_docs()[2].text[:220]  # keyword.py: several times the 16-token context


@pytest.fixture(scope="module")
def tiny_lm(tiny_tokenizer):
    """A randomly initialised GPTBigCode with a 16-token context (no download), and its tokenizer."""
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(0)
    eos = tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    cfg = GPTBigCodeConfig(
        vocab_size=len(tiny_tokenizer), n_positions=CONTEXT, n_embd=16, n_layer=2, n_head=2, n_inner=32,
        bos_token_id=eos, eos_token_id=eos, initializer_range=0.5, multi_query=True,
    )  # fmt: skip
    model = GPTBigCodeForCausalLM(cfg).eval()
    return model, tiny_tokenizer


def _direct(model, ids: list[int], context_start: int, target: int) -> tuple[float, float, float]:
    """log p of ``ids[target]``, and mean and std of log p at that position, from one forward pass
    over ``ids[context_start:target]``, in float64 with the textbook variance."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[context_start:target]])).logits[0, -1].double()
    lp = torch.log_softmax(logits, -1).numpy()
    p = np.exp(lp)
    mu = float((p * lp).sum())
    sigma = math.sqrt(float((p * (lp - mu) ** 2).sum()))
    return float(lp[ids[target]]), mu, sigma


def _reference_scores(model, tokenizer, text: str, k: float, *, stride: int) -> dict[str, float]:
    """Each target scored with the context of the first window that holds it, computed alone."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = [eos, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    logp, z = [], []
    for t in range(1, len(ids)):
        start = 0
        while start + CONTEXT <= t:  # the first window (starts 0, stride, 2 stride, ...) that holds t
            start += stride
        lp, mu, sigma = _direct(model, ids, start, t)
        logp.append(lp)
        z.append((lp - mu) / sigma)
    n = max(1, int(len(logp) * k))
    loss = -sum(logp) / len(logp)
    return {
        "tokens": len(logp),
        "loss": loss,
        "zlib": loss / len(zlib.compress(text.encode("utf-8"))),
        "min_k": sum(sorted(logp)[:n]) / n,
        "min_k_plus_plus": sum(sorted(z)[:n]) / n,
    }


def _assert_scores(got, want: dict[str, float]) -> None:
    assert got.tokens == want["tokens"]
    for name in ("loss", "zlib", "min_k", "min_k_plus_plus"):
        assert getattr(got, name) == pytest.approx(want[name], rel=1e-4, abs=1e-5), name


def test_scores_match_a_direct_computation(tiny_lm) -> None:
    model, tok = tiny_lm
    n_tokens = len(tok(SHORT, add_special_tokens=False)["input_ids"])
    assert n_tokens + 1 <= CONTEXT  # one window
    got = score_text(SHORT, model=tiny_lm, k=0.2)
    _assert_scores(got, _reference_scores(model, tok, SHORT, 0.2, stride=CONTEXT // 2))
    assert got.chars == len(SHORT) and got.zlib_bytes == len(zlib.compress(SHORT.encode()))
    # The signs: oriented scores are "higher = more likely a member".
    assert got.oriented() == {"loss": -got.loss, "zlib": -got.zlib, "min_k": got.min_k, "min_k_plus_plus": got.min_k_plus_plus}


def test_min_k_and_min_k_plus_plus_by_hand() -> None:
    stats = TokenStats(
        ids=np.arange(5),
        logp=np.array([-1.0, -3.0, -0.5, -2.0, -4.0]),
        mu=np.array([-1.5, -2.0, -1.0, -1.0, -3.0]),
        sigma=np.array([0.5, 1.0, 0.5, 2.0, 1.0]),
    )
    # z = (logp - mu) / sigma = [1, -1, 1, -0.5, -1]
    s = scores_from_stats(stats, "abc", k=0.4)  # floor(0.4 * 5) = 2 tokens
    assert s.loss == pytest.approx(2.1)
    assert s.min_k == pytest.approx(-3.5)  # mean(-4, -3)
    assert s.min_k_plus_plus == pytest.approx(-1.0)  # mean(-1, -1)
    assert s.zlib == pytest.approx(2.1 / len(zlib.compress(b"abc")))
    s = scores_from_stats(stats, "abc", k=0.6)  # 3 tokens
    assert s.min_k == pytest.approx(-3.0) and s.min_k_plus_plus == pytest.approx(-2.5 / 3)
    assert scores_from_stats(stats, "abc", k=0.1).min_k == -4.0  # at least one token
    assert scores_from_stats(stats, "abc", k=1.0).min_k == pytest.approx(-2.1)
    # A two-valued next-token distribution {1/2, 1/4, 1/4}: mu = -(3/2) ln 2, sigma = (ln 2) / 2, so
    # the rare tokens score z = -1 and the frequent one z = +1.
    lp = np.log([0.5, 0.25, 0.25])
    mu = float((np.exp(lp) * lp).sum())
    var = float((np.exp(lp) * lp**2).sum()) - mu**2
    assert mu == pytest.approx(-1.5 * math.log(2)) and math.sqrt(var) == pytest.approx(math.log(2) / 2)
    two = TokenStats(np.arange(2), np.array([lp[1], lp[0]]), np.array([mu, mu]), np.array([math.sqrt(var)] * 2))
    assert scores_from_stats(two, "ab", k=0.5).min_k_plus_plus == pytest.approx(-1.0)
    assert scores_from_stats(two, "ab", k=1.0).min_k_plus_plus == pytest.approx(0.0)
    assert lowest_mean(np.array([3.0, 1.0, 2.0]), 0.67) == pytest.approx(1.5)


def test_zero_sigma_is_floored() -> None:
    stats = TokenStats(np.arange(1), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    assert scores_from_stats(stats, "a").min_k_plus_plus == 0.0


@pytest.mark.parametrize("stride", [3, 15])
def test_long_texts_are_scored_in_windows(tiny_lm, stride: int) -> None:
    model, tok = tiny_lm
    got = score_text(LONG, model=tiny_lm, stride=stride, batch_size=3)
    assert got.tokens > 3 * CONTEXT
    _assert_scores(got, _reference_scores(model, tok, LONG, 0.2, stride=stride))


def test_windows_score_each_target_once_with_enough_context() -> None:
    for length in (1, 2, 5, 16, 17, 40, 100):
        for context, stride in ((16, 8), (16, 1), (16, 15), (4, 3)):
            ws = windows(length, context, stride)
            targets = [t for _, e, f in ws for t in range(f, e)]
            assert targets == list(range(1, length)), (length, context, stride)
            for i, (s, e, f) in enumerate(ws):
                assert e - s <= context and s < f
                if i:  # every window after the first gives its targets context - stride tokens at least
                    assert f - s >= context - stride


def test_batching_padding_and_prefixes_do_not_change_scores(tiny_lm) -> None:
    texts = [LONG, SHORT, LONG[:60], "x = 1\n"]
    together = score_texts(texts, model=tiny_lm, batch_size=4)
    for text, score in zip(texts, together, strict=True):
        alone = score_text(text, model=tiny_lm, batch_size=1)
        for name in ("loss", "zlib", "min_k", "min_k_plus_plus"):
            assert getattr(score, name) == pytest.approx(getattr(alone, name), rel=1e-5, abs=1e-6)
    # max_tokens scores the prefix: the same per-token values as the first tokens of the whole text.
    full = token_stats([LONG], model=tiny_lm)[0]
    head = token_stats([LONG], model=tiny_lm, max_tokens=10)[0]
    np.testing.assert_allclose(head.logp, full.logp[:10], rtol=1e-5)
    np.testing.assert_allclose(head.mu, full.prefix(10).mu, rtol=1e-5)
    longer = token_stats([LONG], model=tiny_lm, max_tokens=40)[0]  # past the 16-token context: same windows
    for name in ("ids", "logp", "mu", "sigma"):
        np.testing.assert_allclose(getattr(longer, name), getattr(full.prefix(40), name), rtol=1e-5)
    s = score_text(LONG, model=tiny_lm, max_tokens=10)
    assert s.tokens == 10 and LONG.startswith(tiny_lm[1].decode(full.ids[:10])) and s.chars < len(LONG)
    assert s.loss == pytest.approx(-full.logp[:10].mean(), rel=1e-5)


def test_bad_input_is_refused(tiny_lm) -> None:
    with pytest.raises(QueryError, match="empty"):
        score_text("", model=tiny_lm)
    with pytest.raises(QueryError, match="blank"):  # before the model loads: a name, not a model
        score_text(" \n\t ", model="/no/such/model")
    with pytest.raises(ModelError, match="k must"):
        score_text("x", model=tiny_lm, k=0)
    with pytest.raises(ModelError, match="stride"):
        score_text("x", model=tiny_lm, stride=CONTEXT)
    with pytest.raises(ModelError, match="max_tokens"):
        score_text("x", model=tiny_lm, max_tokens=0)


def test_exact_answer_matches_brute_force(tiny_bundle) -> None:
    from spacerini.service import Service

    service = Service(tiny_bundle, redact_pii=False)
    texts = [d.text for d in tiny_bundle.iter_docs()]

    def count(t: str) -> int:
        return sum(sum(1 for i in range(len(d)) if d.startswith(t, i)) for d in texts)

    doc = texts[1]
    cases = [doc, doc[100:180], "def ", doc[:50] + "an edit nowhere in the corpus " + doc[50:90], "zzz fresh"]
    for text in cases:
        ans = exact_answer(service, text)
        assert ans.count == count(text) and ans.verbatim == (count(text) > 0), text[:40]
    whole = exact_answer(service, doc)
    assert whole.coverage == 1.0 and whole.longest_match == len(doc) and whole.method == "exact"
    edited = exact_answer(service, cases[3])
    # Two verbatim spans (the 50 characters before the edit, the 40 after) of 120: coverage 75%.
    assert edited.verbatim is False and edited.longest_match >= 50 and 0.7 < edited.coverage < 0.9
    assert exact_answer(service, "zzz fresh").coverage == 0.0


# ------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def model_dir(tiny_lm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm") / "tiny"
    tiny_lm[0].save_pretrained(folder)
    tiny_lm[1].save_pretrained(folder)
    return folder




def _one_line_error(code: int, err: str, needle: str) -> None:
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("INFO", "WARNING", "Loading"))]
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_cli_prints_scores_and_the_exact_answer(tiny_lm, model_dir, tiny_bundle, tmp_path, capsys) -> None:
    doc = min((d.text for d in tiny_bundle.iter_docs()), key=len)  # 659 characters
    path = tmp_path / "doc.py"
    path.write_text(doc, encoding="utf-8")
    code, out, err = _run(["model", "membership", str(path), "--model", str(model_dir), "--bundle", str(tiny_bundle.path), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    want = score_text(doc, model=tiny_lm)
    assert data["scores"]["tokens"] == want.tokens
    assert data["scores"]["loss"] == pytest.approx(want.loss, rel=1e-4)
    assert data["scores"]["min_k_plus_plus"] == pytest.approx(want.min_k_plus_plus, rel=1e-4)
    assert data["member_scores"]["loss"] == pytest.approx(-want.loss, rel=1e-4)
    assert data["exact"]["verbatim"] is True and data["exact"]["count"] == 1 and data["exact"]["coverage"] == 1.0

    code, out, err = _run(["model", "membership", "zzz not in the corpus", "--model", str(model_dir), "--bundle", str(tiny_bundle.path)], capsys)
    assert code == 0, err
    assert "min_k_plus_plus" in out and "lower: more likely a member" in out
    assert "verbatim: no (0 occurrences)" in out and "coverage 0.0%" in out


def test_cli_without_a_bundle_has_no_exact_answer(model_dir, capsys) -> None:
    code, out, err = _run(["model", "membership", SHORT, "--model", str(model_dir), "--json", "--k", "0.5"], capsys)
    assert code == 0, err
    assert json.loads(out)["exact"] is None and json.loads(out)["scores"]["k"] == 0.5
    assert "Loading weights" not in err  # transformers' bar for a model that loads in milliseconds


def test_cli_errors_are_one_line(model_dir, tiny_bundle, tmp_path, capsys) -> None:
    m = ["--model", str(model_dir)]
    _one_line_error(*_run(["model", "membership", "", *m], capsys)[::2], "empty")
    _one_line_error(*_run(["model", "membership", "x", "--k", "1.5", *m], capsys)[::2], "k must")
    _one_line_error(*_run(["model", "membership", "x", "--model", str(tmp_path / "none")], capsys)[::2], "cannot load the model")
    _one_line_error(*_run(["model", "membership", "x", "--bundle", str(tmp_path / "nob"), *m], capsys)[::2], "no bundle")
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\xfe\x00abc")
    _one_line_error(*_run(["model", "membership", str(binary), *m], capsys)[::2], "not UTF-8")
    _one_line_error(*_run(["model", "membership", "x", "--max-tokens", "0", *m], capsys)[::2], "max-tokens")
    # a folder was scored as the text of its own name
    _one_line_error(*_run(["model", "membership", str(tmp_path), *m], capsys)[::2], "is a folder, not a file")


def test_cli_text_the_bundle_refuses_fails_before_scoring(model_dir, tiny_bundle, tmp_path, capsys, monkeypatch) -> None:
    """A text too long for the bundle's exact backend was scored by the model (minutes) before it failed."""
    import spacerini.model.membership as membership

    def never(*args, **kwargs):
        raise AssertionError("the model scored a text the bundle refuses")

    monkeypatch.setattr(membership, "score_text", never)
    big = tmp_path / "big.txt"
    big.write_text("x" * (2 << 20), encoding="utf-8")
    code, _, err = _run(["model", "membership", str(big), "--model", str(model_dir), "--bundle", str(tiny_bundle.path)], capsys)
    _one_line_error(code, err, "bytes long")
