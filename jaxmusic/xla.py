"""XLA compiler options of the library's jitted train and eval steps, per backend.

One decision, one place: ``jax.jit(step, compiler_options=step_compiler_options(backend))``.
The options are per function (not the process-wide ``XLA_FLAGS``), so a benchmark can
compile the same step with and without them in one process. Each entry is kept for a
measured reason (benchmarks/NOTES.md, entry 11):

* CPU: ``xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED``: the default
  scheduler runs recomputation early and so cancels remat; this one keeps the
  ``jax.checkpoint`` savings (ast_tiny full-resolution B=8: see NOTES).
* GPU/TPU: none (XLA's defaults).
"""

from __future__ import annotations

CPU_STEP_OPTIONS: dict[str, object] = {
    "xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
}


def step_compiler_options(backend: str) -> dict[str, object]:
    """``compiler_options`` for ``jax.jit`` of a train/eval step on ``backend`` (``jax.default_backend()``)."""
    if backend == "cpu":
        return dict(CPU_STEP_OPTIONS)
    return {}
