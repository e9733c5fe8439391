"""Charts of the audit report, drawn with matplotlib figures rendered to PNG/SVG (no display needed, no pyplot).

Every chart draws its own axes limits, so a chart with one category, or with zero counts, still
shows its bar and labels (a chart of one category used to render blank in the app's Stats tab).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The bar colour of every chart (also what tests look for in the pixels).
BAR_COLOR = "#3b6ea5"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure and its axes, made without pyplot: pyplot's global state (and a backend switch,
    which in a notebook stops later figures from showing) is never touched."""
    import warnings

    from matplotlib.figure import Figure

    # A label in a script the font lacks (CJK n-grams) is drawn as a box; matplotlib's warning
    # for each glyph would put lines of source code on the command's stderr.
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def _shorten(label: str, limit: int = 40) -> str:
    label = " ".join(str(label).split())
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(
    title: str, counts: Mapping[str, float] | Sequence[tuple[str, float]], *, xlabel: str = "documents"
) -> Any:
    """A horizontal bar chart, largest first (at the top).

    Args:
        title: The chart's title.
        counts: Category -> value, in the order to show (or ``(category, value)`` pairs).
        xlabel: The value axis label.

    Returns:
        A matplotlib Figure (close it with :func:`close` when done).
    """
    items = list(counts.items()) if isinstance(counts, Mapping) else list(counts)
    fig, ax = _figure(7.0, max(1.6, 0.32 * len(items) + 1.0))
    if not items:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        labels = [_shorten(k) for k, _ in items][::-1]
        values = [float(v) for _, v in items][::-1]
        ax.barh(range(len(values)), values, color=BAR_COLOR, height=0.7)
        # Labels are corpus text (licence, owner, domain names): a "$" is drawn as itself, not read
        # as TeX math (a malformed one raised and stopped the report, and the app's Stats tab).
        ax.set_yticks(range(len(values)), labels, parse_math=False)
        # Explicit limits: one category (or all zeros) still gets a visible, full-width bar.
        top = max(values) if max(values) > 0 else 1.0
        ax.set_xlim(0, top * 1.12)
        ax.set_ylim(-0.6, len(values) - 0.4)
        for y, v in enumerate(values):
            ax.text(
                v + top * 0.01,
                y,
                f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}",
                va="center",
                fontsize=8,
            )
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def histogram(title: str, values: Sequence[float] | Any, *, xlabel: str, log: bool = True) -> Any:
    """A histogram (log-spaced bins when ``log``, for document lengths).

    Returns:
        A matplotlib Figure.
    """
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    fig, ax = _figure(7.0, 3.2)
    if data.size == 0:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        shown = np.maximum(data, 1.0) if log else data
        lo, hi = float(shown.min()), float(shown.max())
        if log:
            bins = np.logspace(np.log10(lo), np.log10(hi) if hi > lo else np.log10(lo) + 1, 40)
            ax.set_xscale("log")
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(shown, bins=bins, color=BAR_COLOR)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("documents")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def svg_text(fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (no XML header) that fits its container's width."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # Scale to the container's width (the viewBox keeps the aspect ratio), not a fixed 7 inches.
    head, rest = text.split(">", 1)
    head = (
        re.sub(r'\s(?:width|height)="[^"]*"', "", head) + ' width="100%" style="max-width:100%;height:auto"'
    )
    return head + ">" + rest


def data_uri(png: bytes) -> str:
    """A ``data:`` URI of PNG bytes, for a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def close(fig: Any) -> None:
    """Frees a figure (it belongs to no pyplot registry, so dropping it is enough)."""
    fig.clear()


class StagedFiles:
    """The files of a report, written beside their final names and renamed into place together
    (the page last) by :meth:`publish`: a failure or Ctrl-C while writing leaves the folder's
    previous report as it was, never a half-written file, and :meth:`discard` (in a ``finally``)
    removes what was staged and not published.

    Args:
        folder: The report's folder (it exists).
    """

    def __init__(self, folder: Any) -> None:
        from pathlib import Path

        self.folder = Path(folder)
        self._staged: list[tuple[Any, Any]] = []

    def add(self, name: str, data: bytes | str) -> None:
        """Writes ``data`` (text as UTF-8) to a temporary file for ``folder/name``."""
        import os

        final = self.folder / name
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        self._staged.append((tmp, final))
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    def publish(self) -> None:
        """Renames every staged file into place, in the order added."""
        import os

        while self._staged:
            tmp, final = self._staged[0]
            os.replace(tmp, final)
            self._staged.pop(0)

    def discard(self) -> None:
        """Removes the staged files not published (after a failure)."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()
