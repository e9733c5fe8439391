"""The one place that decides which device torch and Faiss run on.

``SPACERINI_DEVICE`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``) overrides the automatic choice,
which prefers CUDA, then Apple's MPS, then the CPU. Both helpers import torch or faiss lazily,
so ``import spacerini.device`` stays light.

Example:
    >>> from spacerini.device import best_device
    >>> best_device() in {"cpu", "cuda", "mps"}  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import re

from spacerini.errors import DependencyMissingError

ENV = "SPACERINI_DEVICE"
_VALID = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def best_device() -> str:
    """Returns the torch device to encode on: ``"cuda"``, ``"mps"`` or ``"cpu"``.

    ``SPACERINI_DEVICE`` wins when set; otherwise CUDA, then MPS, then CPU, as torch reports them.
    Without torch installed the answer is ``"cpu"``.

    Raises:
        DependencyMissingError: ``SPACERINI_DEVICE`` is malformed, or names a device that torch
            cannot see (for example ``cuda`` with a CPU-only torch build).
    """
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted:
        if not _VALID.match(wanted):
            raise DependencyMissingError(f"{ENV}={wanted!r} is not a device: use cpu, cuda, cuda:N or mps")
        if wanted == "cpu":
            return "cpu"
        if not _torch_has(wanted):
            raise DependencyMissingError(
                f"{ENV}={wanted} but torch sees no such device: install a CUDA/MPS build of torch "
                f"(pip install 'spacerini[gpu]') or set {ENV}=cpu"
            )
        return wanted
    for candidate in ("cuda", "mps"):
        if _torch_has(candidate):
            return candidate
    return "cpu"


def check_device(device: str) -> str:
    """Checks a device named by the user (``--device``), as :func:`best_device` checks
    ``SPACERINI_DEVICE``, so that a typo or a GPU torch cannot see fails with one clear line.

    Returns:
        The device, lower-cased.

    Raises:
        DependencyMissingError: ``device`` is malformed, or torch sees no such device.
    """
    wanted = device.strip().lower()
    if not _VALID.match(wanted):
        raise DependencyMissingError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps")
    if wanted != "cpu" and not _torch_has(wanted):
        raise DependencyMissingError(
            f"--device {wanted}: torch sees no such device here; use --device cpu, or install a CUDA/MPS "
            "build of torch (pip install 'spacerini[gpu]')"
        )
    return wanted


def faiss_gpus() -> int:
    """Returns how many GPUs Faiss may use: 0 on faiss-cpu, or when the device is forced to CPU/MPS.

    Faiss has no MPS support, so only CUDA devices count.
    """
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted and not wanted.startswith("cuda"):
        return 0
    try:
        import faiss
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _torch_has(device: str) -> bool:
    try:
        import torch
    except ImportError:
        return False
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return index < torch.cuda.device_count()
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return device == "cpu"
