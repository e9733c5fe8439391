"""Runs shard tasks on Ray: one remote task per shard and backend, reports back in task order.

How a build maps onto Ray:

* **Where.** With no address, Ray starts embedded on this machine (``threads`` CPUs, a small
  object store, no dashboard) and is shut down when the tasks are done; with an address
  (``ray start --head`` printed it), the driver joins that cluster and only disconnects after.
  A connection that is already open in this process (an outer :func:`session`, or the caller's
  own ``ray.init``) is used as it is and left open.
* **What travels.** A :class:`~spacerini.bundle.shards.ShardTask` is plain values: the worker
  opens the docstore and writes the shard's index itself, so the bundle being built (a folder
  beside its target) must be on storage every node sees. Only the small reports come back.
* **Retries.** Each task may be retried (``max_retries``) when its worker or node dies; a retry
  first empties the shard's output folder, so a retried shard is byte-identical to a first try.
  An error Spacerini raises on purpose is not retried: it comes back as a record and is raised
  again in the driver with its class and its one-line message, never a Ray traceback.
* **Memory.** See :func:`run_tasks`: the budget is a Ray ``memory`` reservation per task, a cap on
  the worker's JVM heap and a watchdog on the worker's resident memory.
* **The JVM** starts lazily in each worker process on the first BM25 shard it builds
  (:func:`spacerini.java.ensure_jvm`) and stays up while Ray reuses that worker.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import spacerini
from spacerini import errors
from spacerini.errors import (
    BackendParameterError,
    BundleError,
    CorpusError,
    DependencyMissingError,
    SpaceriniError,
    one_line,
)

if TYPE_CHECKING:  # pragma: no cover
    from spacerini.bundle.shards import ShardTask

logger = logging.getLogger(__name__)

#: Attempts after the first when a worker or node dies mid-task (a killed worker, a lost node).
MAX_RETRIES = 3
#: Object store of an embedded Ray: only task arguments and reports (kilobytes) pass through it.
EMBEDDED_OBJECT_STORE = 128 * 2**20
#: The smallest JVM heap a memory budget leaves a worker (Lucene's indexing buffers need some).
MIN_HEAP = 256 * 2**20
#: Seconds between two looks at a worker's resident memory.
WATCH_INTERVAL = 0.2
#: Seconds a failed run waits for the tasks it cancelled to end, so that none still writes into
#: the folder its caller then deletes (a force-cancelled worker, or its watchdog's marker).
CANCEL_WAIT = 30.0
#: Seconds a failed run first waits for the other tasks to end by themselves before it cancels
#: those still running. Ray 2.60's driver aborts ("Check failed: it != submissible_tasks_.end()
#: Tried to complete task that was not pending") when a task's reply arrives just after the task
#: was cancelled: shard tasks that fail together (a memory budget no worker can keep, a bad
#: option) end within this wait and are never cancelled.
CANCEL_GRACE = 2.0
#: Seconds :func:`_probe` waits for a cluster's address to accept a connection.
PROBE_SECONDS = 5.0
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d+)$")
_MARKER = ".over-budget.json"
_ATTEMPTS = ".attempts"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_LAST_TASKS: list[dict[str, Any]] = []


def parse_memory(value: str | int) -> int:
    """Reads a memory budget: bytes (``1000000``) or ``"2GB"``, ``"512MB"``, ``"1.5GiB"``, ``"2g"``.

    Args:
        value: The budget as given to ``--memory-budget``.

    Returns:
        The budget in bytes.

    Raises:
        BackendParameterError: Not a positive size.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise BackendParameterError(
                f"--memory-budget {value!r} is not a size: give e.g. 2GB, 512MB or 1.5GiB"
            )
        unit = match.group(2).lower()
        scale = 2 ** (10 * " kmgt".index(unit[0])) if "i" in unit else _UNITS[unit[:1]]
        amount = int(float(match.group(1)) * scale)
    if amount < 1:
        raise BackendParameterError(f"--memory-budget must be positive, not {value!r}")
    return amount


def last_nodes() -> list[str]:
    """The Ray node id that ran each task of the last :func:`run_tasks` call, in task order."""
    return [task["node"] for task in _LAST_TASKS]


def last_tasks() -> list[dict[str, Any]]:
    """What each task of the last :func:`run_tasks` call reported about itself, in task order.

    Returns:
        One dict per task: ``node`` (the Ray node id), ``pid`` (the worker process), ``seconds``
        (inside the task) and ``peak_rss`` (bytes: the worker process's peak resident memory so
        far, the kernel's high-water mark ``VmHWM``, which counts the JVM and native code too; a
        worker that Ray reused for several tasks reports its peak over all of them).
    """
    return [dict(task) for task in _LAST_TASKS]


def _import_ray() -> Any:
    """Ray, with its C++ failure-signal handler turned off for the driver (this process).

    Ray's core worker installs Abseil's handler for SIGSEGV, SIGBUS and others when ``ray.init``
    runs, over those of a JVM already started here (BM25 search, pyjnius), and does not chain to
    them. The JVM raises SIGSEGV on purpose (implicit null checks, safepoint polls), so the next
    such signal then ended the process: a segfault in the first BM25 test after a Ray test, and in
    any process that searches a local bundle beside a Ray-served one. Ray's documentation names
    this switch for Java libraries; it is read when the core worker starts, so it is set on the
    imported constant too. Ray's workers are unaffected: their JVMs start after their handler and
    chain to it. Python's faulthandler, which ``ray.init`` enables, is handled in :func:`_init`.
    """
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as exc:
        raise DependencyMissingError(
            "--engine ray needs Ray: pip install 'spacerini[distributed]' (ray[data]==2.60.0)"
        ) from exc
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    return ray


@contextmanager
def session(*, address: str | None = None, threads: int = 1) -> Iterator[None]:
    """Keeps a Ray connection open for the block, so several :func:`run_tasks` calls share it.

    Args:
        address: The cluster to join (``"HOST:PORT"``, ``"auto"``); ``None`` starts Ray embedded on
            this machine with ``threads`` CPUs, and stops it when the block ends. It is always a new
            instance: one that other processes run here (``ray start``, a test's cluster) is not joined.
        threads: CPUs of an embedded Ray (ignored when joining a cluster).

    Raises:
        DependencyMissingError: Ray is not installed.
        BundleError: The cluster cannot be joined or Ray cannot start.
    """
    ray = _import_ray()
    owned = not ray.is_initialized()
    if owned:
        _init(ray, address, threads)
    try:
        yield
    except BaseException as exc:
        _release_refs(exc)
        raise
    else:
        _release_refs()
    finally:
        if owned:
            ray.shutdown()  # stops an embedded Ray; only disconnects from a cluster we joined


def _init(ray: Any, address: str | None, threads: int) -> None:
    """Starts an embedded Ray (``address`` None, ``threads`` CPUs) or joins the cluster at ``address``."""
    # The workers' environment is the job's, not each task's: a task whose runtime env differs
    # from the job's needs workers of its own (started for it, never the pooled ones), so Ray
    # Data's stages and the shard tasks share one pool of warm workers (and their JVMs).
    options: dict[str, Any] = {
        "log_to_driver": False, "logging_level": logging.WARNING, "runtime_env": {"env_vars": _worker_env(None)},
    }  # fmt: skip
    if address is None:
        options.update(
            num_cpus=max(1, threads), object_store_memory=EMBEDDED_OBJECT_STORE, include_dashboard=False
        )
    if address is not None:
        _probe(address)
    faults_on = faulthandler.is_enabled()
    try:
        ray.init(address=address or "local", **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
        raise BundleError(f"cannot {where}: {one_line(exc)}") from exc
    if not faults_on:
        # ray.init enables Python's faulthandler, over the handlers of a JVM started before it;
        # its handler re-raises the JVM's deliberate SIGSEGVs: leave them as they were.
        faulthandler.disable()


def _probe(address: str) -> None:
    """Fails at once when nothing listens at a ``HOST:PORT`` address: Ray itself retries a dead
    address for minutes before it gives up. Other forms (``auto``, ``ray://...``) go to Ray as given.

    Raises:
        BundleError: The address refuses connections, or does not answer within :data:`PROBE_SECONDS`.
    """
    match = _ADDRESS.match(address.strip())
    if match is None:
        return
    host, port = match.group("host").strip("[]"), int(match.group("port"))
    if not 0 < port < 2**16:
        raise BundleError(f"cannot join the Ray cluster at {address}: {port} is not a port (1-65535)")
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except (OSError, OverflowError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or one_line(exc)).lower()
        raise BundleError(
            f"cannot join the Ray cluster at {address}: nothing answers there ({reason}): start its head with "
            "`ray start --head`, and give the address it prints"
        ) from None


def _release_refs(exc: BaseException | None = None) -> None:
    """Frees the Ray object references that the block left behind, while Ray is still up.

    A reference collected after ``ray.shutdown()`` makes Ray's core worker end the whole process
    ("The core worker has already been shutdown ... The process will exit"), silently, with
    status 1: in a notebook or a test run, long after the build. Two kinds are left: those in
    reference cycles (Ray Data's iterators), which a collection frees now, and those held by the
    frames of an error's traceback, which live as long as the caller keeps the error; the
    frames that have finished are cleared of their variables (the error and its message stay).
    """
    import gc
    import traceback

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    gc.collect()


def run_tasks(
    tasks: Sequence[ShardTask],
    *,
    address: str | None = None,
    memory_budget: str | int | None = None,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Runs shard tasks as Ray tasks (one CPU each) and returns their reports in task order.

    What a memory budget enforces, per task and so per worker process:

    * Ray's ``memory`` resource: each task reserves the budget on its node, so a node runs only as
      many shard builds at once as their budgets fit in its memory. A budget larger than every
      node offers fails at once rather than waiting forever.
    * The worker's JVM heap (``-Xmx``, when this worker starts its JVM) is capped at half the
      budget, at least 256 MiB and never above the default.
    * A watchdog in the worker holds its resident memory (Python, the JVM and native code
      together) to the budget: checked when the task starts and, at its peak, when the build
      returns (the task then fails with a one-line error), and sampled every 0.2 s in between,
      when it kills the worker (a JNI call cannot be interrupted). Ray retries a killed task
      once more on a fresh worker, which sees why the last one died and fails at once, with
      a one-line error that names the shard and the memory it reached.

    Args:
        tasks: The tasks (plain values; the docstore and output folders must be on storage every
            node sees).
        address: The Ray cluster to join; ``None`` starts Ray embedded on this machine.
        memory_budget: Memory one task's worker may use: bytes or ``"2GB"``, ``"512MiB"``.
        threads: CPUs of an embedded Ray (so at most this many tasks at once); ignored on a cluster.

    Returns:
        The backend reports (dicts), in the order of ``tasks``. :func:`last_nodes` tells which
        node ran each, and an INFO log line counts the tasks per node.

    Raises:
        DependencyMissingError: Ray is not installed (the ``[distributed]`` extra).
        BackendParameterError: A bad memory budget, or one no node can give.
        SpaceriniError: A task raised it (the same class and one-line message).
        BundleError: A task failed in Ray itself (every attempt's worker or node died).
    """
    budget = parse_memory(memory_budget) if memory_budget is not None else None
    ray = _import_ray()
    if not tasks:
        return []
    with session(address=address, threads=threads):
        if budget is not None:
            _check_budget(ray, budget, memory_budget)
        remote = _remote_function(ray).options(memory=budget, runtime_env=task_runtime_env(budget))
        refs = [remote.remote(task, budget) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[dict[str, Any] | None] = [None] * len(refs)
        pending = list(refs)
        started = time.perf_counter()
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    results[i] = _result(ray, ref, tasks[i], budget)
        except BaseException:
            if pending:  # those that end now anyway are not cancelled (see CANCEL_GRACE)
                with suppress(Exception):
                    _, pending = ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE)
            for ref in pending:
                with suppress(Exception):  # a task whose node is gone cannot be cancelled; it is lost anyway
                    ray.cancel(ref, force=True)
            if pending:  # cancelling only asks: wait until the workers are gone
                with suppress(Exception):
                    ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT)
            raise
        finally:
            attempts = [_read_attempts(task) for task in tasks]
            _remove_markers(tasks)
    records = [r for r in results if r is not None]
    retried = sum(len(nodes) > 1 for nodes in attempts)
    _LAST_TASKS[:] = [{key: r.get(key) for key in ("node", "pid", "seconds", "peak_rss")} for r in records]
    per_node = Counter(r["node"][:12] for r in records)
    logger.info(
        "ray: %d %s tasks in %.1f s on %d nodes (%s) in %d worker processes; %.1f s of it inside tasks, summed; "
        "largest worker peak RSS %d MB%s%s",
        len(records), tasks[0].backend, time.perf_counter() - started, len(per_node),
        ", ".join(f"{node}: {count}" for node, count in sorted(per_node.items())),
        len({(r["node"], r["pid"]) for r in records}),
        sum(r["seconds"] for r in records), math.ceil(max(r.get("peak_rss") or 0 for r in records) / 1e6),
        f" (--memory-budget {budget / 1e6:.0f} MB)" if budget is not None else "",
        f"; {retried} retried after a lost worker or node" if retried else "",
    )  # fmt: skip
    return [r["report"] for r in records]


def _check_budget(ray: Any, budget: int, given: str | int | None) -> None:
    """Fails when no alive node has ``budget`` bytes of Ray's ``memory`` resource."""
    largest = max(
        (float(n["Resources"].get("memory", 0)) for n in ray.nodes() if n.get("Alive")), default=0.0
    )
    if budget > largest:
        raise BackendParameterError(
            f"--memory-budget {given} is more than any Ray node offers ({largest / 1e9:.1f} GB): "
            "give a smaller budget or add larger nodes"
        )


def _worker_env(budget: int | None) -> dict[str, str]:
    """Environment of the workers: this checkout importable, no progress bars, the JVM heap cap."""
    root = str(Path(spacerini.__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": root + (os.pathsep + extra if extra else ""), "SPACERINI_NO_PROGRESS": "1"}
    if budget is not None:
        # Part of the runtime env, so workers are reused only by tasks of the same budget: the
        # peak a worker reached under one budget is never held against another.
        env["SPACERINI_MEMORY_BUDGET"] = str(budget)
        from spacerini.java import DEFAULT_HEAP

        default = parse_memory(os.environ.get("SPACERINI_JVM_HEAP", DEFAULT_HEAP))
        env["SPACERINI_JVM_HEAP"] = f"{max(MIN_HEAP, min(default, budget // 2)) // 2**20}m"
    return env


def task_runtime_env(budget: int | None) -> dict[str, Any] | None:
    """The runtime env a task needs on top of the Ray job's: None when the job's already sets
    every variable of :func:`_worker_env` (a :func:`session` that started or joined Ray), else
    those variables (a connection the caller opened, or a memory budget's JVM heap).

    Must be called with Ray connected.
    """
    import ray

    env = _worker_env(budget)
    job = dict(ray.get_runtime_context().runtime_env.get("env_vars") or {})
    if all(job.get(key) == value for key, value in env.items()):
        return None
    return {"env_vars": env}


@cache
def _remote_function(ray: Any) -> Any:
    return ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_run_shard)


def _result(ray: Any, ref: Any, task: ShardTask, budget: int | None) -> dict[str, Any]:
    """One task's record, or the error it stands for raised in the driver."""
    try:
        record = ray.get(ref)
    except ray.exceptions.RayError as exc:
        marker = _marker(task)
        if budget is not None and marker.is_file():  # killed by its watchdog on the last attempt too
            rss = json.loads(marker.read_text(encoding="utf-8")).get("rss", 0)
            raise BundleError(_over_budget(task, rss, budget, killed=True)) from exc
        cause = getattr(exc, "cause", None)
        detail = one_line(cause) if isinstance(cause, BaseException) else one_line(exc)
        raise BundleError(f"{_where(task)} failed on Ray: {type(cause or exc).__name__}: {detail}") from exc
    if "error" in record:
        raise _rebuild_error(record)
    return record


def _rebuild_error(record: dict[str, Any]) -> SpaceriniError:
    """The driver-side copy of an error a task raised: same class (from spacerini.errors), same line."""
    cls = getattr(errors, record["error"], None)
    if not (isinstance(cls, type) and issubclass(cls, SpaceriniError)):
        return BundleError(record["message"])
    corpus = record.get("corpus")
    if corpus and issubclass(cls, CorpusError):
        where = {"path": corpus.get("path"), "line": corpus.get("line")}
        if issubclass(cls, errors.DocumentTooLargeError):
            where["doc_id"] = corpus.get("doc_id")
        with suppress(Exception):  # a subclass with another signature: the message alone, below
            return cls(str(corpus.get("detail") or record["message"]), **where)
    try:
        return cls(record["message"])
    except Exception:  # noqa: BLE001 - a class with another signature
        return BundleError(record["message"])


def _marker(task: ShardTask) -> Path:
    out = Path(task.out)
    return out.with_name(out.name + _MARKER)


def _where(task: ShardTask) -> str:
    return f"{task.backend} shard (rows {task.first_doc}..{task.first_doc + task.docs - 1})"


def _over_budget(task: ShardTask, rss: int, budget: int, *, killed: bool) -> str:
    how = "was stopped at" if killed else "reached"
    return (
        f"{_where(task)}: the worker {how} {rss / 1e6:.0f} MB, over --memory-budget {budget / 1e6:.0f} MB: "
        "give a larger budget or more shards"
    )


def _attempts(task: ShardTask) -> Path:
    out = Path(task.out)
    return out.with_name(out.name + _ATTEMPTS)


def _read_attempts(task: ShardTask) -> list[str]:
    """The node ids of the task's attempts (a line each, written as each attempt starts)."""
    try:
        return _attempts(task).read_text(encoding="utf-8").split()
    except OSError:
        return []


def _remove_markers(tasks: Sequence[ShardTask]) -> None:
    for task in tasks:
        _marker(task).unlink(missing_ok=True)
        _attempts(task).unlink(missing_ok=True)


# -- in the worker -----------------------------------------------------------------------------
class _OverBudget(Exception):
    """The worker's memory went over the budget where Python could see it (no kill needed)."""


def _run_shard(task: ShardTask, budget: int | None) -> dict[str, Any]:
    """Body of the Ray task: empties ``task.out``, builds the shard under the memory watchdog."""
    import ray

    started = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    marker = _marker(task)
    try:
        if not Path(task.docstore).is_dir():
            raise BundleError(
                f"{task.docstore} is not visible on Ray node {node[:12]}: "
                "the bundle must be built on storage that every node of the cluster sees"
            )
        if budget is not None and marker.is_file():
            # The watchdog killed an earlier attempt of this very task: building again would only
            # reach the same memory, so this attempt reports it instead.
            rss = json.loads(marker.read_text(encoding="utf-8")).get("rss", 0)
            raise BundleError(_over_budget(task, rss, budget, killed=True))
        with _attempts(task).open("a", encoding="utf-8") as fh:
            fh.write(node + "\n")
        _empty(Path(task.out))
        threads = _granted_cpus(ray)
        with _watchdog(budget, marker), _thread_limits(threads):
            report = task.run(threads=threads, progress=False)
    except _OverBudget as exc:
        return {"error": "BundleError", "message": _over_budget(task, exc.args[0], budget or 0, killed=False)}
    except SpaceriniError as exc:
        record = {"error": type(exc).__name__, "message": one_line(exc), "node": node}
        if isinstance(exc, CorpusError):  # where the document is: the driver names its file and line
            record["corpus"] = {"detail": exc.detail, "path": exc.path, "line": exc.line, "doc_id": getattr(exc, "doc_id", None)}
        return record
    return {
        "report": report, "node": node, "pid": os.getpid(), "seconds": time.perf_counter() - started,
        "peak_rss": _peak_rss(),
    }  # fmt: skip


def _granted_cpus(ray: Any) -> int:
    """The CPUs Ray granted the running task (at least 1)."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(cpus))


#: Variables that size the thread pools of native libraries when they load (OpenMP: Faiss and
#: libdivsufsort; BLAS; Hugging Face tokenizers' Rayon pool) and Spacerini's ONNX Runtime sessions.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS",
                     "SPACERINI_ONNX_THREADS")  # fmt: skip


@contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """Holds the task to the CPUs Ray granted it: a worker that uses more than its share only
    oversubscribes the cores the other workers of its node were granted.

    Libraries read their variable when they load (in a fresh worker, during the task), so the
    variables are set here; the ones already loaded by an earlier task of this worker are limited
    through :mod:`threadpoolctl` (OpenMP, BLAS) and ``torch.set_num_threads`` (the dense encoder's
    torch runtime). ONNX Runtime sessions read ``SPACERINI_ONNX_THREADS`` when the encoder loads.
    """
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:  # loaded by an earlier task (a torch that loads later reads OMP_NUM_THREADS)
        torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with the [distributed] extra
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` of ``/proc/self/status`` (the
    high-water mark of this program alone), else ``ru_maxrss`` (which on Linux also holds what the
    process that forked this one had reached before it exec'd)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # macOS counts bytes, Linux KiB
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _empty(folder: Path) -> None:
    """Removes what an earlier attempt left in ``folder`` (created when missing; its parent, made by
    the driver, is not: a task that starts after a failed build's clean-up must not bring it back)."""
    folder.mkdir(exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _children(process: Any) -> list[Any]:
    """The processes ``process`` started (a BM25 build's Lucene JVM), which its budget covers too."""
    import psutil

    try:
        return list(process.children(recursive=True))
    except psutil.Error:
        return []


def _rss(process: Any) -> int:
    """Resident bytes of ``process``; 0 once it has exited."""
    import psutil

    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


@contextmanager
def _watchdog(budget: int | None, marker: Path) -> Iterator[None]:
    """Holds this worker's resident memory to ``budget`` while the block runs.

    Over the budget when the block starts, or at its peak (:func:`_peak_rss`) when it returns, the
    block raises :class:`_OverBudget`. In between, a thread samples the resident memory of the
    worker and the processes it started (the Lucene JVM of a BM25 build runs in a child process)
    every :data:`WATCH_INTERVAL` and, over the budget, kills them: a build inside Java cannot be
    interrupted from Python. The marker file it leaves tells Ray's retry of the task (which
    then fails at once) and the driver why the worker died.

    Raises:
        _OverBudget: With the resident memory in bytes.
    """
    if budget is None:
        yield
        return
    import psutil

    process = psutil.Process()
    rss = process.memory_info().rss
    if rss > budget:
        raise _OverBudget(rss)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_INTERVAL):
            children = _children(process)
            rss = _rss(process) + sum(_rss(child) for child in children)
            if rss > budget:
                marker.write_text(
                    json.dumps({"rss": rss, "budget": budget, "pid": process.pid}), encoding="utf-8"
                )
                for child in children:  # the BM25 build's Lucene JVM runs in a process group of its own
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                os.kill(process.pid, signal.SIGKILL)

    thread = threading.Thread(target=watch, name="spacerini-memory-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    peak = _peak_rss()
    if peak > budget:
        raise _OverBudget(peak)
