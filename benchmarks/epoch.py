"""An end-to-end training epoch: the input pipeline plus the train step.

* jaxmusic: ``jaxmusic train``'s own input and step (:class:`jaxmusic.train.TrainInput`:
  the prepared TFRecords decoded once and placed as ``data.placement`` says, on the
  device by default where they fit, each step gathering its batch by index; the
  library's config, ``steps.init_state``; with ``steps_per_dispatch = K`` K batches per
  call, as the train loop does). Reading and placing the split is its ``load_s``.
* PyTorch: the course helper's way. The dataset reads every ``.npy.gz`` feature
  file up front (gunzip, ``np.load``, transpose to ``(T, F)``, keep the view), pads
  each clip to the longest one in ``__getitem__``; a ``DataLoader``
  (shuffle, ``num_workers=0``, full batches) feeds the eager model.

Both train on the same clips (the prepared train split; labels from
``jaxmusic.data.lab``) with the same model, optimiser recipe and batch size. The
epochs are interleaved (JAX epoch, PyTorch epoch, JAX epoch, ...) so that the load of
a shared machine hits both alike; the first of each includes warm-up (the JAX step
is compiled before; its compile time is reported apart). The steady figure is the
mean over the epochs after the first; ``paired`` the median of the per-round ratios.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import jax
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
               model_cfg: dict, view: str, batch_size: int, epochs: int = 2,
               steps_per_dispatch: int = 1, placement: str = "auto") -> list[dict]:
    """Records for ``jax`` and ``torch``: samples/s per epoch, load and compile times.
    ``placement``: where the training split lives (``data.placement``; "auto" as training)."""
    import ml_collections
    import torch
    import torch.nn.functional as F

    from jaxmusic import config as jconfig, parallel, runs, steps as jsteps
    from jaxmusic.data import lab
    from jaxmusic.data.pipeline import PreparedSet
    from jaxmusic.train import TrainInput

    pset = PreparedSet.open(Path(prepared_root) / set_name)
    max_length = pset.max_length()
    num_features = pset.num_features(view)
    num_classes = len(pset.classes)
    steps = pset.train_steps("train", batch_size)
    common = {"kind": "epoch", "model": model_key, "input": f"{set_name}/{view}", "T": max_length,
              "F": num_features, "batch_size": batch_size, "steps_per_epoch": steps,
              "clips": steps * batch_size, "epochs": epochs}
    k = max(1, int(steps_per_dispatch))

    # jaxmusic: the library's run, state, input and compiled steps (what `jaxmusic train` builds)
    cfg = jconfig.lab_config(set_name, view, ml_collections.ConfigDict(dict(model_cfg)))
    cfg.data.prepared = str(prepared_root)
    cfg.data.placement = placement
    cfg.train.batch_size = batch_size
    cfg.train.steps_per_dispatch = k
    run = runs.build_run(cfg, pset)
    mesh = parallel.make_mesh()  # every device of the process (one per core with --host-devices)
    t0 = time.perf_counter()
    inp = TrainInput(cfg, run, mesh)   # reads and places the split (the course side's load_s)
    place_s = time.perf_counter() - t0
    state = jsteps.init_state(run, mesh, steps)
    # warm-up (compilation): one dispatch of each kind the epochs use, from a copy of the state
    t0 = time.perf_counter()
    warm, kinds = jax.tree.map(lambda x: x.copy(), state), set()
    for _, batch, stacked in inp.dispatches(0):
        if stacked not in kinds:
            kinds.add(stacked)
            warm, metrics = inp.step(warm, batch, stacked)
    jax.block_until_ready(warm)
    compile_s = time.perf_counter() - t0

    def jax_epoch(epoch: int) -> float:
        nonlocal state
        t0 = time.perf_counter()
        for _, batch, stacked in inp.dispatches(epoch):
            state, metrics = inp.step(state, batch, stacked)
        metrics["loss"].block_until_ready()
        return time.perf_counter() - t0

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
    recipe = variants.train_recipe()
    opt = torch.optim.AdamW(tmodel.parameters(), lr=recipe["learning_rate"], weight_decay=recipe["weight_decay"])
    tmodel.train()

    def torch_epoch() -> float:
        t0 = time.perf_counter()
        for features, labels, lengths in loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(tmodel(features, lengths), labels)
            loss.backward()
            if recipe["clip_norm"]:
                torch.nn.utils.clip_grad_norm_(tmodel.parameters(), recipe["clip_norm"])
            opt.step()
        return time.perf_counter() - t0

    jax_s, torch_s = [], []
    for epoch in range(epochs):  # interleaved
        jax_s.append(jax_epoch(epoch))
        torch_s.append(torch_epoch())
    ratios = [t / j for j, t in zip(jax_s[1:] or jax_s, torch_s[1:] or torch_s)]
    paired = {"jax_speedup": float(np.median(ratios)), "jax_speedup_min": min(ratios),
              "jax_speedup_max": max(ratios)}
    name = f"{inp.placement}+jit" + (f"[spd={k}]" if k > 1 else "")
    return [_record(common, "jax", name, jax_s, load_s=place_s, compile_s=compile_s, placement=inp.why,
                    devices=mesh.size, steps_per_dispatch=k, **paired),
            _record(common, "torch", "DataLoader+eager", torch_s, load_s=load_s, compile_s=None,
                    clips_loaded=len(dataset))]


def _record(common: dict, framework: str, variant: str, epoch_s: list[float], **extra) -> dict:
    clips = common["clips"]
    steady = epoch_s[1:] or epoch_s
    return {**common, "framework": framework, "variant": variant, "epoch_s": epoch_s,
            "train_samples_per_s": clips / (sum(steady) / len(steady)),
            "train_samples_per_s_min": clips / max(steady), "train_samples_per_s_max": clips / min(steady),
            "first_epoch_samples_per_s": clips / epoch_s[0], **extra}
