"""Auditing a code corpus with Spacerini.

An auditor wants to know what a training corpus holds and whether a model learned from it:
how big it is, what it repeats, which personal data it carries, which benchmark examples leak
into it, whether a text was a training document, where generated code comes from, and how a
person gets their work removed. This script answers each question on a small real corpus made
on the fly: the first megabyte of the Python standard library plus six installed packages, with
each file's repo, owner, licence and SWHID. The bundled code model was trained on the same kind of
corpus (a sample of the standard library and installed packages) and lists the files it was trained
on, which makes the membership and attribution questions answerable with ground truth. Everything runs offline in a temporary
folder.

Usage:
    .venv/bin/python examples/auditor.py
"""

import os
import re
import shutil
import sysconfig
import tempfile
from pathlib import Path

os.environ.setdefault("SPACERINI_NO_PROGRESS", "1")

import matplotlib.pyplot as plt
import numpy as np

import spacerini
from spacerini.audit.analyze import analyze, write_report
from spacerini.audit.contamination import contamination
from spacerini.bundle.optout import optout
from spacerini.corpus.default import python_source_corpus
from spacerini.model import default_model_path, exact_answer, generate, render_trace, score_texts, trace
from spacerini.model.training import TRAINING_DOCS, read_training_docs
from spacerini.service import Service

work = Path(tempfile.mkdtemp(prefix="spacerini-auditor-"))


def show(fig, name):
    """Saves a figure as a PNG in the work folder and, in the notebook, shows that PNG.

    The PNG is shown rather than the figure because the report charts switch matplotlib to its
    Agg backend, after which Jupyter no longer draws figures by itself.
    """
    fig.savefig(work / f"{name}.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"figure: {work / name}.png")


# ## 1. Load and clean
#
# `python_source_corpus` streams Python files with their provenance. Six small packages with
# different owners and licences join the standard library, so the breakdowns and the opt-out below
# have something to show. The build runs three preprocessing steps in order: exact dedup, near-dedup
# (MinHash LSH) and PII redaction. The bundle gets three backends: a suffix array (`exact`), an
# n-gram Bloom sketch (`bloom`) and an owner index (`owners`).
corpus = python_source_corpus(
    max_bytes=1_600_000,
    max_package_bytes=1_000_000,
    distributions=["MarkupSafe", "pluggy", "cycler", "executing", "pure_eval", "asttokens"],
    progress=False,
)
bundle = spacerini.build_bundle(
    corpus,
    work / "bundle",
    backends=["exact", "bloom", "owners"],
    preprocess=["dedup", "near-dedup", "pii"],
    progress=False,
)
print(repr(bundle))
print("documents:", len(bundle), "| generation:", bundle.generation)


# Each step reports what it changed, and the manifest keeps those reports, so the bundle records
# how it was cleaned. Exact dedup drops byte-identical files, which here are mostly empty
# `__init__.py` files. The PII step redacts e-mail addresses (authors in module headers) and IP
# addresses, and names the documents it changed.
for step in bundle.manifest["preprocess"]:
    changed = {k: step[k] for k in ("docs_in", "docs_out", "removed", "changed") if k in step}
    print(f"{step['name']:<11} {changed}")
    if step["name"] == "pii":
        print("            found per kind:", step["found"])
        print("            e.g.", step["examples"])


# ## 2. What is in it: `analyze`
#
# One streaming pass over the docstore yields sizes, document lengths, exact top n-grams,
# duplicate clusters, PII left after cleaning (none, because the build redacted it; the build's
# own count is kept under `at_build`), and breakdowns by licence, repo and owner. `write_report`
# writes a self-contained `report.html`, one PNG per chart and `analysis.json`; this is what
# `spacerini analyze BUNDLE --out DIR` does.
analysis, lengths = analyze(bundle, top_k=15, progress=False, keep_lengths=True)
report = write_report(analysis, lengths, work / "report", title="Auditor notebook corpus")
print(f"{analysis.docs} documents, {analysis.bytes:,} bytes, {analysis.tokens:,} tokens")
print("lengths (bytes):", {k: analysis.lengths[k] for k in ("min", "p50", "p90", "max") if k in analysis.lengths})
print("owners:", analysis.breakdowns["owner"])
print("licences:", analysis.breakdowns["licence"])
print("PII left in the bundle:", analysis.pii["found"], "| redacted at build:", analysis.pii["at_build"]["found"])
print("report:", report, "with", sorted(p.name for p in report.parent.glob("*.png")))


# The report's charts are below: the length distribution (log scale), the commonest word trigrams
# (counted exactly from the suffix array), and the documents per owner.
for chart in ("lengths", "top_trigrams", "by_owner"):
    print("chart:", report.parent / f"{chart}.png")


# ## 3. Benchmark contamination
#
# Which examples of a test set appear verbatim in the corpus? We make a small test set on the fly
# with four kinds of examples:
#
# * **copied**: twelve lines cut straight from a corpus document,
# * **reformatted**: the same lines with their whitespace collapsed, as a scraper or a code
#   formatter would leave them,
# * **paraphrased**: the same lines with every fourth word replaced,
# * **fresh**: text the corpus has never seen.
#
# Each example gets the fraction of its word 13-grams found in the corpus (GPT-3's and WIMBD's n)
# and its longest verbatim match. It counts as contaminated when at least half of its 13-grams are
# found.
def passage(docid, first_line, lines=12):
    return "\n".join(bundle.doc(docid).text.splitlines()[first_line : first_line + lines])


def paraphrase(text):
    words = iter(range(1, 10**9))
    return re.sub(r"[A-Za-z_]+", lambda m: "altered" if next(words) % 4 == 0 else m.group(), text)


sources = [("python-stdlib/argparse.py", 1), ("python-stdlib/ast.py", 40),
           ("python-stdlib/asyncio/locks.py", 20), ("python-stdlib/bisect.py", 0)]
copied = [passage(docid, line) for docid, line in sources]
fresh = [
    "The committee met on a rainy Thursday to discuss the budget for the new library wing and agreed to "
    "postpone the vote until the architects had revised their estimates for the roof.",
    "To make a sourdough starter, mix equal weights of flour and water, cover the jar loosely, and feed it "
    "every day for a week until it doubles in size within a few hours of feeding.",
    "def harmonic_mean_of_positive(values):\n    values = [v for v in values if v > 0]\n    "
    "return len(values) / sum(1 / v for v in values) if values else 0.0",
]
testset = (
    [{"id": f"copied-{i}", "text": t} for i, t in enumerate(copied)]
    + [{"id": f"reformatted-{i}", "text": " ".join(t.split())} for i, t in enumerate(copied)]
    + [{"id": f"paraphrased-{i}", "text": paraphrase(t)} for i, t in enumerate(copied)]
    + [{"id": f"fresh-{i}", "text": t} for i, t in enumerate(fresh)]
)
print(testset[3]["text"][:300], "\n...\n")
print(testset[11]["text"][:300], "\n")
contam = contamination(bundle, testset, progress=False)
for r in contam.examples:
    verdict = "CONTAMINATED" if r.contaminated else "clean"
    print(f"{r.id:<14} {verdict:<13} overlap {r.overlap:.2f}  longest match {r.longest_match:>4} chars in {r.doc}")
print({k: contam.summary[k] for k in ("examples", "contaminated", "contaminated_fraction", "ngram", "min_overlap")})


# The copied passages are found in full. Matching is verbatim: spacing is part of the text, so the
# reformatted copies keep only runs within a line, and the paraphrases only the runs between two
# edits. Neither reaches the threshold, although their longest matches are far longer than the
# fresh text's, which shares nothing beyond common words. To catch reformatted copies, audit a
# bundle built with the same normalisation (for example, whitespace collapsed in both).
fig, ax = plt.subplots(figsize=(9, 3))
colours = {"copied": "tab:red", "reformatted": "tab:purple", "paraphrased": "tab:orange", "fresh": "tab:green"}
ax.bar([r.id for r in contam.examples], [r.overlap for r in contam.examples],
       color=[colours[r.id.split("-")[0]] for r in contam.examples])
ax.axhline(contam.summary["min_overlap"], color="black", linestyle="--", linewidth=1, label="threshold")
ax.set_ylabel("13-gram overlap")
ax.set_title("Contamination: share of each example's 13-grams found in the corpus")
ax.tick_params(axis="x", rotation=60)
ax.legend()
show(fig, "contamination")


# ## 4. Was this text in the training data? Model scores against the exact index
#
# When the training data is public, the bundle answers exactly. When it is not, an auditor has only
# the model, and uses membership scores: loss, zlib ratio, Min-K% Prob and Min-K%++. The shipped
# code model was trained from scratch on 317 files of the demo corpus (standard library and
# installed packages), and lists them in `training_docs.txt` beside its weights. That gives ground
# truth:
#
# * **members**: files it lists, read from this machine's standard library and site-packages,
# * **non-members**: for each member, a file of the same folder that it does not list, so never
#   trained on. They come from the same distribution: same package, same authors, same style.
#
# Each file is scored on its first 256 tokens. A ROC-AUC of 0.5 means a score cannot tell members
# from non-members. An exact index answers for certain whether a text is in a corpus; below it is
# asked about this notebook's bundle.
stdlib = Path(sysconfig.get_paths()["stdlib"])
purelib = Path(sysconfig.get_paths()["purelib"])
in_bundle = {doc.id for doc in bundle.iter_docs()}


def local_file(docid):
    """The file on this machine behind a demo-corpus id (``distribution/path``)."""
    dist, rel = docid.split("/", 1)
    return (stdlib if dist == "python-stdlib" else purelib) / rel


def sized(path):
    return path.is_file() and 3_000 <= path.stat().st_size <= 40_000


trained = read_training_docs(default_model_path() / TRAINING_DOCS)
trained_files = {local_file(docid) for docid in trained}
members, non_members, used = [], [], set()
for docid in trained:
    path = local_file(docid)
    if len(members) == 12 or not sized(path):
        continue
    sibling = next((p for p in sorted(path.parent.glob("*.py")) if sized(p) and p not in trained_files | used), None)
    if sibling is not None:
        used.add(sibling)
        members.append(path.read_text(encoding="utf-8"))
        non_members.append(sibling.read_text(encoding="utf-8"))
scores = score_texts(members + non_members, max_tokens=256)
labels = np.array([1] * len(members) + [0] * len(non_members))


def roc_auc(values, labels):
    """ROC-AUC as the Mann-Whitney statistic (ties count one half)."""
    pos, neg = values[labels == 1], values[labels == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))


oriented = {m: np.array([s.oriented()[m] for s in scores]) for m in ("loss", "zlib", "min_k", "min_k_plus_plus")}
for method, values in oriented.items():
    print(f"{method:<16} ROC-AUC {roc_auc(values, labels):.2f}")

service = Service(bundle)
inside = bundle.doc("python-stdlib/bisect.py").text[:600]
outside = next(p for p in sorted(stdlib.glob("*.py")) if sized(p) and f"python-stdlib/{p.name}" not in in_bundle)
for name, text in (("a file of this bundle", inside), ("a file outside it", outside.read_text(encoding="utf-8")[:600])):
    answer = exact_answer(service, text)
    print(f"exact index on {name}: verbatim={answer.verbatim}, count={answer.count}, coverage={answer.coverage:.2f}")
fig, axes = plt.subplots(1, 4, figsize=(11, 2.8))
rng = np.random.default_rng(0)
for ax, (method, values) in zip(axes, oriented.items(), strict=True):
    for label, colour, name in ((1, "tab:blue", "members"), (0, "tab:gray", "non-members")):
        v = values[labels == label]
        ax.scatter(label + rng.uniform(-0.12, 0.12, len(v)), v, color=colour, s=14, label=name)
    ax.set_xticks([1, 0], ["members", "non-\nmembers"])
    ax.set_title(f"{method}\nAUC {roc_auc(values, labels):.2f}", fontsize=9)
axes[0].set_ylabel("score (higher: member)")
fig.suptitle("Membership scores of the shipped model, first 256 tokens", fontsize=10)
fig.tight_layout()
show(fig, "membership")


# The AUCs show whether the model's scores separate members from non-members, and for this small,
# short-trained model they may barely do so. Whatever they show, the exact index is certain, and
# that is why the scores are checked against it. `benchmarks/membership_bench.py` measures the same
# thing at several lengths on more documents.
#
# ## 5. Attribution: where does generated code come from?
#
# We prompt the model with the start of a training file and decode greedily, as code models are
# probed for memorisation. `trace` then finds every span of at least 32 characters that occurs
# verbatim in the corpus, and names the documents, licences and SWHIDs it comes from.
prompt_id = next(docid for docid in trained if docid in in_bundle)  # a training file this bundle holds
print(prompt_id)
prompt = bundle.doc(prompt_id).text[:400]
completion = generate(prompt, max_new_tokens=96, temperature=0)
print(completion)
print("---")
print(render_trace(trace(bundle, completion)))


# A model that memorised its training file would continue it verbatim, and the trace would show
# that span with its source. The shipped model is small and briefly trained (see its model card in
# `spacerini/model/weights`), so its greedy output above tends to loop on common tokens, and the
# trace reports what it finds, often nothing. A 0% answer here is a real measurement.
#
# The same trace on text pasted from the corpus (a function taken from `ast.py` plus one line
# of our own) shows what an attribution looks like when the text holds a verbatim copy. The span is
# found with its source file, owner, licence and Software Heritage id.
source = bundle.doc("python-stdlib/ast.py").text
start = source.index("def literal_eval")
pasted = source[start : source.index("\n\n", start)] + "\n\nprint(literal_eval('[1, 2]'))\n"
traced = trace(bundle, pasted)
print(render_trace(traced))
src = traced.spans[0].sources[0]
print(src.repo, src.path, src.owner, src.licence, src.swhid)


# ## 6. "Am I in this corpus?" and opting out
#
# Alex Hall wrote two of the six packages (`executing` and `pure_eval`). The owner lookup lists
# their files. An opt-out removes them from every backend and writes a new generation. Readers
# (this `Bundle`, a running app, a Space) switch to it. The audit log records the removal (counts,
# and SHA-256 hashes of the removed ids, never a name).
who = service.owner("Alex Hall")
for match in who.matches:
    print(match.owner, "|", match.docs, "documents |", [repo for repo, _ in match.repos])
marker = bundle.doc(who.matches[0].files[0].docid).text[:60]
print("count of one of their files' first line before:", service.count(marker).count)

entry = optout(bundle.path, owners=["alex hall"], progress=False)
bundle.reload()
print("opt-out:", {k: entry[k] for k in ("removed", "owners", "owners_not_found")})
print("generation now:", bundle.generation, "| documents:", len(bundle))
print("owner lookup after:", [m.owner for m in service.owner("Alex Hall").matches])
print("count after:", service.count(marker).count)
print("audit log:", [(e["action"], e["removed"], len(e["removed_id_sha256"])) for e in bundle.manifest["audit_log"]])
bundle.close()
shutil.rmtree(work, ignore_errors=True)
