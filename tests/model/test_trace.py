"""Tracing text back to the corpus: spans, sources, licences, coverage; nothing for random text."""

from __future__ import annotations

import json
import random
import string

import pytest

from spacerini.errors import BackendNotAvailableError, QueryError
from spacerini.model.tracing import TraceResult, trace
from tests.model.conftest import corpus_docs


def _noise(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def test_an_excerpt_inside_noise_is_traced_to_its_document(tiny_bundle) -> None:
    doc = corpus_docs()[3]  # the MIT-licensed one
    excerpt = doc.text[120:260]
    text = _noise(40, 1) + excerpt + _noise(60, 2)
    result = trace(tiny_bundle, text, min_len=20)
    assert isinstance(result, TraceResult)
    long_spans = [s for s in result.spans if s.end - s.start >= 100]
    assert len(long_spans) == 1
    span = long_spans[0]
    # The span is the excerpt, give or take a character the noise shares by chance at its edges.
    assert span.start <= 40 and span.end >= 40 + len(excerpt)
    assert span.start >= 38 and span.end <= 40 + len(excerpt) + 2
    assert span.text == text[span.start : span.end] and span.text in doc.text
    assert span.count == doc.text.count(span.text) == 1
    [source] = span.sources
    assert source.docid == doc.id
    assert (source.licence, source.owner, source.repo, source.path, source.swhid) == (
        "MIT", "Ada Example", "https://example.org/tabletools", "tabletools/io.py", doc.meta["swhid"]
    )
    assert result.licences == ("MIT",)
    assert result.coverage == pytest.approx((span.end - span.start) / len(text), abs=0.05)
    assert result.bloom_coverage is not None and result.bloom_coverage > 0.3
    # JSON-serialisable through dataclasses.asdict.
    data = json.loads(json.dumps(result.to_dict()))
    assert data["spans"][0]["sources"][0]["licence"] == "MIT"


def test_random_text_reports_nothing(tiny_bundle) -> None:
    text = _noise(1000, 3)
    result = trace(tiny_bundle, text)
    assert result.spans == () and result.coverage == 0.0 and result.licences == ()
    assert result.bloom_coverage == 0.0
    assert result.chars == 1000


def test_spans_agree_with_brute_force_search(tiny_bundle) -> None:
    docs = corpus_docs()
    # A line shared by two stdlib files and a PSF excerpt: every span must be in some doc
    # verbatim, and its count must equal Python's own count over the corpus.
    text = docs[0].text[:300] + "\n#---\n" + docs[1].text[500:700]
    result = trace(tiny_bundle, text, min_len=32, max_docs=5)
    assert result.spans
    for span in result.spans:
        assert span.end - span.start >= 32
        assert span.count == sum(d.text.count(span.text) for d in docs)
        holders = [d.id for d in docs if span.text in d.text]
        assert [s.docid for s in span.sources] == holders[:5]
        assert all(s.licence == "PSF-2.0" for s in span.sources)
        # Maximal: extending either edge by one character is not in the corpus.
        if span.start > 0:
            assert not any(text[span.start - 1 : span.end] in d.text for d in docs)
        if span.end < len(text):
            assert not any(text[span.start : span.end + 1] in d.text for d in docs)
    assert result.licences == ("PSF-2.0",)
    assert result.coverage > 0.9


def test_trace_needs_the_exact_backend(tmp_path) -> None:
    from spacerini.bundle import build_bundle

    bundle = build_bundle(corpus_docs(), tmp_path / "b", backends=["bloom"], progress=False)
    with pytest.raises(BackendNotAvailableError, match="exact"):
        trace(bundle, "def f(): pass")


def test_empty_text_is_a_query_error(tiny_bundle) -> None:
    with pytest.raises(QueryError):
        trace(tiny_bundle, "")


def test_render_trace_names_spans_sources_and_licences(tiny_bundle) -> None:
    from spacerini.model.tracing import render_trace

    doc = corpus_docs()[3]
    text = _noise(30, 5) + doc.text[:200]
    out = render_trace(trace(tiny_bundle, text))
    lines = out.splitlines()
    assert lines[0].startswith("86.") or "% of 230 characters" in lines[0]
    assert "licences: MIT" in lines[0]
    assert any(line.strip().startswith(doc.id) and "licence=MIT" in line and doc.meta["swhid"] in line for line in lines)
    assert render_trace(trace(tiny_bundle, _noise(300, 6))).startswith("0.0% of 300 characters")
