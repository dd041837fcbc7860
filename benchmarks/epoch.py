"""An end-to-end training epoch: the input pipeline plus the train step.

* jaxmusic: the prepared TFRecords through ``jaxmusic.data.pipeline.train_batches``
  (tf.data: shuffle, decode, view slice, pad, batch, prefetch; or, as training does
  by default when the split fits in memory, decoded once in the first epoch and
  indexed afterwards) into the jitted train step of :mod:`benchmarks.variants`.
* PyTorch: the course helper's way. The dataset reads every ``.npy.gz`` feature
  file up front (gunzip, ``np.load``, transpose to ``(T, F)``, keep the view), pads
  each clip to the longest one in ``__getitem__``; a ``DataLoader``
  (shuffle, ``num_workers=0``, full batches) feeds the eager model.

Both train on the same clips (the prepared train split; labels from
``jaxmusic.data.lab``) with the same model, optimiser and batch size. Each runs
``epochs`` epochs; the first includes warm-up (and, for JAX, nothing to compile:
the step is compiled before, and the compile time is reported apart). The
steady figure is the mean over the epochs after the first.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np

from benchmarks import variants


def _prepared_ids(pset, split: str) -> list[str]:
    """Clip ids of a prepared split (read once from the shards, untimed)."""
    from jaxmusic.data.pipeline import PipelineConfig, eval_batches

    cfg = PipelineConfig(batch_size=64, max_length=pset.max_length(), view="fused",
                         mean=None, std=None)
    ids = []
    for batch in eval_batches(pset, split, cfg):
        ids += [i.decode() for i, m in zip(batch["id"], batch["mask"]) if m]
    return ids


def read_spectrogram(path: Path, view: str) -> np.ndarray:
    """The course helper's reader: the ``(140, T)`` array, transposed, one view kept."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            spectrogram = np.load(f)
    else:
        spectrogram = np.load(path)
    if view == "mel":
        return spectrogram[:128, :].T
    if view == "chroma":
        return spectrogram[128:, :].T
    return spectrogram.T


class CourseSpectrogramDataset:
    """The course's ``SpectrogramDataset``: all clips in memory, zero-padded on access."""

    def __init__(self, entries, view: str, max_length: int = -1):
        self.feats = [read_spectrogram(Path(e.file), view) for e in entries]
        self.labels = np.asarray([e.label for e in entries], np.int64)
        self.lengths = [len(f) for f in self.feats]
        self.max_length = max(self.lengths) if max_length <= 0 else max_length

    def pad(self, s: np.ndarray) -> np.ndarray:
        if len(s) >= self.max_length:
            return s[: self.max_length]
        return np.vstack([s, np.zeros((self.max_length - len(s), s.shape[1]), np.float32)])

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i):
        return self.pad(self.feats[i]).astype(np.float32), self.labels[i], min(self.lengths[i], self.max_length)


def run_epochs(source_root: str | Path, prepared_root: str | Path, set_name: str, model_key: str,
               model_cfg: dict, view: str, batch_size: int, epochs: int = 2) -> list[dict]:
    """Records for ``jax`` and ``torch``: samples/s per epoch, load and compile times."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch
    import torch.nn.functional as F

    from jaxmusic.data import lab
    from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, resolve_cache, train_batches

    pset = PreparedSet.open(Path(prepared_root) / set_name)
    max_length = pset.max_length()
    num_features = pset.num_features(view)
    num_classes = len(pset.classes)
    steps = pset.train_steps("train", batch_size)
    common = {"kind": "epoch", "model": model_key, "input": f"{set_name}/{view}", "T": max_length,
              "F": num_features, "batch_size": batch_size, "steps_per_epoch": steps,
              "clips": steps * batch_size, "epochs": epochs}
    records = []

    # jaxmusic: tf.data -> jit.
    model = variants.jax_model(model_cfg, num_features, max_length, num_classes=num_classes)
    tx = optax.adamw(variants.LEARNING_RATE, weight_decay=variants.WEIGHT_DECAY)
    x0 = jnp.zeros((batch_size, max_length, num_features), jnp.float32)
    l0 = jnp.full((batch_size,), max_length, jnp.int32)
    y0 = jnp.zeros((batch_size,), jnp.int32)
    state, has_stats = variants.jax_state(model, tx, x0, l0, 0)
    train_step, _ = variants.jax_steps(model, tx, has_stats, 1)
    # every device of the process (one per core with --host-devices), as `jaxmusic train` does
    dp = variants.DataParallel.over_all_devices(batch_size)
    state = dp.put_state(state)
    x0, l0, y0 = dp.put_batch((x0, l0, y0))
    t0 = time.perf_counter()
    step = jax.jit(train_step, **dp.train_jit()).lower(state, x0, l0, y0).compile()
    compile_s = time.perf_counter() - t0
    # as `jaxmusic train` reads by default (data.cache="auto": in memory if the split fits)
    cache, cache_why = resolve_cache("auto", pset, "train", view, max_length)
    mean, std = pset.train_statistics(view)
    cfg = PipelineConfig(batch_size=batch_size, max_length=max_length, view=view, seed=0, cache=cache,
                         mean=mean, std=std)
    epoch_s = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        loss = None
        for batch in train_batches(pset, "train", cfg, epoch=epoch, steps=steps):
            state, loss = step(state, *dp.put_batch((batch["features"], batch["lengths"], batch["label"])))
        loss.block_until_ready()
        epoch_s.append(time.perf_counter() - t0)
    # No load phase: tf.data reads the shards inside the (first) epoch (load_s None).
    records.append(_record(common, "jax", "tf.data+jit", epoch_s, load_s=None, compile_s=compile_s,
                           data_cache=cache_why, devices=dp.devices))
    del state, step

    # PyTorch: the course helper's dataset + DataLoader -> eager.
    ids = set(_prepared_ids(pset, "train"))
    source = Path(pset.manifest.get("source") or Path(source_root) / set_name)
    if not source.is_dir():
        source = Path(source_root) / set_name
    entries = [e for e in lab.read_labels(source, "train") if e.id in ids and e.label is not None]
    t0 = time.perf_counter()
    dataset = CourseSpectrogramDataset(entries, view, max_length)
    load_s = time.perf_counter() - t0
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(0))
    workload = variants.Workload(model_key, model_cfg, variants.Input("epoch", max_length, num_features,
                                                                      (1, max_length)), batch_size)
    tmodel = variants.build_torch_model(workload, "eager")
    tmodel.head = torch.nn.Linear(tmodel.head.in_features, num_classes)
    opt = torch.optim.AdamW(tmodel.parameters(), lr=variants.LEARNING_RATE, weight_decay=variants.WEIGHT_DECAY)
    tmodel.train()
    epoch_s = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for features, labels, lengths in loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(tmodel(features, lengths), labels)
            loss.backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
    records.append(_record(common, "torch", "DataLoader+eager", epoch_s, load_s=load_s, compile_s=None,
                           clips_loaded=len(dataset)))
    return records


def _record(common: dict, framework: str, variant: str, epoch_s: list[float], **extra) -> dict:
    clips = common["clips"]
    steady = epoch_s[1:] or epoch_s
    return {**common, "framework": framework, "variant": variant, "epoch_s": epoch_s,
            "train_samples_per_s": clips / (sum(steady) / len(steady)),
            "train_samples_per_s_min": clips / max(steady), "train_samples_per_s_max": clips / min(steady),
            "first_epoch_samples_per_s": clips / epoch_s[0], **extra}
