"""The model's device: the project's one device choice (:func:`spacerini.device.best_device`)."""

from __future__ import annotations

from typing import Any


def choose_device(device: str | None = None) -> Any:
    """Returns the torch device to run the model on.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; None defers to
            :func:`spacerini.device.best_device` (``$SPACERINI_DEVICE``, else CUDA, MPS, CPU).

    Returns:
        A ``torch.device``.

    Raises:
        DependencyMissingError: ``device`` is not a device, or not one torch can see.
    """
    import torch

    from spacerini.device import best_device, check_device

    return torch.device(check_device(device) if device else best_device())
