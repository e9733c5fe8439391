"""Hugging Face datasets as corpora: ``hf:NAME[:CONFIG][@SPLIT]``, ``save_to_disk`` folders and
``datasets.Dataset`` / ``IterableDataset`` objects.

``datasets`` is imported only here, and only when such a source is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacerini.corpus.base import LocatedRecords
from spacerini.errors import CorpusError, CorpusNotFoundError, DependencyMissingError

logger = logging.getLogger(__name__)

_BATCH = 1000


@dataclass(frozen=True)
class HfSpec:
    """A parsed ``hf:`` source.

    Attributes:
        name: Dataset name on the Hub, or a local path.
        config: The configuration (subset), if any.
        split: The split ("train" unless given).
    """

    name: str
    config: str | None
    split: str

    def __str__(self) -> str:
        config = f":{self.config}" if self.config else ""
        return f"hf:{self.name}{config}@{self.split}"


def parse_hf(source: str) -> HfSpec:
    """Parses ``hf:NAME[:CONFIG][@SPLIT]`` (``NAME`` may also be a local path).

    Raises:
        CorpusNotFoundError: The name is empty.
    """
    rest = source[3:] if source.startswith("hf:") else source
    split = "train"
    if "@" in rest:
        head, tail = rest.rsplit("@", 1)
        if tail and "/" not in tail:
            rest, split = head, tail
    config = None
    is_path = rest.startswith(("/", ".", "~")) or Path(rest).exists()
    if not is_path and ":" in rest:
        rest, config = rest.split(":", 1)
        config = config or None
    if not rest:
        raise CorpusNotFoundError(f"no dataset name in {source!r}; use hf:NAME[:CONFIG][@SPLIT]")
    return HfSpec(rest, config, split)


def is_saved_dataset(folder: Path) -> bool:
    """Whether a folder was written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return folder.is_dir() and any(
        (folder / name).is_file() for name in ("state.json", "dataset_info.json", "dataset_dict.json")
    )


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise DependencyMissingError(
            "Hugging Face sources need the 'datasets' package: pip install datasets"
        ) from exc
    return datasets


def load_saved(folder: Path, split: str | None) -> tuple[Any, str]:
    """Opens a ``save_to_disk`` folder; returns the Dataset and the split read.

    Raises:
        CorpusNotFoundError: The folder cannot be read, or the split is not in a DatasetDict (or
            is not the split of a single saved Dataset).
    """
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise CorpusNotFoundError(
            f"cannot open the saved dataset ({_first_line(exc)}); it should be a folder written by "
            "Dataset.save_to_disk",
            path=str(folder),
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        chosen = split or "train"
        if chosen not in loaded:
            raise CorpusNotFoundError(
                f"no split {chosen!r} in the saved dataset; it has {', '.join(loaded)}: "
                f"use hf:{folder}@SPLIT",
                path=str(folder),
            )
        return loaded[chosen], chosen
    own = str(loaded.split) if getattr(loaded, "split", None) is not None else None
    if split is not None and split != (own or "train"):
        # One Dataset, not a DatasetDict: reading it all for another split name would be a silent mix-up.
        raise CorpusNotFoundError(
            f"no split {split!r} in the saved dataset: it is one Dataset"
            + (f" (split {own!r})" if own else "")
            + f", not a DatasetDict; leave out @{split}",
            path=str(folder),
        )
    return loaded, split or own or "train"


def open_source(text: str) -> tuple[HfSpec, Any, Path | None, str]:
    """Opens an ``hf:`` source: a ``save_to_disk`` folder, or a dataset on the Hub (or its cache).

    Returns:
        The parsed spec, the dataset, the saved folder (``None`` for a Hub dataset) and the split.

    Raises:
        CorpusNotFoundError: A local folder that does not exist, or a dataset that cannot be opened.
    """
    spec = parse_hf(text)
    local = Path(spec.name).expanduser()
    if is_saved_dataset(local):
        dataset, split = load_saved(local, spec.split if "@" in text else None)
        return spec, dataset, local, split
    if spec.name.startswith(("/", ".", "~")) and not local.exists():
        raise CorpusNotFoundError("no such folder", path=spec.name)
    return spec, load_hub(spec), None, spec.split


#: Seconds the reachability probe of the Hub may take (DNS, connect and the first answer)
#: before the Hub counts as unreachable.
PROBE_TIMEOUT = 3.0
_probe_cache: dict[str, tuple[float, bool]] = {}


def _offline_already() -> bool:
    """Whether offline mode is on (the environment, or ``datasets``/``huggingface_hub`` settings)."""
    import os

    truthy = {"1", "ON", "YES", "TRUE"}
    if any(os.environ.get(v, "").upper() in truthy for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    import sys

    hub = sys.modules.get("huggingface_hub.constants")
    config = sys.modules.get("datasets.config")
    return bool(getattr(hub, "HF_HUB_OFFLINE", False) or getattr(config, "HF_HUB_OFFLINE", False))


def hub_endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT``, else ``huggingface_hub``'s (``https://huggingface.co``)."""
    import os

    explicit = os.environ.get("HF_ENDPOINT", "").strip()
    if explicit:
        return explicit.rstrip("/")
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with datasets
        return "https://huggingface.co"
    return str(constants.ENDPOINT or "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hub (:func:`hub_endpoint`) answers an HTTP ``HEAD`` within ``timeout`` seconds,
    through the proxy that ``huggingface_hub`` uses. Any HTTP status counts as an answer; a
    refused or timed-out connection, a failed DNS lookup, or a server (or proxy) that accepts the
    connection but never answers does not. Cached for a minute.

    The probe runs in a daemon thread, so a resolver that hangs costs ``timeout`` at most.
    """
    import threading
    import time

    endpoint = hub_endpoint()
    now = time.monotonic()
    known = _probe_cache.get(endpoint)
    if known is not None and now - known[0] < 60:
        return known[1]
    result: list[bool] = []
    from huggingface_hub import get_session  # imported here: its import time is not the Hub's

    def probe() -> None:
        try:
            get_session().head(endpoint, timeout=timeout, follow_redirects=False)
            result.append(True)
        except Exception:  # noqa: BLE001 - every failure to get an answer means "unreachable"
            result.append(False)

    thread = threading.Thread(target=probe, name="spacerini-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    reachable = bool(result and result[0])
    _probe_cache[endpoint] = (now, reachable)
    return reachable


class _Offline:
    """Turns on the offline mode of ``datasets`` and ``huggingface_hub`` (environment and their
    already-imported settings) for a ``with`` block, and restores everything after."""

    _ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    _ATTRS = (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    )

    def __enter__(self) -> _Offline:
        import importlib
        import os

        self._env = {name: os.environ.get(name) for name in self._ENV}
        self._attrs: list[tuple[Any, str, Any]] = []
        for name in self._ENV:
            os.environ[name] = "1"
        for module_name, attr in self._ATTRS:
            module = importlib.import_module(module_name)
            if hasattr(module, attr):
                self._attrs.append((module, attr, getattr(module, attr)))
                setattr(module, attr, True)
        return self

    def __exit__(self, *exc: object) -> None:
        import os

        for name, value in self._env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for module, attr, value in self._attrs:
            setattr(module, attr, value)


def load_hub(spec: HfSpec) -> Any:
    """Opens a Hub (or local script/data-folder) dataset in streaming mode.

    With no network (offline mode already on, or the Hub not reachable within
    :data:`PROBE_TIMEOUT` seconds) the dataset is opened in offline mode, from the local cache
    only, so a dataset that is not cached fails at once instead of after the Hub client's retries.

    Raises:
        CorpusNotFoundError: The dataset, config or split cannot be found locally or on the Hub.
    """
    import contextlib

    datasets = _datasets()
    offline = _offline_already() or not hub_reachable()
    try:
        with _Offline() if offline else contextlib.nullcontext():
            return datasets.load_dataset(spec.name, spec.config, split=spec.split, streaming=True)
    except Exception as exc:  # datasets raises many kinds; each becomes one clear line
        raise _not_found(spec, exc, offline=offline) from None


def _not_found(spec: HfSpec, exc: BaseException, *, offline: bool = False) -> CorpusNotFoundError:
    text = _first_line(exc)
    kind = type(exc).__name__
    if offline and kind != "ValueError":  # a config or split that is not there stays its own error
        return CorpusNotFoundError(
            f"hf:{spec.name} is not in the local cache and the Hub cannot be reached: download it once with "
            f"network access, or pass a local folder written by Dataset.save_to_disk ({kind}: {text})"
        )
    if (
        isinstance(exc, ConnectionError | TimeoutError)
        or kind
        in {
            "DatasetNotFoundError",
            "OfflineModeIsEnabled",
            "LocalEntryNotFoundError",
            "RepositoryNotFoundError",
            "HfHubHTTPError",
            "ConnectError",
        }
        or "Couldn't reach" in text
    ):
        return CorpusNotFoundError(
            f"dataset {spec.name!r} not found in the local Hugging Face cache and the Hub is "
            f"unreachable or does not have it ({kind}: {text}); check the name, download it once "
            "with network access, or pass a local folder written by Dataset.save_to_disk"
        )
    return CorpusNotFoundError(
        f"cannot load dataset {spec} ({kind}: {text}); check the name, the config after ':' and the "
        "split after '@'"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def dataset_total(dataset: Any) -> int | None:
    """Returns the number of rows of a map-style Dataset, None for a streaming one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def dataset_records(dataset: Any, name: str) -> Callable[[], LocatedRecords]:
    """Returns a factory that streams the rows of a Dataset or IterableDataset (rows from 1)."""

    def records() -> LocatedRecords:
        rows: Iterator[dict[str, Any]]
        if hasattr(dataset, "iter") and dataset_total(dataset) is not None:
            rows = _unbatch(dataset.iter(batch_size=_BATCH))
        else:
            rows = iter(dataset)
        number = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except (ConnectionError, TimeoutError, OSError) as exc:
                raise CorpusError(
                    f"reading stopped after row {number} ({type(exc).__name__}: {_first_line(exc)}); "
                    "check the network or use a local copy (Dataset.save_to_disk)",
                    path=name,
                    line=number + 1,
                ) from None
            number += 1
            yield row, name, number

    return records


def _unbatch(batches: Any) -> Iterator[dict[str, Any]]:
    for batch in batches:
        columns = list(batch)
        if not columns:
            continue
        values = [batch[column] for column in columns]
        for row in zip(*values, strict=True):
            yield dict(zip(columns, row, strict=True))


def describe_dataset(dataset: Any) -> str:
    """Returns a short description of a Dataset object for the manifest."""
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None) or ""
    split = getattr(dataset, "split", None)
    total = dataset_total(dataset)
    parts = [
        p
        for p in (name, str(split) if split else "", f"{total} rows" if total is not None else "streaming")
        if p
    ]
    return f"{type(dataset).__name__}({', '.join(parts)})"


def is_dataset_object(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets.Dataset`` or ``IterableDataset`` (without importing datasets)."""
    module = type(obj).__module__ or ""
    return module.startswith("datasets.") and type(obj).__name__ in {"Dataset", "IterableDataset"}


def is_dataset_dict(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets.DatasetDict`` or ``IterableDatasetDict``."""
    module = type(obj).__module__ or ""
    return module.startswith("datasets.") and type(obj).__name__ in {"DatasetDict", "IterableDatasetDict"}


def pick_split(splits: Any, split: str = "train") -> Any:
    """Returns one split of a DatasetDict.

    Raises:
        CorpusNotFoundError: The split is not there.
    """
    if split not in splits:
        raise CorpusNotFoundError(
            f"no split {split!r} in the {type(splits).__name__}; it has {', '.join(splits)}: pass one "
            "split, e.g. dataset['test']"
        )
    return splits[split]
