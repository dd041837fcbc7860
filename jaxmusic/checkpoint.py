"""Orbax checkpoints of a run: the latest N and the best by the validation metric.

Each checkpoint step holds the train state (``state``: step, params, batch
stats, optimiser state, RNG) and ``meta`` (epoch, best value and step, early
stopping counter, per-epoch history), saved atomically. Saves are asynchronous;
:meth:`Checkpointer.close` waits for them.

"Best" has one tie rule, used by the training loop (:func:`better`) and by the
checkpoint manager's preservation policy alike: a later score equal to the best
so far is no improvement, so among tied scores the earliest step is the best.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


WHICH = ("best", "latest")


class CheckpointError(FileNotFoundError):
    """A checkpoint that was asked for is not there (a one-line message)."""


def better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` improves on ``best`` (strictly: ties keep the earlier)."""
    if mode not in ("max", "min"):
        raise ValueError(f"select mode must be 'max' or 'min', got {mode!r}")
    return best is None or (value > best if mode == "max" else value < best)


def _rank(metrics: dict, mode: str) -> tuple[float, int]:
    """Sort key of a saved checkpoint: higher is better; ties go to the earlier step."""
    value = metrics["value"] if mode == "max" else -metrics["value"]
    return value, -metrics["step"]


class Checkpointer:
    def __init__(self, workdir: str | Path, keep: int = 2, mode: str = "max"):
        directory = Path(workdir).resolve() / "checkpoints"
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(n=max(1, keep)),
            # BestN keeps the top of an ascending sort of _rank: the best value, earliest on ties.
            # Checkpoints saved inside an epoch (train.checkpoint_every) carry no metric: only
            # LatestN keeps them.
            policies.BestN(get_metric_fn=lambda m: _rank(m, mode), n=1,
                           keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True)
        self.manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state, meta: dict, metric: float | None) -> None:
        """Save at the state's step; ``metric`` None: a checkpoint inside an epoch, never
        the best."""
        step = int(state.step)
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics=None if metric is None else {"value": float(metric), "step": step})

    def restore(self, abstract_state, step: int | None = None):
        step = self.manager.latest_step() if step is None else step
        target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def load_variables(workdir: str | Path, which: str = "best", sharding=None) -> tuple[dict, dict]:
    """``({"params": ..., "batch_stats": ...}, meta)`` of a run's best or latest
    checkpoint, as numpy trees (no model or optimiser needed).

    Works whatever the topology the run was saved with: arrays are restored onto
    ``sharding`` (default: replicated over this process's first device). A best
    checkpoint that is no longer on disk is an error, never the latest instead."""
    if which not in WHICH:
        raise ValueError(f"which checkpoint: one of {WHICH}, got {which!r}")
    directory = Path(workdir).resolve() / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(f"{workdir}: no checkpoints/ (train this run first)")
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True),
                               item_handlers=handlers) as manager:
        latest = manager.latest_step()
        if latest is None:
            raise FileNotFoundError(f"{directory}: no complete checkpoint")
        meta = manager.restore(latest, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
        step = latest
        if which == "best":
            step = meta.get("best_step")
            if step is None:
                raise CheckpointError(f"{directory}: the checkpoints record no best step")
            if step not in manager.all_steps():
                raise CheckpointError(
                    f"{directory}: the best checkpoint (step {step}, epoch {meta.get('best_epoch')}) "
                    f"is not on disk (steps kept: {sorted(manager.all_steps())})")
        if sharding is None:
            sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        tree = manager.item_metadata(step)["state"]
        target = jax.tree_util.tree_map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree,
            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))
    state = restored["state"]
    variables = {"params": state["params"]}
    if state.get("batch_stats") is not None:
        variables["batch_stats"] = state["batch_stats"]
    return jax.tree_util.tree_map(np.asarray, variables), dict(meta, restored_step=step)


def load_params(workdir: str | Path, which: str = "best") -> dict:
    return load_variables(workdir, which)[0]["params"]
