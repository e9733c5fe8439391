"""spacerini analyze: every number against a brute-force computation on a planted corpus."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from spacerini.audit import plots
from spacerini.audit.analyze import BOILERPLATE, analyze, write_report
from spacerini.audit.ngrams import WORD, NgramCounter
from spacerini.bundle import build_bundle
from spacerini.preprocess.dedup import shingles
from spacerini.preprocess.pii import find_pii
from spacerini.records import Doc
from tests.cli_helpers import run

DATA = Path(__file__).parent / "data"


def _jsonl(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def planted_docs() -> list[Doc]:
    """Real test texts plus planted duplicates, near-duplicates, PII, metadata and junk."""
    base = [r["contents"] for r in _jsonl("bm25_corpus.jsonl")[:40]]
    base += [r["text"] for r in _jsonl("exact_corpus.jsonl")[:10]]
    base += [r["contents"] for r in _jsonl("bm25_code.jsonl")[:10]]
    long_doc = next(t for t in base if len(WORD.findall(t)) > 120)
    words = long_doc.split(" ")
    words[len(words) // 2] = "PLANTEDCHANGE"
    texts = list(base)
    texts += [base[3], base[3], base[7]]  # exact duplicates: base[3] x3, base[7] x2
    texts.append(" ".join(words))  # a near-duplicate of long_doc
    texts += [
        "",  # empty
        "  ... !!! ",  # no token
        "hello world",  # very short
        "Write to alice.smith@gmail.com or bob@uni-mannheim.de about the caf\ufffd menu.",
        "int main() { return 0; }\nCopyright (c) 2020 Someone. All rights reserved.\nmore code here please\n",
    ]
    docs = []
    for i, text in enumerate(texts):
        meta: dict = {}
        fields: dict = {}
        if i % 3 == 0:
            meta = {"licence": "MIT", "language": "Python", "repo": f"org/repo{i % 2}", "owner": "org"}
            if i % 9 == 0:
                meta["owner"] = ["org", "ada"]  # co-owners
        elif i % 3 == 1:
            fields = {"url": f"https://www.site{i % 2}.example.org/page{i}", "language": "en"}
        docs.append(Doc(f"d{i:03d}", text, fields=fields, meta=meta))
    return docs


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return build_bundle(
        planted_docs(), tmp_path_factory.mktemp("an") / "b", backends=["exact"], progress=False
    )


def reference_counts(texts: list[str]) -> dict[int, Counter]:
    counts = {1: Counter(), 2: Counter(), 3: Counter()}
    for text in texts:
        t = WORD.findall(text)
        counts[1].update(t)
        counts[2].update(" ".join(g) for g in zip(t, t[1:], strict=False))
        counts[3].update(" ".join(g) for g in zip(t, t[1:], t[2:], strict=False))
    return counts


@pytest.mark.parametrize("bucket_rows", [4, 1 << 15])
def test_ngrams_equal_counter_most_common_across_batches_and_growth(monkeypatch, bucket_rows: int) -> None:
    import spacerini.audit.ngrams as ngrams

    monkeypatch.setattr(ngrams, "_INITIAL", 2)  # tiny tables: they grow and rehash many times
    monkeypatch.setattr(ngrams, "_BUCKET_ROWS", bucket_rows)  # 4: hundreds of buckets, split again and again
    texts = [d.text for d in planted_docs()] * 2
    counter = NgramCounter()
    for i in range(0, len(texts), 7):  # batches of 7 documents
        chunk = [t.encode("utf-8", "surrogatepass") for t in texts[i : i + 7]]
        offsets = np.concatenate(([0], np.cumsum([len(c) for c in chunk]))).astype(np.int64)
        got = counter.add(np.frombuffer(b"".join(chunk), dtype=np.uint8), offsets)
        assert got.tolist() == [len(WORD.findall(t)) for t in texts[i : i + 7]]
    ref = reference_counts(texts)
    top = counter.top(40)
    for n in (1, 2, 3):
        assert [(g.ngram, g.count) for g in top[n]] == ref[n].most_common(40), n
    assert counter.distinct() == {n: len(ref[n]) for n in (1, 2, 3)}
    if bucket_rows == 4:
        assert counter._trigrams.bits >= 6


def test_ngrams_of_tricky_tokens_and_boundaries() -> None:
    """Non-ASCII runs, a lone surrogate, empty documents, documents that end and start with a
    word byte (no token spans them), hash-table probing with many near-equal tokens, ties."""
    texts = [
        "a b c d e f g h i j k a b c",
        "",
        "i j k i j k x y z",
        "x y z a b c",
        "naïve café — naïve café 東京 東京;東京",
        "ab\ud800cd ab\ud800cd",
        "...!!",
        *(f"t{i} t{i % 7} t{i % 3}" for i in range(300)),
        "end",
        "start end start",
    ]
    counter = NgramCounter()
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    got = counter.add(
        np.frombuffer(b"".join(raw), dtype=np.uint8), np.array([0, *np.cumsum([len(r) for r in raw])])
    )
    assert got.tolist() == [len(WORD.findall(t)) for t in texts]
    ref = reference_counts(texts)
    top = counter.top(500)
    for n in (1, 2, 3):
        assert [(g.ngram, g.count) for g in top[n]] == ref[n].most_common(500), n
    assert counter.distinct() == {n: len(ref[n]) for n in (1, 2, 3)}
    assert counter.totals == {n: sum(ref[n].values()) for n in (1, 2, 3)}


def brute_force(docs: list[Doc]) -> dict:
    texts = [d.text for d in docs]
    tokens = [WORD.findall(t) for t in texts]
    by_text = Counter(texts)
    exact_members = sum(c for c in by_text.values() if c > 1)
    # Near-duplicates: exact Jaccard of the shingle sets, each document joins the first earlier
    # kept document it matches (the clustering the MinHash pass estimates).
    kept: list[tuple[int, set[str]]] = []
    members: Counter[int] = Counter()
    for i, t in enumerate(texts):
        sh = shingles(t, 5)
        if not sh:
            continue
        for j, other in kept:
            if len(sh & other) / len(sh | other) >= 0.7:
                members[j] += 1
                break
        else:
            kept.append((i, sh))
    near_members = sum(c + 1 for c in members.values())
    pii = Counter(s.kind for t in texts for s in find_pii(t))
    boiler = 0
    for t in texts:
        for line in t.encode().split(b"\n"):
            if BOILERPLATE.search(line.lower()):
                boiler += len(line)
    return {
        "tokens": sum(len(t) for t in tokens),
        "empty": sum(1 for t in tokens if not t),
        "short": sum(1 for t in tokens if 0 < len(t) < 5),
        "exact_members": exact_members,
        "exact_clusters": sum(1 for c in by_text.values() if c > 1),
        "exact_redundant": sum(c - 1 for c in by_text.values()),
        "near_members": near_members,
        "near_clusters": len(members),
        "pii": dict(pii),
        "pii_docs": sum(1 for t in texts if find_pii(t)),
        "fffd": sum(t.count("\ufffd") for t in texts),
        "boiler": boiler,
    }


def test_analyze_numbers_match_brute_force(bundle) -> None:
    docs = planted_docs()
    ref = brute_force(docs)
    a, lengths = analyze(bundle, top_k=15, progress=False, keep_lengths=True)
    texts = [d.text for d in docs]
    assert a.docs == len(docs) == bundle.manifest["counts"]["docs"]
    assert a.bytes == sum(len(t.encode()) for t in texts) == bundle.manifest["counts"]["text_bytes"]
    assert a.chars == sum(len(t) for t in texts)
    assert a.tokens == ref["tokens"]
    assert lengths.tolist() == [len(t.encode()) for t in texts]
    assert a.lengths["max"] == max(lengths) and a.lengths["min"] == 0
    counts = reference_counts(texts)
    for n in (1, 2, 3):
        assert [(r["ngram"], r["count"]) for r in a.ngrams[str(n)]] == counts[n].most_common(15)
    exact = a.duplicates["exact"]
    assert (exact["clusters"], exact["docs_in_clusters"], exact["redundant_docs"]) == (
        ref["exact_clusters"],
        ref["exact_members"],
        ref["exact_redundant"],
    )
    assert ref["exact_redundant"] >= 3  # the planted copies
    assert exact["docs_pct"] == round(100 * ref["exact_members"] / len(docs), 3)
    near = a.duplicates["near"]
    assert ref["near_clusters"] >= 3  # the planted ones: two exact-duplicate groups and one near-duplicate
    assert (near["clusters"], near["docs_in_clusters"]) == (ref["near_clusters"], ref["near_members"])
    assert a.pii["found"] == ref["pii"] and ref["pii"]["EMAIL"] == 2
    assert a.pii["docs_with_pii"] == ref["pii_docs"]
    q = a.quality
    assert (q["empty_docs"], q["short_docs"]) == (ref["empty"], ref["short"])
    assert ref["empty"] >= 2 and ref["short"] >= 1  # the planted ones
    assert q["replacement_chars"] == ref["fffd"] == 1 and q["docs_with_replacement"] == 1
    assert q["boilerplate_bytes"] == ref["boiler"] == len(b"Copyright (c) 2020 Someone. All rights reserved.")
    b = a.breakdowns
    n_meta = len(range(0, len(docs), 3))
    assert b["licence"]["MIT"] == n_meta and b["licence"]["unknown"] == len(docs) - n_meta
    assert b["language"] == dict(
        Counter(
            ("Python" if i % 3 == 0 else "en" if i % 3 == 1 else "unknown") for i in range(len(docs))
        ).most_common()
    )
    assert b["domain"] == dict(
        Counter(f"site{i % 2}.example.org" for i in range(len(docs)) if i % 3 == 1).most_common()
    )
    assert sum(b["repo"].values()) == n_meta
    assert b["owner"] == {"org": n_meta, "ada": len(range(0, len(docs), 9))}


def test_skip_sections_and_bad_options(bundle) -> None:
    from spacerini.errors import UsageError

    a = analyze(bundle, skip="pii,near-dup,ngrams", progress=False)
    assert (
        a.skipped == ["pii", "near-dup", "ngrams"]
        and a.pii == {}
        and "near" not in a.duplicates
        and a.ngrams == {}
    )
    assert a.tokens == analyze(bundle, progress=False).tokens
    with pytest.raises(UsageError, match="cannot skip"):
        analyze(bundle, skip="everything")
    with pytest.raises(UsageError, match="top_k"):
        analyze(bundle, top_k=-1)


def test_near_dedup_at_build_is_reported_not_recomputed(tmp_path: Path) -> None:
    b = build_bundle(
        planted_docs(), tmp_path / "b", backends=["exact"], preprocess=["near-dedup"], progress=False
    )
    a = analyze(b, progress=False)
    assert "near-dedup ran at build time" in a.duplicates["near"]["method"]
    removed = a.duplicates["removed_at_build"]["near-dedup"]["removed"]
    assert removed >= 3 and a.docs == len(planted_docs()) - removed


def _bar_pixels(png: bytes) -> int:
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    want = np.array([int(plots.BAR_COLOR[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.count_nonzero(np.abs(img - want).max(axis=-1) < 0.02))


@pytest.mark.parametrize("counts", [{"MIT": 7}, {"MIT": 0}, {"a": 3, "b": 1}])
def test_a_chart_of_one_category_is_not_blank(counts: dict) -> None:
    fig = plots.bar_chart("Licences", counts)
    png = plots.png_bytes(fig)
    plots.close(fig)
    if max(counts.values()) > 0:
        assert _bar_pixels(png) > 2000  # a full-width bar, not a sliver or nothing
    svg = plots.svg_text(plots.bar_chart("Licences", counts))
    assert svg.startswith("<svg") and svg.count("<path") > 3


def test_report_is_self_contained(bundle, tmp_path: Path) -> None:
    a, lengths = analyze(bundle, progress=False, keep_lengths=True)
    path = write_report(a, lengths, tmp_path / "r")
    page = path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 8
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", page)  # nothing fetched from elsewhere
    pngs = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    assert {
        "lengths.png",
        "top_unigrams.png",
        "top_trigrams.png",
        "duplicates.png",
        "pii.png",
        "by_licence.png",
        "by_domain.png",
    } <= set(pngs)
    for name in pngs:
        assert (tmp_path / "r" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "r" / "analysis.json").read_text())["docs"] == a.docs


def test_cli_json_and_text(bundle, tmp_path: Path, capsys) -> None:
    code, out, err = run(
        ["analyze", str(bundle.path), "--out", str(tmp_path / "o"), "--json", "--top-k", "5"], capsys
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["docs"] == json.loads((bundle.path / "spacerini.json").read_text())["counts"]["docs"]
    assert len(data["ngrams"]["1"]) == 5 and (tmp_path / "o" / "report.html").is_file()
    code, out, err = run(
        ["analyze", str(bundle.path), "--out", str(tmp_path / "o2"), "--skip", "pii"], capsys
    )
    assert code == 0, err
    assert f"{len(planted_docs())} documents" in out and "Report:" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--skip", "nope"], "cannot skip nope"), (["--top-k", "-3"], "top-k")],
)
def test_cli_bad_input_is_one_line(bundle, tmp_path: Path, capsys, args: list[str], needle: str) -> None:
    code, _, err = run(["analyze", str(bundle.path), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and needle in err and "Traceback" not in err


def test_cli_missing_bundle(tmp_path: Path, capsys) -> None:
    code, _, err = run(["analyze", str(tmp_path / "none"), "--out", str(tmp_path / "o")], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "no bundle here" in lines[0]


def test_app_stats_tab_draws_a_single_category(tmp_path: Path) -> None:
    """The Stats tab shows analyze's charts: a corpus with one licence and one language gets
    visible bars (Gradio's BarPlot started its axis at the only bar and drew nothing)."""
    from spacerini.app import build_app

    docs = [Doc(f"x{i}", f"text number {i}", meta={"licence": "MIT", "language": "Python"}) for i in range(4)]
    b = build_bundle(docs, tmp_path / "one", backends=["exact"], progress=False)
    app = build_app(b)
    charts = {getattr(x, "elem_id", None): x for x in app.blocks.values()}
    for elem in ("sp-licences", "sp-languages"):
        svg = charts[elem].value
        assert svg.startswith("<svg") and 'width="100%"' in svg
        # One bar (a filled path in the bar colour) whose width is the whole value axis.
        bars = re.findall(
            r'<path d="M ([\d.]+) ([\d.]+) \s*L ([\d.]+) [\d.]+ \s*L [^"]*"[^>]*fill: ?' + plots.BAR_COLOR,
            svg,
        )
        assert len(bars) == 1, svg[:2000]
        x0, _, x1 = (float(v) for v in bars[0])
        assert x1 - x0 > 300  # of a 504-point-wide figure


@pytest.mark.parametrize(("threshold", "perm"), [(0.7, 128), (0.7, 256), (0.85, 128), (0.5, 64)])
def test_lsh_params_equal_datasketch(threshold: float, perm: int) -> None:
    from spacerini.audit.analyze import lsh_params
    from spacerini.preprocess.dedup import lsh_params as datasketch_params

    assert lsh_params(threshold, perm) == datasketch_params(threshold, perm)


def test_top_zero_and_nothing_counted() -> None:
    counter = NgramCounter()
    assert counter.top(3) == {1: [], 2: [], 3: []}
    counter.add(np.frombuffer(b"a b c d", dtype=np.uint8), np.array([0, 7]))
    assert counter.top(0) == {1: [], 2: [], 3: []}
    assert [g.ngram for g in counter.top(1)[3]] == ["a b c"]


def _pii_texts() -> list[str]:
    """Every labelled PII text of the test data, and each again on one line, after a non-ASCII
    word, in upper case and with the characters that case-fold to ASCII letters swapped in."""
    texts = [
        r["text"]
        for name in ("pii_labelled.jsonl", "pii_heldout.jsonl", "preprocess_pii_labelled.jsonl")
        for r in _jsonl(name)
    ]
    texts += [d.text for d in planted_docs()]
    fold = str.maketrans({"k": "\u212a", "s": "\u017f", "i": "\u0131", "I": "\u0130"})
    variants = []
    for t in texts:
        variants += [t.replace("\n", " "), "caf\u00e9 \u00a0" + t, t.upper(), t.translate(fold)]
    return texts + variants


def test_pii_prefilter_finds_every_span_of_find_pii() -> None:
    """The RE2 prefilter (and its kinds per document) leave find_pii's spans unchanged on planted
    PII of every kind and form; and it does leave documents out."""
    from spacerini.audit.pii_prefilter import pii_candidates

    texts = _pii_texts()
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    candidates = dict(pii_candidates(b"".join(raw), offsets))
    found = 0
    for i, text in enumerate(texts):
        spans = find_pii(text)
        found += len(spans)
        if i in candidates:
            assert find_pii(text, kinds=candidates[i]) == spans, text
        else:
            assert spans == [], text
    assert found > 1000 and 0 < len(candidates) < len(texts)
    assert set(candidates.get(texts.index("hello world"), [])) == set()  # filtered out: no needle


def test_near_dup_signatures_equal_numpy_minhash(bundle) -> None:
    """The compiled MinHash signatures equal a plain numpy computation of the same hashes."""
    from spacerini.audit.analyze import _NearDups
    from spacerini.audit.ngrams import fmix64

    texts = [d.text for d in planted_docs()][:30]
    counter = NgramCounter(count=False)
    raw = [t.encode() for t in texts]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    counter.add(np.frombuffer(b"".join(raw), dtype=np.uint8), offsets)
    gid, doc = counter.last
    near = _NearDups(0.99, 64)
    near.add_batch(gid, doc, np.diff(offsets))
    expected = []
    with np.errstate(over="ignore"):
        th = fmix64(gid.astype(np.uint64) * near._mix[0] + near._mix[1])
        for d in range(len(texts)):
            t = th[doc == d]
            if t.size == 0:
                continue
            n = min(5, t.size)
            shingles = [
                (t[s : s + n] * near._position[:n]).sum(dtype=np.uint64) + np.uint64(n)
                for s in range(t.size - n + 1)
            ]
            h = fmix64(np.array(shingles, dtype=np.uint64)) >> np.uint64(32)
            values = (near._a[:, None] * h[None, :] + near._b[:, None]) & np.uint64(0xFFFFFFFF)
            expected.append(values.min(axis=1).astype(np.uint32))
    # Documents equal to an earlier one join its cluster and keep no signature of their own.
    unique = {tuple(e) for e in expected}
    kept = {tuple(s) for s in near.signatures[: near.kept]}
    assert kept == unique and near.kept == len(unique) >= 20


def test_text_stats_count_characters_replacements_and_surrogates() -> None:
    from spacerini.audit.ngram_kernel import text_stats

    texts = [
        "",
        "abc",
        "caf\u00e9 \u6771\u4eac",
        "a\ufffdb\ufffd",
        "x\ud800y\udfff",
        "\U0001f600\ufffd\ud83d",
    ]
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    chars, bad, lone = (np.empty(len(texts), dtype=np.int64) for _ in range(3))
    text_stats(np.frombuffer(b"".join(raw), dtype=np.uint8), offsets, chars, bad, lone)
    assert chars.tolist() == [len(t) for t in texts]
    assert bad.tolist() == [t.count("\ufffd") for t in texts]
    assert lone.tolist() == [sum(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in texts]


def test_analyze_through_doc_records_equals_the_block_reader(bundle) -> None:
    """A docstore without blocks (read through Doc records) gives the same report."""

    class Records:
        def __init__(self, snap):
            self.manifest, self._snap = snap.manifest, snap

        def __len__(self):
            return len(self._snap)

        def iter_docs(self):
            return self._snap.iter_docs()

    class Wrapped:
        def __init__(self, b):
            self._b = b

        def pin(self):
            import contextlib

            @contextlib.contextmanager
            def pinned():
                with self._b.pin() as snap:
                    yield Records(snap)

            return pinned()

    a = analyze(bundle, progress=False, batch_size=7).to_dict()
    b = analyze(Wrapped(bundle), progress=False, batch_size=13).to_dict()
    for x in (a, b):
        x.pop("seconds"), x.pop("mb_per_s")
    assert a == b


@pytest.mark.parametrize("threads", [1, 2])
def test_ngram_threads_give_the_same_counts(monkeypatch, threads: int) -> None:
    import spacerini.audit.ngrams as ngrams

    monkeypatch.setattr(ngrams, "_THREADED_TOKENS", 0)  # even tiny batches take the threaded path
    texts = [d.text for d in planted_docs()]
    counter = NgramCounter(threads=threads)
    for i in range(0, len(texts), 5):
        chunk = [t.encode() for t in texts[i : i + 5]]
        offsets = np.concatenate(([0], np.cumsum([len(c) for c in chunk]))).astype(np.int64)
        counter.add(np.frombuffer(b"".join(chunk), dtype=np.uint8), offsets)
    ref = reference_counts(texts)
    top = counter.top(50)
    for n in (1, 2, 3):
        assert [(g.ngram, g.count) for g in top[n]] == ref[n].most_common(50), n
    assert counter.distinct() == {n: len(ref[n]) for n in (1, 2, 3)}


def test_analyze_a_format_1_bundle(tmp_path: Path) -> None:
    """A format 1 bundle (Parquet docstore) is read through its records: the same numbers as a
    brute-force count over its documents."""
    import shutil

    from spacerini.bundle import open_bundle

    shutil.copytree(DATA / "bundle_v1", tmp_path / "b")
    b = open_bundle(tmp_path / "b")
    with b.pin() as snap:
        texts = [d.text for d in snap.iter_docs()]
    a = analyze(b, progress=False)
    assert a.docs == len(texts) > 0 and a.tokens == sum(len(WORD.findall(t)) for t in texts)
    counts = reference_counts(texts)
    for n in (1, 2, 3):
        assert [(r["ngram"], r["count"]) for r in a.ngrams[str(n)]] == counts[n].most_common(20)


def test_ngrams_of_long_tokens_sharing_prefixes(monkeypatch) -> None:
    """Tokens of every length around the 8-byte words the tokenizer hashes and compares by, many
    sharing their first 8 or 16 bytes and differing only after them, in a vocabulary that starts
    tiny (it is rehashed many times and probes collide)."""
    import spacerini.audit.ngrams as ngrams

    monkeypatch.setattr(ngrams, "_INITIAL", 2)
    stems = ["abcdefgh", "abcdefghijklmnop", "x", "é" * 4, "東京" * 3]
    words = [
        s + tail for s in stems for tail in ("", "q", "qq", "r", "qr", "rq", "q" * 9, "r" * 9, "_1", "1_")
    ]
    words += ["a" * n for n in range(1, 40)]
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(23)) for i in range(60)]
    counter = NgramCounter()
    for i in range(0, len(texts), 9):
        raw = [t.encode("utf-8") for t in texts[i : i + 9]]
        counter.add(
            np.frombuffer(b"".join(raw), dtype=np.uint8), np.array([0, *np.cumsum([len(r) for r in raw])])
        )
    ref = reference_counts(texts)
    assert counter.distinct() == {n: len(ref[n]) for n in (1, 2, 3)}
    assert sorted(counter.words) == sorted(set(words))
    top = counter.top(1000)
    for n in (1, 2, 3):
        assert [(g.ngram, g.count) for g in top[n]] == ref[n].most_common(1000), n


def test_a_licence_or_owner_with_dollar_signs_is_charted_as_text(tmp_path: Path) -> None:
    """matplotlib read a label holding two "$" as TeX: `a$\\frac{$b` raised and stopped the report."""
    docs = [
        Doc(f"d{i}", f"text number {i}", {"licence": "a$\\frac{$b" if i % 2 else "$x$", "owner": "c$\\d$"}) for i in range(4)
    ]
    bundle = build_bundle(docs, tmp_path / "b", backends=["bm25"], progress=False)
    a, lengths = analyze(bundle, progress=False, keep_lengths=True)
    report = write_report(a, lengths, tmp_path / "out")
    assert report.exists() and {"by_licence.png", "by_owner.png"} <= {p.name for p in report.parent.glob("*.png")}
