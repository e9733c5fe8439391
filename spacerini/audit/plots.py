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


def check_report_folder(out: Any, names: Sequence[str] = (), *, bundle: Any = None) -> None:
    """Refuses a report folder that would lose or damage something, before any work is done.

    Args:
        out: The report folder (it need not exist).
        names: The report's file names: none of them may be a folder there.
        bundle: The bundle the report is about (its path), if any.

    Raises:
        UsageError: ``out`` is a file, is a bundle or inside one (the report's files would be
            written among the bundle's, and ``info --verify`` then fails), or one of ``names``
            is a folder in it.
    """
    from pathlib import Path

    from spacerini.bundle.manifest import MANIFEST
    from spacerini.errors import UsageError

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{out}: is a file; --out needs a folder (a new one, or one holding an earlier report)")
    resolved = folder.resolve()
    inside = [resolved, *resolved.parents]
    home = Path(bundle).expanduser().resolve() if bundle is not None else None
    for place in inside:
        if place == home or (place / MANIFEST).is_file():
            what = "the bundle" if place == resolved else "inside the bundle"
            raise UsageError(
                f"{out}: is {what} {bundle if place == home else place}; write the report to a folder outside "
                "it (among the bundle's files, `spacerini info --verify` would fail on them)"
            )
    for name in names:
        if (folder / name).is_dir():
            raise UsageError(f"{folder / name}: is a folder where the report writes a file; remove it or choose another --out")


class DeferredSignals:
    """Holds Ctrl-C, SIGTERM and SIGHUP while a report is drawn and renamed into place, and
    delivers them at :meth:`check` (between charts) or on leaving the block.

    Raised wherever it lands, a ``KeyboardInterrupt`` inside matplotlib was turned into
    ``ValueError: Invalid bounding box`` (exit 2 with a wrong message), or, in one of its weakref
    callbacks, printed as "Exception ignored" with a traceback and lost: the command went on.
    Held, it is raised by the handler the command had (``KeyboardInterrupt``, the CLI's
    termination error), at a point where the staged files can be discarded. Outside the main
    thread (where no handler can be set) nothing is held.
    """

    _NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}
        self.pending: int | None = None

    def __enter__(self) -> DeferredSignals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self._NAMES:
                sig = getattr(signal, name, None)
                if sig is None:
                    continue
                try:
                    self._old[sig] = signal.signal(sig, self._hold)
                except (ValueError, OSError):  # pragma: no cover - not settable here
                    continue
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = signum

    def _restore(self) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old = {}

    def check(self) -> None:
        """Delivers a signal held so far (raising as the command's own handler does)."""
        import os
        import signal

        if self.pending is None:
            return
        signum, self.pending = self.pending, None
        old = self._old.get(signum)
        self._restore()
        if callable(old):
            old(signum, None)
        elif old is None or old == signal.SIG_DFL:
            os.kill(os.getpid(), signum)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.check()
        finally:
            self._restore()


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
        """Renames every staged file into place, in the order added; none is when one of their
        names is taken by a folder (one rename would fail after others were done).

        Raises:
            UsageError: A file's name is taken by a folder.
        """
        import os

        from spacerini.errors import UsageError

        for _, final in self._staged:
            if final.is_dir():
                raise UsageError(f"{final}: is a folder where the report writes a file; remove it or choose another --out")
        while self._staged:
            tmp, final = self._staged[0]
            os.replace(tmp, final)
            self._staged.pop(0)

    def discard(self) -> None:
        """Removes the staged files not published (after a failure)."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()
