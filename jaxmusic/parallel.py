"""Devices, processes and shardings: the one place that knows about them.

Data parallelism over a 1-D mesh of every device of every process (axis
``data``): batches are split along it, parameters and optimiser state are
replicated. Each process feeds its own slice of the global batch from its own
shards; :func:`to_global` turns that process-local numpy into a global
``jax.Array``. The same code runs on one CPU, N simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``), a multi-GPU host or a
multi-host cluster (after :func:`init_distributed`).
"""

from __future__ import annotations

import os
import queue
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, timeout_s: int = 120,
                     heartbeat_timeout_s: int | None = None) -> None:
    """Join JAX's multi-controller runtime.

    Arguments come from flags or from ``JAXMUSIC_COORDINATOR``,
    ``JAXMUSIC_NUM_PROCESSES`` and ``JAXMUSIC_PROCESS_ID``; with none of them,
    ``jax.distributed.initialize()`` auto-detects SLURM, Open MPI and TPU pods.
    On CPU the collectives go over gloo. A process that dies is noticed by the
    others within ``heartbeat_timeout_s`` (``JAXMUSIC_HEARTBEAT_TIMEOUT``, default
    60 s), and they fail instead of hanging.
    """
    if heartbeat_timeout_s is None:
        heartbeat_timeout_s = int(os.environ.get("JAXMUSIC_HEARTBEAT_TIMEOUT", "60"))
    coordinator = coordinator or os.environ.get("JAXMUSIC_COORDINATOR")
    if num_processes is None and "JAXMUSIC_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAXMUSIC_NUM_PROCESSES"])
    if process_id is None and "JAXMUSIC_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAXMUSIC_PROCESS_ID"])
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {"initialization_timeout": timeout_s,
              "heartbeat_timeout_seconds": heartbeat_timeout_s}
    if coordinator is not None:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """K batches stacked on a leading axis ``[K, B, ...]``: each split along ``data``."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def local_batch_size(global_batch: int) -> int:
    """This process's share of a global batch; checks it splits over devices."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if global_batch % n_dev:
        raise ValueError(f"batch size {global_batch} does not split over {n_dev} devices")
    return global_batch // n_proc


def device_free_memory() -> int | None:
    """Free bytes on this process's first device (None where the backend does not say,
    as on a CPU, whose arrays live in host memory)."""
    stats = jax.local_devices()[0].memory_stats()
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def to_global(batch: dict, mesh: Mesh, stacked: bool = False) -> dict:
    """Process-local numpy batch -> global arrays sharded on the data axis
    (``stacked``: ``[K, B, ...]`` batches, split along their second axis)."""
    sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v)
            for k, v in batch.items() if v.dtype != object}


def gather(x: jax.Array) -> np.ndarray:
    """A global array as numpy on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def is_main_process() -> bool:
    return jax.process_index() == 0


def gather_host(x: np.ndarray) -> np.ndarray:
    """Concatenate a process-local numpy array over processes (process order)."""
    if jax.process_count() == 1:
        return x
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def gather_host_strings(ids: np.ndarray, width: int = 128) -> np.ndarray:
    """Like :func:`gather_host` for an array of bytes (ids), via fixed-width uint8."""
    if jax.process_count() == 1:
        return ids
    buf = np.zeros((len(ids), width), np.uint8)
    for i, s in enumerate(ids):
        b = bytes(s)[:width]
        buf[i, : len(b)] = np.frombuffer(b, np.uint8)
    allbuf = gather_host(buf)
    return np.asarray([bytes(row).rstrip(b"\0") for row in allbuf], dtype=object)


# --- input on the devices -----------------------------------------------------------------------

def put_resident(arrays: dict, mesh: Mesh, rows: int) -> dict:
    """A process's decoded split (numpy ``[n, ...]`` arrays) resident on the devices: every
    local device holds the whole process-local split, padded to ``rows`` (the most any
    process holds), as one block of a global ``[devices * rows, ...]`` array sharded on
    ``data``. :func:`gather_resident` then gathers each device's part of a batch from its
    own block, without communication."""
    sharding = batch_sharding(mesh)
    out = {}
    for k, v in arrays.items():
        if v.dtype == object:
            continue
        block = np.zeros((rows,) + v.shape[1:], v.dtype)
        block[: len(v)] = v
        shape = (len(mesh.devices.flat) * rows,) + v.shape[1:]
        out[k] = jax.make_array_from_single_device_arrays(
            shape, sharding, [jax.device_put(block, d) for d in mesh.local_devices])
    return out


def gather_resident(resident: dict, rows: jax.Array, mesh: Mesh) -> dict:
    """Inside a jitted step: the batch whose rows are ``rows`` (``[B]`` int32 sharded on
    ``data``, each device's part indexing its own process's split) of a split placed by
    :func:`put_resident`, sharded on ``data`` like a batch from the host."""
    spec = P(DATA_AXIS)

    def local(block: dict, idx):
        return {k: v[idx] for k, v in block.items()}

    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec)(resident, rows)


def prefetch_to_devices(batches, mesh: Mesh, size: int = 2):
    """``(n, global batch, stacked)`` for each ``(n, numpy batch, stacked)`` of ``batches``,
    with up to ``size`` batches gathered and transferred ahead by a background thread."""
    q: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    failure: list[BaseException] = []
    stop = threading.Event()

    def work():
        try:
            for n, batch, stacked in batches:
                if stop.is_set():
                    return
                q.put((n, to_global(batch, mesh, stacked=stacked), stacked))
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)
        finally:
            q.put(done)

    thread = threading.Thread(target=work, daemon=True, name="jaxmusic-prefetch")
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():   # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
