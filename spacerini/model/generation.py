"""Loading the code model and generating with it: left to right, or filling in the middle."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, cast

from spacerini.model.errors import ModelError
from spacerini.model.tokenizer import EOS, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX, fim_ids

logger = logging.getLogger(__name__)

_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()

ModelLike = str | os.PathLike[str] | tuple[Any, Any] | None


_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str, what: str) -> str | None:
    """Why ``text`` cannot be tokenized, or None: a lone surrogate (a JSON ``"\\ud800"`` escape,
    or a command-line byte that is not UTF-8, read with ``surrogateescape``) is no Unicode
    text, and the tokenizer raised a ``TypeError`` on it after the model had loaded."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"{what} holds a lone surrogate (U+{ord(found.group()):04X}) at character {found.start() + 1}, which is "
        "not Unicode text (on a command line: a byte that is not UTF-8); pass valid UTF-8 text"
    )


def default_model_path() -> Path:
    """Returns the folder of the shipped model (``spacerini/model/weights``)."""
    return Path(__file__).resolve().parent / "weights"


def load_model(name_or_path: str | os.PathLike[str] | None = None, *, device: str | None = None) -> tuple[Any, Any]:
    """Loads a causal LM and its tokenizer, offline, once per process.

    Args:
        name_or_path: A local folder, or the name of a Hugging Face model already in the local
            cache (nothing is downloaded); None for the shipped model.
        device: Torch device (default: :func:`spacerini.model.device.choose_device`).

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        ModelError: The model is neither a folder nor in the local Hugging Face cache.
    """
    from spacerini.model.device import choose_device

    dev = choose_device(device)
    source = str(default_model_path() if name_or_path is None else name_or_path)
    key = (source, str(dev))
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # transformers draws a "Loading weights" bar per load (on stderr, even under -q): a
        # bundled model of 20 MB loads in milliseconds, so the bar is only noise.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            where = "folder" if Path(source).exists() else "model name in the local Hugging Face cache"
            raise ModelError(
                f"cannot load the model {source!r} ({where}): {str(exc).splitlines()[0]}; "
                "give a folder with config.json and weights, or the name of a model downloaded beforehand"
            ) from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.to(dev).eval()
        _CACHE[key] = (model, tokenizer)
        logger.info("loaded %s on %s", source, dev)
        return model, tokenizer


def resolve_model(model: ModelLike, *, device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the pair itself, or the model loaded by :func:`load_model`.

    Raises:
        ModelError: A tuple that is not a pair, or a model that cannot be loaded.
    """
    if isinstance(model, tuple):
        if len(model) != 2:
            raise ModelError("model must be a name, a path or a (model, tokenizer) pair")
        return model
    return load_model(model, device=device)


def context_length(model: Any) -> int:
    """The model's context in tokens (``n_positions`` or its equivalent; 2048 if it names none)."""
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def model_info(name_or_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describes a model: architecture, parameters, vocabulary, context and FIM support.

    Args:
        name_or_path: As for :func:`load_model`; None for the shipped model.

    Returns:
        A JSON-serialisable dict.

    Raises:
        ModelError: The model cannot be loaded.
    """
    model, tokenizer = load_model(name_or_path)
    cfg = model.config
    return {
        "name_or_path": str(default_model_path() if name_or_path is None else name_or_path),
        "architecture": (cfg.architectures or [type(model).__name__])[0],
        "model_type": cfg.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "context": context_length(model),
        "layers": getattr(cfg, "n_layer", getattr(cfg, "num_hidden_layers", None)),
        "hidden_size": getattr(cfg, "n_embd", getattr(cfg, "hidden_size", None)),
        "heads": getattr(cfg, "n_head", getattr(cfg, "num_attention_heads", None)),
        "multi_query": bool(getattr(cfg, "multi_query", False)),
        "fim_supported": fim_ids(tokenizer) is not None,
        "device": str(next(model.parameters()).device),
    }


def fim_prompt(prefix: str, suffix: str) -> str:
    """The PSM infilling prompt: ``<fim_prefix>prefix<fim_suffix>suffix<fim_middle>``."""
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


def generate(
    prompt: str,
    *,
    suffix: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int | None = None,
    model: ModelLike = None,
) -> str:
    """Continues ``prompt``, or with ``suffix`` fills in the code between prompt and suffix.

    Args:
        prompt: The code before the cursor.
        suffix: The code after the cursor: infill in the FIM format
            (``<fim_prefix>prompt<fim_suffix>suffix<fim_middle>``).
        max_new_tokens: Most tokens generated; generation stops earlier at ``<|endoftext|>``.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_p: Nucleus sampling threshold.
        seed: Makes sampling deterministic (same seed, same text on the same device).
        model: A name or path for :func:`load_model`, a ``(model, tokenizer)`` pair, or None for
            the shipped model.

    Returns:
        The generated text only (neither the prompt nor the suffix).

    Raises:
        ModelError: Bad options, a prompt or suffix holding a lone surrogate, or ``suffix`` given
            for a tokenizer without FIM tokens.
    """
    import torch

    if not isinstance(prompt, str) or (not prompt and suffix is None):
        raise ModelError("give a non-empty prompt (or a suffix to infill before)")
    # Written so that NaN fails too (every comparison with NaN is False).
    if not max_new_tokens >= 1:
        raise ModelError(f"max_new_tokens must be >= 1, not {max_new_tokens!r}")
    if not 0 <= temperature < float("inf"):
        raise ModelError(f"temperature must be a number >= 0 (0: greedy decoding), not {temperature!r}")
    if not 0 < top_p <= 1:
        raise ModelError(f"top_p must be in (0, 1], not {top_p!r}")
    if suffix is not None and not isinstance(suffix, str):
        raise ModelError(f"the suffix must be text, not {type(suffix).__name__}")
    for what, text in (("the prompt", prompt), ("the suffix", suffix or "")):
        why = lone_surrogate(text, what)  # before the model loads
        if why is not None:
            raise ModelError(why)
    lm, tokenizer = resolve_model(model)
    fim = fim_ids(tokenizer) if suffix is not None else None
    if suffix is not None and fim is None:
        raise ModelError(
            "this model's tokenizer has no FIM tokens (<fim_prefix>, <fim_middle>, <fim_suffix>, <fim_pad>): "
            "it cannot infill; leave out the suffix"
        )
    context = context_length(lm)
    budget = context - max_new_tokens
    if budget < 1:
        raise ModelError(f"max_new_tokens must be below the model's context of {context} tokens")
    stop = [tokenizer.convert_tokens_to_ids(EOS)] if EOS in tokenizer.get_vocab() else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(tokenizer.eos_token_id)
    if suffix is None:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-budget:]
    else:
        fim = cast(dict[str, int], fim)  # not None: checked above
        pre = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        suf = tokenizer(suffix, add_special_tokens=False)["input_ids"]
        room = budget - 3
        if len(pre) + len(suf) > room:  # keep the code nearest the cursor
            keep_suf = min(len(suf), max(room // 2, room - len(pre)))
            suf = suf[:keep_suf]
            pre = pre[len(pre) - (room - keep_suf) :] if room - keep_suf > 0 else []
        ids = [fim[FIM_PREFIX], *pre, fim[FIM_SUFFIX], *suf, fim[FIM_MIDDLE]]
        stop += [fim[FIM_PAD], fim[FIM_PREFIX], fim[FIM_SUFFIX], fim[FIM_MIDDLE]]
    if not ids:
        ids = stop[:1] or [0]
    device = next(lm.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    sample = temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sample,
        "eos_token_id": stop or None,
        "pad_token_id": stop[0] if stop else None,
        "attention_mask": torch.ones_like(input_ids),
    }
    if sample:
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        out = lm.generate(input_ids, **options)
    new = out[0, input_ids.shape[1] :].tolist()
    for i, tok in enumerate(new):
        if tok in stop:
            new = new[:i]
            break
    return tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
