"""Dynamic batching: windows of concurrent requests go through a model together.

A :class:`Batcher` owns one :class:`jaxmusic.runs.LoadedRun` and one thread. Request
threads :meth:`~Batcher.submit` their windows (``(T_i, F)`` arrays, already the
run's view) and get a future; the thread takes the first waiting submission,
gathers whatever else arrives within ``max_wait_s`` (up to ``max_batch`` windows),
runs one batch, and hands each submission its rows. Batches are padded to a power
of two, so the model compiles once per bucket size, all of them at start
(:meth:`~Batcher.warm_up`); no request ever waits for a compilation.

:class:`BatchedRun` puts a batcher behind the ``LoadedRun`` interface
(``info``, ``task``, ``features``, ``__call__``) so that
:func:`jaxmusic.predict.predict_audio` runs unchanged on top of it: the server's
answer is the command line's.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import queue
import threading
import time

import numpy as np

from jaxmusic.runs import LoadedRun


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two up to ``max_batch`` (and ``max_batch`` itself)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return tuple(sizes + [max_batch])


@dataclasses.dataclass
class _Job:
    windows: list[np.ndarray]
    future: cf.Future


@dataclasses.dataclass
class BatchStats:
    """What the batcher did: model calls, windows and requests per call."""

    calls: int = 0
    windows: int = 0
    requests: int = 0
    max_requests_per_call: int = 0
    max_windows_per_call: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Batcher:
    """One model behind a queue; see the module docstring."""

    def __init__(self, run: LoadedRun, max_batch: int = 16, max_wait_s: float = 0.01):
        self.run = run
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.sizes = bucket_sizes(self.max_batch)
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{run.workdir.name}", daemon=True)
        self._thread.start()

    def warm_up(self) -> None:
        """Compile the model for every bucket size (at start, before serving)."""
        window = np.zeros((self.run.run.max_length, self.run.run.num_features), np.float32)
        for n in self.sizes:
            self.run.outputs([window] * n)

    def submit(self, windows: list[np.ndarray]) -> cf.Future:
        """A future of ``{"output": [n, ...], "latent": [n, ...]}`` for ``windows``."""
        future: cf.Future = cf.Future()
        if not windows:
            future.set_exception(ValueError("no windows to run"))
            return future
        self._queue.put(_Job(list(windows), future))
        return future

    def describe(self) -> dict:
        """The stats, the bucket sizes and how many programs the model's jit holds
        (one per bucket after :meth:`warm_up`; more would mean a request compiled)."""
        cache_size = getattr(self.run._apply, "_cache_size", None)  # jax.jit's compiled-program count
        with self._lock:
            stats = self.stats.as_dict()
        return {**stats, "bucket_sizes": list(self.sizes),
                "compiled_programs": cache_size() if cache_size else None}

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = BatchStats()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    # --- the batching thread ---------------------------------------------------------

    def _loop(self) -> None:
        pending: _Job | None = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is None:
                return
            jobs, count = [job], len(job.windows)
            deadline = time.monotonic() + self.max_wait_s
            while count < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=max(timeout, 0)) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                if count + len(nxt.windows) > self.max_batch:
                    pending = nxt  # starts the next batch
                    break
                jobs.append(nxt)
                count += len(nxt.windows)
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        windows = [w for j in jobs for w in j.windows]
        try:
            rows = {k: [] for k in ("output", "latent")}
            for lo in range(0, len(windows), self.max_batch):  # one long song: several batches
                chunk = windows[lo:lo + self.max_batch]
                size = next(s for s in self.sizes if s >= len(chunk))
                out = self.run.outputs(chunk + [chunk[0]] * (size - len(chunk)))
                for k in rows:
                    rows[k].append(out[k][: len(chunk)])
            result = {k: np.concatenate(v) for k, v in rows.items()}
        except Exception as e:  # the model failed: every waiting request hears why
            for j in jobs:
                j.future.set_exception(e)
            return
        with self._lock:
            s = self.stats
            s.calls += 1
            s.windows += len(windows)
            s.requests += len(jobs)
            s.max_requests_per_call = max(s.max_requests_per_call, len(jobs))
            s.max_windows_per_call = max(s.max_windows_per_call, len(windows))
        start = 0
        for j in jobs:
            n = len(j.windows)
            j.future.set_result({k: v[start:start + n] for k, v in result.items()})
            start += n


class BatchedRun:
    """A :class:`LoadedRun` whose model calls go through a :class:`Batcher`
    (``__call__`` blocks the calling thread until its rows are back)."""

    def __init__(self, batcher: Batcher):
        self.batcher = batcher
        self.loaded = batcher.run
        self.info = self.loaded.info
        self.task = self.loaded.task
        self.workdir = self.loaded.workdir

    def features(self, full: np.ndarray, beat: np.ndarray) -> np.ndarray:
        return self.loaded.features(full, beat)

    def outputs(self, windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.batcher.submit(windows).result()

    def __call__(self, windows: list[np.ndarray]) -> np.ndarray:
        return self.outputs(windows)["output"]
