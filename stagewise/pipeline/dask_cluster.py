"""Dask distributed for the sweeps and the book build: a LocalCluster of worker processes, or a running scheduler.

Each task runs one notebook, whose kernel is a child process of the worker and inherits its environment. A
local cluster therefore has one thread per worker (one notebook at a time) and sets the thread variables of
torch, OpenMP, MKL and OpenBLAS (and ``STAGEWISE_THREADS``, read by :mod:`stagewise.pipeline.threads`) to
``cores // workers`` so that parallel kernels do not oversubscribe the cores. The workers of a scheduler given by
address are the user's: start them with ``--nthreads 1`` and those variables set, on machines that see this
checkout and its ``runs/`` folder at the same path.

A worker that dies mid-task (killed, out of memory) has its task rescheduled by the Dask scheduler, up to its
``distributed.scheduler.allowed-failures`` (set here from ``retries``), then the task ends in ``KilledWorker``;
``retries`` is also passed to each ``submit``, where it covers exceptions raised by the task itself.

A notebook that runs Dask tasks of its own (a page that sweeps chapters, :attr:`NotebookJob.sweeps`) sends them
to the cluster it runs on: its task tells the kernel the scheduler's address (``STAGEWISE_SCHEDULER``, read by
:func:`enclosing_scheduler`) and secedes from the worker's thread pool while the kernel waits, so that the
worker's core runs the page's runs (or other chapters) instead of idling, and one worker is enough.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["ClusterError", "NotebookJob", "cluster", "default_workers", "enclosing_scheduler", "execute_notebooks",
           "resolve_workers", "submission_order", "thread_env", "worker_name"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "STAGEWISE_THREADS")
SCHEDULER_VARIABLE = "STAGEWISE_SCHEDULER"  # set for the kernel of a sweeping notebook run as a Dask task
PRIORITY_SWEEPS = 10**9  # a sweeping notebook's task starts before any chapter (priorities: recorded seconds)


class ClusterError(ValueError):
    """A bad cluster request (workers, scheduler address); nothing was started."""


def cores() -> int:
    """The cores this process may use (respects containers and taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """One worker per core."""
    return cores()


def thread_env(workers: int) -> dict[str, str]:
    """The thread variables for a kernel of one of ``workers`` parallel workers: ``cores // workers`` (≥ 1)."""
    threads = str(max(1, cores() // max(1, workers)))
    return {name: threads for name in THREAD_VARIABLES}


def worker_name() -> str:
    """The address of the Dask worker running the current task ("local" outside a worker)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def enclosing_scheduler() -> str | None:
    """The address of the Dask scheduler whose task runs this notebook, when the notebook was run as a task that
    may send tasks of its own there (a sweeping page of a parallel book build); else None."""
    return os.environ.get(SCHEDULER_VARIABLE, "").strip() or None


def check_workers(workers: int | None, scheduler: str | None) -> None:
    if workers is not None and scheduler is not None:
        raise ClusterError("give either --workers (a local cluster) or --scheduler (a running one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ClusterError(f"workers = {workers!r}: expected an integer >= 1")
    if scheduler is not None and not str(scheduler).strip():
        raise ClusterError("scheduler: expected an address such as tcp://127.0.0.1:8786")


@contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None, *, retries: int = 2,
            log=print) -> Iterator:
    """A ``distributed.Client``: on a new LocalCluster of ``workers`` processes (default: one per core), or on
    the running scheduler at ``scheduler``. Prints the dashboard's address when there is one. Closes what it
    started on exit. The worker processes are spawned: a script that starts a cluster needs the usual
    ``if __name__ == "__main__":`` guard (``python -m stagewise`` has it)."""
    import dask
    from distributed import Client, LocalCluster

    check_workers(workers, scheduler)
    if scheduler is not None:
        with Client(scheduler, timeout="20s") as client:
            log(f"dask: scheduler {scheduler}, {len(client.scheduler_info().get('workers', {}))} worker(s)"
                + (f"; dashboard {client.dashboard_link}" if _has_dashboard(client) else ""), flush=True)
            yield client
        return
    workers = workers or default_workers()
    # The dashboard's pages need bokeh, which is not a dependency; the scheduler's HTTP server (health, metrics)
    # starts either way, on a free port (":0") rather than 8787, which another cluster may hold.
    dashboard = importlib.util.find_spec("bokeh") is not None
    # The workers only wait on kernels: their statistical profiler (a stack sample every 10 ms) cost 6-8% of a
    # core each in a full book build, for nothing.
    with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                          "distributed.worker.profile.enabled": False}):
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
                             dashboard_address=":0", env=thread_env(workers), silence_logs=logging.ERROR,
                             preload=[__name__])  # dask_setup below
    try:
        with Client(local) as client:
            log(f"dask: local cluster of {workers} worker process(es), "
                f"{thread_env(workers)['OMP_NUM_THREADS']} thread(s) per notebook"
                + (f"; dashboard {client.dashboard_link}" if dashboard else ""), flush=True)
            yield client
    finally:
        local.close()


def dask_setup(worker) -> None:
    """Preload of a local cluster's workers: Ctrl-C in a terminal reaches every process of its group; a worker
    ignores it (no traceback from each) and the client, which takes it, closes the cluster. (The kernels run in
    sessions of their own and never see it; they exit when their worker does.)"""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _has_dashboard(client) -> bool:
    try:
        return bool(client.scheduler_info().get("services", {}).get("dashboard"))
    except Exception:  # an old or unusual scheduler: say nothing rather than fail
        return False


# ------------------------------------------------------------------------------------- the book's chapters


def resolve_workers(workers: int | None, variable: str = "BOOK_WORKERS") -> int:
    """``workers`` if given, else the environment variable ``variable``, else one per core."""
    if workers is None:
        text = os.environ.get(variable, "").strip()
        if not text:
            return default_workers()
        try:
            workers = int(text)
        except ValueError:
            raise ClusterError(f"{variable}={text!r}: expected an integer >= 1 "
                               "(1: one chapter after another)") from None
    check_workers(workers, None)
    return workers


@dataclass(frozen=True)
class NotebookJob:
    """One notebook to execute with :func:`stagewise.pipeline.runner.execute_cached` (paths as the book has them)."""

    source: Path
    output: Path
    cwd: Path
    parameters: dict
    sweeps: bool = False  # runs Dask tasks of its own (front matter ``depends_on``): they go to the same cluster


def execute_job(job: NotebookJob, root: str) -> dict:
    """A Dask task: ``job`` executed in the folder ``root`` (the client's working directory, where the book's
    relative paths start). A failing cell comes back as data (NotebookFailed does not pickle)."""
    from .runner import NotebookFailed, execute_cached

    if os.path.realpath(os.getcwd()) != os.path.realpath(root):
        raise ClusterError(f"worker {worker_name()} runs in {os.getcwd()}, not in {root}: the book's paths are "
                           "relative to the checkout")
    shared = job.sweeps and _share_cluster()
    try:
        _, seconds = execute_cached(job.source, job.output, job.cwd, job.parameters)
    except NotebookFailed as failure:
        return {"failed": [str(failure.notebook), str(failure.output), failure.ename, failure.evalue,
                           failure.execution_count], "worker": worker_name()}
    finally:
        if shared:
            os.environ.pop(SCHEDULER_VARIABLE, None)
    return {"seconds": seconds, "worker": worker_name()}


def _share_cluster() -> bool:
    """In a worker: let the kernel about to start reach this worker's scheduler, and leave the worker's thread
    pool, so the worker runs other tasks (the kernel's own among them) while this one waits on its kernel."""
    from distributed import get_worker, secede

    try:
        address = get_worker().scheduler.address
    except ValueError:  # not in a worker: nothing to share
        return False
    os.environ[SCHEDULER_VARIABLE] = address  # the kernel inherits the worker's environment
    secede()
    return True


def submission_order(jobs: list[NotebookJob]) -> list[tuple[int, NotebookJob]]:
    """(Dask priority, job) in the order to submit them. A task is placed on an idle worker as it arrives, so
    priorities only order the tasks that wait: sweeping jobs first (they leave their worker's thread pool at
    once), then the chapters, longest first by their last recorded time (in the book's order when none is
    recorded). A chapter's priority is 1 + those seconds, so the runs that a sweeping page submits (priority 0)
    wait behind every chapter and fill the workers at the end."""
    from stagewise.artifacts import read_json

    from .runner import stamp_path

    def priority(job: NotebookJob) -> int:
        if job.sweeps:
            return PRIORITY_SWEEPS
        recorded = read_json(stamp_path(Path(job.output)))
        return 1 + int(float(recorded.get("seconds", 0.0)) if isinstance(recorded, dict) else 0.0)

    return sorted(((priority(job), job) for job in jobs), key=lambda pair: -pair[0])  # stable: the book's order


def execute_notebooks(jobs: list[NotebookJob], workers: int, *, label=str, client=None, retries: int = 1,
                      log=print) -> tuple[list[tuple[str, float]], list]:
    """Execute ``jobs``: one after another in this process when ``workers`` is 1 (the serial build), else as
    tasks of a LocalCluster of ``min(workers, len(jobs))`` processes (or of ``client``): sweeping jobs first
    (they leave their worker's thread pool and queue runs behind the chapters), then the longest by the last
    recorded time. Returns ([(stem, seconds)] executed, [NotebookFailed] failed); ``label(job)``
    says what runs. Every job runs even when one fails."""
    from .runner import NotebookFailed, execute_cached

    executed, failures = [], []
    if client is None and (workers <= 1 or len(jobs) <= 1):
        for job in jobs:
            log(f"{job.source.stem}: {label(job)} ...", flush=True)
            try:
                _, seconds = execute_cached(job.source, job.output, job.cwd, job.parameters,
                                            progress=sys.stderr.isatty())
            except NotebookFailed as failure:
                log(f"error: {failure}")
                failures.append(failure)
                continue
            executed.append((job.source.stem, seconds))
            log(f"{job.source.stem}: executed in {seconds:.1f} s", flush=True)
        return executed, failures

    from contextlib import nullcontext

    from distributed import as_completed

    engine = nullcontext(client) if client is not None else cluster(min(workers, len(jobs)), retries=retries, log=log)
    with engine as client:
        futures = {}
        for priority, job in submission_order(jobs):
            log(f"{job.source.stem}: {label(job)} (a Dask task) ...", flush=True)
            future = client.submit(execute_job, job, os.getcwd(), pure=False, retries=retries, priority=priority,
                                   key=f"{job.source.stem}-{uuid.uuid4().hex[:8]}")
            futures[future] = job
        for future in as_completed(futures):
            job = futures[future]
            try:
                done = future.result()
            except Exception as error:  # a worker died more than `retries` times, or a kernel would not start
                failures.append(NotebookFailed(job.source, job.output, type(error).__name__, str(error)))
                log(f"error: {failures[-1]}")
                continue
            if "failed" in done:
                notebook, output, ename, evalue, count = done["failed"]
                failures.append(NotebookFailed(Path(notebook), Path(output), ename, evalue, count))
                log(f"error: {failures[-1]}")
                continue
            executed.append((job.source.stem, done["seconds"]))
            log(f"{job.source.stem}: executed in {done['seconds']:.1f} s on {done['worker']}", flush=True)
    order = {job.source.stem: k for k, job in enumerate(jobs)}  # report in the book's order
    executed.sort(key=lambda item: order[item[0]])
    return executed, failures
