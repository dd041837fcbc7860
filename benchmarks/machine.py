"""What the benchmark runs on, and the probes it measures with.

* :func:`describe`: CPU model, cores, accelerators, library versions, load.
* :func:`matmul_peak`: the machine's float32 matmul rate through XLA (a jitted
  ``jnp.dot`` of large square matrices), the denominator of MFU.
* :class:`MemoryProbe`: the peak memory of one step. On CPU, the peak resident
  set size (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the RSS
  before the step, after returning freed heap pages to the OS (``malloc_trim``)
  so that a step cannot hide in memory its predecessor left cached. On GPU, the
  frameworks' own device statistics.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import shlex
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

from jaxmusic.data.pipeline import meminfo

_PROC = Path("/proc/self")


# --- description -------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))
    except OSError:
        pass
    return []


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict:
    import jax

    devices = jax.devices()
    info = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": cores(),
        "memory_gb": round(meminfo("MemTotal") / 2**30, 1) if meminfo("MemTotal") else None,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in devices],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {n: _version(n) for n in ("jax", "jaxlib", "flax", "optax", "numpy", "torch",
                                              "tensorflow-cpu", "tensorflow")},
        "env": {k: os.environ[k] for k in ("XLA_FLAGS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                           "JAX_PLATFORMS") if k in os.environ},
        "load_average_start": load_average(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["torch_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is the bench extra
        pass
    return {k: v for k, v in info.items() if v not in (None, [], {})}


# --- matmul peak -------------------------------------------------------------------------------

def matmul_peak(n: int = 4096, repeats: int = 5, dtype: str = "float32") -> dict:
    """FLOP/s of a jitted ``jnp.dot`` of two ``n x n`` matrices: best and median of ``repeats``."""
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=dtype))
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    return {"n": n, "dtype": dtype, "peak_flops": flops / min(times),
            "median_flops": flops / statistics.median(times), "repeats": repeats}


# --- memory ------------------------------------------------------------------------------------

def available_bytes(framework: str = "jax") -> int | None:
    """Free memory where ``framework`` ("jax" or "torch") computes; None if unknown.

    On CPU the OS's ``MemAvailable``; on an accelerator the device's free memory.
    """
    if framework == "torch":
        try:
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.mem_get_info()[0])
        except ImportError:  # pragma: no cover
            pass
    else:
        import jax

        if jax.default_backend() != "cpu":
            stats = jax.devices()[0].memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
            return None
    return meminfo("MemAvailable")


def _status(field: str) -> int | None:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_hwm() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """``with MemoryProbe(kind) as probe: step()`` then ``probe.peak_mb``.

    ``kind``: ``"cpu"`` (RSS delta of this process), ``"torch-cuda"`` (torch's
    ``max_memory_allocated`` after a reset) or ``"jax-device"`` (the device's
    ``peak_bytes_in_use`` minus its ``bytes_in_use`` before; jax has no reset, so
    a peak an earlier step reached hides a smaller one: then None).
    """

    def __init__(self, kind: str = "cpu"):
        self.kind = kind
        self.peak_mb: float | None = None
        self.method = kind

    def __enter__(self) -> "MemoryProbe":
        if self.kind == "cpu":
            _trim_heap()
            self.reset = _reset_hwm()
            self.before = _status("VmRSS")
        elif self.kind == "torch-cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            self.before = stats.get("bytes_in_use")
            self.peak_before = stats.get("peak_bytes_in_use")
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            return
        if self.kind == "cpu":
            peak = _status("VmHWM")
            if self.reset and peak is not None and self.before is not None:
                self.peak_mb = max(0.0, (peak - self.before) / 2**20)
            self.method = "rss_delta"
        elif self.kind == "torch-cuda":
            import torch

            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self.before) / 2**20
            self.method = "torch.cuda.max_memory_allocated"
        else:
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            if None not in (peak, self.before) and peak > (self.peak_before or 0):
                self.peak_mb = (peak - self.before) / 2**20
            self.method = "device.memory_stats"


def command_line() -> str:
    """The command that started this process, as typed (module form when run with -m)."""
    argv = [shlex.quote(a) for a in sys.argv]
    if argv and argv[0].endswith(("run.py", "__main__.py")) and "benchmarks" in argv[0]:
        argv[0] = "python -m benchmarks.run"
    return " ".join(argv)
