"""Preprocess steps: Doc stream in, Doc stream out, with a report of what changed.

Steps (registry keys):

* ``"dedup"``: exact duplicates (SHA-256 of the text) - :class:`~spacerini.preprocess.dedup.ExactDedup`
* ``"near-dedup"``: near-duplicates (MinHash LSH, BigCode's parameters) - :class:`~spacerini.preprocess.dedup.NearDedup`
* ``"pii"``: emails, IP addresses, keys, passwords (and names with a model), redacted at index
  time or on display - :class:`~spacerini.preprocess.pii.PiiStep`
* ``"licence"`` (or ``"license"``): licence allow-list - :class:`~spacerini.preprocess.filters.LicenceFilter`
* ``"quality"``: StarCoder's code quality filters - :class:`~spacerini.preprocess.filters.QualityFilter`
* ``"language"``: keep some languages - :class:`~spacerini.preprocess.filters.LanguageFilter`
* ``"optout"``: remove owners' documents or listed ids - :class:`~spacerini.preprocess.optout.OptOut`

Steps stream: each holds one document at a time, plus the state it needs (dedup keeps hashes,
near-dedup its LSH index). Steps run in the order given; a sensible order is
``optout, licence, language, quality, dedup, near-dedup, pii`` (filter, then deduplicate, then
redact what is left).

Example:
    >>> from spacerini.preprocess import apply, make_steps
    >>> from spacerini.records import Doc
    >>> steps = make_steps(["dedup", "pii"], pii={"mode": "index"})
    >>> docs = [Doc("a", "mail jane@acme.io"), Doc("b", "mail jane@acme.io")]
    >>> [(d.id, d.text) for d in apply(docs, steps)]
    [('a', 'mail <EMAIL>')]
    >>> steps[0].report()["removed"]
    1
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from spacerini.errors import BackendNotAvailableError
from spacerini.preprocess.base import BaseStep, Step, StepOptionError
from spacerini.records import Doc

__all__ = [
    "ALIASES",
    "REGISTRY",
    "BaseStep",
    "Step",
    "StepOptionError",
    "apply",
    "find_pii",
    "get_step",
    "make_steps",
    "parse_step_options",
    "read_optout_file",
    "redact",
    "redact_record",
    "reports",
]

#: Step name -> "module:Class" (imported on first use).
REGISTRY: dict[str, str] = {
    "dedup": "spacerini.preprocess.dedup:ExactDedup",
    "near-dedup": "spacerini.preprocess.dedup:NearDedup",
    "pii": "spacerini.preprocess.pii:PiiStep",
    "licence": "spacerini.preprocess.filters:LicenceFilter",
    "quality": "spacerini.preprocess.filters:QualityFilter",
    "language": "spacerini.preprocess.filters:LanguageFilter",
    "optout": "spacerini.preprocess.optout:OptOut",
}
#: Other spellings accepted for step names.
ALIASES: dict[str, str] = {
    "license": "licence",
    "near_dedup": "near-dedup",
    "neardedup": "near-dedup",
    "exact-dedup": "dedup",
    "opt-out": "optout",
    "opt_out": "optout",
}


def canonical_name(name: str) -> str:
    """Returns the registry key for a step name or alias.

    Raises:
        BackendNotAvailableError: The name is not a known step (the message lists them).
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise BackendNotAvailableError(
            f"unknown preprocess step {name!r}: choose from {', '.join(REGISTRY)} (or 'license')"
        )
    return key


def get_step(name: str) -> type[BaseStep]:
    """Returns the class of a step by name or alias (importing its module on first use)."""
    module_name, _, attr = REGISTRY[canonical_name(name)].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def make_steps(names: Sequence[str] | str, **options: Mapping[str, Any]) -> list[Step]:
    """Creates steps by name, in order, with per-step options.

    Args:
        names: Step names or aliases, in the order they run; a string is split on commas.
        **options: Per-step keyword options, keyed by step name (underscores for dashes, or
            pass ``**{"near-dedup": {...}}``), e.g. ``pii={"mode": "display"}``,
            ``near_dedup={"threshold": 0.85}``, ``optout={"owners": ["alice"]}``.

    Returns:
        The steps, ready for :func:`apply`.

    Raises:
        BackendNotAvailableError: An unknown step name (the message lists the valid ones).
        StepOptionError: Options for a step not named, an unknown option (the message lists
            the step's options), a bad option value, or a step named twice.
    """
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    keys = [canonical_name(n) for n in names]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise StepOptionError(f"preprocess step(s) named twice: {', '.join(duplicated)}")
    per_step: dict[str, dict[str, Any]] = {}
    for raw, value in options.items():
        key = canonical_name(raw)
        if not isinstance(value, Mapping):
            raise StepOptionError(f"options for preprocess step {raw!r} must be a dict of keyword options, got {value!r}")
        per_step.setdefault(key, {}).update(value)
    unused = sorted(set(per_step) - set(keys))
    if unused:
        raise StepOptionError(f"options given for preprocess steps not run: {', '.join(unused)}")
    steps: list[Step] = []
    for key in keys:
        cls = get_step(key)
        params = per_step.get(key, {})
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise StepOptionError(
                f"unknown option(s) {', '.join(unknown)} for preprocess step {key!r}: it takes {', '.join(accepted)}"
            )
        steps.append(cls(**params))
    return steps


def apply(docs: Iterable[Doc], steps: Sequence[Step]) -> Iterator[Doc]:
    """Chains steps over a document stream, lazily.

    Args:
        docs: Any iterable of documents (a :class:`~spacerini.corpus.Corpus`, a generator, ...).
        steps: Steps from :func:`make_steps` (or any objects following :class:`Step`).

    Returns:
        An iterator of the documents that come out of the last step. Nothing runs until it is
        iterated; each step's report is complete once it is exhausted.
    """
    stream: Iterable[Doc] = docs
    for step in steps:
        stream = step(stream)
    return iter(stream)


def reports(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Returns each step's report, in order (what a bundle manifest stores under "preprocess")."""
    return [step.report() for step in steps]


def parse_step_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parses ``STEP.OPTION=VALUE`` strings (command-line style) into :func:`make_steps` options.

    Values are read as JSON when they parse (``0.85``, ``true``, ``["a","b"]``), otherwise kept
    as strings (list options also accept ``a,b``).

    Args:
        items: E.g. ``["near-dedup.threshold=0.85", "pii.mode=display", "optout.owners=alice,bob"]``.

    Returns:
        ``{"near-dedup": {"threshold": 0.85}, "pii": {"mode": "display"}, ...}``.

    Raises:
        StepOptionError: An item is not of the form ``STEP.OPTION=VALUE``.
        BackendNotAvailableError: An unknown step name.
    """
    parsed: dict[str, dict[str, Any]] = {}
    for item in items:
        head, eq, value = item.partition("=")
        step, dot, option = head.strip().partition(".")
        if not eq or not dot or not step or not option:
            raise StepOptionError(f"preprocess option {item!r} must look like STEP.OPTION=VALUE (e.g. pii.mode=display)")
        try:
            decoded: Any = json.loads(value)
        except ValueError:
            decoded = value
        parsed.setdefault(canonical_name(step), {})[option.strip()] = decoded
    return parsed


def __getattr__(name: str) -> Any:
    # Light re-exports: the PII and opt-out helpers the app and the CLI call directly.
    if name in ("find_pii", "redact", "redact_record"):
        from spacerini.preprocess import pii

        return getattr(pii, name)
    if name == "read_optout_file":
        from spacerini.preprocess.optout import read_optout_file

        return read_optout_file
    raise AttributeError(f"module 'spacerini.preprocess' has no attribute {name!r}")
