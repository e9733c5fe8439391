"""From a file to a Space, without code.

A no-code user has a file of documents and wants a search page they can share. Spacerini's
builder page (`spacerini.app.builder.serve_builder()`) takes them through four steps: upload a
file, pick the id and text fields from its first record, build, try a search, and download the
Space folder or deploy it. This script runs the same steps through `Builder`, the class behind
each button of the page, so every output below is what the page shows. It then starts the page
itself, renders a Hugging Face Space and serves that Space's app locally, as a visitor would see
it. Finally it puts two corpora side by side. It uses the tiny corpus shipped in `tests/data/`
and a CSV file made on the fly, offline, in a temporary folder. Deployment to the Hub needs a
token and the network, so it is left out.

Usage:
    .venv/bin/python examples/no_code.py
"""

import csv
import json
import os
import shutil
import socket
import tempfile
import urllib.request
import zipfile
from pathlib import Path

os.environ.setdefault("SPACERINI_NO_PROGRESS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import matplotlib.pyplot as plt
import pandas as pd

import spacerini
from spacerini.app import serve
from spacerini.app.builder import Builder, serve_builder
from spacerini.app.compare import counts_frame
from spacerini.deploy import render_space

ROOT = Path(__file__).resolve().parent.parent
work = Path(tempfile.mkdtemp(prefix="spacerini-no-code-"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode("utf-8")


# ## 1. Upload a file and pick its fields
#
# The "Inspect the first record" button reads one record and offers its columns. Spacerini guesses
# the id field and the text field from common names, and the user can change both.
builder = Builder(work / "builder")
upload = ROOT / "tests" / "data" / "tiny.jsonl"
info = builder.inspect(None, str(upload))
print("columns:", info["columns"])
print("guessed id field:", info["id_field"], "| guessed text fields:", info["fields"])
print(json.dumps(info["first"], indent=2))


# The user adds `title` to the text fields, so titles are searchable too, and keeps the default
# backends: BM25 for ranked search and a suffix array for exact counts.
bundle = builder.build(info["source"], id_field=info["id_field"], fields=["title", "contents"],
                       backends=["bm25", "exact"], name="IR notes", progress=False)
print(f"Built {len(bundle)} documents with {', '.join(bundle.backends)}")


# ## 2. Try a search
#
# The page shows the results as highlighted HTML cards: a snippet, the stored fields and the
# rank. Document text is HTML-escaped and PII is redacted on display.
hits = bundle.search("how do search engines rank documents", k=3)
for h in hits:
    print(h.rank, h.docid, round(h.score, 3), h.fields["title"])


# ## 3. The builder page itself
#
# `serve_builder(block=False)` starts the page on loopback and returns at once. From a terminal,
# `spacerini builder` starts it, and the user opens it in a browser. Here we only check that it answers, then close it.
page = serve_builder(port=free_port(), block=False, work_dir=str(work / "page"))
status, body = get(page.local_url)
print(page.local_url, "->", status, f"({len(body):,} bytes of HTML)", "| mentions the builder:", "Spacerini builder" in body)
page.close()


# ## 4. Render the Space
#
# "Download the Space folder" renders a complete Hugging Face Space: a `README.md` with the Spaces
# front matter, `app.py`, a `requirements.txt` pinned to the versions installed here, an empty
# `packages.txt` (Java comes from a wheel), the spacerini wheel and the bundle itself. The user
# uploads this folder to a new Space, or clicks "Deploy" with a token, and the search page is
# online.
space = render_space(bundle, work / "space", title="IR notes")
for path in sorted(space.rglob("*")):
    if path.is_file() and "bundle" not in path.relative_to(space).parts[:1]:
        print(f"{path.relative_to(space)!s:<55} {path.stat().st_size:>9,} bytes")
print(f"bundle/ {sum(p.stat().st_size for p in (space / 'bundle').rglob('*') if p.is_file()):,} bytes in all")
print()
print((space / "README.md").read_text().split("---")[1].strip())
print()
print("requirements.txt starts:", (space / "requirements.txt").read_text().splitlines()[:4])

archive = builder.space_zip(bundle, title="IR notes")
with zipfile.ZipFile(archive) as zf:
    print(f"\n{archive.name}: {archive.stat().st_size:,} bytes, {len(zf.namelist())} files")


# ## 5. What a visitor sees
#
# On the Space, `app.py` serves the bundle with `spacerini.app.serve`. We start the same app on
# loopback. Next to the Gradio page, it answers plain JSON (`/api/search`, `/api/count`), which a
# visitor's script can call with no client library.
served = spacerini.open_bundle(space / "bundle")
app = serve(served, port=free_port(), block=False)
base = app.local_url.rstrip("/")
status, body = get(f"{base}/api/search?q=suffix+array&k=2")
for hit in json.loads(body)["hits"]:
    print(status, hit["rank"], hit["docid"], hit["fields"]["title"])
print(get(f"{base}/api/count?q=search+engine")[1])
app.close()
served.close()


# ## 6. Two corpora side by side
#
# The user uploads a second file, this time a CSV of Python function summaries made on the fly.
# Its columns have no usual names, so the guess is off: the user picks `name` as the id and
# `summary` as the text. `open_bundles` serves both corpora in one app, and its Compare tab
# asks every corpus the same question: the exact count, the top hit and the owner lookup. The bar
# chart is the one the tab draws. `render_space([a, b])` renders one Space over both.
csv_path = work / "python-functions.csv"
with open(ROOT / "tests" / "data" / "dense_corpus.jsonl", encoding="utf-8") as src, open(csv_path, "w", newline="", encoding="utf-8") as dst:
    writer = csv.writer(dst)
    writer.writerow(["name", "summary"])
    for line in src:
        record = json.loads(line)
        writer.writerow([record["id"], record["text"]])
info2 = builder.inspect(None, str(csv_path))
print("CSV columns:", info2["columns"], "| guessed:", info2["id_field"], info2["fields"])
bundle2 = builder.build(info2["source"], id_field="name", fields=["summary"], backends=["bm25", "exact"],
                        name="Python functions", progress=False)

corpora = spacerini.open_bundles([bundle.path, bundle2.path], names={str(bundle.path): "IR notes", str(bundle2.path): "Python functions"})
counts = {}
for query in ("index", "search", "sorted", "list"):
    result = corpora.compare(query)
    counts[query] = counts_frame(result.to_dict()).set_index("corpus")["count"]
    print(f"{query!r:<9}", [(c.name, c.count, c.top_hit.docid if c.top_hit else None) for c in result.corpora])
fig, ax = plt.subplots(figsize=(7, 3))
pd.DataFrame(counts).T.plot.bar(ax=ax, rot=0)
ax.set_ylabel("exact occurrences")
ax.set_title("Compare: the same strings in two corpora")
fig.savefig(work / "compare.png", dpi=90, bbox_inches="tight")
plt.close(fig)
print(f"figure: {work / 'compare.png'}")
both = render_space([bundle.path, bundle2.path], work / "space-two", names={str(bundle.path): "IR notes", str(bundle2.path): "Python functions"})
print(json.loads((both / "corpora.json").read_text()))
corpora.close()
bundle.close()
bundle2.close()
shutil.rmtree(work, ignore_errors=True)
