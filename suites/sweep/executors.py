"""Where cases run: Dask distributed (a LocalCluster here, or a running cluster), a process pool, or in-process.

Each backend takes the tasks and calls ``on_done`` with every outcome as it arrives, in this
process, so the caller writes each case's file the moment it is known. A task the backend
itself loses (a dead worker, a broken pool) comes back as a failed outcome, not an exception.
On Ctrl-C a backend cancels what has not finished and re-raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Protocol

from hwsim.suites.sweep.grid import SweepError
from hwsim.suites.sweep.worker import Outcome, Task, error_info, run_case

OnDone = Callable[[Outcome], None]
# A case is pure-Python CPU work: the worker's statistical profiler (a stack walk every 10 ms
# under the GIL) and a 20 ms event-loop tick slowed cases measurably on a 2-core machine.
LOCAL_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "200ms",
    "distributed.admin.system-monitor.gil.enabled": False,
}
EXECUTORS = ("auto", "dask", "process", "serial")


# Loggers that narrate a cluster's shutdown; after Ctrl-C the user asked for quiet, not for 60 lines.
SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio", "bokeh")


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside this block ignore SIGINT (the disposition is inherited across fork and exec).

    A terminal's Ctrl-C goes to the whole process group: without this every worker raises its own
    KeyboardInterrupt and prints a traceback. Only this process should hear it; it then stops the
    workers itself. Outside the main thread signal handlers cannot change, so nothing is done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_sigint() -> None:
    """Process-pool initializer: the worker leaves Ctrl-C to the parent, which cancels and stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def quiet_loggers(names: tuple[str, ...] = SHUTDOWN_LOGGERS) -> Iterator[None]:
    """Silence ``names`` (and their children) for the block: a cluster stopped on purpose has nothing to report."""
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.CRITICAL + 1)
        logger.disabled = True
    children = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                if any(n.startswith(f"{p}.") for p in names)]
    for logger in children:
        saved.append((logger, logger.level, logger.disabled))
        logger.disabled = True
    try:
        yield
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


class Backend(Protocol):
    description: str

    def run(self, tasks: list[Task], on_done: OnDone) -> None: ...


class SerialBackend:
    """Every case in this process, one after another: the reference the parallel runs must equal."""

    description = "serial, in this process"

    def run(self, tasks: list[Task], on_done: OnDone) -> None:
        for task in tasks:
            on_done(run_case(task))


class ProcessBackend:
    """A local process pool: the fallback when Dask is not installed."""

    def __init__(self, workers: int):
        self.workers = workers
        self.description = f"process pool, {workers} workers"

    def run(self, tasks: list[Task], on_done: OnDone) -> None:
        pool = ProcessPoolExecutor(max_workers=self.workers, initializer=ignore_sigint)
        futures: dict[Future[Outcome], Task] = {}
        try:
            futures = {pool.submit(run_case, t): t for t in tasks}
            for future in as_completed(futures):
                on_done(_outcome(future.result, futures[future]))
        except BaseException:
            for future in futures:
                future.cancel()
            # the workers ignore SIGINT; stop the running cases now rather than wait for them
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        pool.shutdown(wait=True)


@contextlib.contextmanager
def quiet_from_sigint(names: tuple[str, ...] = SHUTDOWN_LOGGERS) -> Iterator[None]:
    """For the block, Ctrl-C silences ``names`` before it raises KeyboardInterrupt (main thread only).

    Distributed's blocking calls, interrupted, schedule their own clean-up on the IO-loop thread, and
    that clean-up can log an error of its own before this thread's ``except`` runs: silencing only
    once the interrupt is caught leaves a race that prints a traceback after the one quiet line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    silenced = contextlib.ExitStack()

    def interrupted(signum: int, frame: object) -> None:
        silenced.enter_context(quiet_loggers(names))
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        silenced.close()


class DaskBackend:
    """Dask distributed: a LocalCluster of worker processes, or the cluster at ``address``."""

    def __init__(self, workers: int, address: str | None = None):
        self.workers = workers
        self.address = address
        self.description = f"Dask cluster at {address}" if address else f"Dask LocalCluster, {workers} worker processes"

    def run(self, tasks: list[Task], on_done: OnDone) -> None:
        try:
            from distributed import Client, LocalCluster
            from distributed import as_completed as dask_as_completed
        except ImportError:
            raise SweepError("Dask is not installed: pip install 'hwsim[dist]' (or use --executor process)") from None
        cluster = None
        try:
            if self.address:
                try:
                    client = Client(self.address, timeout="10s")
                except (OSError, TimeoutError) as exc:
                    raise SweepError(f"--scheduler {self.address}: cannot connect ({exc})") from None
            else:
                import dask

                # the nanny hands this config to its workers; nannies and workers leave Ctrl-C to us
                with dask.config.set(LOCAL_WORKER_CONFIG), children_ignore_sigint():
                    cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
                client = Client(cluster)
        except SweepError:
            raise
        except Exception as exc:  # noqa: BLE001 - a cluster that will not start is the user's to fix
            raise SweepError(f"cannot start a Dask cluster: {exc}") from None
        futures = []
        stopping = False
        with quiet_from_sigint():
            try:
                futures = [client.submit(run_case, t, key=f"hwsim-case-{t.case.case_id}", pure=False) for t in tasks]
                by_key = {f.key: t for f, t in zip(futures, tasks)}
                for future in dask_as_completed(futures):
                    on_done(_outcome(future.result, by_key[future.key]))
            except BaseException:
                stopping = True
                raise
            finally:
                # stopped early (Ctrl-C, an error): the cluster's shutdown chatter is noise, keep stderr to one line
                with quiet_loggers() if stopping else contextlib.nullcontext(), children_ignore_sigint():
                    if stopping and futures:
                        with contextlib.suppress(Exception):
                            client.cancel(futures)
                    client.close()
                    if cluster is not None:
                        cluster.close()


def _outcome(result: Callable[[], Outcome], task: Task) -> Outcome:
    """The task's outcome, or a failed one when the backend lost it (killed worker, broken pool)."""
    try:
        return result()
    except Exception as exc:  # noqa: BLE001
        return Outcome(task.case.case_id, error=error_info(exc))


def make_backend(executor: str, workers: int | None, scheduler: str | None) -> Backend:
    if executor not in EXECUTORS:
        raise SweepError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    n = workers or os.cpu_count() or 1
    if scheduler is not None:
        if executor not in ("auto", "dask"):
            raise SweepError(f"--scheduler needs the dask executor, not {executor!r}")
        if "://" not in scheduler:
            raise SweepError(f"--scheduler {scheduler!r}: expected an address such as tcp://HOST:8786")
        if not dask_available():
            raise SweepError("--scheduler needs Dask: pip install 'hwsim[dist]'")
        return DaskBackend(n, scheduler)
    if executor == "serial":
        return SerialBackend()
    if executor == "process" or (executor == "auto" and not dask_available()):
        return ProcessBackend(n)
    if not dask_available():
        raise SweepError("--executor dask: Dask is not installed: pip install 'hwsim[dist]'")
    return DaskBackend(n)


__all__ = ["EXECUTORS", "Backend", "DaskBackend", "ProcessBackend", "SerialBackend", "dask_available", "make_backend"]
