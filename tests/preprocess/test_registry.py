"""The step registry, option handling, composition, and streaming without materialising."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from spacerini.errors import BackendNotAvailableError
from spacerini.preprocess import REGISTRY, Step, apply, get_step, make_steps, parse_step_options, reports
from spacerini.preprocess.base import StepOptionError
from spacerini.records import Doc


def test_registry_names_and_aliases() -> None:
    assert set(REGISTRY) == {"dedup", "near-dedup", "pii", "licence", "quality", "language", "optout"}
    assert get_step("license") is get_step("licence")
    steps = make_steps("dedup, near-dedup,pii,license,quality")
    assert [s.name for s in steps] == ["dedup", "near-dedup", "pii", "licence", "quality"]
    assert all(isinstance(s, Step) for s in steps)


def test_clear_errors() -> None:
    with pytest.raises(BackendNotAvailableError, match="choose from dedup, near-dedup, pii"):
        make_steps(["dedupe"])
    with pytest.raises(LookupError):
        make_steps(["dedupe"])
    with pytest.raises(StepOptionError, match="it takes threshold, num_perm"):
        make_steps(["near-dedup"], near_dedup={"treshold": 0.8})
    with pytest.raises(StepOptionError, match="not run: pii"):
        make_steps(["dedup"], pii={"mode": "display"})
    with pytest.raises(StepOptionError, match="named twice"):
        make_steps(["dedup", "dedup"])
    with pytest.raises(StepOptionError, match="must be a dict"):
        make_steps(["pii"], pii="display")


def test_parse_step_options() -> None:
    parsed = parse_step_options(["near-dedup.threshold=0.85", "pii.mode=display", "optout.owners=alice,bob", "license.missing=keep"])
    assert parsed == {
        "near-dedup": {"threshold": 0.85},
        "pii": {"mode": "display"},
        "optout": {"owners": "alice,bob"},
        "licence": {"missing": "keep"},
    }
    steps = make_steps(["near-dedup", "pii", "optout", "licence"], **parsed)
    assert steps[0].params["threshold"] == 0.85 and steps[2].owners == frozenset({"alice", "bob"})
    with pytest.raises(StepOptionError, match="STEP.OPTION=VALUE"):
        parse_step_options(["threshold=0.8"])


def test_apply_is_lazy_and_reports_compose() -> None:
    produced = 0

    def source() -> Iterator[Doc]:
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield Doc(str(i), f"doc {i % 500} mail x{i}@acme.io")

    steps = make_steps(["dedup", "pii"])
    stream = apply(source(), steps)
    assert produced == 0
    first = next(stream)
    assert first.text == "doc 0 mail <EMAIL>" and produced == 1
    rest = list(stream)
    assert len(rest) == 999 and produced == 1000
    dedup, pii = reports(steps)
    assert dedup["removed"] == 0 and pii["changed"] == 1000 and pii["docs_in"] == 1000
    json.dumps(reports(steps))


def test_100k_tiny_docs_stream_through_every_step() -> None:
    n = 100_000

    def source() -> Iterator[Doc]:
        for i in range(n):
            owner = "optout-owner" if i % 1000 == 0 else f"user{i % 97}"
            yield Doc(
                f"d{i}",
                f"def f{i % 50_000}():\n    return {i % 50_000}\n",
                meta={"owner": owner, "licence": "MIT", "language": "Python", "path": f"m{i}.py"},
            )

    steps = make_steps(
        ["optout", "licence", "language", "quality", "dedup", "pii"],
        optout={"owners": ["OPTOUT-OWNER"]},
        language={"languages": ["Python"]},
    )
    produced = 0

    def counted() -> Iterator[Doc]:
        nonlocal produced
        for doc in source():
            produced += 1
            yield doc

    count = 0
    for _ in apply(counted(), steps):
        count += 1
        # Nothing is buffered: each step has taken in exactly what the one before let out.
        assert steps[0].docs_in == produced
        assert all(after.docs_in == before.docs_out for before, after in zip(steps, steps[1:], strict=False))
    # 100 documents are opted out. Texts repeat with period 50,000, and for 50 texts both
    # copies belong to the opted-out owner (i % 1000 == 0), so 49,950 distinct texts remain.
    assert count == 49_950 and produced == n
    assert [r["docs_out"] for r in reports(steps)] == [99_900, 99_900, 99_900, 99_900, 49_950, 49_950]


def test_near_dedup_streams_a_generator() -> None:
    (step,) = make_steps(["near-dedup"])
    docs = (Doc(str(i), f"alpha beta gamma delta epsilon {i}") for i in range(2_000))
    out = step(docs)
    assert next(out).id == "0"
    remaining = sum(1 for _ in out)
    report = step.report()
    assert report["docs_in"] == 2_000 and report["docs_out"] == remaining + 1
