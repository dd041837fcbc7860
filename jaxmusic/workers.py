"""Worker processes and BLAS threads, decided in one place.

Both the sample generator and the audio feature extractor fan clips out over
processes. Workers are never a ``fork`` of the calling process (it may already
hold JAX, TensorFlow or BLAS threads, and forking those can deadlock): they come
from a ``forkserver`` that has imported the modules the work needs once, or from
``spawn`` where there is no forkserver. Each worker, and the caller when it works
in-process, runs BLAS on one thread: parallelism comes from the processes.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from typing import Sequence


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


def context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """A ``forkserver`` context whose server imports ``preload`` once (``spawn``
    where the platform has no forkserver)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # pragma: no cover - not on this platform
        return multiprocessing.get_context("spawn")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ctx
