"""Dense retrieval: sentence-encoder passages in a Faiss index, on CPU or GPU.

What ``build`` writes into the bundle's ``dense/`` folder:

* ``index.faiss`` - the Faiss index of L2-normalised passage vectors, inner-product metric (so
  scores are cosine similarities), written with ``faiss.write_index`` (no pickle);
* ``passage_doc.npy`` - int32, the document ordinal (docstore row) of each passage, in index order;
* ``ids.json`` - the document ids in docstore row order;
* ``dense.json`` - the build parameters (the same ones the manifest stores).

Design choices, and why:

* **Passages.** Documents are cut into passages of ``passage_tokens`` tokens (default 256,
  clipped to what the encoder reads) sharing ``overlap`` tokens (default 32), with the encoder's
  own tokenizer, so nothing past the model's window is silently truncated. A document's score is
  its best passage's score. Documents with no tokens get no passage and can never match.
* **Passage cap** (``max_passages``, default :data:`DEFAULT_MAX_PASSAGES` = 4,096 a document,
  4 to 5 MB of English prose). Encoding is linear in the passages, and on a CPU it is nearly all the
  cost: splitting a document is ~1-1.5 s per MB, encoding its ~1,000 passages per MB of text takes
  50-90 ms each with all-MiniLM-L6-v2 on two cores (a 20 MB document: about an hour). So only a
  document's first ``max_passages`` passages are encoded (the others are not even cut out of its
  text); the build logs one warning line per such document, naming it and the passages left out,
  and counts them in its stats (``capped_docs``, ``passages_left_out``). The document stays
  whole in the docstore and in the other backends. ``None`` encodes everything.
* **Index kind** (``index=``): ``"flat"`` (``IndexFlatIP``, exact); ``"ivf"`` (``IndexIVFFlat``,
  ``nlist`` defaults to 4·√passages, at most passages/39 so k-means has enough points);
  ``"ivfpq"`` (``IVF{nlist},PQ{dim/2}x4fs,RFlat``: the same lists over 4-bit product-quantized
  codes scanned with SIMD "fast-scan" lookups, whose best ``refine_factor·k`` candidates are
  re-ranked with the exact vectors, so scores stay exact cosines); or ``"hnsw"``
  (``IndexHNSWFlat``, ``M=16``, ``efConstruction=200``). ``"auto"`` (default,
  :func:`auto_index`) picks flat below 50,000 passages (exact, and a scan of 50k 384-d vectors
  takes a few ms) and ``ivfpq`` above. Faiss has no GPU HNSW or GPU fast-scan, so choose
  ``"flat"`` or ``"ivf"`` to search on a GPU.
* **Search knobs, tuned.** ``nprobe`` (and ``refine_factor``) or ``efSearch`` start at the
  defaults of :func:`default_knobs` (``ivfpq``: nlist/12 lists, 4x re-ranking; ``ivf``: 32
  lists; ``hnsw``: efSearch 32), which reach recall@10 0.96 on held-out queries over 100k full
  all-MiniLM-L6-v2 encodings of text lines. After the build, :mod:`.tune` samples 1,000
  stored passages as queries and raises the knobs until their recall@10 against exact search
  reaches ``target_recall`` (0.95), keeping the fastest setting that does: harder vector sets
  get a wider search instead of a silent recall loss. The chosen knobs and the sampled recall
  are stored in the manifest; ``open(..., nprobe=, ef_search=, refine_factor=)`` (CLI
  ``--nprobe``/``--ef-search``) overrides them at search time.
* **Pages of an approximate search.** HNSW and ``ivfpq`` explore more of the index the deeper
  they are asked to go (``max(efSearch, k)`` candidates; ``refine_factor·k`` re-ranked), so a
  search for the top 20 could rank a document that a search for the top 10 had missed above
  one on page 1, and page 2 (``offset=10``) would repeat it. Their ranking is therefore built
  in levels of fixed depths (:data:`ANN_LEVEL_DOCS` = 10 documents, then 40, 160, ...), each
  level appending the documents the ones before did not rank: every page is a slice of one
  ranking, and the first page of 10 costs one search, as before. Exact searches (``flat``;
  ``ivf`` over its fixed probed lists) do not depend on the depth and are unchanged.
* **Why ivfpq.** ``benchmarks/dense_ann.py`` at 100k vectors, 1,000 batched held-out queries,
  same Faiss threads as flat (benchmarks/RESULTS.md): the default as built and tuned reached
  recall@10 0.962 at 7.1x flat's QPS on MiniLM encodings and 0.965 at 7.3x on a harder clustered
  synthetic set, where HNSW (M=16, efConstruction=200) needed efSearch 32 for 0.96 at 5.6x on
  the first and efSearch 96 for 0.96 at only 1.9x on the second. It also trains and builds in
  seconds where that HNSW takes a minute or more.
* **Resumable encoding.** Encoding is the slow part, so vectors are checkpointed to disk in
  chunks of ``chunk_docs`` documents. The bundle builds into a fresh temporary folder each time,
  so the checkpoints live in ``<checkpoint_dir>/<key>`` (``checkpoint_dir`` defaults to
  ``$SPACERINI_CACHE/dense-checkpoints``, ``SPACERINI_CACHE`` to ``~/.cache/spacerini``), where
  ``key`` hashes the encoder, the passage parameters and a corpus
  fingerprint (SHA-256 over ids and text lengths). A rerun after a crash or Ctrl-C encodes only
  the chunks that are missing. The folder is removed after a successful build.
* **Shards** (exact: a sharded build answers as the unsharded one does).
  :func:`prepare_shards` runs once over the whole corpus before the shard builds. It decides
  the index kind, ``nlist`` and the passage length from the whole corpus's passage count (one
  tokenizer pass, no encoding), exactly as an unsharded build decides them, and for ``ivf`` and
  ``ivfpq`` trains the codec once: it encodes only the documents that hold the passages an
  unsharded build trains on (the same seeded sample of global passage rows), trains on those
  vectors and writes the empty trained index's ``faiss.serialize_index`` bytes into a file (no
  pickle). Each shard's ``build(..., shard_plan=...)`` encodes its own passages
  (the expensive part), adds them to a copy of that codec with shard-local ids (a shard does not
  know where it starts), and keeps its vector chunk files. :func:`merge_shards` then merges the
  shards in corpus order: IVF inverted lists with ``merge_from``, each shard's ids shifted by the
  passages before it (``ivfpq``: the fast-scan lists and the re-ranking vectors separately), or,
  for ``flat`` and ``hnsw``, an index built from the shards' stored vectors exactly as an
  unsharded build builds it, in the same ``add`` batches (an HNSW graph cannot be merged and
  depends on those batches: it is built once, at merge time, from the stored vectors; nothing
  is encoded again). Doc ordinals are shifted the same way, and the knobs are tuned on the
  merged index as an unsharded build tunes them. A passage's vector depends on its own tokens
  only (see :mod:`spacerini.encoders`), so the shards hold the very vectors of an unsharded
  build: flat, IVF and (one Faiss thread) HNSW indexes come out byte-identical (``ivfpq``:
  identical entries, only the padding of fast-scan blocks differs), with the same ids, scores
  and tuned ``nprobe`` (``ivfpq`` picks among the refine factors reaching the target by timing,
  in either build). Encoders without a fast tokenizer go through sentence-transformers' own
  batching, whose vectors may differ in the last bits between sharded and unsharded builds.
* **Devices.** :func:`spacerini.device.best_device` picks the encoder's device. With faiss-gpu and
  a CUDA device, flat and IVF indexes are built and searched on GPU 0 through
  ``StandardGpuResources`` / ``index_cpu_to_gpu`` and saved back as CPU indexes, so a bundle
  built on a GPU opens on a CPU. (The GPU path is written but has not been run on a GPU yet.)
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from spacerini.backends import DocsFactory, check_batch, iter_batches, read_json
from spacerini.backends.dense import tune as _dense_tune
from spacerini.encoders import (
    DEFAULT_ENCODER,
    Encoder,
    check_encoder,
    load_encoder,
    model_path,
    query_runtime,
    resolve_runtime,
)
from spacerini.errors import (
    BackendParameterError,
    BundleCorruptError,
    DependencyMissingError,
    EmptyCorpusError,
    QueryError,
)
from spacerini.records import BuildReport, Hit

logger = logging.getLogger(__name__)

NAME = "dense"
INDEX_FILE = "index.faiss"
PASSAGE_DOC_FILE = "passage_doc.npy"
IDS_FILE = "ids.json"
PARAMS_FILE = "dense.json"
INDEX_KINDS = ("auto", "flat", "ivf", "ivfpq", "hnsw")
#: Below this many passages, ``index="auto"`` builds an exact flat index.
AUTO_FLAT_MAX = 50_000
#: HNSW build and search parameters used unless given.
HNSW_DEFAULTS: dict[str, int] = {"hnsw_m": 16, "ef_construction": 200, "ef_search": 32}
#: IVF lists probed per query unless given (``index="ivf"``).
IVF_DEFAULT_NPROBE = 32
#: ``index="ivfpq"``: the share of its lists a query probes (nprobe = nlist / 12) and how many
#: times ``k`` candidates the exact vectors re-rank, before tuning; chosen with
#: ``benchmarks/dense_ann.py`` (see the module docstring and benchmarks/RESULTS.md).
IVFPQ_PROBE_SHARE = 12
IVFPQ_REFINE_FACTOR = 4
#: Fewer passages than this cannot train 4-bit product quantizers well: ``ivfpq`` builds flat.
IVFPQ_MIN_PASSAGES = 1_000
#: Passages encoded per document unless ``max_passages`` says otherwise (see the module docstring).
DEFAULT_MAX_PASSAGES = 4_096
#: Recall@10 that ``build`` tunes the ANN search knobs to, unless they are given.
DEFAULT_TARGET_RECALL = 0.95
#: Smaller indexes keep the fixed defaults: a sample of a few hundred passages measures little.
TUNE_MIN_PASSAGES = 1_000
_CHECKPOINT_VERSION = 1
#: Files :func:`prepare_shards` writes into its work folder for the shard builds.
PLAN_FILE = "dense-plan.json"
CODEC_FILE = "dense-codec.faiss"
#: A shard folder keeps its passage vectors here (chunk files) for :func:`merge_shards`.
SHARD_CHUNKS = "chunks"
_PLAN_VERSION = 1
_IVF_KINDS = ("ivf", "ivfpq")
#: Index kinds whose search explores more of the index the deeper it goes (HNSW: ``max(efSearch,
#: k)`` candidates; ``ivfpq``: ``refine_factor * k`` re-ranked), so that their top documents
#: depend on ``k``: :meth:`DenseSearcher.search_vectors` ranks them in levels of fixed depths.
_ANN_KINDS = ("hnsw", "hnsw_sq8", "ivfpq")
#: The first level's depth, in documents (a first page of 10 costs one search, as before), and
#: how many times deeper each next level searches.
ANN_LEVEL_DOCS = 10
ANN_LEVEL_GROWTH = 4


# ------------------------------------------------------------------------------------- build
def _export_query_model(encoder: str, runtime: str) -> None:
    """Exports (once, into the cache) the model that will encode the index's queries when it is
    not the one that encodes its passages (:func:`~spacerini.encoders.query_runtime`), so the
    first query does not pay for an export."""
    wanted = query_runtime(runtime)
    if wanted != runtime and wanted != "torch":
        from spacerini.encoders_onnx import exported_model

        exported_model(model_path(encoder), wanted)


def build(
    docs_factory: DocsFactory,
    folder: Path,
    *,
    threads: int = 1,
    progress: bool = True,
    encoder: str = DEFAULT_ENCODER,
    index: str = "auto",
    passage_tokens: int = 256,
    overlap: int = 32,
    max_passages: int | None = 4_096,
    batch_size: int = 32,
    chunk_docs: int = 1024,
    hnsw_m: int | None = None,
    ef_construction: int | None = None,
    ef_search: int | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
    refine_factor: int | None = None,
    target_recall: float | None = DEFAULT_TARGET_RECALL,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    runtime: str = "auto",
    shard_plan: str | None = None,
) -> BuildReport:
    """Encodes every document's passages and writes a Faiss index into ``folder``.

    With ``shard_plan`` (from :func:`prepare_shards`) it builds one shard of a sharded bundle
    instead: ``docs_factory`` yields that shard's documents, and ``folder`` gets the shard's part
    of the shared index and its vector chunks, which :func:`merge_shards` merges.

    Args:
        docs_factory: Returns a fresh iterator of docs in docstore order (called twice).
        folder: An empty folder to write into.
        threads: Faiss threads for building the index (the encoder uses torch's own pool).
        progress: Show a progress bar.
        encoder: Encoder name or folder (see :func:`spacerini.encoders.model_path`).
        index: ``"auto"``, ``"flat"``, ``"ivf"``, ``"ivfpq"`` or ``"hnsw"``.
        passage_tokens: Passage length in tokens; clipped to the encoder's input size.
        overlap: Tokens shared by consecutive passages of a document.
        max_passages: Passages encoded per document, its first ones (default
            :data:`DEFAULT_MAX_PASSAGES`); a longer document's others are left out of the dense
            index with a warning naming it, and counted in the stats (``capped_docs``,
            ``passages_left_out``). ``None``: no cap.
        batch_size: Encoder batch size.
        chunk_docs: Documents per checkpoint chunk.
        hnsw_m: HNSW graph degree ``M``; ``None`` means :data:`HNSW_DEFAULTS`.
        ef_construction: HNSW ``efConstruction``; ``None`` means :data:`HNSW_DEFAULTS`.
        ef_search: HNSW ``efSearch`` used at search time (stored; can be overridden at open);
            ``None`` means tuned (see ``target_recall``) from :data:`HNSW_DEFAULTS`.
        nlist: IVF lists (``ivf``, ``ivfpq``); ``None`` means :func:`default_nlist`.
        nprobe: IVF lists probed at search time (stored; can be overridden at open); ``None``
            means tuned (see ``target_recall``) from :func:`default_knobs`.
        refine_factor: ``ivfpq`` re-ranks ``refine_factor * k`` quantized candidates with the
            exact vectors (stored; can be overridden at open); ``None`` means tuned from
            :data:`IVFPQ_REFINE_FACTOR`.
        target_recall: For ``ivf``, ``ivfpq`` and ``hnsw``, the search knobs not given above
            (``nprobe`` and ``refine_factor``, or ``ef_search``) are tuned after the build to the
            cheapest setting whose recall@10 against exact search reaches this on 1,000 sampled
            passages (see :mod:`spacerini.backends.dense.tune`); ``None``, or an index of fewer
            than :data:`TUNE_MIN_PASSAGES` passages, uses the fixed defaults.
        checkpoint_dir: Parent folder of the chunk checkpoints; they go into a subfolder named
            by a hash of the encoder, the passage parameters and the corpus fingerprint, which
            is removed after a successful build. ``None`` means ``$SPACERINI_CACHE/dense-checkpoints``.
        device: Torch device for the encoder; ``None`` picks the best one.
        runtime: Encoder runtime: ``auto`` (``onnx`` on the CPU, ``torch`` on a GPU), ``torch``,
            ``onnx`` or ``onnx-int8`` (see :mod:`spacerini.encoders_onnx`). The manifest records
            the one used (``params["runtime"]``) and queries are encoded with it, except that an
            ``onnx-int8`` index's queries are encoded in fp32 (``onnx``; see
            :func:`spacerini.encoders.query_runtime`), whose model the build exports too. A
            shard build takes the plan's.
        shard_plan: The plan file :func:`prepare_shards` wrote (its returned params name it):
            the index kind, ``nlist`` and the trained codec decided from the whole corpus. The
            shard's passages get shard-local ids; :func:`merge_shards` makes them global.

    Returns:
        The build report; its params are what :func:`open` needs (for a shard: what
        :func:`merge_shards` needs).

    Raises:
        ValueError: A parameter is out of range.
        EmptyCorpusError: ``docs_factory`` yields no documents.
        DependencyMissingError: faiss, sentence-transformers or the encoder is missing.
        BundleCorruptError: ``shard_plan`` is missing, unreadable or made for other settings.
    """
    started = time.perf_counter()
    hnsw_m = HNSW_DEFAULTS["hnsw_m"] if hnsw_m is None else hnsw_m
    ef_construction = HNSW_DEFAULTS["ef_construction"] if ef_construction is None else ef_construction
    _check_build_params(
        index, passage_tokens, overlap, batch_size, chunk_docs, hnsw_m, ef_construction, ef_search, nlist, nprobe,
        refine_factor, target_recall, max_passages=max_passages,
    )
    faiss = _import_faiss()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    plan = _read_plan(Path(shard_plan)) if shard_plan is not None else None
    if plan is not None and runtime == "auto":
        runtime = plan.get("runtime", "torch")
    runtime = resolve_runtime(runtime, device)
    # The encoder first: one that cannot load fails before the corpus is read.
    enc = load_encoder(encoder, device=device, runtime=runtime)
    ids, fingerprint = _fingerprint(docs_factory)
    if not ids and plan is None:
        raise EmptyCorpusError("the dense backend got no documents")
    _export_query_model(encoder, runtime)
    passage_tokens = _passage_tokens(passage_tokens, overlap, enc)
    if plan is not None:
        _check_plan(
            plan, Path(str(shard_plan)), encoder=encoder, dim=enc.dim, index=index, passage_tokens=passage_tokens,
            overlap=overlap, runtime=runtime, max_passages=max_passages,
        )  # fmt: skip
    key = _checkpoint_key(encoder, passage_tokens, overlap, chunk_docs, fingerprint, runtime, max_passages)
    parent = Path(checkpoint_dir) if checkpoint_dir is not None else _cache_root() / "dense-checkpoints"
    with _checkpoint_folder(parent, key) as ckpt:
        encode_started = time.perf_counter()
        chunks, resumed, capped = _encode_chunks(
            docs_factory, enc, ckpt, n_docs=len(ids), passage_tokens=passage_tokens, overlap=overlap,
            batch_size=batch_size, chunk_docs=chunk_docs, progress=progress, max_passages=max_passages,
        )
        left_out = sum(total - int(max_passages or total) for _, total in capped)
        encode_seconds = time.perf_counter() - encode_started
        # One row per passage, naming its document: the passage count and the documents without a
        # passage follow from it.
        passage_doc = _passage_doc(chunks)
        n_passages = len(passage_doc)
        empty = len(ids) - len(np.unique(passage_doc))
        if plan is not None:
            params = _params_record(
                encoder=encoder, runtime=runtime, dim=enc.dim, kind=plan["index"], index_requested=index,
                passage_tokens=passage_tokens,
                overlap=overlap, batch_size=batch_size, chunk_docs=chunk_docs, hnsw_m=hnsw_m,
                ef_construction=ef_construction, nlist=plan["nlist"], max_passages=max_passages,
            )
            params["shard"] = {
                "plan": plan["id"], "corpus_docs": plan["docs"], "corpus_passages": plan["passages"],
                "knobs": {"ef_search": ef_search, "nprobe": nprobe, "refine_factor": refine_factor},
                "target_recall": target_recall,
            }
            index_seconds = _write_shard(
                faiss, folder, plan, Path(str(shard_plan)), chunks, ids, params, threads=threads, progress=progress
            )
            encode_seconds = time.perf_counter() - encode_started - index_seconds
            stats = {
                "passages": n_passages, "empty_docs": empty, "capped_docs": len(capped), "passages_left_out": left_out,
                "resumed_chunks": resumed, "encode_seconds": round(encode_seconds, 3),
                "index_seconds": round(index_seconds, 3), "device": enc.device,
            }
            seconds = time.perf_counter() - started
            logger.info("dense: shard of %d docs, %d passages (%s) in %.1fs", len(ids), n_passages, params["index"], seconds)
            return BuildReport(backend=NAME, docs=len(ids), seconds=seconds, params=params, stats=stats)
        if n_passages == 0:
            raise EmptyCorpusError("no document has any text to encode for the dense backend")

        kind, nlist = _resolve_kind(index, n_passages, nlist)
        gpus = _gpus_for(kind)
        index_started = time.perf_counter()
        with _faiss_threads(faiss, threads):
            cpu_index, knobs, tuned = build_index(
                faiss, kind, chunks, dim=enc.dim, n_passages=n_passages, hnsw_m=hnsw_m,
                ef_construction=ef_construction, nlist=nlist, gpus=gpus, progress=progress,
                knobs={"ef_search": ef_search, "nprobe": nprobe, "refine_factor": refine_factor},
                target_recall=target_recall,
            )
        index_seconds = time.perf_counter() - index_started

        faiss.write_index(cpu_index, str(folder / INDEX_FILE))
        np.save(folder / PASSAGE_DOC_FILE, passage_doc)
        (folder / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
        params = _params_record(
            encoder=encoder, runtime=runtime, dim=enc.dim, kind=kind, index_requested=index, passage_tokens=passage_tokens,
            overlap=overlap, batch_size=batch_size, chunk_docs=chunk_docs, hnsw_m=hnsw_m,
            ef_construction=ef_construction, nlist=nlist, max_passages=max_passages,
        )
        params.update(knobs)
        if tuned is not None:
            params.update(target_recall=target_recall, tuned_recall=tuned.recall, tune_queries=tuned.queries)
        (folder / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")

    seconds = time.perf_counter() - started
    stats = {
        "passages": n_passages,
        "empty_docs": empty,
        "capped_docs": len(capped),
        "passages_left_out": left_out,
        "resumed_chunks": resumed,
        "encode_seconds": round(encode_seconds, 3),
        "index_seconds": round(index_seconds, 3),
        "docs_per_second": round(len(ids) / encode_seconds, 1) if encode_seconds > 0 else None,
        "device": enc.device,
        "faiss_gpus": gpus,
        "index_bytes": (folder / INDEX_FILE).stat().st_size,
    }
    logger.info("dense: %d docs, %d passages, %s index in %.1fs", len(ids), n_passages, kind, seconds)
    return BuildReport(backend=NAME, docs=len(ids), seconds=seconds, params=params, stats=stats)


def check_options(params: Mapping[str, Any]) -> None:
    """Checks, before any document is read, what :func:`build` would otherwise refuse only after
    the corpus was read (and, in a bundle, after the backends built before this one): the
    encoder can be loaded offline and is a model, and the device and runtime fit each other and
    this machine. Loads no model (torch is imported only to check a ``device`` other than cpu).

    Args:
        params: The dense build options given (names already checked).

    Raises:
        DependencyMissingError: The encoder is not available offline or is not a model, or torch
            sees no such device.
        BackendParameterError: An ONNX runtime with a non-CPU device, or options that do not fit
            together (``overlap`` not below ``passage_tokens``).
    """
    options = _build_options({k: v for k, v in params.items() if k not in ("threads", "progress", "shard_plan")})
    _check_build_params(
        options["index"], options["passage_tokens"], options["overlap"], options["batch_size"], options["chunk_docs"],
        options["hnsw_m"] or HNSW_DEFAULTS["hnsw_m"], options["ef_construction"] or HNSW_DEFAULTS["ef_construction"],
        options["ef_search"], options["nlist"], options["nprobe"], options["refine_factor"], options["target_recall"],
        max_passages=options["max_passages"],
    )  # fmt: skip
    encoder = options["encoder"] or DEFAULT_ENCODER
    runtime = options["runtime"] or "auto"
    device = options["device"]
    if device is not None and str(device).strip().lower() != "cpu":
        from spacerini.device import check_device

        check_device(str(device))
    if runtime == "auto" and device is None:
        runtime = "torch"  # which one auto picks needs torch to tell: check what both need
    else:
        try:
            runtime = resolve_runtime(runtime, device)
        except ValueError as exc:
            raise BackendParameterError(f"dense: {exc} (--dense-runtime / --device)") from exc
    check_encoder(str(encoder), runtime=runtime)


def _passage_tokens(passage_tokens: int, overlap: int, enc: Encoder) -> int:
    """The passage length the encoder allows (``passage_tokens`` clipped to its window), which the
    overlap must stay below.

    Raises:
        BackendParameterError: ``overlap`` is not below it.
    """
    passage_tokens = min(passage_tokens, enc.max_tokens)
    if overlap >= passage_tokens:
        raise BackendParameterError(
            f"dense: --overlap {overlap} must be below the passage length, {passage_tokens} tokens "
            "(--passage-tokens, clipped to the encoder's window): give a smaller --overlap"
        )
    return passage_tokens


def auto_index(n_passages: int) -> tuple[str, dict[str, int]]:
    """The index kind, and its default parameters, that ``index="auto"`` builds for ``n_passages``.

    Flat (exact) below :data:`AUTO_FLAT_MAX` passages, ``ivfpq`` (see the module docstring) above.
    """
    if n_passages < AUTO_FLAT_MAX:
        return "flat", {}
    nlist = default_nlist(n_passages)
    return "ivfpq", {"nlist": nlist, "nprobe": default_nprobe("ivfpq", nlist), "refine_factor": IVFPQ_REFINE_FACTOR}


def default_knobs(kind: str, nlist: int) -> dict[str, int]:
    """The search knobs of ``kind`` used unless given or raised by tuning."""
    if kind == "hnsw":
        return {"ef_search": HNSW_DEFAULTS["ef_search"]}
    if kind == "ivfpq":
        return {"nprobe": default_nprobe(kind, nlist), "refine_factor": IVFPQ_REFINE_FACTOR}
    if kind == "ivf":
        return {"nprobe": default_nprobe(kind, nlist)}
    return {}


def default_nprobe(kind: str, nlist: int) -> int:
    """Lists probed per query unless given: :data:`IVF_DEFAULT_NPROBE` for ``ivf``, nlist/12 for ``ivfpq``."""
    if kind == "ivfpq":
        return max(1, min(nlist, int(round(nlist / IVFPQ_PROBE_SHARE))))
    return min(nlist, IVF_DEFAULT_NPROBE)


def default_nlist(n_passages: int) -> int:
    """IVF lists for ``n_passages`` vectors: 4·√n, but at least 39 training points per list."""
    return max(1, min(n_passages // 39, int(round(4 * math.sqrt(n_passages)))))


def _resolve_kind(index: str, n_passages: int, nlist: int | None) -> tuple[str, int | None]:
    """The index kind and ``nlist`` a build of ``n_passages`` passages makes when asked for ``index``."""
    kind = index if index != "auto" else auto_index(n_passages)[0]
    if kind == "ivfpq" and n_passages < IVFPQ_MIN_PASSAGES:
        logger.warning(
            "dense: %d passages are too few to train an ivfpq index (it needs %d); building an exact flat index",
            n_passages, IVFPQ_MIN_PASSAGES,
        )
        kind = "flat"
    if kind in _IVF_KINDS:
        if nlist is not None and nlist > n_passages:
            # Faiss's k-means needs a point per list; it would fail with an assertion from C++.
            raise BackendParameterError(
                f"dense: --nlist {nlist} is more than the {n_passages} passages to cluster: give --nlist "
                f"{n_passages} or less (about {max(1, n_passages // 39)} lists keeps 39 passages a list), "
                "or leave it out (default 4*sqrt(passages))"
            )
        nlist = nlist or default_nlist(n_passages)
    return kind, nlist


def _params_record(
    *, encoder: str, runtime: str, dim: int, kind: str, index_requested: str, passage_tokens: int, overlap: int, batch_size: int,
    chunk_docs: int, hnsw_m: int, ef_construction: int, nlist: int | None, max_passages: int | None,
) -> dict[str, Any]:
    """The build parameters stored in ``dense.json`` and the manifest (before the search knobs)."""
    params: dict[str, Any] = {
        "encoder": encoder,
        "runtime": runtime,
        "dim": dim,
        "metric": "inner_product",
        "normalized": True,
        "index": kind,
        "index_requested": index_requested,
        "passage_tokens": passage_tokens,
        "overlap": overlap,
        "max_passages": max_passages,
        "batch_size": batch_size,
        "chunk_docs": chunk_docs,
    }
    if kind == "hnsw":
        params.update(hnsw_m=hnsw_m, ef_construction=ef_construction)
    if kind in _IVF_KINDS:
        params.update(nlist=nlist)
    return params


def _passage_doc(chunks: Sequence[tuple[Path, Path]]) -> np.ndarray:
    """The document ordinal of each passage, over the chunk files in order."""
    parts = [np.load(doc_path) for _, doc_path in chunks]
    return np.concatenate(parts).astype(np.int32, copy=False) if parts else np.zeros(0, dtype=np.int32)


def _check_build_params(
    index: str, passage_tokens: int, overlap: int, batch_size: int, chunk_docs: int, hnsw_m: int,
    ef_construction: int, ef_search: int | None, nlist: int | None, nprobe: int | None,
    refine_factor: int | None, target_recall: float | None, *, max_passages: int | None = None,
) -> None:
    if index not in INDEX_KINDS:
        raise BackendParameterError(f"dense: index must be one of {', '.join(INDEX_KINDS)}, not {index!r}")
    for name, value in (
        ("passage_tokens", passage_tokens), ("batch_size", batch_size), ("chunk_docs", chunk_docs),
        ("hnsw_m", hnsw_m), ("ef_construction", ef_construction),
    ):
        if not isinstance(value, int) or value < 1:
            raise BackendParameterError(f"dense: {name} must be a positive integer, not {value!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < passage_tokens:
        raise BackendParameterError(
            f"dense: --overlap must be an integer from 0 to below --passage-tokens ({passage_tokens}), not {overlap!r}"
        )
    if target_recall is not None and (
        isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1
    ):
        raise BackendParameterError(f"dense: target_recall must be in (0, 1] or None, not {target_recall!r}")
    for name, maybe in (
        ("nlist", nlist), ("nprobe", nprobe), ("ef_search", ef_search), ("refine_factor", refine_factor),
        ("max_passages", max_passages),
    ):
        if maybe is not None and (isinstance(maybe, bool) or not isinstance(maybe, int) or maybe < 1):
            raise BackendParameterError(f"dense: {name} must be a positive integer, not {maybe!r}")


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise DependencyMissingError("dense search needs faiss: pip install 'spacerini[dense]' (or faiss-gpu)") from exc
    return faiss


def _cache_root() -> Path:
    root = os.environ.get("SPACERINI_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "spacerini"


def _fingerprint(docs_factory: DocsFactory) -> tuple[list[str], str]:
    """Returns the doc ids in order and a SHA-256 over ids and text lengths."""
    ids: list[str] = []
    digest = hashlib.sha256()
    for doc in docs_factory():
        ids.append(doc.id)
        digest.update(doc.id.encode("utf-8", "surrogatepass"))
        digest.update(b"\0%d\n" % len(doc.text))
    return ids, digest.hexdigest()


def _checkpoint_key(
    encoder: str, passage_tokens: int, overlap: int, chunk_docs: int, fingerprint: str, runtime: str = "torch",
    max_passages: int | None = None,
) -> str:
    source = model_path(encoder)
    # A local folder is identified by its name and config, not by where this machine keeps it.
    config = Path(source) / "config.json"
    ident = Path(source).name + ":" + (hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else source)
    fields: list[Any] = [_CHECKPOINT_VERSION, ident, passage_tokens, overlap, chunk_docs, fingerprint]
    if runtime != "torch":  # torch checkpoints keep their old keys
        fields.append(runtime)
    if max_passages is not None:  # uncapped checkpoints keep their old keys
        fields.append(["max_passages", int(max_passages)])
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@contextlib.contextmanager
def _checkpoint_folder(parent: Path, key: str) -> Iterator[Path]:
    """The folder a build checkpoints its chunks in, removed when the build succeeds.

    It is ``parent/key`` (only that key-named subfolder is ever deleted, never a folder the
    caller named), held under ``parent/key.lock`` for the whole build, so an interrupted build
    resumes from it. A second build of the same corpus with the same settings, started while
    the first runs, cannot share it: it logs a warning and checkpoints into a private folder
    of its own, removed however the build ends.
    """
    from filelock import FileLock, Timeout

    parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(parent / f"{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        private = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=parent))
        logger.warning(
            "dense: another build of this corpus holds %s; this one checkpoints into %s and cannot be "
            "resumed if interrupted", parent / key, private,
        )
        try:
            yield private
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return
    try:
        ckpt = parent / key
        ckpt.mkdir(exist_ok=True)
        yield ckpt
        shutil.rmtree(ckpt, ignore_errors=True)
    finally:
        lock.release()


def _chunk_paths(ckpt: Path, number: int) -> tuple[Path, Path]:
    return ckpt / f"chunk_{number:07d}.vec.npy", ckpt / f"chunk_{number:07d}.doc.npy"


def _capped_path(ckpt: Path, number: int) -> Path:
    """A chunk's record of its capped documents (``[[id, passages in all], ...]``), written only
    when it has one, so that a resumed build reports them as the first run did."""
    return ckpt / f"chunk_{number:07d}.capped.json"


def _warn_capped(doc_id: str, total: int, max_passages: int) -> None:
    logger.warning(
        "dense: document %r has %d passages; only its first %d (max_passages) are encoded, %d are left out of "
        "the dense index (the document stays whole for the other backends)",
        doc_id, total, max_passages, total - max_passages,
    )


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _encode_chunks(
    docs_factory: DocsFactory, enc: Encoder, ckpt: Path, *, n_docs: int, passage_tokens: int, overlap: int,
    batch_size: int, chunk_docs: int, progress: bool, max_passages: int | None = None,
) -> tuple[list[tuple[Path, Path]], int, list[tuple[str, int]]]:
    """Encodes chunk after chunk, skipping chunks already checkpointed.

    At most ``max_passages`` passages of a document are encoded; each document that had more is
    logged in one warning line (again when its chunk is resumed).

    Returns:
        The (vectors, passage->doc) file pairs in order, the number of chunks reused, and the
        capped documents as ``(id, passages in all)``, in corpus order.
    """
    n_chunks = (n_docs + chunk_docs - 1) // chunk_docs
    done = {number for number in range(n_chunks) if all(p.is_file() for p in _chunk_paths(ckpt, number))}
    if done:
        logger.info("dense: resuming, %d of %d chunks already encoded in %s", len(done), n_chunks, ckpt)
    capped: list[tuple[str, int]] = []
    bar = tqdm(total=n_docs, desc="dense: encoding", unit=" docs", disable=not progress)
    try:
        texts: list[str] = []
        chunk_ids: list[str] = []
        first = 0
        for ordinal, doc in enumerate(docs_factory()):
            number = ordinal // chunk_docs
            if number in done:
                if ordinal % chunk_docs == 0:
                    bar.update(min(chunk_docs, n_docs - ordinal))
                    record = _capped_path(ckpt, number)
                    if max_passages is not None and record.is_file():
                        for doc_id, total in json.loads(record.read_text(encoding="utf-8")):
                            _warn_capped(doc_id, int(total), max_passages)
                            capped.append((doc_id, int(total)))
                continue
            if not texts:
                first = ordinal
            texts.append(doc.text)
            chunk_ids.append(doc.id)
            if ordinal % chunk_docs == chunk_docs - 1 or ordinal == n_docs - 1:
                passages = _PassageBar(len(texts), progress)
                chunk_capped: list[tuple[str, int]] = []
                options: dict[str, Any] = {}
                if max_passages is not None:
                    options = {
                        "max_passages": max_passages,
                        "on_capped": lambda i, total: chunk_capped.append((chunk_ids[i], int(total))),  # noqa: B023
                    }
                try:
                    vectors, counts = enc.encode_docs(
                        texts, max_tokens=passage_tokens, overlap=overlap, batch_size=batch_size, on_progress=passages,
                        **options,
                    )
                finally:
                    passages.close()
                for doc_id, total in chunk_capped:
                    _warn_capped(doc_id, total, int(max_passages or total))
                capped.extend(chunk_capped)
                owners = np.repeat(np.arange(first, first + len(texts), dtype=np.int32), counts)
                vec_path, doc_path = _chunk_paths(ckpt, number)
                _save_npy(doc_path, owners)
                if chunk_capped:
                    _capped_path(ckpt, number).write_text(json.dumps(chunk_capped, ensure_ascii=False), encoding="utf-8")
                _save_npy(vec_path, vectors)  # written last: its presence marks the chunk done
                bar.update(len(texts))
                texts = []
                chunk_ids = []
        bar.close()
    except BaseException:
        bar.close()
        raise
    return [_chunk_paths(ckpt, number) for number in range(n_chunks)], len(done), capped


#: A chunk whose passages number at least this many, and this many times its documents, shows
#: a second bar over its passages (long documents: one of 50 MB is about 100,000 passages, and
#: the bar over documents would stand still for the hours they take on a CPU).
PASSAGE_BAR_MIN = 2_000
PASSAGE_BAR_PER_DOC = 4


class _PassageBar:
    """``encode_docs``'s ``on_progress``: a bar over a chunk's passages, shown (and left off the
    screen when done) only for a chunk of long documents."""

    def __init__(self, docs: int, progress: bool) -> None:
        self._docs = docs
        self._progress = progress
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if not self._progress or total < max(PASSAGE_BAR_MIN, PASSAGE_BAR_PER_DOC * self._docs):
                return
            self._bar = tqdm(total=total, desc="dense: passages of long documents", unit=" passages", leave=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _gpus_for(kind: str) -> int:
    from spacerini.device import faiss_gpus

    return faiss_gpus() if kind in ("flat", "ivf") else 0


def _iter_vectors(chunks: Sequence[tuple[Path, Path]]) -> Iterator[np.ndarray]:
    for vec_path, _ in chunks:
        vectors = np.load(vec_path)
        if len(vectors):
            yield vectors


def build_index(
    faiss: Any, kind: str, chunks: Sequence[tuple[Path, Path]], *, dim: int, n_passages: int, hnsw_m: int,
    ef_construction: int, nlist: int | None, gpus: int, progress: bool, knobs: Mapping[str, int | None],
    target_recall: float | None,
) -> tuple[Any, dict[str, int], _dense_tune.Tuned | None]:
    """Builds the CPU index of ``kind`` from the chunk files and settles its search knobs.

    Knobs given in ``knobs`` are kept; the others start at :func:`default_knobs` and, for an
    index of at least :data:`TUNE_MIN_PASSAGES` passages with a ``target_recall``, are raised by
    :func:`spacerini.backends.dense.tune.tune` until the sampled recall@10 reaches it.

    Returns:
        The index (knobs applied), the knobs to store, and the tuning record (``None`` if none ran).
    """
    index = _build_index(
        faiss, kind, chunks, dim=dim, n_passages=n_passages, hnsw_m=hnsw_m, ef_construction=ef_construction,
        nlist=nlist, gpus=gpus, progress=progress,
    )
    knobs_out, tuned = _settle_knobs(
        faiss, index, kind, chunks, n_passages=n_passages, nlist=nlist, knobs=knobs, target_recall=target_recall
    )
    return index, knobs_out, tuned


def _settle_knobs(
    faiss: Any, index: Any, kind: str, chunks: Sequence[tuple[Path, Path]], *, n_passages: int, nlist: int | None,
    knobs: Mapping[str, int | None], target_recall: float | None,
) -> tuple[dict[str, int], _dense_tune.Tuned | None]:
    """Keeps the knobs given, tunes the others (see :func:`build_index`) and applies them to ``index``."""
    defaults = default_knobs(kind, nlist or 1)
    chosen = {key: knobs.get(key) or value for key, value in defaults.items()}
    tuned = None
    given = any(knobs.get(key) is not None for key in defaults)
    if target_recall is not None and defaults and not given and n_passages >= TUNE_MIN_PASSAGES:
        tuned = _dense_tune.tune(
            faiss, index, kind, chunks, n_passages=n_passages, target=target_recall,
            set_knobs=lambda idx, values: apply_knobs(faiss, idx, kind, values), floor=defaults,
        )
        chosen.update(tuned.params)
    if chosen:
        apply_knobs(faiss, index, kind, chosen)
    return chosen, tuned


def _build_index(
    faiss: Any, kind: str, chunks: Sequence[tuple[Path, Path]], *, dim: int, n_passages: int, hnsw_m: int,
    ef_construction: int, nlist: int | None, gpus: int, progress: bool, batches: Iterable[np.ndarray] | None = None,
) -> Any:
    """Builds a CPU index (on GPU 0 first when ``gpus`` > 0: flat/IVF with faiss-gpu).

    The vectors come from ``chunks``, one ``add`` per chunk, or from ``batches`` when given.
    """
    index = make_index(faiss, kind, dim, hnsw_m=hnsw_m, ef_construction=ef_construction, nlist=nlist or 1)
    gpu_res = None
    if gpus > 0:
        gpu_res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(gpu_res, 0, index)
    if kind in _IVF_KINDS:
        index.train(_dense_tune.gather_rows(chunks, training_rows(n_passages, nlist or 1)))
    _add_chunks(
        index, chunks if batches is None else batches, desc=f"dense: {kind} index", total=n_passages, progress=progress
    )
    if gpu_res is not None:
        index = faiss.index_gpu_to_cpu(index)
    return index


def training_rows(n_passages: int, nlist: int) -> np.ndarray:
    """The passage rows (sorted, global) an IVF codec of ``nlist`` lists trains on: a seeded sample
    of ``max(64·nlist, 10,000)`` rows, all of them in smaller corpora."""
    return _dense_tune.sample_rows(n_passages, min(n_passages, max(64 * int(nlist), 10_000)))


def _add_chunks(
    index: Any, chunks: Sequence[tuple[Path, Path]] | Iterable[np.ndarray], *, desc: str, total: int, progress: bool
) -> None:
    """Adds the chunk files' vectors (or the given vector batches) to ``index``, one ``add`` each."""
    bar = tqdm(total=total, desc=desc, unit=" vec", disable=not progress)
    for vectors in _iter_vectors(chunks) if isinstance(chunks, Sequence) else chunks:
        index.add(vectors)
        bar.update(len(vectors))
    bar.close()


def _global_batches(
    chunks: Sequence[tuple[Path, Path]], passage_doc: np.ndarray, chunk_docs: int
) -> Iterator[np.ndarray]:
    """The shards' vectors regrouped into the batches an unsharded build adds: one per non-empty
    chunk of ``chunk_docs`` documents (an HNSW graph depends on how its vertices were batched)."""
    cuts = np.searchsorted(passage_doc, np.arange(chunk_docs, int(passage_doc[-1]) + 1, chunk_docs)).tolist()
    bounds = [0, *cuts, len(passage_doc)]
    stream = _iter_vectors(chunks)
    pending = np.zeros((0, 0), dtype=np.float32)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi == lo:
            continue
        parts, have = [], 0
        while have < hi - lo:
            if not len(pending):
                pending = next(stream)
            take = pending[: hi - lo - have]
            parts.append(take)
            have += len(take)
            pending = pending[len(take) :]
        yield np.ascontiguousarray(np.concatenate(parts))


def make_index(
    faiss: Any, kind: str, dim: int, *, hnsw_m: int = 32, ef_construction: int = 200, nlist: int = 1
) -> Any:
    """An empty inner-product Faiss index of ``kind`` (``flat``, ``ivf``, ``ivfpq``, ``hnsw`` or ``hnsw_sq8``)."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind in ("hnsw", "hnsw_sq8"):
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index
    if kind == "ivfpq":
        # Two dimensions per 4-bit sub-quantizer (one when the dimension is odd), scanned with
        # SIMD lookups, then the top candidates re-ranked with the exact vectors.
        sub = dim // 2 if dim % 2 == 0 else dim
        return faiss.index_factory(dim, f"IVF{int(nlist)},PQ{sub}x4fs,RFlat", faiss.METRIC_INNER_PRODUCT)
    if kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, int(nlist), faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        return index
    raise ValueError(f"unknown index kind {kind!r}")


def set_search_param(faiss: Any, index: Any, kind: str, value: int, *, refine_factor: int | None = None) -> None:
    """Sets the search-time knobs of ``index``: ``efSearch`` for HNSW, ``nprobe`` for IVF (and the
    re-ranking factor for ``ivfpq``); flat has none."""
    if kind == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = int(value)
        if refine_factor is not None:
            faiss.downcast_index(index).k_factor = float(refine_factor)
    elif kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(value)
    elif kind in ("hnsw", "hnsw_sq8"):
        index.hnsw.efSearch = int(value)


def apply_knobs(faiss: Any, index: Any, kind: str, knobs: Mapping[str, int]) -> None:
    """Applies tuned search knobs (``nprobe``/``refine_factor`` or ``ef_search``) to ``index``."""
    set_search_param(faiss, index, kind, knobs.get("nprobe") or knobs["ef_search"], refine_factor=knobs.get("refine_factor"))


class _faiss_threads:  # noqa: N801 - used as a context manager, like a function
    def __init__(self, faiss: Any, threads: int) -> None:
        self._faiss = faiss
        self._threads = max(1, int(threads))
        self._old = 0

    def __enter__(self) -> None:
        self._old = self._faiss.omp_get_max_threads()
        self._faiss.omp_set_num_threads(self._threads)

    def __exit__(self, *exc: object) -> None:
        self._faiss.omp_set_num_threads(self._old)


# ------------------------------------------------------------------------------------ shards
def prepare_shards(
    docs_factory: DocsFactory,
    work_folder: Path,
    params: Mapping[str, Any],
    *,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Decides, once for the whole corpus, what every shard build of a sharded bundle shares.

    The index kind, ``nlist`` and passage length are decided from the whole corpus's passage
    count exactly as an unsharded :func:`build` decides them (one tokenizer pass; ``flat`` and
    ``hnsw`` asked for by name need none). For ``ivf`` and ``ivfpq`` the codec is trained once
    on the passages an unsharded build trains on (:func:`training_rows`): only the documents
    holding them are encoded, and the trained, empty index is written into ``work_folder``.

    Args:
        docs_factory: Returns a fresh iterator of all documents in corpus order (called twice
            for ``ivf``/``ivfpq``, once for ``auto``).
        work_folder: A scratch folder the shard builds can read (kept until the merge is done).
        params: The backend's build options (those of :func:`build`).
        threads: Faiss threads for training (as in an unsharded build's).
        progress: Show progress bars.

    Returns:
        ``params`` plus ``shard_plan``: the plan file every shard's :func:`build` reads.

    Raises:
        ValueError: An unknown option, or one out of range.
        EmptyCorpusError: No document has any text to encode.
        DependencyMissingError: faiss, sentence-transformers or the encoder is missing.
    """
    options = _build_options(params)
    hnsw_m = options["hnsw_m"] or HNSW_DEFAULTS["hnsw_m"]
    ef_construction = options["ef_construction"] or HNSW_DEFAULTS["ef_construction"]
    index, nlist = options["index"], options["nlist"]
    _check_build_params(
        index, options["passage_tokens"], options["overlap"], options["batch_size"], options["chunk_docs"], hnsw_m,
        ef_construction, options["ef_search"], nlist, options["nprobe"], options["refine_factor"],
        options["target_recall"], max_passages=options["max_passages"],
    )
    faiss = _import_faiss()
    work_folder = Path(work_folder)
    work_folder.mkdir(parents=True, exist_ok=True)
    runtime = resolve_runtime(options["runtime"], options["device"])
    enc = load_encoder(options["encoder"], device=options["device"], runtime=runtime)
    _export_query_model(options["encoder"], runtime)
    overlap = options["overlap"]
    passage_tokens = _passage_tokens(options["passage_tokens"], overlap, enc)
    counts: np.ndarray | None = None
    kind = index
    if index not in ("flat", "hnsw"):
        counts = _passage_counts(
            docs_factory, enc, passage_tokens, overlap, options["chunk_docs"], progress, options["max_passages"]
        )
        if len(counts) == 0:
            raise EmptyCorpusError("the dense backend got no documents")
        if int(counts.sum()) == 0:
            raise EmptyCorpusError("no document has any text to encode for the dense backend")
        kind, nlist = _resolve_kind(index, int(counts.sum()), nlist)
    codec = None
    if kind in _IVF_KINDS and counts is not None:
        sample = _training_sample(docs_factory, enc, counts, nlist or 1, options, passage_tokens, progress)
        trained = make_index(faiss, kind, enc.dim, nlist=nlist or 1)
        gpu_res = None
        if _gpus_for(kind) > 0:
            gpu_res = faiss.StandardGpuResources()
            trained = faiss.index_cpu_to_gpu(gpu_res, 0, trained)
        with _faiss_threads(faiss, threads):
            trained.train(sample)
        if gpu_res is not None:
            trained = faiss.index_gpu_to_cpu(trained)
        codec = CODEC_FILE
        (work_folder / CODEC_FILE).write_bytes(faiss.serialize_index(trained).tobytes())
    plan: dict[str, Any] = {
        "version": _PLAN_VERSION,
        "encoder": options["encoder"],
        "runtime": runtime,
        "dim": enc.dim,
        "index_requested": index,
        "index": kind,
        "nlist": nlist if kind in _IVF_KINDS else None,
        "passage_tokens": passage_tokens,
        "overlap": overlap,
        "max_passages": options["max_passages"],
        "docs": None if counts is None else len(counts),
        "passages": None if counts is None else int(counts.sum()),
        "codec": codec,
    }
    text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    plan_path = work_folder / PLAN_FILE
    plan_path.write_text(text, encoding="utf-8")
    logger.info(
        "dense: shard plan: %s index%s over %s passages", kind, f" ({nlist} lists, codec trained)" if codec else "",
        plan["passages"] if plan["passages"] is not None else "(uncounted)",
    )
    return {**dict(params), "shard_plan": str(plan_path)}


def merge_shards(
    folders: Sequence[Path],
    out: Path,
    reports: Sequence[Mapping[str, Any] | BuildReport],
    *,
    threads: int = 1,
    progress: bool = True,
) -> BuildReport:
    """Merges the dense shards of a sharded bundle into the one index an unsharded build writes.

    Shard ``i`` holds a contiguous range of documents in corpus order, each passage with a
    shard-local id: the merge shifts passage ids and doc ordinals by what the shards before it
    hold. ``ivf``/``ivfpq`` shards (parts of one trained codec) merge their inverted lists with
    ``merge_from``; ``flat`` and ``hnsw`` indexes are built from the shards' stored vectors, as
    an unsharded build builds them. The knobs not given are then tuned on the merged index as an
    unsharded build tunes them (:func:`build_index`).

    Args:
        folders: The shards' backend folders, in corpus order.
        out: The folder to write the merged index into (created if missing).
        reports: The shards' build reports (or their manifest entries), in the order of
            ``folders``. An entry marked ``"empty"`` (a shard left with no documents) is skipped.
        threads: Faiss threads for building and tuning (as in an unsharded build's).
        progress: Show progress bars.

    Returns:
        The merged index's report: its params equal an unsharded build's.

    Raises:
        ValueError: ``reports`` and ``folders`` differ in length, or the shards come from
            different plans or do not add up to the corpus their plan counted.
        EmptyCorpusError: No shard has any passage.
        BundleCorruptError: A shard folder is missing files or was not built with a plan.
    """
    started = time.perf_counter()
    faiss = _import_faiss()
    if len(reports) != len(folders):
        raise ValueError(f"{len(folders)} shard folders but {len(reports)} reports")
    dicts = [report.to_dict() if isinstance(report, BuildReport) else dict(report) for report in reports]
    kept = [(Path(folder), report) for folder, report in zip(folders, dicts, strict=True) if not report.get("empty")]
    if not kept:
        raise EmptyCorpusError("the dense backend got no documents")
    records = [read_json(folder, PARAMS_FILE, what="the dense shard parameters") for folder, _ in kept]
    for (folder, _), record in zip(kept, records, strict=True):
        if not isinstance(record.get("shard"), dict):
            raise BundleCorruptError(f"{folder}: not a dense shard (build it with the params prepare_shards returns)")
    first = records[0]
    setting = first["shard"]
    base = {key: value for key, value in first.items() if key != "shard"}
    for (folder, _), record in zip(kept, records, strict=True):
        if record["shard"] != setting or {k: v for k, v in record.items() if k != "shard"} != base:
            raise ValueError(f"{folder}: this dense shard was built from another plan or with other options than {kept[0][0]}")
    ids: list[str] = []
    chunks: list[tuple[Path, Path]] = []
    doc_parts: list[np.ndarray] = []
    for folder, _ in kept:
        shard_chunks = _shard_chunks(folder)
        doc_parts.append(_passage_doc(shard_chunks) + np.int32(len(ids)))
        chunks.extend(shard_chunks)
        ids.extend(read_json(folder, IDS_FILE, what="the dense document ids"))
    passage_doc = np.concatenate(doc_parts).astype(np.int32, copy=False)
    n_passages = len(passage_doc)
    for what, want, got in (("documents", setting["corpus_docs"], len(ids)), ("passages", setting["corpus_passages"], n_passages)):
        if want is not None and want != got:
            raise ValueError(f"the dense shards hold {got} {what}, but their plan counted {want} in the corpus")
    if n_passages == 0:
        raise EmptyCorpusError("no document has any text to encode for the dense backend")
    kind, nlist = base["index"], base.get("nlist")
    gpus = _gpus_for(kind)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _faiss_threads(faiss, threads):
        if kind in _IVF_KINDS:
            index = _merge_ivf(faiss, [folder / INDEX_FILE for folder, _ in kept])
        else:
            index = _build_index(
                faiss, kind, chunks, dim=int(base["dim"]), n_passages=n_passages, hnsw_m=int(base.get("hnsw_m") or 1),
                ef_construction=int(base.get("ef_construction") or 1), nlist=None, gpus=gpus, progress=progress,
                batches=_global_batches(chunks, passage_doc, int(base["chunk_docs"])),
            )
        if int(index.ntotal) != n_passages:
            raise BundleCorruptError(f"the dense shard indexes hold {index.ntotal} vectors, their chunks {n_passages}")
        knobs, tuned = _settle_knobs(
            faiss, index, kind, chunks, n_passages=n_passages, nlist=nlist, knobs=setting["knobs"],
            target_recall=setting["target_recall"],
        )
    faiss.write_index(index, str(out / INDEX_FILE))
    np.save(out / PASSAGE_DOC_FILE, passage_doc)
    (out / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    params = dict(base)
    params.update(knobs)
    if tuned is not None:
        params.update(target_recall=setting["target_recall"], tuned_recall=tuned.recall, tune_queries=tuned.queries)
    (out / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    merge_seconds = time.perf_counter() - started
    shard_stats = [dict(report.get("stats") or {}) for _, report in kept]
    encode_seconds = sum(float(stats.get("encode_seconds") or 0) for stats in shard_stats)
    stats = {
        "passages": n_passages,
        "empty_docs": len(ids) - len(np.unique(passage_doc)),
        "capped_docs": sum(int(stats.get("capped_docs") or 0) for stats in shard_stats),
        "passages_left_out": sum(int(stats.get("passages_left_out") or 0) for stats in shard_stats),
        "resumed_chunks": sum(int(stats.get("resumed_chunks") or 0) for stats in shard_stats),
        "encode_seconds": round(encode_seconds, 3),
        "index_seconds": round(merge_seconds + sum(float(stats.get("index_seconds") or 0) for stats in shard_stats), 3),
        "docs_per_second": round(len(ids) / encode_seconds, 1) if encode_seconds > 0 else None,
        "device": shard_stats[0].get("device"),
        "faiss_gpus": gpus,
        "index_bytes": (out / INDEX_FILE).stat().st_size,
        "shards": len(kept),
        "merge_seconds": round(merge_seconds, 3),
    }
    seconds = merge_seconds + sum(float(report.get("seconds") or 0) for _, report in kept)
    logger.info("dense: merged %d shards: %d docs, %d passages, %s index", len(kept), len(ids), n_passages, kind)
    return BuildReport(backend=NAME, docs=len(ids), seconds=seconds, params=params, stats=stats)


def _build_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over :func:`build`'s keyword defaults; unknown names are refused."""
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(build).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("threads", "progress", "shard_plan")
    }
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown dense build option(s): {', '.join(unknown)}")
    return {**defaults, **params}


def _passage_counts(
    docs_factory: DocsFactory, enc: Encoder, passage_tokens: int, overlap: int, chunk_docs: int, progress: bool,
    max_passages: int | None = None,
) -> np.ndarray:
    """Passages per document over the whole corpus (tokenized, not encoded), at most
    ``max_passages`` a document: the passages a build encodes. (The shard builds warn of the
    documents capped, each of its own.)"""
    parts: list[np.ndarray] = []
    options = {} if max_passages is None else {"max_passages": max_passages}
    bar = tqdm(desc="dense: counting passages", unit=" docs", disable=not progress)
    for batch in iter_batches((doc.text for doc in docs_factory()), chunk_docs):
        counts = enc.passage_counts(batch, max_tokens=passage_tokens, overlap=overlap, **options)
        parts.append(counts if max_passages is None else np.minimum(counts, max_passages))
        bar.update(len(batch))
    bar.close()
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _training_sample(
    docs_factory: DocsFactory, enc: Encoder, counts: np.ndarray, nlist: int, options: Mapping[str, Any],
    passage_tokens: int, progress: bool,
) -> np.ndarray:
    """The vectors of :func:`training_rows`, encoding only the documents that hold those passages.

    A passage's vector depends on its own tokens only, so these are the vectors an unsharded
    build trains on.
    """
    rows = training_rows(int(counts.sum()), nlist)
    starts = np.concatenate([[0], np.cumsum(counts)])
    owners = np.searchsorted(starts, rows, side="right") - 1  # the document of each sampled row
    wanted = np.unique(owners)
    out = np.zeros((len(rows), enc.dim), dtype=np.float32)
    texts: list[str] = []
    ordinals: list[int] = []
    filled = 0

    def flush() -> None:
        nonlocal filled
        capped = {} if options["max_passages"] is None else {"max_passages": options["max_passages"]}
        vectors, _ = enc.encode_docs(
            texts, max_tokens=passage_tokens, overlap=int(options["overlap"]), batch_size=int(options["batch_size"]),
            **capped,
        )
        local = np.concatenate([[0], np.cumsum(counts[ordinals])])  # each doc's first row in ``vectors``
        lo, hi = np.searchsorted(owners, [ordinals[0], ordinals[-1] + 1])
        picked = local[np.searchsorted(ordinals, owners[lo:hi])] + (rows[lo:hi] - starts[owners[lo:hi]])
        out[lo:hi] = vectors[picked]
        filled += hi - lo
        bar.update(len(texts))
        texts.clear()
        ordinals.clear()

    bar = tqdm(total=len(wanted), desc="dense: encoding the training sample", unit=" docs", disable=not progress)
    want = set(wanted.tolist())
    for ordinal, doc in enumerate(docs_factory()):
        if ordinal in want:
            texts.append(doc.text)
            ordinals.append(ordinal)
            if len(texts) >= int(options["chunk_docs"]):
                flush()
    if texts:
        flush()
    bar.close()
    if filled != len(rows):
        raise ValueError(f"the corpus changed while the dense shard plan was made ({filled} of {len(rows)} sample rows)")
    return out


def _read_plan(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        plan = json.loads(text)
    except (OSError, ValueError) as exc:
        raise BundleCorruptError(f"{path}: cannot read the dense shard plan ({exc})") from exc
    if not isinstance(plan, dict) or plan.get("version") != _PLAN_VERSION:
        raise BundleCorruptError(f"{path}: not a dense shard plan of version {_PLAN_VERSION}")
    return {**plan, "id": hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]}


def _check_plan(
    plan: Mapping[str, Any], path: Path, *, encoder: str, dim: int, index: str, passage_tokens: int, overlap: int,
    runtime: str, max_passages: int | None,
) -> None:
    """Refuses a shard build whose options differ from the ones the plan was made with."""
    given = {
        "encoder": encoder, "dim": dim, "index_requested": index, "passage_tokens": passage_tokens, "overlap": overlap,
        "max_passages": max_passages,
    }
    if plan.get("runtime", "torch") != runtime:
        given["runtime"] = runtime
    differ = [f"{key}={value!r} (plan: {plan.get(key)!r})" for key, value in given.items() if plan.get(key) != value]
    if differ:
        raise BundleCorruptError(f"{path}: this shard build's options differ from its plan's: {', '.join(differ)}")


def _write_shard(
    faiss: Any, folder: Path, plan: Mapping[str, Any], plan_path: Path, chunks: Sequence[tuple[Path, Path]],
    ids: Sequence[str], params: Mapping[str, Any], *, threads: int, progress: bool,
) -> float:
    """Writes a shard: its part of the shared IVF codec (shard-local ids), ids, params and vector chunks.

    Returns:
        The seconds spent adding vectors to the codec.
    """
    started = time.perf_counter()
    kind = plan["index"]
    if kind in _IVF_KINDS:
        codec_path = plan_path.parent / str(plan["codec"])
        try:
            index = faiss.deserialize_index(np.frombuffer(codec_path.read_bytes(), dtype=np.uint8))
        except (OSError, RuntimeError) as exc:
            raise BundleCorruptError(f"{codec_path}: cannot read the trained dense codec ({exc})") from exc
        gpu_res = None
        if _gpus_for(kind) > 0:
            gpu_res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(gpu_res, 0, index)
        total = sum(len(np.load(doc_path, mmap_mode="r")) for _, doc_path in chunks)
        with _faiss_threads(faiss, threads):
            _add_chunks(index, chunks, desc=f"dense: {kind} shard", total=total, progress=progress)
        if gpu_res is not None:
            index = faiss.index_gpu_to_cpu(index)
        faiss.write_index(index, str(folder / INDEX_FILE))
    seconds = time.perf_counter() - started
    (folder / IDS_FILE).write_text(json.dumps(list(ids), ensure_ascii=False), encoding="utf-8")
    (folder / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    # Moved last, so that a build interrupted before this point resumes from its checkpoints.
    (folder / SHARD_CHUNKS).mkdir(exist_ok=True)
    for pair in chunks:
        for path in pair:
            shutil.move(str(path), str(folder / SHARD_CHUNKS / path.name))
    return seconds


def _shard_chunks(folder: Path) -> list[tuple[Path, Path]]:
    """A shard's (vectors, passage->doc) chunk files, in order."""
    vectors = sorted((folder / SHARD_CHUNKS).glob("chunk_*.vec.npy"))
    pairs = [(path, path.with_name(path.name.replace(".vec.npy", ".doc.npy"))) for path in vectors]
    if not (folder / SHARD_CHUNKS).is_dir() or any(not doc.is_file() for _, doc in pairs):
        raise BundleCorruptError(f"{folder}: the dense shard's vector chunks are missing")
    return pairs


def _merge_ivf(faiss: Any, paths: Sequence[Path]) -> Any:
    """One IVF index from shard indexes of one trained codec, ids shifted to follow each other.

    ``ivfpq`` (a refine index over fast-scan IVF lists) has no ``merge_from`` of its own: its
    IVF lists and its exact re-ranking vectors merge separately.
    """
    try:
        # read_index returns the concrete class, which owns the index: keep that object alive
        # (a downcast of a temporary would point at freed memory).
        merged = faiss.read_index(str(paths[0]))
        for path in paths[1:]:
            other = faiss.read_index(str(path))
            into = merged
            if hasattr(into, "refine_index"):
                base = faiss.downcast_index(into.base_index)
                base.merge_from(faiss.downcast_index(other.base_index), base.ntotal)
                faiss.downcast_index(into.refine_index).merge_from(faiss.downcast_index(other.refine_index), 0)
                into.ntotal = base.ntotal
            else:
                into.merge_from(other, into.ntotal)
    except RuntimeError as exc:
        raise BundleCorruptError(f"cannot merge the dense shard indexes ({exc})") from exc
    return merged


# -------------------------------------------------------------------------------------- open
def open(  # noqa: A001 - the backend contract names it open
    folder: Path,
    report: Mapping[str, Any],
    *,
    device: str | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    refine_factor: int | None = None,
) -> DenseSearcher:
    """Opens the dense index in ``folder``.

    Args:
        folder: The bundle's ``dense/`` folder.
        report: The backend's manifest entry (its ``params`` name the encoder and index).
        device: Torch device for the query encoder; ``None`` picks the best one.
        nprobe: Override the stored IVF ``nprobe``.
        ef_search: Override the stored HNSW ``efSearch``.
        refine_factor: Override the stored ``ivfpq`` re-ranking factor.

    Raises:
        BundleCorruptError: Files are missing or disagree with each other.
        BackendParameterError: ``nprobe``, ``ef_search`` or ``refine_factor`` is not a positive integer.
    """
    return DenseSearcher(
        Path(folder), report, device=device, nprobe=nprobe, ef_search=ef_search, refine_factor=refine_factor
    )


class DenseSearcher:
    """Searches a dense index; a document scores as its best passage (cosine similarity).

    The query encoder loads on the first search. Thread-safe for searching.
    """

    def __init__(
        self,
        folder: Path,
        report: Mapping[str, Any],
        *,
        device: str | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine_factor: int | None = None,
    ) -> None:
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search), ("refine_factor", refine_factor)):
            # Checked here too (Bundle.configure checks them; this is the backend's own API):
            # Faiss takes efSearch -1 and then returns fewer hits than asked, and nprobe -1 fails
            # in its SWIG layer.
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                flag = "--" + name.replace("_", "-")
                raise BackendParameterError(f"dense {flag} must be a positive integer, not {value!r}")
        faiss = _import_faiss()
        params = dict(report.get("params", {}))
        if not params and (folder / PARAMS_FILE).is_file():
            params = read_json(folder, PARAMS_FILE, what="the dense index parameters")
        self.params = params
        self.folder = folder
        self._device = device
        self._ids: list[str] = read_json(folder, IDS_FILE, what="the dense document ids")
        try:
            self._index = faiss.read_index(str(folder / INDEX_FILE))
            self._passage_doc = np.load(folder / PASSAGE_DOC_FILE)
        except (OSError, RuntimeError, ValueError) as exc:
            raise BundleCorruptError(f"{folder}: cannot read the dense index ({exc}); rebuild the bundle") from exc
        ntotal = int(self._index.ntotal)
        if ntotal != len(self._passage_doc):
            raise BundleCorruptError(
                f"{folder}: the index holds {ntotal} vectors but {PASSAGE_DOC_FILE} maps {len(self._passage_doc)}; rebuild the bundle"
            )
        if ntotal and int(self._passage_doc.max()) >= len(self._ids):
            raise BundleCorruptError(f"{folder}: {PASSAGE_DOC_FILE} points past {IDS_FILE}; rebuild the bundle")
        if "dim" in params and int(params["dim"]) != int(self._index.d):
            raise BundleCorruptError(f"{folder}: index dimension {self._index.d} != manifest dim {params['dim']}")
        self.kind = params.get("index", "flat")
        nlist = int(faiss.extract_index_ivf(self._index).nlist) if self.kind in ("ivf", "ivfpq") else 1
        # Each knob: the override given here, else the stored (tuned) value, else the default.
        given = {"nprobe": nprobe, "ef_search": ef_search, "refine_factor": refine_factor}
        knobs = {key: given[key] or params.get(key) or value for key, value in default_knobs(self.kind, nlist).items()}
        if knobs:
            apply_knobs(faiss, self._index, self.kind, knobs)
        self._gpu_lock: threading.Lock | None = None
        self._gpu_res: Any = None
        if _gpus_for(self.kind) > 0:
            self._gpu_res = faiss.StandardGpuResources()
            self._index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            self._gpu_lock = threading.Lock()  # StandardGpuResources is not thread-safe
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DenseSearcher({str(self.folder)!r}, index={self.kind!r}, passages={self._index.ntotal})"

    @property
    def encoder(self) -> Encoder:
        """The query encoder (loaded on first use)."""
        with self._encoder_lock:
            if self._encoder is None:
                # Queries go through the runtime that encoded the index (bundles from before the
                # runtime option were encoded with torch), an int8 index's in fp32 (query_runtime).
                runtime = query_runtime(self.params.get("runtime", "torch"))
                self._encoder = load_encoder(
                    self.params.get("encoder", DEFAULT_ENCODER), device=None if runtime != "torch" else self._device,
                    runtime=runtime,
                )
                if self._encoder.dim != int(self._index.d):
                    raise BundleCorruptError(
                        f"{self.folder}: encoder {self._encoder.name!r} gives {self._encoder.dim}-d vectors, "
                        f"the index holds {self._index.d}-d ones"
                    )
            return self._encoder

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Encodes queries into unit vectors with the index's encoder."""
        return self.encoder.encode(list(queries), batch_size=int(self.params.get("batch_size", 32)))

    def search(self, query: str, k: int = 10, offset: int = 0) -> list[Hit]:
        """Returns hits ``offset+1 .. offset+k`` (docid, cosine score of the best passage, global rank).

        Raises:
            QueryError: The query is empty, or k/offset are out of range.
        """
        if not isinstance(query, str) or not query.strip():
            raise QueryError("the query is empty: type some words to search for")
        if k < 1 or offset < 0:
            raise QueryError(f"need k >= 1 and offset >= 0, got k={k}, offset={offset}")
        return self.search_vectors(self.encode_queries([query]), offset + k)[0][offset:]

    def batch_search(
        self, queries: Sequence[tuple[str, str]], *, k: int = 1000, threads: int = 1
    ) -> dict[str, list[Hit]]:
        """Searches many ``(qid, text)`` queries; returns ``{qid: hits}``.

        Args:
            queries: (qid, text) pairs.
            k: Hits per query.
            threads: Unused; torch and Faiss use their own thread pools.

        Raises:
            QueryError: A query is empty or ``k`` is not positive.
        """
        del threads
        check_batch(queries, k)
        if not queries:
            return {}
        vectors = self.encode_queries([text for _, text in queries])
        out: dict[str, list[Hit]] = {}
        block = 256
        for start in range(0, len(queries), block):
            results = self.search_vectors(vectors[start : start + block], k)
            for (qid, _), hits in zip(queries[start : start + block], results, strict=True):
                out[qid] = hits
        return out

    def search_vectors(self, vectors: np.ndarray, n: int) -> list[list[Hit]]:
        """Returns the top ``n`` documents for each query vector (rows of ``vectors``).

        The top ``n`` of a query is always the first ``n`` of one ranking, whatever ``n``, so
        pages (``search(q, k, offset)`` is ``search_vectors(q, offset + k)[offset:]``) never
        overlap and never skip a document. An exact search (``flat``, and ``ivf``, exact over
        the lists its fixed ``nprobe`` picks) gets it by construction. An HNSW or ``ivfpq``
        search explores more of the index the deeper it is asked to go (HNSW searches
        ``max(efSearch, k)`` candidates; ``ivfpq`` re-ranks ``refine_factor * k``), so its top
        documents would depend on ``n``: its ranking is built in levels of fixed depths that do
        not depend on ``n`` (:data:`ANN_LEVEL_DOCS` documents, then 4 times as many at each
        level). Each level's documents not already ranked follow the ones before, and a search
        runs the levels it needs to reach ``n`` documents. Page 1 of 10 costs the search it
        always did; a document that only a deeper level finds ranks after the shallower
        levels' documents, even if its score is higher.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.kind not in _ANN_KINDS:
            return [self._hits(ranked) for ranked in self._top_docs(vectors, n)[0]]
        ranked: list[list[tuple[int, float]]] = [[] for _ in range(len(vectors))]
        seen: list[set[int]] = [set() for _ in range(len(vectors))]
        pending = list(range(len(vectors)))
        depth = ANN_LEVEL_DOCS
        while pending:
            level, ran_out = self._top_docs(vectors[pending], depth, rest=True)
            still = []
            for qi, docs, done in zip(pending, level, ran_out, strict=True):
                for ordinal, score in docs:
                    if ordinal not in seen[qi]:
                        seen[qi].add(ordinal)
                        ranked[qi].append((ordinal, score))
                # A search that reached every candidate it could gave them all (``rest``): a
                # deeper one would find the same, so it is not run.
                if len(ranked[qi]) < n and not done:
                    still.append(qi)
            pending = still
            depth *= ANN_LEVEL_GROWTH
        return [self._hits(docs[:n]) for docs in ranked]

    def _top_docs(
        self, vectors: np.ndarray, n: int, *, rest: bool = False
    ) -> tuple[list[list[tuple[int, float]]], list[bool]]:
        """The top ``n`` (doc ordinal, score) of each query vector from one search of depth ``n``,
        best first, ties in docstore order; and, for each, whether that search ran out of
        candidates (a row of -1, or every passage fetched). With ``rest``, a query whose search
        ran out gets every document among its candidates, not only the top ``n``."""
        ntotal = int(self._index.ntotal)
        if ntotal == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))], [True] * len(vectors)
        # Passages of one doc can fill the top of the list, so fetch more until n docs are seen.
        fetch = min(ntotal, max(2 * n, n + 16))
        results: list[list[tuple[int, float]] | None] = [None] * len(vectors)
        ran_out = [False] * len(vectors)
        pending = list(range(len(vectors)))
        while pending:
            scores, rows = self._faiss_search(vectors[pending], fetch)
            still = []
            for i, qi in enumerate(pending):
                ranked, complete = self._aggregate(scores[i], rows[i], n)
                # Ask again for more passages only if the index had more to give: a row of -1
                # means it returned every candidate it had (the IVF lists probed ran out).
                exhausted = fetch >= ntotal or rows[i][-1] < 0
                if not complete and not exhausted:
                    still.append(qi)
                else:
                    if rest and exhausted:
                        ranked, _ = self._aggregate(scores[i], rows[i], ntotal)
                    results[qi] = ranked
                    ran_out[qi] = exhausted
            pending = still
            fetch = min(ntotal, fetch * 4)
        return [r or [] for r in results], ran_out

    def _hits(self, ranked: Sequence[tuple[int, float]]) -> list[Hit]:
        return [
            Hit(docid=self._ids[ordinal], score=round(float(score), 6), rank=rank, backend=NAME)
            for rank, (ordinal, score) in enumerate(ranked, start=1)
        ]

    def _faiss_search(self, vectors: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._gpu_lock is not None:
            with self._gpu_lock:
                return self._index.search(vectors, fetch)
        return self._index.search(vectors, fetch)

    def _aggregate(self, scores: np.ndarray, rows: np.ndarray, n: int) -> tuple[list[tuple[int, float]], bool]:
        """The top ``n`` documents among one query's fetched passages, best first, ties in
        docstore order; and whether they are final.

        Faiss returns equal scores in no set order and, at the cut of its ``k``, keeps any of
        them (measured with faiss 1.15: which of several equal passages a flat search returns
        depends on ``k``). So the answer is final only once a passage scoring below the ``n``-th
        document has been seen: every passage not fetched scores at most that, so it can
        neither beat nor tie the documents kept, whatever ``k`` was. The result then does not
        depend on how many passages were fetched, and a page is a slice of a longer list.
        """
        best: dict[int, float] = {}
        owners = self._passage_doc[rows].tolist()
        threshold = -math.inf
        complete = False
        for score, row, ordinal in zip(scores.tolist(), rows.tolist(), owners, strict=True):
            if row < 0:  # no more results (they come last)
                break
            if score < threshold:
                complete = True
                break
            if ordinal not in best:  # passages come best first: a doc's first is its best
                best[ordinal] = score
                if len(best) == n:
                    threshold = score  # from here on only ties of the n-th document matter
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:n], complete

    def close(self) -> None:
        """Drops the reference to the encoder (it stays cached for the process) and GPU resources."""
        self._encoder = None
        self._gpu_res = None

    def __enter__(self) -> DenseSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
