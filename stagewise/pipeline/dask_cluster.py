"""Dask distributed for the sweeps, the studies and the book build: a LocalCluster of worker processes, or a
running scheduler.

Each task runs one notebook, whose kernel is a child process of the worker and inherits its environment. A local
cluster therefore has one thread per worker (one notebook at a time) and sets the thread variables of torch,
OpenMP, MKL and OpenBLAS to ``cores // workers`` so that parallel kernels do not oversubscribe the cores, and
unsets Dask's ``MALLOC_TRIM_THRESHOLD_`` for its workers (a kernel inheriting it spends as long in system calls as
computing; README, "Sweeps"). The workers of a scheduler given by address are the
user's: start them with ``--nthreads 1`` and those variables set, on machines that see this checkout at the same
path.

A worker that dies mid-task (killed, out of memory) has its task rescheduled by the Dask scheduler, up to its
``distributed.scheduler.allowed-failures`` (set here from ``retries``), then the task ends in ``KilledWorker``;
``retries`` is also passed to each ``submit``, where it covers exceptions raised by the task itself.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["ClusterError", "NotebookJob", "cluster", "cores", "execute_notebooks", "resolve_workers", "thread_env",
           "worker_name"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ClusterError(ValueError):
    """A bad cluster request (workers, scheduler address); nothing was started."""


def cores() -> int:
    """The cores this process may use (respects containers and taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def thread_env(workers: int) -> dict[str, str]:
    """The thread variables for a kernel of one of ``workers`` parallel workers: ``cores // workers`` (≥ 1)."""
    return {name: str(max(1, cores() // max(1, workers))) for name in THREAD_VARIABLES}


def worker_name() -> str:
    """The address of the Dask worker running the current task ("local" outside a worker)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def check_workers(workers: int | None, scheduler: str | None) -> None:
    if workers is not None and scheduler is not None:
        raise ClusterError("give either --workers (a local cluster) or --scheduler (a running one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ClusterError(f"workers = {workers!r}: expected an integer >= 1")
    if scheduler is not None and not str(scheduler).strip():
        raise ClusterError("scheduler: expected an address such as tcp://127.0.0.1:8786")


def resolve_workers(workers: int | None) -> int:
    """The book's chapters executed at once: ``workers`` if given, else ``$BOOK_WORKERS``, else one per core."""
    if workers is None:
        text = os.environ.get("BOOK_WORKERS", "").strip()
        try:
            workers = int(text) if text else cores()
        except ValueError:
            raise ClusterError(f"BOOK_WORKERS={text!r}: expected an integer >= 1 (1: one chapter after another)") from None
    check_workers(workers, None)
    return workers


@contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None, *, retries: int = 2,
            log=print) -> Iterator:
    """A ``distributed.Client``: on a new LocalCluster of ``workers`` processes (default: one per core), or on
    the running scheduler at ``scheduler``. Closes what it started on exit. The worker processes are spawned: a
    script that starts a cluster needs the usual ``if __name__ == "__main__":`` guard."""
    import dask
    from distributed import Client, LocalCluster

    check_workers(workers, scheduler)
    if scheduler is not None:
        with Client(scheduler, timeout="20s") as client:
            log(f"dask: scheduler {scheduler}, {len(client.scheduler_info().get('workers', {}))} worker(s)",
                flush=True)
            yield client
        return
    workers = workers or cores()
    # The dashboard's pages need bokeh, which is not a dependency; the scheduler's HTTP server starts either way,
    # on a free port. The workers only wait on kernels: their profiler (a stack sample every 10 ms) cost 6-8% of
    # a core each in a full book build, for nothing.
    with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                          "distributed.worker.profile.enabled": False,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
                             dashboard_address=":0", env=thread_env(workers), silence_logs=logging.ERROR,
                             preload=[__name__])  # dask_setup below
    try:
        with Client(local) as client:
            dashboard = importlib.util.find_spec("bokeh") is not None
            log(f"dask: local cluster of {workers} worker process(es), {thread_env(workers)['OMP_NUM_THREADS']} "
                "thread(s) per notebook" + (f"; dashboard {client.dashboard_link}" if dashboard else ""), flush=True)
            yield client
    finally:
        local.close()


def dask_setup(worker) -> None:
    """Preload of a local cluster's workers: Ctrl-C in a terminal reaches every process of its group; a worker
    ignores it (no traceback from each) and the client, which takes it, closes the cluster."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# ------------------------------------------------------------------------------------- the book's chapters


@dataclass(frozen=True)
class NotebookJob:
    """One notebook to execute with :func:`stagewise.pipeline.runner.execute_cached` (paths as the book has them);
    ``data`` goes into its cache key, ``after`` names the studies it waits for."""

    source: Path
    output: Path
    cwd: Path
    parameters: dict
    data: tuple = ()
    after: tuple[str, ...] = ()


def execute_job(job: NotebookJob, root: str, *studies, progress: bool = False) -> dict:
    """A Dask task: ``job`` executed in the folder ``root`` (the client's working directory, where the book's
    relative paths start), after ``studies`` (their results, unused). A failing cell comes back as data."""
    from .runner import NotebookFailed, execute_cached

    if os.path.realpath(os.getcwd()) != os.path.realpath(root):
        raise ClusterError(f"worker {worker_name()} runs in {os.getcwd()}, not in {root}: the book's paths are "
                           "relative to the checkout")
    try:
        _, seconds = execute_cached(job.source, job.output, job.cwd, job.parameters, data=job.data,
                                    progress=progress)
    except NotebookFailed as failure:
        return {"failed": [str(failure.notebook), str(failure.output), failure.ename, failure.evalue,
                           failure.execution_count], "worker": worker_name()}
    return {"seconds": seconds, "worker": worker_name()}


def execute_notebooks(jobs: list[NotebookJob], workers: int, *, studies=(), label=str, client=None,
                      retries: int = 1, log=print) -> tuple[list[tuple[str, float]], list]:
    """Execute ``studies`` (:class:`~stagewise.pipeline.studies.StudyPlan`) and ``jobs``: one after another in this
    process when ``workers`` is 1 (or there is one task), else as tasks of a LocalCluster of ``workers`` processes
    (or of ``client``): the chapters longest first by their last recorded time (on a fresh clone, the committed
    full build's, book/numbers.json), the studies' runs beside them, and each job that reads a study after it.
    Returns ([(stem, seconds)] executed, [NotebookFailed] failed); every job runs even when one fails."""
    from stagewise.artifacts import read_json

    from .numbers import snapshot_seconds
    from .runner import NotebookFailed, stamp_path

    executed, failures = [], []

    def report(job: NotebookJob, done: dict) -> None:
        if "failed" in done:
            notebook, output, ename, evalue, count = done["failed"]
            failures.append(NotebookFailed(Path(notebook), Path(output), ename, evalue, count))
            log(f"error: {failures[-1]}")
        else:
            executed.append((job.source.stem, done["seconds"]))
            where = "" if done["worker"] == "local" else f" on {done['worker']}"
            log(f"{job.source.stem}: executed in {done['seconds']:.1f} s{where}", flush=True)

    tasks = len(jobs) + sum(len(plan.todo) for plan in studies)
    if client is None and (workers <= 1 or tasks <= 1):
        for plan in studies:
            log(f"study {plan.study.name}: {len(plan.todo)} run(s) ...", flush=True)
            done = plan.run()
            log(f"study {plan.study.name}: {done['statuses']} in {done['seconds']:.1f} s", flush=True)
        for job in jobs:
            log(f"{job.source.stem}: {label(job)} ...", flush=True)
            report(job, execute_job(job, os.getcwd(), progress=sys.stderr.isatty()))
        return executed, failures

    from distributed import as_completed

    committed = snapshot_seconds()  # a fresh clone has no stamps: the committed full build's times

    def last_seconds(job: NotebookJob) -> float:
        recorded = read_json(stamp_path(Path(job.output)))
        if isinstance(recorded, dict) and isinstance(recorded.get("seconds"), (int, float)):
            return float(recorded["seconds"])
        return committed.get(job.source.stem, 0.0)

    engine = nullcontext(client) if client is not None else cluster(min(workers, tasks), retries=retries, log=log)
    with engine as client:
        # An idle worker takes a task as it arrives and waiting tasks start in the order submitted: the longest
        # chapters first, then the studies' runs, and the pages that read a study once it is written.
        order = sorted(jobs, key=lambda job: (bool(job.after), -last_seconds(job)))
        pending = [job for job in order if not job.after]
        futures = {client.submit(execute_job, job, os.getcwd(), pure=False, retries=retries,
                                 key=f"{job.source.stem}-{uuid.uuid4().hex[:8]}"): job for job in pending}
        written = {}
        for plan in studies:
            log(f"study {plan.study.name}: {len(plan.todo)} run(s) as Dask tasks ...", flush=True)
            written[plan.study.name] = plan.submit(client)
            futures[written[plan.study.name]] = plan
        for job in order[len(pending):]:
            after = [written[name] for name in job.after if name in written]
            futures[client.submit(execute_job, job, os.getcwd(), *after, pure=False, retries=retries,
                                  key=f"{job.source.stem}-{uuid.uuid4().hex[:8]}")] = job
        for job in futures.values():
            if isinstance(job, NotebookJob):
                log(f"{job.source.stem}: {label(job)} (a Dask task)" + (f", after {', '.join(job.after)}"
                                                                        if job.after else " ..."), flush=True)
        for future in as_completed(futures):
            job = futures[future]
            if not isinstance(job, NotebookJob):  # a study's results
                try:
                    done = future.result()
                except Exception as error:  # a run whose worker kept dying: its readers fail with it
                    log(f"error: study {job.study.name}: {type(error).__name__}: {error}")
                    continue
                log(f"study {job.study.name}: {done['statuses']} in {done['seconds']:.1f} s", flush=True)
                continue
            try:
                done = future.result()
            except Exception as error:  # a worker died more than `retries` times, or a kernel would not start
                done = {"failed": [job.source, job.output, type(error).__name__, str(error), None]}
            report(job, done)
    order = {job.source.stem: k for k, job in enumerate(jobs)}  # report in the book's order
    executed.sort(key=lambda item: order[item[0]])
    return executed, failures
