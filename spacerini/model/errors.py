"""The model package's errors, defined with the others in :mod:`spacerini.errors`."""

from __future__ import annotations

from spacerini.errors import ModelError, TrainingError

__all__ = ["ModelError", "TrainingError"]
