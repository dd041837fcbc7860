"""Worker processes and BLAS threads, decided in one place.

Both the sample generator and the audio feature extractor fan clips out over
processes. Workers are never a ``fork`` of the calling process (it may already
hold JAX, TensorFlow or BLAS threads, and forking those can deadlock): they come
from a ``forkserver`` that has imported the modules the work needs once, or from
``spawn`` where there is no forkserver. Each worker, and the caller when it works
in-process, runs BLAS on one thread: parallelism comes from the processes.

librosa compiles its numba gufuncs when their modules are imported and caches them
on disk (``cache=True``). Two processes compiling the same gufunc at once can leave
a cache whose two halves come from different processes, and every later process
that loads it segfaults (numba/numba#10128: reproduced here, 24 of 36 processes on a
fresh cache crashed). :func:`compile_librosa_kernels` compiles them in one process,
under a file lock, before any pool starts (and ``make setup`` and the test suite
call it first).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import importlib
import multiprocessing
import os
import tempfile
from typing import Callable, Sequence

# The librosa modules whose numba gufuncs are compiled (and cached) at import.
LIBROSA_KERNEL_MODULES = ("librosa.util.utils", "librosa.beat", "librosa.core.audio",
                          "librosa.core.pitch")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, leave BLAS alone
        return None
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread (a no-op without threadpoolctl)."""
    ctl = _blas_controller()
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")


def one_thread():
    """A context in which BLAS *and* OpenMP run on one thread (small problems, where
    threads cost more than they give)."""
    ctl = _blas_controller()
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1)


def limit_blas_in_worker() -> None:
    """For a worker's initializer: one BLAS thread for the worker's whole life."""
    ctl = _blas_controller()
    if ctl is not None:
        ctl.limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def compile_librosa_kernels() -> None:
    """Import (so compile, or load from numba's cache) librosa's gufuncs, holding an
    exclusive lock that every other caller on this machine waits for: the cache is
    written by one process at a time, and processes started after this one only
    read it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, still compiled once here
        fcntl = None
    user = os.getuid() if hasattr(os, "getuid") else 0
    lock = os.path.join(tempfile.gettempdir(), f"jaxmusic-numba-{user}.lock")
    with open(lock, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for name in LIBROSA_KERNEL_MODULES:
                importlib.import_module(name)
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """A ``forkserver`` context whose server imports ``preload`` once (``spawn``
    where the platform has no forkserver). librosa's kernels are compiled here
    first, so that no two workers compile them at once."""
    compile_librosa_kernels()
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # pragma: no cover - not on this platform
        return multiprocessing.get_context("spawn")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ctx


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (a crash in native code, or killed for memory)."""


def process_pool(jobs: int, preload: Sequence[str] = (),
                 initializer: Callable[[], None] = limit_blas_in_worker) -> cf.ProcessPoolExecutor:
    """``jobs`` worker processes from :func:`context`; a worker that dies fails its
    futures with ``BrokenProcessPool`` (see :func:`worker_died`) instead of hanging."""
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context(preload),
                                  initializer=initializer)


def worker_died(what: str) -> WorkerDied:
    """The error to raise ``from`` a ``BrokenProcessPool``, naming the work in flight."""
    return WorkerDied(f"a worker process died abruptly while {what} (a crash in a native "
                      "library, or killed for memory); run again with one worker to see "
                      "which item fails")
