"""Each backend's build and search options, declared once as a frozen dataclass.

One declaration drives three things that used to be written by hand in three places:

* **validation**: :func:`check_build_options` builds the dataclass from what the user gave, so
  an unknown name, a wrong type or a value out of range fails with one clear line before any
  document is read;
* **the CLI**: ``spacerini index`` and ``spacerini search`` get one flag per field whose
  metadata names it (:func:`cli_flags`), with the field's help, type and range;
* **the manifest**: a backend records the options it was built with (its report's ``params``),
  which reopening and an opt-out rebuild pass back through the same checks.

This module is light (no backend is imported), so that the CLI can build its flags cheaply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from spacerini.errors import BackendParameterError


def _opt(default: Any, help: str, *, flag: str | None = None, **checks: Any) -> Any:
    """A field with CLI/validation metadata: ``flag`` (its CLI flag), ``min``/``max``/``choices``."""
    return field(default=default, metadata={"help": help, "flag": flag, **checks})


@dataclass(frozen=True)
class BM25Options:
    """BM25 (Anserini/Lucene) build options."""

    analyzer: str = _opt("en", "BM25 analyzer: en (default), a language code, or code.", flag="--analyzer")
    k1: float = _opt(0.9, "BM25 k1 (default 0.9, Anserini's).", flag="--k1", min=0.0)
    b: float = _opt(0.4, "BM25 b (default 0.4, Anserini's).", flag="--b", min=0.0, max=1.0)
    memory_buffer: int = _opt(512, "Lucene indexing RAM buffer in MB.", min=16)


@dataclass(frozen=True)
class BM25SearchOptions:
    """BM25 search options."""

    scorer: str = _opt("exact", "exact (the numpy sidecar) or lucene (Anserini's searcher).", choices=("exact", "lucene"))


@dataclass(frozen=True)
class ExactOptions:
    """Exact (suffix array) build options."""

    max_shard_bytes: int = _opt(2**31 - 1, "Largest suffix-array shard in bytes (int32 offsets).", min=1, max=2**31 - 1)


@dataclass(frozen=True)
class BloomOptions:
    """Bloom membership sketch build options."""

    width: int = _opt(50, "N-gram width in characters.", min=1)
    stride: int | None = _opt(None, "Distance between stored n-grams (default: the width).", min=1)
    fp_rate: float = _opt(0.001, "Target false-positive rate.", min=1e-12, max=0.5)
    capacity: int | None = _opt(None, "N-grams the filter is sized for (default: those of the corpus).", min=1)
    skip_pii: bool = _opt(True, "Leave out the n-grams that touch PII, so the published sketch cannot confirm a secret.")


@dataclass(frozen=True)
class OwnersOptions:
    """Owner index build options."""

    optout_instructions: str | None = _opt(None, "How a person has their files removed (shown with every answer).")


@dataclass(frozen=True)
class DenseOptions:
    """Dense (Faiss) build options."""

    encoder: str | None = _opt(
        None, "Dense encoder: all-MiniLM-L6-v2 (default, offline), a local path or a cached name.", flag="--encoder"
    )
    index: str = _opt(
        "auto", "Faiss index type (default auto: flat below 50,000 passages, ivfpq above).", flag="--dense-index",
        choices=("auto", "flat", "ivf", "ivfpq", "hnsw"),
    )  # fmt: skip
    passage_tokens: int = _opt(256, "Dense passage length in tokens (clipped to the encoder's).", flag="--passage-tokens", min=1)
    overlap: int = _opt(32, "Tokens shared by consecutive passages.", flag="--overlap", min=0)
    max_passages: int | None = _opt(
        4096, "Most passages encoded per document; a longer one's others are left out of the dense index "
        "(one warning each), not of the other backends.", flag="--max-passages", min=1,
    )  # fmt: skip
    batch_size: int = _opt(32, "Encoding batch size.", min=1)
    chunk_docs: int = _opt(1024, "Documents per encoding checkpoint.", min=1)
    hnsw_m: int | None = _opt(None, "HNSW graph degree M (default 16).", flag="--hnsw-m", min=2, max=512)
    ef_construction: int | None = _opt(None, "HNSW efConstruction (default 200).", flag="--ef-construction", min=1)
    ef_search: int | None = _opt(None, "HNSW efSearch at search time (default: tuned, from 32).", flag="--ef-search", min=1)
    nlist: int | None = _opt(None, "IVF lists for ivf/ivfpq (default 4*sqrt(passages)).", flag="--nlist", min=1)
    nprobe: int | None = _opt(
        None, "IVF lists probed at search time (default: tuned, from 32 for ivf or nlist/12 for ivfpq).",
        flag="--nprobe", min=1,
    )  # fmt: skip
    refine_factor: int | None = _opt(None, "ivfpq candidates re-ranked exactly, as a multiple of k.", min=1)
    target_recall: float | None = _opt(
        None, "Recall@10 the ANN search knobs not given are tuned to after the build (default 0.95).",
        flag="--target-recall", min=1e-9, max=1.0,
    )  # fmt: skip
    checkpoint_dir: str | None = _opt(None, "Where encoding checkpoints are kept.")
    device: str | None = _opt(None, "Torch device for the dense encoder, e.g. cpu or cuda (default: the best one).", flag="--device")
    runtime: str = _opt(
        "auto", "Dense encoder runtime: auto (onnx on the CPU, torch on a GPU), torch, onnx, or onnx-int8.",
        flag="--dense-runtime", choices=("auto", "torch", "onnx", "onnx-int8"),
    )  # fmt: skip
    shard_plan: str | None = _opt(None, "Set by a sharded build (prepare_shards): the corpus-wide plan and codec.")


@dataclass(frozen=True)
class DenseSearchOptions:
    """Dense search options (override what the build tuned)."""

    device: str | None = _opt(None, "Torch device for query encoding.")
    nprobe: int | None = _opt(None, "Dense IVF nprobe (overrides the bundle's).", flag="--nprobe", min=1)
    ef_search: int | None = _opt(None, "Dense HNSW efSearch (overrides the bundle's).", flag="--ef-search", min=1)
    refine_factor: int | None = _opt(None, "ivfpq re-ranking factor (overrides the bundle's).", min=1)


@dataclass(frozen=True)
class NoOptions:
    """A backend without search options."""


#: backend -> (build options, search options)
OPTIONS: dict[str, tuple[type, type]] = {
    "bm25": (BM25Options, BM25SearchOptions),
    "exact": (ExactOptions, NoOptions),
    "bloom": (BloomOptions, NoOptions),
    "owners": (OwnersOptions, NoOptions),
    "dense": (DenseOptions, DenseSearchOptions),
}


def _classes(backend: str) -> tuple[type, type]:
    try:
        return OPTIONS[backend]
    except KeyError:
        from spacerini.errors import BackendNotAvailableError

        raise BackendNotAvailableError(f"unknown backend {backend!r}: choose from {', '.join(OPTIONS)}") from None


def _check(cls: type, backend: str, given: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(given) - names
    if unknown:
        raise BackendParameterError(
            f"backend {backend!r} has no {what} option(s) {', '.join(sorted(unknown))}"
            f" (it has: {', '.join(sorted(names)) or 'none'})"
        )
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in given or given[f.name] is None:
            continue
        value = given[f.name]
        label = f.metadata.get("flag") or f.name
        if not _fits(value, hints[f.name]):
            raise BackendParameterError(f"{backend} {label} must be {_type_name(hints[f.name])}, not {value!r}")
        low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise BackendParameterError(f"{backend} {label} must be one of {', '.join(choices)}, not {value!r}")
        if low is not None and value < low:
            raise BackendParameterError(f"{backend} {label} must be at least {low}, not {value!r}")
        if high is not None and value > high:
            raise BackendParameterError(f"{backend} {label} must be at most {high}, not {value!r}")
    return cls(**dict(given))


def _hint_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _fits(value: Any, hint: Any) -> bool:
    text = _hint_text(hint)
    if isinstance(value, bool):
        return "bool" in text
    if isinstance(value, int):
        return "int" in text or "float" in text
    if isinstance(value, float):
        return "float" in text
    if isinstance(value, str):
        return "str" in text
    return True


def _type_name(hint: Any) -> str:
    text = _hint_text(hint).replace(" | None", "").replace("None | ", "")
    return {"int": "an integer", "float": "a number", "str": "text", "bool": "true or false"}.get(text, text)


def check_build_options(backend: str, given: Mapping[str, Any]) -> Any:
    """The backend's build options from ``given`` (defaults for the rest), checked.

    Raises:
        BackendParameterError: An unknown name, a wrong type, or a value out of range.
    """
    return _check(_classes(backend)[0], backend, given, "build")


def check_search_options(backend: str, given: Mapping[str, Any]) -> Any:
    """The backend's search options from ``given``, checked (see :func:`check_build_options`)."""
    return _check(_classes(backend)[1], backend, given, "search")


def build_option_names(backend: str) -> frozenset[str]:
    """The names of the backend's build options."""
    return frozenset(f.name for f in dataclasses.fields(_classes(backend)[0]))


def search_option_names(backend: str) -> frozenset[str]:
    """The names of the backend's search options."""
    return frozenset(f.name for f in dataclasses.fields(_classes(backend)[1]))


@dataclass(frozen=True)
class Flag:
    """One CLI flag generated from an option field."""

    backend: str
    name: str
    flag: str
    help: str
    type: Any
    minimum: Any = None
    maximum: Any = None
    choices: tuple[str, ...] | None = None


def cli_flags(*, search: bool = False) -> list[Flag]:
    """The CLI flags the options declare (``search=True``: the search-time ones), in backend order.

    A flag shared by two backends' options is listed once, for the first.
    """
    seen: set[str] = set()
    flags: list[Flag] = []
    for backend, classes in OPTIONS.items():
        cls = classes[1 if search else 0]
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag")
            if not flag or flag in seen:
                continue
            seen.add(flag)
            text = _hint_text(hints[f.name])
            kind = float if "float" in text else int if "int" in text else str
            flags.append(
                Flag(backend, f.name, flag, f.metadata["help"], kind, f.metadata.get("min"), f.metadata.get("max"),
                     f.metadata.get("choices"))  # fmt: skip
            )
    return flags
