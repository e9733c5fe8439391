"""``import spacerini.model`` (and the trace module) stays light: no torch, no transformers."""

from __future__ import annotations

import subprocess
import sys


def test_model_package_imports_lightly() -> None:
    code = (
        "import sys, spacerini.model, spacerini.model.tracing, spacerini.model.generation, spacerini.model.membership;"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_lazy_names_resolve() -> None:
    import spacerini.model as m

    assert callable(m.generate) and callable(m.trace) and callable(m.train) and callable(m.score_text)
    assert m.default_model_path().name == "weights"
    assert issubclass(m.ModelError, ValueError)
