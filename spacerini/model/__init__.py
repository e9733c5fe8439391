"""The bundled StarCoder-style code model and attribution tracing.

A small GPTBigCode model (multi-query attention, byte-level BPE with StarCoder's special tokens,
trained with fill-in-the-middle) ships in ``spacerini/model/weights``. It is trained on the
embedded default corpus, so what it writes can be traced back to the corpus documents (and their
licences) that contain it.

``import spacerini.model`` is light: torch and transformers load on first use.

Example:
    >>> from spacerini.model import generate, score_text, trace  # doctest: +SKIP
    >>> code = generate("def read_json(path):\\n", seed=0)  # doctest: +SKIP
    >>> trace("benchmarks/out/demo", code).spans  # doctest: +SKIP
    >>> score_text(code).min_k_plus_plus  # membership: was it in the training data?  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "default_model_path": "spacerini.model.generation",
    "load_model": "spacerini.model.generation",
    "generate": "spacerini.model.generation",
    "model_info": "spacerini.model.generation",
    "fim_prompt": "spacerini.model.generation",
    "trace": "spacerini.model.tracing",
    "TraceResult": "spacerini.model.tracing",
    "TracedSpan": "spacerini.model.tracing",
    "Source": "spacerini.model.tracing",
    "render_trace": "spacerini.model.tracing",
    "train": "spacerini.model.training",
    "score_text": "spacerini.model.membership",
    "score_texts": "spacerini.model.membership",
    "MembershipScores": "spacerini.model.membership",
    "exact_answer": "spacerini.model.membership",
    "choose_device": "spacerini.model.device",
    "ModelError": "spacerini.model.errors",
    "TrainingError": "spacerini.model.errors",
}

__all__ = [
    "default_model_path",
    "load_model",
    "generate",
    "model_info",
    "fim_prompt",
    "trace",
    "TraceResult",
    "TracedSpan",
    "Source",
    "render_trace",
    "train",
    "score_text",
    "score_texts",
    "MembershipScores",
    "exact_answer",
    "choose_device",
    "ModelError",
    "TrainingError",
]

if TYPE_CHECKING:  # pragma: no cover
    from spacerini.model.device import choose_device
    from spacerini.model.errors import ModelError, TrainingError
    from spacerini.model.generation import default_model_path, fim_prompt, generate, load_model, model_info
    from spacerini.model.membership import MembershipScores, exact_answer, score_text, score_texts
    from spacerini.model.tracing import Source, TracedSpan, TraceResult, render_trace, trace
    from spacerini.model.training import train


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'spacerini.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
