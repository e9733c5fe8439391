"""Several corpora served together and compared side by side (as GAIA Search and infini-gram do).

:class:`Corpora` is an ordered collection of named corpora, each a bundle behind its own
:class:`~spacerini.service.Service`, so that redaction, limits, opt-out generations and reloads
work per corpus exactly as they do for one. The first corpus is the default. Every call takes
``corpus=NAME``, and :meth:`Corpora.compare` asks one question of all of them:

* the exact count of the query in each corpus (the ``exact`` backend);
* the top ranked hit of each corpus (its default ranked backend, BM25 where there is one);
* the membership coverage of a pasted text (``bloom`` or ``exact``);
* the owner lookup (``owners``).

A corpus that lacks a backend says so in its column (``missing``), and the other columns are
unaffected. All corpora share one process, and so one JVM.

Example:
    >>> import spacerini
    >>> corpora = spacerini.open_bundles(["c4-sample", "pile-sample"], names={"c4-sample": "C4"})  # doctest: +SKIP
    >>> corpora.count("the quick brown fox", corpus="C4").count  # doctest: +SKIP
    >>> [(c.name, c.count) for c in corpora.compare("the quick brown fox").corpora]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from spacerini.errors import BackendNotAvailableError, QueryError, SpaceriniError, UsageError, one_line
from spacerini.records import Comparison, CorpusColumn, CorpusInfo

__all__ = ["Corpora", "open_bundles", "parse_names", "check_name"]

#: Longest corpus name (it is shown in a selector and passed as ``&corpus=NAME``).
MAX_NAME_CHARS = 64
_NAME = re.compile(r"^[\w][\w .:+@-]*$")


def check_name(name: str) -> str:
    """Validates a corpus name: 1 to 64 letters, digits, spaces or ``_.:+@-``.

    Raises:
        UsageError: An empty, too long or odd name.
    """
    name = str(name).strip()
    if not name or len(name) > MAX_NAME_CHARS or not _NAME.match(name):
        raise UsageError(
            f"corpus name {name!r} is not valid: use 1 to {MAX_NAME_CHARS} letters, digits, spaces or _.:+@-"
        )
    return name


def parse_names(items: Sequence[str], paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """Reads ``--name B=label`` options into ``{bundle path as given: label}``.

    ``B`` is matched against the bundle arguments as given, or against their folder name.

    Raises:
        UsageError: An item without ``=``, a ``B`` that names no bundle or one named twice, or a
            bad label.
    """
    out: dict[str, str] = {}
    given = [str(p) for p in paths]
    for item in items:
        key, sep, label = str(item).partition("=")
        if not sep:
            raise UsageError(f"--name {item!r}: write BUNDLE=label, e.g. --name ./c4-bundle=C4")
        matches = [p for p in given if p == key or Path(p).name == key or Path(p).resolve() == Path(key).resolve()]
        if not matches:
            raise UsageError(f"--name {item!r}: {key!r} is not one of the bundles given ({', '.join(given)})")
        if matches[0] in out:  # the second would silently win
            raise UsageError(f"--name {item!r}: {key!r} is named twice; give one --name per bundle")
        out[matches[0]] = check_name(label)
    return out


class Corpora(Mapping[str, Any]):
    """Named corpora, each a :class:`~spacerini.service.Service` over one bundle; the first is the default.

    Reads as a mapping of name to service (``corpora["C4"].search(...)``), in the order given.

    Args:
        services: ``{name: Service}`` in display order (at least one).

    Raises:
        UsageError: No corpus, or a bad name.
    """

    def __init__(self, services: Mapping[str, Any], *, engine: Any = None) -> None:
        if not services:
            raise UsageError("no corpus given: name at least one bundle")
        self._services = {check_name(name): svc for name, svc in services.items()}
        # The engine the bundles share (one Ray connection), closed after them by close().
        self._engine = engine

    # -- the collection ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self._services[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._services)

    def __len__(self) -> int:
        return len(self._services)

    @property
    def names(self) -> list[str]:
        """Corpus names in display order; the first is the default."""
        return list(self._services)

    @property
    def default(self) -> str:
        """The default corpus: the first."""
        return next(iter(self._services))

    def service(self, corpus: str | None = None) -> Any:
        """The service of ``corpus`` (``None`` or ``""``: the default).

        Raises:
            QueryError: No corpus of that name.
        """
        if corpus is None or corpus == "":
            return self._services[self.default]
        svc = self._services.get(str(corpus))
        if svc is None:
            raise QueryError(f"no corpus named {str(corpus)[:80]!r}: choose from {', '.join(self._services)}")
        return svc

    def bundle(self, corpus: str | None = None) -> Any:
        """The :class:`~spacerini.bundle.Bundle` of ``corpus`` (default: the first)."""
        return self.service(corpus).bundle

    def corpora(self) -> tuple[CorpusInfo, ...]:
        """Name, documents, backends, capabilities and generation of each corpus, in order."""
        out = []
        for name, svc in self._services.items():
            stats = svc.stats()
            out.append(CorpusInfo(name, stats.docs, stats.backends, tuple(svc.capabilities), stats.generation))
        return tuple(out)

    def close(self) -> None:
        """Closes every bundle (Ray-backed ones stop their shard actors), then their shared engine."""
        try:
            for svc in self._services.values():
                close = getattr(svc.bundle, "close", None)
                if close is not None:
                    close()
        finally:
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.close()

    # -- the calls of one service, per corpus ------------------------------------------------
    def search(self, query: str, backend: str = "", k: int = 10, offset: int = 0, *,
               corpus: str | None = None, snippets: bool = True) -> Any:  # fmt: skip
        """:meth:`Service.search <spacerini.service.Service.search>` on one corpus."""
        return self.service(corpus).search(query, backend, k, offset, snippets=snippets)

    def count(self, text: str, *, corpus: str | None = None) -> Any:
        """:meth:`Service.count <spacerini.service.Service.count>` on one corpus."""
        return self.service(corpus).count(text)

    def find(self, text: str, k: int = 10, offset: int = 0, *, corpus: str | None = None) -> Any:
        """:meth:`Service.find <spacerini.service.Service.find>` on one corpus."""
        return self.service(corpus).find(text, k, offset)

    def member(self, text: str, *, corpus: str | None = None) -> Any:
        """:meth:`Service.member <spacerini.service.Service.member>` on one corpus."""
        return self.service(corpus).member(text)

    def owner(self, name: str, limit: int = 100, *, corpus: str | None = None) -> Any:
        """:meth:`Service.owner <spacerini.service.Service.owner>` on one corpus."""
        return self.service(corpus).owner(name, limit)

    def stats(self, *, corpus: str | None = None) -> Any:
        """:meth:`Service.stats <spacerini.service.Service.stats>` of one corpus."""
        return self.service(corpus).stats()

    # -- side by side ------------------------------------------------------------------------
    def compare(self, query: str, *, text: str | None = None, owner: str | None = None,
                backend: str = "") -> Comparison:  # fmt: skip
        """Asks every corpus the same question.

        Args:
            query: Counted exactly and searched (top hit) in each corpus.
            text: Checked for membership coverage in each corpus (default: ``query``).
            owner: Looked up as an owner in each corpus (default: ``query``).
            backend: The ranked backend for the top hit (default: each corpus's default).

        Returns:
            A :class:`~spacerini.records.Comparison`: one
            :class:`~spacerini.records.CorpusColumn` per corpus, in order. A column whose corpus
            lacks a backend names it in ``missing``, and one whose corpus refused the question
            (a PII query where that corpus redacts, say) gives the reason in ``errors``.

        Raises:
            QueryError: An empty, over-long or binary query (checked once, for every corpus), or
                one that is itself PII where every corpus redacts (where only some do, their
                columns give the refusal in ``errors``).
        """
        from spacerini.bundle import check_query

        query = check_query(query)
        if all(svc.redact_pii for svc in self._services.values()):  # one line, not one per column
            from spacerini.display import refuse_pii_query

            refuse_pii_query(query, verb="count")
        text = query if text is None or not str(text).strip() else str(text)
        owner = query if owner is None or not str(owner).strip() else str(owner)
        columns = [self._column(name, svc, query, text, owner, backend) for name, svc in self._services.items()]
        return Comparison(query, text, owner, tuple(columns))

    @classmethod
    def _column(cls, name: str, svc: Any, query: str, text: str, owner: str, backend: str) -> CorpusColumn:
        """One corpus's column, every part of it from one generation of the bundle."""
        from spacerini.bundle import StaleGenerationError

        same = getattr(svc, "same_generation", None)
        for attempt in (0, 1):
            try:
                with same() if same is not None else contextlib.nullcontext():
                    return cls._column_once(name, svc, query, text, owner, backend)
            except StaleGenerationError:
                if attempt:
                    raise
                svc.bundle.reload()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _column_once(name: str, svc: Any, query: str, text: str, owner: str, backend: str) -> CorpusColumn:
        from spacerini.bundle import StaleGenerationError

        missing: dict[str, str] = {}
        errors: dict[str, str] = {}
        caps = set(svc.capabilities)

        def ask(what: str, need: str, why: str, call: Any) -> Any:
            if need not in caps:
                missing[what] = why
                return None
            try:
                return call()
            except BackendNotAvailableError as exc:
                missing[what] = one_line(exc)
            except StaleGenerationError:
                raise  # the whole column is asked again, on the new generation
            except SpaceriniError as exc:
                errors[what] = one_line(exc)
            return None

        counted = ask("count", "exact", "no exact backend", lambda: svc.count(query))
        page = ask("top_hit", "search", "no ranked backend", lambda: svc.search(query, backend, 1, 0))
        member = ask("coverage", "member", "no bloom or exact backend", lambda: svc.member(text))
        owned = ask("owner", "owner", "no owners backend", lambda: svc.owner(owner, 5))
        generation = max(
            (int(a.generation) for a in (counted, page, member, owned) if a is not None),
            default=int(getattr(svc.bundle, "generation", 1)),
        )
        return CorpusColumn(
            name=name,
            generation=generation,
            count=None if counted is None else int(counted.count),
            top_hit=page.hits[0] if page is not None and page.hits else None,
            backend=None if page is None else page.backend,
            coverage=None if member is None else float(member.coverage),
            owner_docs=None if owned is None else sum(int(m.docs) for m in owned.matches),
            owners=() if owned is None else tuple(m.owner for m in owned.matches),
            missing=missing,
            errors=errors,
        )


def open_bundles(
    paths: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    *,
    names: Mapping[str, str] | None = None,
    redact_pii: bool | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    **service_options: Any,
) -> Corpora:
    """Opens several bundles as one :class:`Corpora` collection.

    Args:
        paths: Bundle folders or ``hf:`` specs, in display order; or ``{name: path}``.
        names: ``{path as given: name}`` for some of them; the others are named after their
            folder (``-2``, ``-3``... added where two folders share a name).
        redact_pii: Redact PII on display in every corpus; ``None`` (the default) redacts where
            the bundle was built with ``pii.mode=display``, as the CLI does.
        engine: Where sharded bundles are searched (``"local"`` or ``"ray"``; see
            :func:`~spacerini.bundle.open_bundle`).
        ray_address: The Ray cluster to join with ``engine="ray"``.
        **service_options: Passed to each :class:`~spacerini.service.Service` (``max_k``...).

    Returns:
        The collection; the first corpus is the default.

    Raises:
        UsageError: No bundle, or two corpora with one name.
        BundleError: A folder is not a bundle (one line naming it).
    """
    from spacerini.bundle import open_bundle
    from spacerini.display import pii_display_mode
    from spacerini.service import Service

    if isinstance(paths, Mapping):
        pairs = [(check_name(name), path) for name, path in paths.items()]
    else:
        given = dict(names or {})
        pairs = []
        for path in paths:
            name = given.get(str(path)) or default_name(path)
            pairs.append((check_name(name) if str(path) in given else name, path))
        pairs = unique_names(pairs, explicit={str(p) for p in given})
    if not pairs:
        raise UsageError("no bundle given: name at least one bundle folder")
    services: dict[str, Any] = {}
    if engine == "ray":  # one Ray connection for every corpus (each bundle's shards get their actors)
        from spacerini.distributed.serve import RayServing

        shared: Any = RayServing(address=ray_address)
        ray_address = None
    else:
        shared = engine
    lent = _Lent(shared) if shared is not engine else shared  # one for all: the same engine
    try:
        for name, path in pairs:
            bundle = open_bundle(path, engine=lent, ray_address=ray_address)
            redact = pii_display_mode(bundle.manifest) if redact_pii is None else redact_pii
            services[name] = Service(bundle, redact_pii=redact, **service_options)
    except BaseException:
        for svc in services.values():
            svc.bundle.close()
        if shared is not engine:
            shared.close()
        raise
    return Corpora(services, engine=shared if shared is not engine else None)


class _Lent:
    """The collection's shared engine as one bundle sees it: :meth:`Bundle.close
    <spacerini.bundle.Bundle.close>` closes its engine, and closing one corpus must not stop the
    others' (the collection closes the engine itself, after every bundle)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        """Nothing: the engine is the collection's."""


def default_name(path: str | os.PathLike[str]) -> str:
    """The name a corpus gets from its folder (or ``hf:`` repo) when none is given: the last
    path part, with characters a name cannot hold replaced; ``corpus`` when nothing is left."""
    text = str(path)
    if text.startswith("hf:"):
        text = text[3:].split("@")[0]
    base = Path(text.rstrip("/")).name or "corpus"
    cleaned = re.sub(r"[^\w .:+@-]", "_", base)[:MAX_NAME_CHARS].strip() or "corpus"
    return cleaned if _NAME.match(cleaned) else "corpus"


def unique_names(pairs: list[tuple[str, Any]], *, explicit: set[str]) -> list[tuple[str, Any]]:
    """Makes folder-derived names unique (``name-2``...); two explicit equal names are an error."""
    seen: dict[str, int] = {}
    out = []
    for name, path in pairs:
        if name in seen:
            if str(path) in explicit:
                raise UsageError(f"two corpora are named {name!r}: give each a different --name")
            n = seen[name] + 1
            while f"{name}-{n}" in seen:
                n += 1
            seen[name] = n
            name = f"{name}-{n}"
        seen.setdefault(name, 1)
        out.append((name, path))
    return out
