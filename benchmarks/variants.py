"""What is measured: a workload (model x input x batch) and the variants that run it.

A *variant* is one framework + implementation of the same model on the same
batch. ``jax/jit`` is ``jaxmusic train``'s own step: the model from the library's
config preset (:func:`model_config`, :func:`benchmark_config`), the state from
``jaxmusic.steps.init_state``, the jitted step from ``jaxmusic.steps.compile_steps``
(with the library's XLA options); ``jax/jit_bf16`` the same with
``train.dtype=bfloat16``; ``_dp`` the batch split over every device. Options go in
brackets (:func:`parse_variant`): model keywords, ``xla_*`` compiler options,
``spd=K`` steps per dispatch. ``torch/eager`` (padded input; for the LSTM oneDNN's
fused RNN), ``torch/packed`` (LSTM only: the course helper's
``pack_padded_sequence``), ``torch/compile`` (``torch.compile`` of the eager model)
and their ``_bf16`` forms (autocast to bfloat16). Each variant offers

* ``prepare()``: build, compile, warm up; returns the compile times;
* ``train_step()``: one dispatch of the train step (forward, loss, backward,
  clipping, AdamW update), blocking until it is done;
* ``infer_step()``: one forward pass in inference mode, blocking.

Both frameworks use the library's recipe (:func:`train_recipe`: AdamW, lr 1e-4,
weight decay 1e-4, clipping at global norm 1), 10 classes, float32 parameters and
the same inputs (zero padding after each clip's length).
"""

from __future__ import annotations

import ast
import dataclasses
import time
from typing import Any

import numpy as np

NUM_CLASSES = 10
CLASSES = tuple(f"class_{i}" for i in range(NUM_CLASSES))

# Model presets: the library's own (jaxmusic.config, the lab's settings); a benchmark
# model is a preset plus overrides.
PRESETS: dict[str, tuple[str, tuple, dict]] = {
    "lstm": ("lstm_model", (), {}),
    "cnn": ("cnn_model", (), {}),
    "ast_tiny": ("ast_model", ("tiny",), {}),
    "ast_small": ("ast_model", ("small",), {}),
}
# --quick: the same structures, tiny widths (the smoke test).
QUICK_OVERRIDES: dict[str, dict] = {
    "lstm": dict(hidden_size=8),
    "cnn": dict(channels=(4, 4, 8, 8)),
    "ast_tiny": dict(embed_dim=16, depth=2, num_heads=2),
    "ast_small": dict(embed_dim=24, depth=2, num_heads=3),
}


def model_config(model: str, quick: bool = False, **overrides) -> dict:
    """``config.model`` of a benchmark model: the jaxmusic.config preset with overrides."""
    from jaxmusic import config

    factory, args, extra = PRESETS[model]
    cfg = getattr(config, factory)(*args, **{**extra, **(QUICK_OVERRIDES[model] if quick else {}), **overrides})
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.to_dict().items()}


def models_table(quick: bool = False) -> dict[str, dict]:
    return {m: model_config(m, quick) for m in PRESETS}


def train_recipe() -> dict:
    """The library's training recipe (jaxmusic.config.base_config().train): what both frameworks use."""
    from jaxmusic import config

    t = config.base_config().train
    return {"optimizer": t.optimizer, "learning_rate": t.learning_rate, "weight_decay": t.weight_decay,
            "clip_norm": t.clip_norm}


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

TORCH_VARIANTS = {"lstm": ("eager", "packed", "compile", "eager_bf16", "compile_bf16"),
                  "cnn": ("eager", "compile", "eager_bf16", "compile_bf16"),
                  "ast": ("eager", "compile", "eager_bf16", "compile_bf16")}
JAX_VARIANTS = ("jit", "jit_bf16", "jit_dp", "jit_bf16_dp")


@dataclasses.dataclass(frozen=True)
class Workload:
    model: str            # key of PRESETS
    model_cfg: dict
    input: Input
    batch_size: int
    seed: int = 0
    num_classes: int = NUM_CLASSES

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


# --- FLOPs and the float32 product policy --------------------------------------------------------

def model_flops(workload: "Workload") -> dict:
    """The point's model FLOPs (benchmarks/flops.py, the same for every variant and framework)."""
    from benchmarks import flops

    w = workload
    c = flops.count(w.model_cfg, w.batch_size, w.input.steps, w.input.features, w.num_classes)
    return {"flops_train": c.train, "flops_infer": c.forward, "flops_source": "analytic (benchmarks/flops.py)"}


FLOAT32_MATMUL = ("tf32", "ieee")


def float32_matmul_policy(policy: str, backend: str) -> str | None:
    """Set how float32 products run on an accelerator, the same on both sides, and say so.

    ``"tf32"``: TensorFloat-32 products (JAX's ``jax_default_matmul_precision="tensorfloat32"``,
    which is also its GPU default; PyTorch's ``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32`` True). ``"ieee"``: full float32 products on both sides
    (``"highest"``; both ``allow_tf32`` False). On a CPU nothing is set (None): XLA:CPU and
    oneDNN compute float32 products in float32.
    """
    if policy not in FLOAT32_MATMUL:
        raise ValueError(f"float32 matmul policy must be one of {FLOAT32_MATMUL}, got {policy!r}")
    if backend == "cpu":
        return None
    import jax

    tf32 = policy == "tf32"
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
    text = f"jax_default_matmul_precision={'tensorfloat32' if tf32 else 'highest'}"
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        text += f"; torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = {tf32}"
    except ImportError:  # pragma: no cover - a JAX-only sweep
        pass
    return f"{policy}: {text}"


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    return cost or {}


# --- JAX -----------------------------------------------------------------------------------------

def benchmark_config(workload: "Workload", dtype: str = "float32", model_args: dict | None = None,
                     base=None):
    """The run config of a benchmark point: ``base`` (default ``jaxmusic.config.lab_config``, the
    lab's recipe: AdamW 1e-4, weight decay 1e-4, gradient clipping at norm 1) with the workload's
    model, ``train.dtype``, ``train.batch_size`` and seed set: what ``jaxmusic train`` would run."""
    import ml_collections

    from jaxmusic import config

    model = ml_collections.ConfigDict({**workload.model_cfg, **(model_args or {})})
    if base is None:
        c = config.lab_config("fma_genre_spectrograms", "mel", model)
    else:
        c = ml_collections.ConfigDict(base.to_dict())
        c.model = model
    c.train.dtype = dtype
    c.train.batch_size = workload.batch_size
    c.train.seed = workload.seed
    return c


def benchmark_run(cfg, workload: "Workload"):
    """A :class:`jaxmusic.runs.Run` for synthetic inputs (no prepared set): the library's task
    (genre, ``NUM_CLASSES`` classes) and model (``runs.make_model``) for the workload's shape."""
    from jaxmusic import runs, tasks

    classes = tuple(f"class_{i}" for i in range(workload.num_classes))
    task = tasks.make_task(cfg, classes)
    t, f = workload.input.steps, workload.input.features
    record = {"task": "genre", "data_kind": "genre", "label_names": list(classes), "class_counts": None,
              "max_length": t, "num_features": f, "view": "mel", "normalize": False, "model": cfg.model.name}
    return runs.Run(cfg, record, task, runs.make_model(cfg, task, f, t))


def one_device_mesh():
    from jax.sharding import Mesh

    import jax
    from jaxmusic import parallel

    return Mesh(np.asarray(jax.devices()[:1]), (parallel.DATA_AXIS,))


def parse_variant(variant: str) -> tuple[str, dict, dict, int]:
    """``"jit_bf16_dp[query_chunk=256,xla_cpu_prefer_vector_width=512,spd=4]"`` ->
    ``(base, model keywords, compiler options, steps per dispatch)``.

    Keys starting ``xla_`` are XLA compiler options added to the library's
    (``jaxmusic.xla.step_compiler_options``); ``xla=none`` drops the library's options;
    ``spd=K`` is ``train.steps_per_dispatch``; every other key is a model keyword."""
    base, _, extra = variant.partition("[")
    if base not in JAX_VARIANTS:
        raise ValueError(f"unknown JAX variant {base!r} (one of {', '.join(JAX_VARIANTS)})")
    model_args, options, spd = {}, {}, 1
    for item in filter(None, extra.rstrip("]").split(",")):
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        if key == "spd":
            spd = int(value)
        elif key == "xla":
            options["__library__"] = value
        elif key.startswith("xla_"):
            options[key] = value
        else:
            model_args[key] = value
    return base, model_args, options, spd


def synthetic_batch(workload: "Workload") -> dict[str, np.ndarray]:
    """A training batch as ``jaxmusic.data`` yields it: features, lengths, label, mask."""
    b = workload.batch()
    return {"features": b["features"], "lengths": b["lengths"], "label": b["labels"],
            "mask": np.ones(workload.batch_size, bool)}


class JaxVariant:
    """``jaxmusic train``'s own step on a synthetic batch.

    The model comes from the library's config preset (``benchmark_config``), the
    state from ``steps.init_state`` (TrainState, the configured optax chain with
    clipping), the jitted steps from ``steps.compile_steps`` (the same call the train
    loop makes, with the library's compiler options): nothing here is a copy.
    """

    framework = "jax"

    def __init__(self, workload: "Workload", variant: str = "jit", base_config=None):
        import jax

        self.workload, self.variant, self.base_config = workload, variant, base_config
        base, self.model_args, self.options, self.steps_per_call = parse_variant(variant)
        self.bf16 = base.startswith("jit_bf16")
        self.data_parallel = base.endswith("_dp")
        self.threads = None
        self.memory_kind = "cpu" if jax.default_backend() == "cpu" else "jax-device"
        self.info: dict[str, Any] = {}

    def compiler_options(self) -> dict:
        import jax

        from jaxmusic import xla

        options = dict(self.options)
        library = options.pop("__library__", "default")
        base = {} if library == "none" else xla.step_compiler_options(jax.default_backend())
        return {**base, **options}

    def build(self):
        """``(run, mesh, state, batch)`` of this variant, on its devices."""
        from jaxmusic import parallel, steps

        w = self.workload
        cfg = benchmark_config(w, "bfloat16" if self.bf16 else "float32", self.model_args, self.base_config)
        run = benchmark_run(cfg, w)
        if self.data_parallel:
            mesh = parallel.make_mesh()
            if w.batch_size % mesh.size:
                raise ValueError(f"batch {w.batch_size} does not split over {mesh.size} devices")
        else:
            mesh = one_device_mesh()
        state = steps.init_state(run, mesh, steps_per_epoch=1)
        batch = synthetic_batch(w)
        return run, mesh, state, batch

    def prepare(self, batch: dict | None = None) -> dict:
        """Build and compile; ``batch`` (numpy, as ``jaxmusic.data`` yields it) replaces the
        synthetic one."""
        from jaxmusic import parallel, steps

        w = self.workload
        self.run, self.mesh, self.state, synthetic = self.build()
        batch = synthetic if batch is None else batch
        devices = self.mesh.size
        k = self.steps_per_call
        self.batch = parallel.to_global(batch, self.mesh)
        self.train_batch = self.batch if k == 1 else parallel.to_global(
            {key: np.stack([v] * k) for key, v in batch.items()}, self.mesh, stacked=True)
        options = self.compiler_options()
        train, evaluate = steps.compile_steps(self.run, self.mesh, steps_per_dispatch=k, compiler_options=options)
        t0 = time.perf_counter()
        self._train = train.lower(self.state, self.train_batch).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._infer = evaluate.lower(self.state, self.batch).compile()
        infer_compile_s = time.perf_counter() - t0

        out = {"compile_s": compile_s, "infer_compile_s": infer_compile_s, "devices": devices,
               "compiler_options": options, "steps_per_dispatch": k, "config_dtype": self.run.config.train.dtype,
               "clip_norm": self.run.config.train.clip_norm}
        for kind, compiled in (("train", self._train), ("infer", self._infer)):
            # XLA's count, for reference (benchmarks/flops.py has the model FLOPs every MFU uses): one
            # device's share of a partitioned program; a loop's body (the LSTM's recurrence, a scan
            # of K steps, query blocks, per-tap weight gradients) once
            per_step = 1 if kind == "infer" else k
            out[f"flops_{kind}_xla"] = devices * float(_cost(compiled).get("flops", 0.0)) / per_step or None
            try:
                mem = compiled.memory_analysis()
                out[f"xla_{kind}_bytes"] = devices * int(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                                         + mem.output_size_in_bytes - mem.alias_size_in_bytes)
                out[f"xla_{kind}_temp_bytes"] = devices * int(mem.temp_size_in_bytes)
            except Exception:  # pragma: no cover - not available on every backend
                pass
        self.info.update(out)
        return out

    def estimate_bytes(self) -> int | None:
        return self.info.get("xla_train_bytes")

    def train_step(self) -> None:
        """One dispatch: ``steps_per_call`` optimiser steps."""
        self.state, metrics = self._train(self.state, self.train_batch)
        metrics["loss"].block_until_ready()

    def infer_step(self) -> None:
        self._infer(self.state, self.batch)["output"].block_until_ready()

    def close(self) -> None:
        self.state = self._train = self._infer = None


# --- PyTorch -------------------------------------------------------------------------------------

JAX_ONLY_KEYS = {"name", "dtype", "param_dtype", "query_chunk", "remat", "attention", "tap_wgrad", "unroll",
                 "chunk_size", "implementation"}


def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_torch_model(workload: Workload, variant: str):
    from benchmarks import torch_models as tm

    # the PyTorch models take the architecture only (no JAX implementation switches)
    cfg = {k: v for k, v in workload.model_cfg.items() if k not in JAX_ONLY_KEYS}
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
        recipe = train_recipe()
        self.clip_norm = recipe["clip_norm"]
        kw = dict(lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"])
        try:
            self.opt = torch.optim.AdamW(self.model.parameters(), fused=True, **kw)
            self.info["optimizer"] = "AdamW(fused=True)"
        except (RuntimeError, TypeError):
            self.opt = torch.optim.AdamW(self.model.parameters(), **kw)
            self.info["optimizer"] = "AdamW"
        self.info["clip_norm"] = self.clip_norm
        self.autocast = self.variant.endswith("_bf16")
        self.fn = self.model
        if self.variant.startswith("compile"):
            torch._dynamo.reset()
            self.fn = torch.compile(self.model, dynamic=False)

        def train_step():
            # the library's step: cross-entropy, backward, clipping at the recipe's norm, AdamW;
            # "_bf16": autocast to bfloat16 (float32 parameters and optimiser)
            self.opt.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.fn(self.x, self.lengths)
            loss = F.cross_entropy(logits.float(), self.labels)
            loss.backward()
            if self.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
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
        compiled = self.variant.startswith("compile")
        out = {"compile_s": first_train if compiled else None,
               "infer_compile_s": first_infer if compiled else None,
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
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.autocast):
            self.fn(self.x, self.lengths)
        self._sync()
        self.model.train()

    def estimate_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        import torch

        self.model = self.fn = self.opt = self._train = None
        if self.variant.startswith("compile"):
            torch._dynamo.reset()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def make_variant(workload: Workload, framework: str, variant: str, threads: int | None = None):
    if framework == "jax":
        return JaxVariant(workload, variant)
    return TorchVariant(workload, variant, threads)
