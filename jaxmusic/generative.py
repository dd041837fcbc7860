"""Generative augmentation: a class-conditional diffusion model of a prepared set's
training clips, and a new prepared set holding its samples as extra training records.

``jaxmusic generate train`` (:func:`train_generator`) reads a prepared set's training
split through the input pipeline (standardised with the split's own statistics), cuts
random ``crop``-frame windows from its clips (clips shorter than the crop are not used)
and fits :class:`jaxmusic.models.diffusion.SpectrogramDenoiser` on them (the DDPM
forward process, a velocity target); the generator directory holds ``generator.json`` (the set, its classes, the
standardisation, the settings, the loss curve) and ``checkpoints/`` (Orbax, through
:mod:`jaxmusic.checkpoint`; ``params`` are the exponential moving average of the
weights, which is what samples).

``jaxmusic generate sample`` (:func:`write_augmented_set`) writes
``OUT/<set>/``: the original set's shards copied byte for byte (the training shards
renamed ``-of-<n + g>``) plus ``g`` shards of ``round(ratio * N_train)`` generated
clips (DDIM, seeded; ids ``gen-<class>-<i>``, source ``generated``, length = the crop),
with classes in proportion to the training class counts (or balanced), and the
manifest, stamp and tfds metadata of a prepared set. Validation and test are
untouched, and the manifest keeps the real training split's feature statistics, so a
classifier standardises its inputs exactly as without the generated clips. Train on
it with ``--config.data.prepared=OUT``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxmusic import checkpoint
from jaxmusic.data import lab, records, tfrecords
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, eval_batches
from jaxmusic.models import diffusion

GENERATOR_FILE = "generator.json"
BALANCE = ("proportional", "balanced")


class GeneratorError(lab.DatasetError):
    """A generator setting or input that cannot work (a one-line message)."""


@dataclasses.dataclass
class GeneratorConfig:
    crop: int = 64                              # frames per generated clip (a multiple of 2**(levels-1))
    channels: tuple[int, ...] = (64, 128, 128)  # U-Net channels per level
    steps: int = 3000                           # optimiser steps
    batch_size: int = 32
    learning_rate: float = 5e-4
    diffusion_steps: int = 1000
    ema: float = 0.999                          # decay of the parameters' moving average
    seed: int = 0
    log_every: int = 100


@struct.dataclass
class GeneratorState:
    step: jax.Array
    params: dict           # the moving average (what samples)
    online_params: dict    # what the optimiser updates
    opt_state: optax.OptState


# --- the training windows ---------------------------------------------------------------

def _stored_view(pset: PreparedSet) -> str:
    return pset.manifest["view"]


def load_training_clips(pset: PreparedSet, crop: int) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """The training split's clips of at least ``crop`` frames, standardised, with their
    labels, and a summary (used and skipped per class)."""
    if pset.kind != "genre":
        raise GeneratorError(f"{pset.name} is a {pset.kind} set: a class-conditional generator needs "
                             "classes (a genre or label-table set)", file=pset.dir)
    longest = pset.max_length("train")
    if crop > longest:
        raise GeneratorError(f"crop {crop} frames is longer than every training clip (longest: {longest}); "
                             f"use --crop <= {longest}", file=pset.dir)
    view = _stored_view(pset)
    mean, std = pset.train_statistics(view)
    cfg = PipelineConfig(batch_size=64, max_length=longest, view=view, mean=mean, std=std)
    clips, labels, skipped = [], [], {}
    for batch in eval_batches(pset, "train", cfg):
        for x, n, y, keep in zip(batch["features"], batch["lengths"], batch["label"], batch["mask"]):
            if not keep:
                continue
            if n < crop:
                skipped[int(y)] = skipped.get(int(y), 0) + 1
                continue
            clips.append(np.asarray(x[:n], np.float32))
            labels.append(int(y))
    labels = np.asarray(labels, np.int32)
    classes = pset.classes
    missing = [classes[k] for k in range(len(classes)) if not np.any(labels == k)
               and pset.manifest["splits"]["train"]["per_class"][classes[k]] > 0]
    if missing:
        raise GeneratorError(f"no training clip of class {missing[0]!r} has {crop} frames: use a shorter "
                             "--crop", file=pset.dir)
    summary = {"clips_used": len(clips), "clips_shorter_than_crop": int(sum(skipped.values())),
               "used_per_class": {c: int(np.sum(labels == k)) for k, c in enumerate(classes)}}
    return clips, labels, summary


def random_windows(rng: np.random.Generator, clips: list[np.ndarray], labels: np.ndarray,
                   batch: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` random ``crop``-frame windows of random clips: ``([B, crop, F], [B])``."""
    idx = rng.integers(0, len(clips), batch)
    out = np.empty((batch, crop, clips[0].shape[1]), np.float32)
    for i, j in enumerate(idx):
        start = rng.integers(0, len(clips[j]) - crop + 1)
        out[i] = clips[j][start:start + crop]
    return out, labels[idx]


# --- training ---------------------------------------------------------------------------

def make_denoiser(num_features: int, num_classes: int, channels) -> diffusion.SpectrogramDenoiser:
    return diffusion.SpectrogramDenoiser(num_features=num_features, num_classes=num_classes,
                                         channels=tuple(int(c) for c in channels))


def check_config(cfg: GeneratorConfig) -> None:
    multiple = diffusion.time_multiple(cfg.channels)
    if cfg.crop < multiple or cfg.crop % multiple:
        raise GeneratorError(f"crop must be a positive multiple of {multiple} (the U-Net halves time "
                             f"{len(cfg.channels) - 1} times), got {cfg.crop}")
    for name in ("steps", "batch_size", "diffusion_steps"):
        if getattr(cfg, name) < 1:
            raise GeneratorError(f"{name} must be positive, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema < 1.0:
        raise GeneratorError(f"ema must be in [0, 1), got {cfg.ema}")


def loss_fn(model, params, x0, labels, t, noise, abar):
    """Mean squared error of the predicted velocity (:func:`diffusion.v_target`)."""
    x_t = diffusion.q_sample(x0, t, noise, abar)
    target = diffusion.v_target(x0, t, noise, abar)
    return jnp.mean((model.apply({"params": params}, x_t, t, labels) - target) ** 2)


def make_train_step(model, tx, abar: jax.Array, ema: float):
    def train_step(state: GeneratorState, x0, labels, key):
        k_t, k_noise = jax.random.split(jax.random.fold_in(key, state.step))
        t = jax.random.randint(k_t, (x0.shape[0],), 0, abar.shape[0])
        noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, x0, labels, t, noise, abar))(
            state.online_params)
        updates, opt_state = tx.update(grads, state.opt_state, state.online_params)
        online = optax.apply_updates(state.online_params, updates)
        decay = jnp.minimum(ema, (1.0 + state.step) / (10.0 + state.step))   # short warm-up of the average
        averaged = optax.incremental_update(online, state.params, 1.0 - decay)   # decay * avg + (1 - decay) * online
        return GeneratorState(state.step + 1, averaged, online, opt_state), loss
    return jax.jit(train_step, donate_argnums=(0,))


def init_state(model, tx, num_features: int, crop: int, seed: int) -> GeneratorState:
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, crop, num_features)),
                        jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32))["params"]
    return GeneratorState(jnp.zeros((), jnp.int32), params, jax.tree_util.tree_map(jnp.copy, params),
                          tx.init(params))


def fit(clips, labels, num_classes: int, cfg: GeneratorConfig, progress: bool = False):
    """Train a denoiser on windows of ``clips``; returns ``(model, state, history)``
    (history: mean loss per ``log_every`` steps)."""
    check_config(cfg)
    num_features = clips[0].shape[1]
    model = make_denoiser(num_features, num_classes, cfg.channels)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.learning_rate))
    abar = jnp.asarray(diffusion.alpha_bars(diffusion.linear_betas(cfg.diffusion_steps)), jnp.float32)
    state = init_state(model, tx, num_features, cfg.crop, cfg.seed)
    step = make_train_step(model, tx, abar, cfg.ema)
    rng = np.random.default_rng([cfg.seed, 1])
    key = jax.random.PRNGKey(cfg.seed + 1)
    history, window = [], []
    for i in range(cfg.steps):
        x0, y = random_windows(rng, clips, labels, cfg.batch_size, cfg.crop)
        state, loss = step(state, jnp.asarray(x0), jnp.asarray(y), key)
        window.append(loss)
        if len(window) == cfg.log_every or i == cfg.steps - 1:
            mean = float(np.mean(jax.device_get(window)))
            history.append({"step": i + 1, "loss": mean})
            window = []
            if progress:
                print(f"generate train: step {i + 1}/{cfg.steps} loss {mean:.4f}", flush=True)
    return model, state, history


def train_generator(prepared_set: str | Path, workdir: str | Path, cfg: GeneratorConfig | None = None,
                    *, progress: bool = True, verify: str = "auto") -> dict:
    """Fit a generator on a prepared set's training split; writes ``workdir``; returns its record."""
    cfg = cfg or GeneratorConfig()
    check_config(cfg)
    workdir = Path(workdir)
    if (workdir / GENERATOR_FILE).exists() or (workdir / "checkpoints").exists():
        raise FileExistsError(f"{workdir} already holds a generator: use a new --workdir")
    pset = PreparedSet.open(prepared_set, verify=verify)
    start = time.time()
    clips, labels, summary = load_training_clips(pset, cfg.crop)
    model, state, history = fit(clips, labels, len(pset.classes), cfg, progress)
    view = _stored_view(pset)
    mean, std = pset.train_statistics(view)
    train = pset.manifest["splits"]["train"]
    record = {
        "set_dir": str(Path(prepared_set).resolve()), "set": pset.name, "view": view,
        "num_features": clips[0].shape[1], "classes": list(pset.classes),
        "class_counts": [train["per_class"][c] for c in pset.classes],
        "train_shards": {s["file"]: s["sha256"] for s in train["shards"]},
        "feature_mean": list(mean), "feature_std": list(std),
        # DDIM clips its estimate of x_0 to the range the standardised training data take.
        "x0_clip": float(np.ceil(max(np.abs(c).max() for c in clips))),
        "config": dataclasses.asdict(cfg), **summary,
        "history": history, "seconds": round(time.time() - start, 1),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.Checkpointer(workdir, keep=1, mode="min")
    steps = int(state.step)
    ckpt.save(state, {"best_step": steps, "best_epoch": 0, "loss": history[-1]["loss"]}, history[-1]["loss"])
    ckpt.close()
    (workdir / GENERATOR_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


# --- sampling ---------------------------------------------------------------------------

class Generator:
    """A trained generator (``generator.json`` + the averaged parameters of its checkpoint)."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        path = self.workdir / GENERATOR_FILE
        if not path.exists():
            raise FileNotFoundError(f"{self.workdir}: no {GENERATOR_FILE} (train one with `jaxmusic generate train`)")
        self.record = json.loads(path.read_text())
        self.cfg = GeneratorConfig(**{**self.record["config"],
                                      "channels": tuple(self.record["config"]["channels"])})
        self.model = make_denoiser(self.record["num_features"], len(self.record["classes"]), self.cfg.channels)
        variables, _ = checkpoint.load_variables(self.workdir, "latest")
        self.params = variables["params"]
        self.abar = diffusion.alpha_bars(diffusion.linear_betas(self.cfg.diffusion_steps))
        self._sample = jax.jit(self._sample_fn, static_argnames=("ddim_steps", "eta"))

    def _sample_fn(self, params, labels, keys, ddim_steps: int, eta: float):
        ts = diffusion.ddim_timesteps(self.cfg.diffusion_steps, ddim_steps)
        abar_t = jnp.asarray(self.abar[ts], jnp.float32)
        abar_prev = jnp.asarray(np.append(self.abar[ts[1:]], 1.0), jnp.float32)
        shape = (self.cfg.crop, self.record["num_features"])
        x = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), shape))(keys)
        clip = float(self.record["x0_clip"])

        def body(i, x):
            t = jnp.full((x.shape[0],), jnp.asarray(ts)[i], jnp.int32)
            eps = diffusion.eps_from_v(x, self.model.apply({"params": params}, x, t, labels), abar_t[i])
            z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i + 1), shape))(keys)
            x, _ = diffusion.ddim_step(x, eps, abar_t[i], abar_prev[i], eta=eta,
                                       noise=z if eta else None, clip=clip)
            return x

        return jax.lax.fori_loop(0, len(ts), body, x)

    def sample(self, labels, seed: int = 0, ddim_steps: int = 50, eta: float = 0.0,
               batch: int = 64, standardised: bool = False) -> np.ndarray:
        """``[N, crop, F]`` clips of the given classes. Clip ``i`` depends on ``(seed, i,
        labels[i])`` only (its noise is drawn from ``fold_in(seed key, i)``), not on ``batch``.
        Returned in the stored feature units unless ``standardised``."""
        labels = np.asarray(labels, np.int32)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.record["classes"])):
            raise ValueError(f"labels must be in [0, {len(self.record['classes'])})")
        base = jax.random.PRNGKey(seed)
        out = []
        for lo in range(0, len(labels), batch):
            idx = np.arange(lo, min(lo + batch, len(labels)))
            keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(idx))
            # Pad the last chunk to the batch size: one compiled shape.
            pad = batch - len(idx)
            lab_chunk = np.concatenate([labels[idx], np.zeros(pad, np.int32)])
            keys = jnp.concatenate([keys, jnp.repeat(keys[:1], pad, axis=0)]) if pad else keys
            x = self._sample(self.params, jnp.asarray(lab_chunk), keys, ddim_steps=ddim_steps, eta=eta)
            out.append(np.asarray(x)[: len(idx)])
        x = np.concatenate(out) if out else np.zeros((0, self.cfg.crop, self.record["num_features"]), np.float32)
        if standardised:
            return x
        std = np.asarray(self.record["feature_std"], np.float32)
        return x * np.where(std > 1e-6, std, 1.0) + np.asarray(self.record["feature_mean"], np.float32)


def class_counts(total: int, train_counts, balance: str = "proportional") -> list[int]:
    """``total`` generated clips over the classes: in proportion to ``train_counts`` (or equal
    shares with ``balanced``), by largest remainder (ties: the lower class index)."""
    if balance not in BALANCE:
        raise ValueError(f"balance must be one of {BALANCE}, got {balance!r}")
    weights = np.asarray(train_counts, np.float64)
    if balance == "balanced":
        weights = (weights > 0).astype(np.float64)
    want = total * weights / weights.sum()
    counts = np.floor(want).astype(int)
    for k in sorted(range(len(want)), key=lambda k: (-(want[k] - counts[k]), k))[: total - counts.sum()]:
        counts[k] += 1
    return [int(c) for c in counts]


def write_augmented_set(generator_dir: str | Path, ratio: float, out_root: str | Path, *, seed: int = 0,
                        ddim_steps: int = 50, balance: str = "proportional", shards: int = 0,
                        overwrite: bool = False, progress: bool = True) -> dict:
    """The generator's set plus ``round(ratio * N_train)`` generated training clips, written as
    a new prepared set ``out_root/<set>/``; returns its manifest."""
    if not ratio > 0:
        raise GeneratorError(f"ratio must be positive (generated clips per real training clip), got {ratio}")
    if balance not in BALANCE:
        raise GeneratorError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
    gen = Generator(generator_dir)
    src = Path(gen.record["set_dir"])
    pset = PreparedSet.open(src)
    manifest = json.loads(json.dumps(pset.manifest))
    train = manifest["splits"]["train"]
    if {s["file"]: s["sha256"] for s in train["shards"]} != gen.record["train_shards"]:
        raise GeneratorError("the training shards changed since the generator was trained on them: "
                             "train it again", file=src)
    n_train = train["count"]
    total = int(round(ratio * n_train))
    if total < 1:
        raise GeneratorError(f"ratio {ratio} of {n_train} training clips is no clip")
    out = Path(out_root) / pset.name
    if out.resolve() == src.resolve():
        raise GeneratorError("--out must differ from the generator's prepared root (the original set is "
                             "never changed)", file=out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (--overwrite replaces it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    counts = class_counts(total, gen.record["class_counts"], balance)
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    start = time.time()
    clips = gen.sample(labels, seed=seed, ddim_steps=ddim_steps)
    seconds = time.time() - start

    # The original shards, byte for byte (the training ones renamed -of-<n + g>).
    n_real = len(train["shards"])
    n_gen = max(1, min(shards or n_real, total))
    for split, info in manifest["splits"].items():
        for i, sh in enumerate(info["shards"]):
            name = tfrecords.shard_name(pset.name, split, i, n_real + n_gen) if split == "train" else sh["file"]
            shutil.copyfile(src / sh["file"], out / name)
            sh["file"] = name
    real_lengths = _split_lengths(src, pset, "train")
    gen_shards = _write_generated(out, pset, clips, labels, n_real, n_gen, manifest)
    lengths = np.concatenate([real_lengths, np.full(total, gen.cfg.crop)])
    classes = pset.classes
    train["shards"] += gen_shards
    train["count"] = n_train + total
    train["per_class"] = {c: train["per_class"][c] + counts[k] for k, c in enumerate(classes)}
    train["length"] = {"min": int(lengths.min()), "max": int(lengths.max()), "mean": float(lengths.mean()),
                       "median": float(np.median(lengths))}
    # train["feature_mean"/"feature_std"] stay the real clips' statistics (see the module docstring).
    manifest["generated"] = {
        "generator": str(Path(generator_dir).resolve()), "from": str(src.resolve()), "ratio": ratio,
        "count": total, "per_class": {c: counts[k] for k, c in enumerate(classes)}, "balance": balance,
        "seed": seed, "ddim_steps": ddim_steps, "length": gen.cfg.crop, "id_prefix": "gen-",
        "sampling_seconds": round(seconds, 1)}
    (out / tfrecords.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    tfrecords.verify_shards(out, manifest, "sha256")   # hashes what was written, stamps it
    tfrecords.write_tfds_metadata(out, manifest)
    if progress:
        print(f"generate sample: {total} generated + {n_train} real training clips -> {out} "
              f"({seconds:.1f} s sampling)")
    return manifest


def _split_lengths(set_dir: Path, pset: PreparedSet, split: str) -> np.ndarray:
    files = [set_dir / s["file"] for s in pset.manifest["splits"][split]["shards"]]
    return np.fromiter((ex["length"] for ex in records.read_examples(files)), np.int64)


def _write_generated(out: Path, pset: PreparedSet, clips: np.ndarray, labels: np.ndarray, first: int,
                     count: int, manifest: dict) -> list[dict]:
    """Generated clips as ``count`` training shards numbered from ``first``; their manifest entries."""
    view = manifest["view"]
    lo, hi = lab.VIEWS[view]
    dtype = tfrecords.STORE_DTYPES[manifest["dtype"]]
    total = first + count
    names = [tfrecords.shard_name(pset.name, "train", first + i, total) for i in range(count)]
    per_shard = [0] * count
    writers = [records.RecordWriter(out / n) for n in names]
    try:
        seen: dict[int, int] = {}
        for i, (x, y) in enumerate(zip(clips, labels)):
            full = np.zeros((len(x), lab.VIEW_ROWS[view]), np.float32)   # the file layout the view reads
            full[:, lo:hi] = x
            k = seen[int(y)] = seen.get(int(y), -1) + 1
            rec = lab.Record(id=f"gen-{pset.classes[y]}-{k:05d}", features=full, length=len(x),
                             label=int(y), genre=pset.classes[y], source="generated")
            writers[i % count].write(tfrecords.encode_example(rec, "genre", dtype, view))
            per_shard[i % count] += 1
    finally:
        for w in writers:
            w.close()
    return [{"file": n, "count": c, "bytes": (out / n).stat().st_size, "sha256": tfrecords.file_sha256(out / n)}
            for n, c in zip(names, per_shard)]
