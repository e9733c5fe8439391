"""The backend options dataclasses: they match what each backend takes, and they validate."""

from __future__ import annotations

import inspect

import pytest

from spacerini.backends import REGISTRY, check_params, get_backend
from spacerini.backends.options import (
    OPTIONS,
    build_option_names,
    check_build_options,
    cli_flags,
    search_option_names,
)
from spacerini.errors import BackendParameterError

PASSED_BY_THE_BUNDLE = {"docs_factory", "folder", "threads", "progress"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_options_declare_exactly_what_build_and_open_take(name: str) -> None:
    module = get_backend(name)
    build = set(inspect.signature(module.build).parameters) - PASSED_BY_THE_BUNDLE
    assert build_option_names(name) == build
    opened = {k for k, p in inspect.signature(module.open).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert search_option_names(name) == opened
    assert set(OPTIONS) == set(REGISTRY)


def test_bad_options_fail_with_one_clear_line() -> None:
    check_params("bm25", {"k1": 1.2, "b": 0.75})
    for given, needle in (
        ({"k2": 1}, r"no build option\(s\) k2"),
        ({"b": 1.5}, "--b must be at most 1.0"),
        ({"k1": "high"}, "--k1 must be a number"),
        ({"analyzer": 3}, "--analyzer must be text"),
    ):
        with pytest.raises(BackendParameterError, match=needle):
            check_params("bm25", given)
    with pytest.raises(BackendParameterError, match="must be one of auto, flat"):
        check_build_options("dense", {"index": "kd-tree"})
    assert check_build_options("bloom", {"width": 20}).width == 20


def test_cli_flags_come_from_the_options() -> None:
    flags = {f.flag: f for f in cli_flags()}
    assert {"--analyzer", "--k1", "--b", "--encoder", "--dense-index", "--nprobe", "--ef-search"} <= set(flags)
    assert flags["--dense-index"].choices == ("auto", "flat", "ivf", "ivfpq", "hnsw")
    assert {f.flag for f in cli_flags(search=True)} == {"--nprobe", "--ef-search"}


def test_each_backend_searcher_offers_its_declared_capabilities(tmp_path) -> None:  # noqa: ANN001
    from pathlib import Path

    from spacerini.backends import (
        BatchSearcher,
        ExactText,
        MembershipSketch,
        OwnerIndex,
        RankedSearcher,
        Snippeter,
    )
    from spacerini.bundle import build_bundle

    data = Path(__file__).parent / "data" / "tiny.jsonl"
    bundle = build_bundle(data, tmp_path / "b", backends=["bm25", "exact", "bloom", "owners"], progress=False)
    expected = {
        "bm25": (BatchSearcher, Snippeter),
        "exact": (RankedSearcher, ExactText),
        "bloom": (MembershipSketch,),
        "owners": (OwnerIndex,),
    }
    for name, capabilities in expected.items():
        searcher = bundle.searcher(name)
        assert all(isinstance(searcher, cap) for cap in capabilities), name
    assert not isinstance(bundle.searcher("bloom"), RankedSearcher)
