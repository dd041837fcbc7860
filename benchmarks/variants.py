"""What is measured: a workload (model x input x batch) and the variants that run it.

A *variant* is one framework + implementation of the same model on the same
batch: ``jax/jit`` (jaxmusic's Flax model under ``jax.jit``; ``jax/jit_bf16`` the
same with bfloat16 compute), ``torch/eager`` (padded input; for the LSTM
oneDNN's fused RNN), ``torch/packed`` (LSTM only: the course helper's
``pack_padded_sequence``) and ``torch/compile`` (``torch.compile`` of the eager
model). Each variant offers

* ``prepare()``: build, compile, warm up; returns the compile times;
* ``train_step()``: one full optimiser step (forward, cross-entropy, backward,
  AdamW update), blocking until it is done;
* ``infer_step()``: one forward pass in inference mode, blocking.

Both frameworks use the same optimiser settings (AdamW, lr 1e-4, weight decay
1e-4), 10 classes, float32 parameters and the same inputs (zero padding after
each clip's length).
"""

from __future__ import annotations

import ast
import dataclasses
import time
from typing import Any

import numpy as np

NUM_CLASSES = 10
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-4

# Model presets: the lab's settings (configs/*.py, REFERENCE.md section 3).
MODELS: dict[str, dict] = {
    "lstm": dict(name="lstm", hidden_size=64, num_layers=2, bidirectional=True, dropout=0.4, summary="last"),
    "cnn": dict(name="cnn", channels=(16, 32, 64, 128), kernel_size=3),
    "ast_tiny": dict(name="ast", size="tiny"),
    "ast_small": dict(name="ast", size="small"),
}
# --quick: the same structures, tiny widths (the smoke test).
QUICK_MODELS: dict[str, dict] = {
    "lstm": dict(name="lstm", hidden_size=8, num_layers=2, bidirectional=True, dropout=0.4, summary="last"),
    "cnn": dict(name="cnn", channels=(4, 4, 8, 8), kernel_size=3),
    "ast_tiny": dict(name="ast", size="tiny", embed_dim=16, depth=2, num_heads=2),
    "ast_small": dict(name="ast", size="small", embed_dim=24, depth=2, num_heads=3),
}


@dataclasses.dataclass(frozen=True)
class Input:
    """A spectrogram shape: ``steps`` frames (T) x ``features`` bins (F), clip lengths in ``lengths``."""

    name: str
    steps: int
    features: int
    lengths: tuple[int, int]  # clip lengths drawn uniformly in [lo, hi]


# Full resolution: 30 s at hop 512 is 1291-1293 frames. Beat-synchronised: 50-129 beats.
INPUTS: dict[str, Input] = {
    "full_mel": Input("full_mel", 1293, 128, (1291, 1293)),
    "full_fused": Input("full_fused", 1293, 140, (1291, 1293)),
    "beat_mel": Input("beat_mel", 129, 128, (50, 129)),
    "beat_fused": Input("beat_fused", 129, 140, (50, 129)),
}
QUICK_INPUTS: dict[str, Input] = {
    "full_mel": Input("full_mel", 64, 128, (60, 64)),
    "full_fused": Input("full_fused", 64, 140, (60, 64)),
    "beat_mel": Input("beat_mel", 32, 128, (20, 32)),
    "beat_fused": Input("beat_fused", 32, 140, (20, 32)),
}

TORCH_VARIANTS = {"lstm": ("eager", "packed", "compile"), "cnn": ("eager", "compile"),
                  "ast": ("eager", "compile")}
JAX_VARIANTS = ("jit", "jit_bf16", "jit_dp", "jit_bf16_dp")


@dataclasses.dataclass(frozen=True)
class Workload:
    model: str            # key of MODELS
    model_cfg: dict
    input: Input
    batch_size: int
    seed: int = 0

    @property
    def family(self) -> str:
        return self.model_cfg["name"]

    def batch(self) -> dict[str, np.ndarray]:
        """Features ``[B, T, F]`` (zero after each length), lengths ``[B]``, labels ``[B]``."""
        rng = np.random.default_rng(self.seed)
        b, t, f = self.batch_size, self.input.steps, self.input.features
        lo, hi = self.input.lengths
        lengths = rng.integers(lo, hi + 1, b).astype(np.int32)
        lengths[0] = hi  # the batch is as long as its longest clip
        features = rng.normal(-40.0, 20.0, (b, t, f)).astype(np.float32) / 20.0
        features[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
        labels = rng.integers(0, NUM_CLASSES, b).astype(np.int32)
        return {"features": features, "lengths": lengths, "labels": labels}


def variant_names(family: str, jax_variants=("jit",), torch_variants=None) -> list[tuple[str, str]]:
    """``(framework, variant)`` pairs measured for a model family, JAX first."""
    pairs = [("jax", v) for v in jax_variants]
    allowed = TORCH_VARIANTS[family]
    for v in allowed if torch_variants is None else [v for v in torch_variants if v in allowed]:
        pairs.append(("torch", v))
    return pairs


# --- FLOPs -------------------------------------------------------------------------------------

def lstm_model_flops(cfg: dict, batch: int, steps: int, features: int, num_classes: int = NUM_CLASSES,
                     train: bool = True) -> float:
    """Matmul FLOPs of the (bi)LSTM + head, forward x3 for a training step.

    XLA's cost analysis counts a ``while`` loop's body once, whatever its trip
    count, so it cannot count a recurrence; this is the count it should give
    (the model FLOPs of MFU: recomputation in the backward pass is not counted).
    """
    hidden, layers = cfg["hidden_size"], cfg["num_layers"]
    directions = 2 if cfg.get("bidirectional") else 1
    total = 0.0
    size_in = features
    for _ in range(layers):
        total += directions * 2.0 * batch * steps * (size_in + hidden) * 4 * hidden
        size_in = directions * hidden
    total += 2.0 * batch * directions * hidden * num_classes
    return 3.0 * total if train else total


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    return cost or {}


def _has_loops(compiled) -> bool:
    try:
        return " while(" in compiled.as_text()
    except Exception:  # pragma: no cover - text unavailable on some backends
        return False


# --- JAX -----------------------------------------------------------------------------------------

def jax_model(model_cfg: dict, input_fdim: int, input_tdim: int, dtype: str | None = None,
              num_classes: int = NUM_CLASSES):
    """jaxmusic's classifier: ``Model(build_backbone(model_cfg), ClassifierHead)``."""
    from jaxmusic.models import ClassifierHead, Model, build_backbone

    cfg = dict(model_cfg)
    if dtype is not None:
        cfg["dtype"] = dtype
    return Model(build_backbone(cfg, input_fdim, input_tdim), ClassifierHead(num_classes))


def jax_steps(model, tx, has_stats: bool, seed: int):
    """Pure ``train_step(state, x, lengths, labels) -> (state, loss)`` and
    ``infer_step(params, batch_stats, x, lengths) -> logits`` (to be jitted).

    ``state = {"params", "opt", "step", "batch_stats"}``; dropout keys are derived
    inside with ``fold_in(key, step)``.
    """
    import jax
    import optax

    rng = jax.random.PRNGKey(seed)

    def variables(params, batch_stats):
        return {"params": params, **({"batch_stats": batch_stats} if has_stats else {})}

    def train_step(state, x, lengths, labels):
        def loss_fn(p):
            out = model.apply(variables(p, state["batch_stats"]), x, lengths, train=True,
                              mutable=["batch_stats"] if has_stats else False,
                              rngs={"dropout": jax.random.fold_in(rng, state["step"])})
            out, mutated = out if has_stats else (out, {})
            loss = optax.softmax_cross_entropy_with_integer_labels(out["output"], labels).mean()
            return loss, mutated

        (loss, mutated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt": opt,
               "step": state["step"] + 1, "batch_stats": mutated.get("batch_stats", state["batch_stats"])}
        return new, loss

    def infer_step(params, batch_stats, x, lengths):
        return model.apply(variables(params, batch_stats), x, lengths, train=False)["output"]

    return train_step, infer_step


def jax_state(model, tx, x, lengths, seed: int):
    """Initial ``state`` for :func:`jax_steps` (init on two examples, jitted)."""
    import jax
    import jax.numpy as jnp

    # RBG keys for init only (XLA compiles threefry initialisers slowly on CPU); the
    # train step's dropout keys are threefry, as in jaxmusic.train.
    variables = jax.jit(lambda r: model.init({"params": r, "dropout": r}, x[:2], lengths[:2], train=False))(
        jax.random.key(seed, impl="rbg"))
    params = variables["params"]
    state = {"params": params, "opt": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "batch_stats": variables.get("batch_stats", {})}
    return state, "batch_stats" in variables


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """How a jitted step is placed: one device (the default), or jaxmusic's own data
    parallelism over every device (``jaxmusic.parallel``: the batch split on the mesh,
    state replicated; on a CPU host run with ``--host-devices <cores>``)."""

    mesh: Any = None

    @classmethod
    def over_all_devices(cls, batch_size: int) -> "DataParallel":
        from jaxmusic import parallel

        mesh = parallel.make_mesh()
        if batch_size % mesh.size:
            raise ValueError(f"batch {batch_size} does not split over {mesh.size} devices")
        return cls(mesh)

    @property
    def devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def _shardings(self):
        from jaxmusic import parallel

        return parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh)

    def put_state(self, state):
        import jax

        return state if self.mesh is None else jax.device_put(state, self._shardings()[0])

    def put_batch(self, arrays):
        import jax

        return arrays if self.mesh is None else jax.device_put(arrays, self._shardings()[1])

    def train_jit(self) -> dict:
        """``jax.jit`` keywords of ``train_step(state, x, lengths, labels) -> (state, loss)``."""
        if self.mesh is None:
            return {"donate_argnums": 0}
        rep, dat = self._shardings()
        return {"donate_argnums": 0, "in_shardings": (rep, dat, dat, dat), "out_shardings": (rep, rep)}

    def infer_jit(self) -> dict:
        """``jax.jit`` keywords of ``infer_step(params, batch_stats, x, lengths) -> logits``."""
        if self.mesh is None:
            return {}
        rep, dat = self._shardings()
        return {"in_shardings": (rep, rep, dat, dat), "out_shardings": dat}


class JaxVariant:
    """jaxmusic's Flax model (``Model(build_backbone(...), ClassifierHead)``) under ``jax.jit``."""

    framework = "jax"

    def __init__(self, workload: Workload, variant: str = "jit"):
        import jax

        self.workload, self.variant = workload, variant
        # "jit", "jit_bf16", "jit_dp", "jit_bf16_dp", optionally with backbone keywords:
        # "jit[unroll=4,chunk_size=128]".
        base, _, extra = variant.partition("[")
        if base not in JAX_VARIANTS:
            raise ValueError(f"unknown JAX variant {base!r} (one of {', '.join(JAX_VARIANTS)})")
        self.bf16 = base.startswith("jit_bf16")
        self.data_parallel = base.endswith("_dp")
        self.model_args = {}
        for item in filter(None, extra.rstrip("]").split(",")):
            key, _, value = item.partition("=")
            try:
                self.model_args[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                self.model_args[key.strip()] = value.strip()
        self.threads = None
        self.memory_kind = "cpu" if jax.default_backend() == "cpu" else "jax-device"
        self.info: dict[str, Any] = {}

    def prepare(self) -> dict:
        import jax
        import jax.numpy as jnp
        import optax

        w = self.workload
        model = jax_model({**w.model_cfg, **self.model_args}, w.input.features, w.input.steps,
                          "bfloat16" if self.bf16 else None)
        batch = w.batch()
        self.x, self.lengths, self.labels = (jnp.asarray(batch["features"]), jnp.asarray(batch["lengths"]),
                                             jnp.asarray(batch["labels"]))
        tx = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        self.state, has_stats = jax_state(model, tx, self.x, self.lengths, w.seed)
        train_step, infer_step = jax_steps(model, tx, has_stats, w.seed + 1)
        dp = DataParallel.over_all_devices(w.batch_size) if self.data_parallel else DataParallel()
        devices = dp.devices
        self.state = dp.put_state(self.state)
        self.x, self.lengths, self.labels = dp.put_batch((self.x, self.lengths, self.labels))
        args = (self.x, self.lengths, self.labels)
        t0 = time.perf_counter()
        self._train = jax.jit(train_step, **dp.train_jit()).lower(self.state, *args).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._infer = jax.jit(infer_step, **dp.infer_jit()).lower(self.state["params"], self.state["batch_stats"],
                                                             self.x, self.lengths).compile()
        infer_compile_s = time.perf_counter() - t0

        out = {"compile_s": compile_s, "infer_compile_s": infer_compile_s, "devices": devices}
        for kind, compiled in (("train", self._train), ("infer", self._infer)):
            # XLA counts one device's share of a partitioned program
            out[f"flops_{kind}_xla"] = devices * float(_cost(compiled).get("flops", 0.0)) or None
            loops = _has_loops(compiled)
            if w.family == "lstm":
                out[f"flops_{kind}"] = lstm_model_flops(w.model_cfg, w.batch_size, w.input.steps,
                                                        w.input.features, train=kind == "train")
                out["flops_source"] = "analytic (XLA counts a while loop body once)"
            else:
                out[f"flops_{kind}"] = out[f"flops_{kind}_xla"]
                out["flops_source"] = "xla cost_analysis" + (" (has loops: undercounted)" if loops else "")
            try:
                mem = compiled.memory_analysis()
                out[f"xla_{kind}_bytes"] = devices * int(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                               + mem.output_size_in_bytes - mem.alias_size_in_bytes)
            except Exception:  # pragma: no cover - not available on every backend
                pass
        self.info.update(out)
        return out

    def estimate_bytes(self) -> int | None:
        return self.info.get("xla_train_bytes")

    def train_step(self) -> None:
        self.state, loss = self._train(self.state, self.x, self.lengths, self.labels)
        loss.block_until_ready()

    def infer_step(self) -> None:
        self._infer(self.state["params"], self.state["batch_stats"], self.x, self.lengths).block_until_ready()

    def close(self) -> None:
        self.state = self._train = self._infer = None


# --- PyTorch -------------------------------------------------------------------------------------

def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_torch_model(workload: Workload, variant: str):
    from benchmarks import torch_models as tm

    cfg = {k: v for k, v in workload.model_cfg.items() if k != "name"}
    f, t = workload.input.features, workload.input.steps
    family = workload.family
    if family == "lstm":
        cfg.pop("summary", None)
        backbone = tm.LSTMBackbone(f, packed=variant == "packed", **cfg)
    elif family == "cnn":
        backbone = tm.CNNBackbone(**cfg)
    elif family == "ast":
        from jaxmusic.models import AST_SIZES

        embed_dim, depth, heads = AST_SIZES[cfg.pop("size", "tiny")]
        args = dict(embed_dim=embed_dim, depth=depth, num_heads=heads)
        args.update(cfg)
        backbone = tm.ASTBackbone(f, t, **args)
    else:
        raise ValueError(f"unknown model family {family!r}")
    return tm.Classifier(backbone, NUM_CLASSES)


class TorchVariant:
    """The PyTorch baseline: ``eager``, ``packed`` (LSTM) or ``compile``.

    ``threads``: intra-op threads for this variant (None: keep torch's setting).
    On a CPU shared with other work, one thread can beat all cores by a large
    factor (every parallel region waits for its slowest thread); the runner can
    pick the faster per variant and records the choice.
    """

    framework = "torch"

    def __init__(self, workload: Workload, variant: str, threads: int | None = None):
        self.workload, self.variant, self.threads = workload, variant, threads
        self.device = torch_device()
        self.memory_kind = "torch-cuda" if self.device.type == "cuda" else "cpu"
        self.info: dict[str, Any] = {}

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _threads(self) -> None:
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def prepare(self) -> dict:
        import torch
        import torch.nn.functional as F

        self._threads()
        w = self.workload
        torch.manual_seed(w.seed)
        self.model = build_torch_model(w, self.variant).to(self.device)
        batch = w.batch()
        self.x = torch.from_numpy(batch["features"]).to(self.device)
        self.lengths = torch.from_numpy(batch["lengths"]).long().to(self.device)
        self.labels = torch.from_numpy(batch["labels"]).long().to(self.device)
        try:
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                                         fused=True)
            self.info["optimizer"] = "AdamW(fused=True)"
        except (RuntimeError, TypeError):
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
            self.info["optimizer"] = "AdamW"
        self.fn = self.model
        if self.variant == "compile":
            torch._dynamo.reset()
            self.fn = torch.compile(self.model, dynamic=False)

        def train_step():
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.fn(self.x, self.lengths), self.labels)
            loss.backward()
            self.opt.step()
            return loss

        self._train = train_step
        # First calls: torch.compile compiles here; oneDNN creates its primitives.
        t0 = time.perf_counter()
        self.train_step()
        first_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.infer_step()
        first_infer = time.perf_counter() - t0
        # Eager PyTorch compiles nothing: its compile time is None (not applicable).
        out = {"compile_s": first_train if self.variant == "compile" else None,
               "infer_compile_s": first_infer if self.variant == "compile" else None,
               "first_step_s": first_train, "first_infer_s": first_infer}
        self.info.update(out)
        return out

    def train_step(self) -> None:
        self._threads()
        self.model.train()
        self._train()
        self._sync()

    def infer_step(self) -> None:
        import torch

        self._threads()
        self.model.eval()
        with torch.inference_mode():
            self.fn(self.x, self.lengths)
        self._sync()
        self.model.train()

    def estimate_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        import torch

        self.model = self.fn = self.opt = self._train = None
        if self.variant == "compile":
            torch._dynamo.reset()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def make_variant(workload: Workload, framework: str, variant: str, threads: int | None = None):
    if framework == "jax":
        return JaxVariant(workload, variant)
    return TorchVariant(workload, variant, threads)
