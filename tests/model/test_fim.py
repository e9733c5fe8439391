"""The FIM transformation: layouts, rates, lengths, and that it only rearranges the text."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from spacerini.model.fim import FimTokens, apply_fim, permute

TOK = FimTokens(prefix=1, middle=2, suffix=3, pad=4, eod=0)
OFFSET = 10  # character-level "tokenizer": one id per character, above the special ids


def encode(text: str) -> list[int]:
    return [ord(c) + OFFSET for c in text]


def decode(ids) -> str:
    return "".join(chr(i - OFFSET) for i in ids)


TEXT = "def add(a, b):\n    return a + b\n"


def _split_psm(out: list[int]) -> tuple[str, str, str]:
    assert out[0] == TOK.prefix and out.count(TOK.suffix) == 1 and out.count(TOK.middle) == 1
    s, m = out.index(TOK.suffix), out.index(TOK.middle)
    return decode(out[1:s]), decode([t for t in out[s + 1 : m] if t != TOK.pad]), decode(out[m + 1 :])


def _split_spm(out: list[int]) -> tuple[str, str, str]:
    assert out[:2] == [TOK.prefix, TOK.suffix] and out.count(TOK.middle) == 1
    m = out.index(TOK.middle)
    suffix = decode([t for t in out[2:m] if t != TOK.pad])
    return suffix, decode(out[m + 1 :]), ""  # (suffix, prefix + middle)


def test_rate_zero_leaves_the_sample_alone() -> None:
    sample = np.asarray(encode(TEXT))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = permute(sample, rng, encode=encode, decode=decode, tokens=TOK, fim_rate=0.0)
        assert out.tolist() == sample.tolist()


@pytest.mark.parametrize("seed", range(20))
def test_psm_layout_is_a_rearrangement(seed: int) -> None:
    sample = np.asarray(encode(TEXT))
    out = permute(
        sample, np.random.default_rng(seed), encode=encode, decode=decode, tokens=TOK,
        fim_rate=1.0, spm_rate=0.0, truncate_or_pad=False,
    ).tolist()
    prefix, suffix, middle = _split_psm(out)
    assert prefix + middle + suffix == TEXT
    assert len(out) == len(sample) + 3


@pytest.mark.parametrize("seed", range(20))
def test_spm_layout_is_a_rearrangement(seed: int) -> None:
    sample = np.asarray(encode(TEXT))
    out = permute(
        sample, np.random.default_rng(seed), encode=encode, decode=decode, tokens=TOK,
        fim_rate=1.0, spm_rate=1.0, truncate_or_pad=False,
    ).tolist()
    suffix, prefix_middle, _ = _split_spm(out)
    # SPM: suffix first, then prefix + middle, which is the text before the suffix.
    assert prefix_middle + suffix == TEXT
    assert Counter(decode([t for t in out if t >= OFFSET])) == Counter(TEXT)


def test_truncate_or_pad_keeps_the_length_with_pads_in_the_suffix() -> None:
    sample = np.asarray(encode(TEXT))
    for seed in range(30):
        out = permute(sample, np.random.default_rng(seed), encode=encode, decode=decode, tokens=TOK, fim_rate=1.0)
        assert len(out) == len(sample)
        # A character tokenizer never shrinks, so three sentinels cost three suffix characters.
        if out.tolist() != sample.tolist():
            assert TOK.pad not in out.tolist()


def test_rates_are_honoured() -> None:
    sample = np.asarray(encode(TEXT))
    rng = np.random.default_rng(1)
    layouts: Counter[str] = Counter()
    for _ in range(2000):
        out = permute(sample, rng, encode=encode, decode=decode, tokens=TOK, fim_rate=0.5, spm_rate=0.5,
                      truncate_or_pad=False).tolist()
        if out == sample.tolist():
            layouts["none"] += 1
        else:
            # PSM with an empty prefix looks like SPM; that happens once in len(TEXT) cuts.
            layouts["spm" if out[1] == TOK.suffix else "psm"] += 1
    assert 900 < layouts["none"] < 1100
    assert 400 < layouts["spm"] < 600 and 400 < layouts["psm"] < 600


def test_apply_fim_works_per_document_and_keeps_the_length() -> None:
    docs = ["import os\nimport sys\n", "x = 1\ny = 2\nz = x + y\n", "print('hello, world')\n"]
    packed = []
    for d in docs:
        packed += encode(d) + [TOK.eod]
    sample = np.asarray(packed)
    seen = Counter()
    for seed in range(20):
        out = apply_fim(sample, np.random.default_rng(seed), encode=encode, decode=decode, tokens=TOK,
                        fim_rate=1.0, spm_rate=0.0).tolist()
        assert len(out) == len(sample)
        assert [i for i, t in enumerate(out) if t == TOK.eod] == [i for i, t in enumerate(packed) if t == TOK.eod]
        pieces = decode_pieces(out)
        for piece, doc in zip(pieces, docs, strict=True):
            if piece == encode(doc):  # the suffix was too short to give up three tokens
                seen["unchanged"] += 1
                continue
            prefix, suffix, middle = _split_psm(piece)
            # Keeping the length cuts the suffix's last three tokens (one per sentinel).
            assert prefix + middle + suffix == doc[:-3]
            seen["psm"] += 1
    assert seen["psm"] > 20 and seen["unchanged"] > 0
    assert apply_fim(sample, np.random.default_rng(3), encode=encode, decode=decode, tokens=TOK,
                     fim_rate=0.0).tolist() == packed


def decode_pieces(out: list[int]) -> list[list[int]]:
    pieces, cur = [], []
    for t in out:
        if t == TOK.eod:
            pieces.append(cur)
            cur = []
        else:
            cur.append(t)
    return pieces


def test_with_a_real_bpe_tokenizer_the_output_decodes_to_a_permutation(tiny_tokenizer) -> None:
    backend = tiny_tokenizer.backend_tokenizer
    vocab = tiny_tokenizer.get_vocab()
    tok = FimTokens(vocab["<fim_prefix>"], vocab["<fim_middle>"], vocab["<fim_suffix>"], vocab["<fim_pad>"],
                    vocab["<|endoftext|>"])

    def enc(text: str) -> list[int]:
        return backend.encode(text, add_special_tokens=False).ids

    def dec(ids) -> str:
        return backend.decode(list(ids), skip_special_tokens=False)

    text = "def hsv_to_rgb(h, s, v):\n    if s == 0.0:\n        return v, v, v\n"
    sample = np.asarray(enc(text))
    for seed in range(10):
        for spm in (0.0, 1.0):
            out = permute(sample, np.random.default_rng(seed), encode=enc, decode=dec, tokens=tok, fim_rate=1.0,
                          spm_rate=spm, truncate_or_pad=False).tolist()
            plain = backend.decode([t for t in out if t not in (tok.prefix, tok.middle, tok.suffix)])
            assert Counter(plain) == Counter(text)
            assert (out[:2] == [tok.prefix, tok.suffix]) == (spm == 1.0)
