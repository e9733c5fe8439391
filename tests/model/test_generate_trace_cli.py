"""`spacerini model generate --trace BUNDLE`: generate, then attribute what the model wrote."""

from __future__ import annotations

import json

from spacerini.model.generation import generate
from spacerini.model.tracing import trace
from tests.cli_helpers import run


def test_generate_trace_reports_the_trace_of_the_generated_text(tiny_bundle, capsys) -> None:
    args = ["model", "generate", "import os\n", "--temperature", "0", "--max-new-tokens", "24", "--min-len", "4"]
    code, out, err = run([*args, "--trace", str(tiny_bundle.path), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    text = generate("import os\n", temperature=0, max_new_tokens=24)
    assert data["text"] == text and text
    expected = trace(tiny_bundle, text, min_len=4).to_dict()
    got = data["trace"]
    assert got["chars"] == len(text) and got["min_len"] == 4
    assert [(s["start"], s["end"], s["count"]) for s in got["spans"]] == [
        (s["start"], s["end"], s["count"]) for s in expected["spans"]
    ]
    assert got["spans"], "4-character spans of Python are in any Python corpus"
    for span in got["spans"]:
        assert span["text"] == text[span["start"] : span["end"]]
        assert all(src["licence"] in ("PSF-2.0", "MIT") for src in span["sources"])

    code, out, err = run([*args, "--trace", str(tiny_bundle.path)], capsys)
    assert code == 0, err
    assert out.startswith("import os\n" + text)
    assert f"trace of the {len(text):,} generated characters" in out and "licence=" in out


def test_generate_trace_with_a_bad_bundle_is_one_error_line(tmp_path, capsys) -> None:
    code, out, err = run(["model", "generate", "x = ", "--trace", str(tmp_path / "missing")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_generate_trace_without_the_exact_backend_fails_before_generating(tmp_path, capsys, monkeypatch) -> None:
    from spacerini.bundle import build_bundle
    from spacerini.model import generation
    from tests.model.conftest import corpus_docs

    bundle = build_bundle(corpus_docs(), tmp_path / "b", backends=["bloom"], progress=False)
    called = []
    monkeypatch.setattr(generation, "generate", lambda *a, **k: called.append(1) or "")  # writes nothing
    code, out, err = run(["model", "generate", "x = ", "--trace", str(bundle.path)], capsys)
    assert code == 2 and out == "" and not called
    assert len(err.strip().splitlines()) == 1 and "needs the exact backend" in err and "--backends bloom,exact" in err


def test_model_train_passes_the_stream_options(tiny_bundle, tmp_path, capsys) -> None:
    args = ["model", "train", "--bundle", str(tiny_bundle.path), "--out", str(tmp_path / "m"), "--steps", "2",
            "--batch-size", "2", "--seq-len", "32", "--threads", "1", "--doc-fraction", "0.5", "--fixed-sample",
            "--sequence-shuffle", "8", "--json"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 0, err
    report = json.loads(out[out.index("{") :])
    assert (report["doc_fraction"], report["fixed_sample"], report["sequence_shuffle"]) == (0.5, True, 8)
    code, _, err = run([*args[:-1], "--doc-fraction", "0"], capsys)
    assert code == 2 and "doc-fraction" in err
