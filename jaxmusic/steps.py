"""What one optimiser step is: the optimiser, the train state, and the jitted steps.

Module-level functions the loop (``jaxmusic.train``), the evaluator and the
benchmarks all build from, so that what is benchmarked is what trains:

* :func:`make_optimizer`: optax chain (clipping, AdamW/Adam/LAMB/LARS/SGD, schedule,
  frozen-backbone masking, gradient accumulation) and its learning-rate schedule;
* :func:`init_state`: fresh :class:`TrainState` for a run (optionally with a
  transferred backbone: parameters *and* batch statistics);
* :func:`train_step_fn` / :func:`eval_step_fn`: pure step functions;
  :func:`scan_steps` runs K train steps in one call (``train.steps_per_dispatch``);
* :func:`compile_steps`: the jitted, sharded, donated versions over a mesh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state

from jaxmusic import augment, checkpoint, parallel, pretrained, xla
from jaxmusic.runs import Run


AUGMENT_STREAM = 0x61756700   # fold_in tag of the augmentation key (apart from dropout's)


class TrainState(train_state.TrainState):
    batch_stats: Any = None
    rng: jax.Array = struct.field(default=None)


@struct.dataclass
class Variables:
    """Parameters (and batch statistics) without an optimiser: what evaluation needs."""

    params: dict
    batch_stats: dict | None = None


# --- optimiser ------------------------------------------------------------------------------

def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """The schedule over optimiser updates (``steps_per_epoch`` of them per epoch)."""
    t = config.train
    total = max(1, steps_per_epoch * t.epochs)
    if t.schedule in ("constant", "plateau"):   # plateau: constant, scaled by reduce_on_plateau
        lr = optax.constant_schedule(t.learning_rate)
        if t.warmup_steps:
            lr = optax.join_schedules(
                [optax.linear_schedule(0.0, t.learning_rate, t.warmup_steps), lr],
                [t.warmup_steps])
        return lr
    if t.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, t.warmup_steps,
                                                  max(total, t.warmup_steps + 1))
    if t.schedule == "exponential":
        return optax.exponential_decay(t.learning_rate, steps_per_epoch * t.decay_epochs,
                                       t.decay_rate, transition_begin=t.warmup_steps)
    raise ValueError(f"unknown schedule {t.schedule!r} (constant, warmup_cosine, exponential, plateau)")


def uses_plateau(config) -> bool:
    """``train.schedule = "plateau"``: the update takes the loss (``value=``)."""
    return config.train.get("schedule") == "plateau"


def plateau_scale(opt_state) -> jax.Array:
    """The learning-rate factor of the ``reduce_on_plateau`` state inside ``opt_state``."""
    is_plateau = lambda x: isinstance(x, optax.contrib.ReduceLROnPlateauState)  # noqa: E731
    found = [x.scale for x in jax.tree_util.tree_leaves(opt_state, is_leaf=is_plateau) if is_plateau(x)]
    if len(found) != 1:
        raise ValueError(f"expected one reduce_on_plateau state in the optimiser state, found {len(found)}")
    return found[0]


def make_optimizer(config, steps_per_epoch: int, param_labels=None, schedule: optax.Schedule | None = None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(tx, schedule)``. ``steps_per_epoch`` counts optimiser updates; with
    ``train.grad_accum_steps = k`` the state's step counts micro-batches, and the
    update in force at micro-step ``s`` is ``s // k`` (:func:`learning_rate_at`).

    ``train.optimizer = "sgd"`` uses ``train.momentum`` (0 = plain SGD).
    ``train.schedule = "plateau"``: a constant rate (after any warm-up) scaled by
    ``optax.contrib.reduce_on_plateau``: the mean training loss of each epoch
    (``accumulation_size`` = the updates of one epoch; the jitted step cannot see the
    validation score) that has not improved by ``train.plateau_rtol`` for
    ``train.plateau_patience`` epochs multiplies the scale by ``train.plateau_factor``.
    The step passes the loss as ``value`` (:func:`uses_plateau`) and logs the scale
    (``lr_scale``). ``schedule`` replaces the configured schedule (the LR range test).
    """
    t = config.train
    lr = schedule if schedule is not None else learning_rate_schedule(config, steps_per_epoch)
    momentum = float(t.get("momentum", 0.9))
    opt = {
        "adamw": lambda: optax.adamw(lr, weight_decay=t.weight_decay),
        "adam": lambda: optax.adam(lr),
        "lamb": lambda: optax.lamb(lr, weight_decay=t.weight_decay),
        "lars": lambda: optax.lars(lr, weight_decay=t.weight_decay),
        "sgd": lambda: optax.sgd(lr, momentum=momentum or None),
    }
    if t.optimizer not in opt:
        raise ValueError(f"unknown optimizer {t.optimizer!r} (one of {sorted(opt)})")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"train.momentum must be in [0, 1), got {momentum}")
    chain = [optax.clip_by_global_norm(t.clip_norm)] if t.clip_norm else []
    tx = optax.chain(*chain, opt[t.optimizer]())
    if uses_plateau(config) and schedule is None:
        tx = optax.chain(tx, optax.contrib.reduce_on_plateau(
            factor=float(t.plateau_factor), patience=int(t.plateau_patience), rtol=float(t.plateau_rtol),
            accumulation_size=max(1, int(steps_per_epoch))))
    if param_labels is not None:
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, param_labels)
    if t.grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=t.grad_accum_steps)
    return tx, lr


def learning_rate_at(config, schedule: optax.Schedule, micro_step: int) -> float:
    """The learning rate of the update that micro-step ``micro_step`` contributes to."""
    return float(schedule(micro_step // max(1, config.train.grad_accum_steps)))


# --- state -----------------------------------------------------------------------------------

def init_variables(run: Run, seed: int) -> dict:
    """Fresh ``{"params", "batch_stats"?}`` of the run's model."""
    b = 2
    feats = jnp.zeros((b, run.max_length, run.num_features), jnp.float32)
    lengths = jnp.full((b,), run.max_length, jnp.int32)
    rng = jax.random.PRNGKey(seed)
    init_rng, _ = jax.random.split(rng)
    return jax.jit(lambda r: run.model.init({"params": r, "dropout": r}, feats, lengths,
                                            train=False))(init_rng)


def init_state(run: Run, mesh, steps_per_epoch: int, variables: dict | None = None,
               schedule: optax.Schedule | None = None) -> TrainState:
    """A replicated train state. ``steps_per_epoch`` counts optimiser updates; ``schedule``
    replaces the config's learning-rate schedule (the LR range test)."""
    config = run.config
    if variables is None:
        variables = init_variables(run, config.train.seed)
        if config.train.init_from:
            variables = transfer_backbone(variables, config.train.init_from)
    params = variables["params"]
    labels = param_labels(params) if config.train.freeze_backbone else None
    tx, _ = make_optimizer(config, steps_per_epoch, labels, schedule=schedule)
    _, state_rng = jax.random.split(jax.random.PRNGKey(config.train.seed))
    state = TrainState.create(apply_fn=run.model.apply, params=params, tx=tx,
                              batch_stats=variables.get("batch_stats"), rng=state_rng)
    return jax.device_put(state, parallel.replicated(mesh))


def param_labels(params: dict) -> dict:
    """``"frozen"`` for the backbone's top-level parameter tree, ``"train"`` for the rest
    (``train.freeze_backbone``): the optimiser's labels and what the step differentiates."""
    return {k: ("frozen" if k == "backbone" else "train") for k in params}


def pretrained_backbone(name: str) -> dict:
    """The ``{"params", "batch_stats"}`` backbone trees of a :class:`MusicnnBackbone`
    holding pretrained tagger ``name`` (``musicnn:<name>``)."""
    tagger = pretrained.load_variables(name)
    return {c: {"backbone": {"tagger": tagger[c]}} for c in ("params", "batch_stats")}


def transfer_backbone(variables: dict, source_workdir: str | Path) -> dict:
    """``variables`` with the backbone's parameters and batch statistics taken from
    another run's best checkpoint, or from a pretrained tagger (``musicnn:<name>``);
    the head stays fresh."""
    name = pretrained.parse_init(str(source_workdir))
    src = pretrained_backbone(name) if name else checkpoint.load_variables(source_workdir, which="best")[0]
    if "backbone" not in src["params"]:
        raise ValueError(f"{source_workdir}: checkpoint has no backbone parameters")
    out = {k: dict(v) for k, v in variables.items()}
    for collection in ("params", "batch_stats"):
        mine = variables.get(collection, {}).get("backbone")
        theirs = (src.get(collection) or {}).get("backbone")
        if mine is None and theirs is None:
            continue
        if (mine is None) != (theirs is None) or (
                jax.tree_util.tree_map(np.shape, mine) != jax.tree_util.tree_map(np.shape, theirs)):
            raise ValueError(f"{source_workdir}: backbone {collection} differ from this config's "
                             "model (same model.* settings and data.view are needed for transfer)")
        out[collection]["backbone"] = jax.tree_util.tree_map(jnp.asarray, theirs)
    return out


# --- steps -----------------------------------------------------------------------------------

def _apply(model, state, params, batch, train: bool, rng=None):
    variables = {"params": params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    mutable = ["batch_stats"] if (train and state.batch_stats is not None) else False
    out = model.apply(variables, batch["features"], batch["lengths"], train=train,
                      rngs={"dropout": rng} if rng is not None else None, mutable=mutable)
    return out if mutable else (out, {})


def train_step_fn(run: Run, freeze_backbone: bool = False) -> Callable:
    """``train_step(state, batch) -> (state, metrics)``: forward, task loss, backward,
    optimiser update. A frozen backbone keeps its batch statistics, and the step
    differentiates only what trains (:func:`param_labels`): no backward pass through
    the backbone, and ``grad_norm`` is the norm of the trained parameters' gradient
    (the optimiser's frozen part, ``optax.set_to_zero``, gets zeros)."""
    model, task = run.model, run.task
    aug_cfg = run.config.get("augment")
    augmenting = augment.enabled(aug_cfg)
    num_classes = len(run.task.label_names) if run.task.data_kind == "genre" else None
    aug_scale = augment.feature_scale(run.normalization()[1])
    plateau = uses_plateau(run.config)

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(trained, frozen):
            params = {**frozen, **trained}
            b = batch
            if augmenting:  # its own key: dropout draws what it drew without augmentation
                b = augment.apply(b, jax.random.fold_in(rng, AUGMENT_STREAM), aug_cfg,
                                  num_classes=num_classes, scale=aug_scale)
            out, mutated = _apply(model, state, params, b, True, rng)
            loss, metrics = task.loss(params, out["output"], b)
            return loss, (metrics, mutated)

        labels = param_labels(state.params) if freeze_backbone else {k: "train" for k in state.params}
        trained = {k: v for k, v in state.params.items() if labels[k] == "train"}
        frozen = {k: v for k, v in state.params.items() if labels[k] == "frozen"}
        (loss, (metrics, mutated)), trained_grads = jax.value_and_grad(loss_fn, has_aux=True)(trained, frozen)
        grads = {**jax.tree_util.tree_map(jnp.zeros_like, frozen), **trained_grads}
        if plateau:
            updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
            new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                                      opt_state=opt_state)
            metrics = dict(metrics, lr_scale=plateau_scale(opt_state))
        else:
            new_state = state.apply_gradients(grads=grads)
        if mutated and not freeze_backbone:
            new_state = new_state.replace(batch_stats=mutated["batch_stats"])
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(trained_grads),
                       param_norm=optax.global_norm(new_state.params))
        return new_state, metrics

    return train_step


def scan_steps(train_step: Callable) -> Callable:
    """``steps(state, batches) -> (state, metrics)`` over K stacked batches (leading
    axis K) in one call, with ``lax.scan``: the same result as K calls of
    ``train_step``; metrics come back stacked ``[K]``."""

    def steps(state, batches):
        return jax.lax.scan(train_step, state, batches)

    return steps


def eval_step_fn(run: Run) -> Callable:
    """``eval_step(variables, batch) -> {"output", "latent", "loss"}`` (inference mode).
    ``variables`` is a :class:`TrainState` or :class:`Variables`."""
    model, task = run.model, run.task

    def eval_step(state, batch):
        out, _ = _apply(model, state, state.params, batch, False)
        loss, _ = task.loss(state.params, out["output"], batch)
        return {"output": out["output"].astype(jnp.float32),
                "latent": out["latent"].astype(jnp.float32), "loss": loss}

    return eval_step


def resident_steps(train_step: Callable, mesh, steps_per_dispatch: int = 1) -> Callable:
    """``step(state, split, rows) -> (state, metrics)`` for a training split resident on
    the devices (:func:`jaxmusic.parallel.put_resident`): each step gathers its batch,
    ``split[rows]``, inside the call. With ``steps_per_dispatch = K > 1``, ``rows`` is
    ``[K, B]`` and the K steps run in one ``lax.scan``."""

    def one(state, split, rows):
        return train_step(state, parallel.gather_resident(split, rows, mesh))

    if steps_per_dispatch == 1:
        return one
    return lambda state, split, rows: jax.lax.scan(lambda s, r: one(s, split, r), state, rows)


def compile_steps(run: Run, mesh, *, freeze_backbone: bool = False, steps_per_dispatch: int = 1,
                  compiler_options: dict | None = None, resident: bool = False):
    """``(train_step, eval_step)`` jitted over ``mesh``: the batch split along ``data``,
    state replicated and donated. With ``steps_per_dispatch = K > 1`` the train step
    takes K stacked batches ``[K, B, ...]`` (see :func:`scan_steps`). With ``resident``
    the train step is ``(state, split, rows)`` over a split on the devices
    (:func:`resident_steps`). ``compiler_options``: XLA options of both steps (default:
    :func:`jaxmusic.xla.step_compiler_options` of the backend; ``{}`` for XLA's own
    defaults)."""
    if compiler_options is None:
        compiler_options = xla.step_compiler_options(jax.default_backend())
    repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    train = train_step_fn(run, freeze_backbone)
    batch_sharding = data if steps_per_dispatch == 1 else parallel.stacked_batch_sharding(mesh)
    if resident:
        train = resident_steps(train, mesh, steps_per_dispatch)
        in_shardings = (repl, data, batch_sharding)
    else:
        if steps_per_dispatch > 1:
            train = scan_steps(train)
        in_shardings = (repl, batch_sharding)
    train_jit = jax.jit(train, in_shardings=in_shardings, out_shardings=(repl, repl),
                        donate_argnums=0, compiler_options=compiler_options)
    eval_jit = jax.jit(eval_step_fn(run), in_shardings=(repl, data),
                       out_shardings={"output": data, "latent": data, "loss": repl},
                       compiler_options=compiler_options)
    return train_jit, eval_jit


def variables_on(mesh, host_variables: dict) -> Variables:
    """Checkpoint variables (numpy trees) as replicated :class:`Variables` on ``mesh``."""
    return jax.device_put(Variables(host_variables["params"], host_variables.get("batch_stats")),
                          parallel.replicated(mesh))
