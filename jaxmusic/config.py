"""Configs are code: ``configs/<experiment>.py`` defines ``get_config()``.

Every config starts from :func:`base_config` (all fields and their defaults,
documented here once) and changes what its experiment needs. Any field can be
overridden on the command line as ``--config.train.batch_size=256``; values are
parsed to the type of the field they replace. The resolved config is saved as
``config.json`` in the run directory and is what ``evaluate``, ``predict`` and
``--resume`` read back.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
from pathlib import Path
from typing import Sequence

import ml_collections


class ConfigError(ValueError):
    """A config file or a ``--config.x=y`` override that cannot be used (a one-line message)."""


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = ""                    # set from the config file's name
    c.task = "genre"               # genre | classification | regression | multitask
                                   # (classification: any classes, macro-F1 selection; see tasks)

    c.data = ml_collections.ConfigDict()
    c.data.root = "data"           # lab layout root (holds the set folders)
    c.data.prepared = "prepared"   # `jaxmusic prepare --out` root
    c.data.set = "fma_genre_spectrograms"
    c.data.view = "mel"            # mel | chroma | fused
    c.data.max_length = 0          # frames; 0 = the prepared set's longest clip
    c.data.eval_sets = ()          # extra prepared sets to test on ((): the twin full/beat set)
    c.data.normalize = True        # standardise features with the train split's mean/std
    c.data.placement = "auto"      # where the training split lives (jaxmusic.data.pipeline):
                                   # device (the step gathers its batch by index) | host (numpy
                                   # gathers, two batches in flight) | stream (record by record
                                   # through Grain, for sets larger than memory) | "auto" (device
                                   # if it takes <= 25% of a device's free memory, else host if
                                   # <= 25% of free host memory, else stream); same batches either way
    c.data.bucket_boundaries = ()  # optional length buckets for training
    c.data.verify = "auto"         # shard checks when a prepared set is opened: "auto" = byte sizes
                                   # every time + sha256 on the first open after the shards changed
                                   # (a stamp next to manifest.json remembers it); "sha256" = every
                                   # open (`--verify` on train/evaluate/inspect)
    c.data.readers = 0             # input streams per global batch (0: one per process);
                                   # fix it to make batches independent of the topology
    c.data.targets = ("valence", "energy", "danceability")  # regression axes used
    c.data.resize = ()             # (H, W): each clip's valid part resized bilinearly on device to an
                                   # H (time) x W (frequency) picture before the backbone (image-style CNNs)
    c.data.bins = 0                # task "classification" on a multitask set: quantile bins of ...
    c.data.bin_target = "energy"   # ... this axis (cut points from the training split; 3: tertiles)

    c.model = ml_collections.ConfigDict()
    c.model.name = "lstm"          # lstm | cnn | ast | lenet | minialexnet | cnn3_dense;
                                   # other keys go to the backbone

    c.train = ml_collections.ConfigDict()
    c.train.seed = 0
    c.train.batch_size = 32        # global batch (all processes and devices)
    c.train.epochs = 30
    c.train.optimizer = "adamw"    # adamw | adam | lamb | lars | sgd
    c.train.momentum = 0.9         # sgd: momentum (0: plain SGD; 0.5 and 0.9 are the seeds' values)
    c.train.learning_rate = 1e-4
    c.train.schedule = "constant"  # constant | warmup_cosine | exponential | plateau
    c.train.plateau_patience = 3   # plateau: epochs without a better mean train loss before ...
    c.train.plateau_factor = 0.1   # ... the rate is multiplied by this
    c.train.plateau_rtol = 1e-4    # plateau: relative improvement that counts
    c.train.warmup_steps = 0
    c.train.decay_rate = 0.5       # exponential: factor per `decay_epochs`
    c.train.decay_epochs = 10
    c.train.weight_decay = 1e-4
    c.train.clip_norm = 1.0        # 0 disables clipping
    c.train.class_weights = False  # genre: inverse-frequency class weights
    c.train.patience = 3           # early stopping (epochs without improvement; 0: off)
    c.train.select_metric = "accuracy"  # validation metric for early stopping and "best"
    c.train.select_mode = "max"
    c.train.overfit_batches = 0    # lab's overfit_batch: train on K batches only
    c.train.log_every = 20         # steps between host syncs for logging
    c.train.keep_checkpoints = 2   # latest N (the best one is kept too)
    c.train.checkpoint_every = 0   # steps between checkpoints inside an epoch (0: at epoch ends only);
                                   # --resume goes on from the step it reached
    c.train.dtype = "float32"      # compute dtype: float32 | bfloat16
    c.train.grad_accum_steps = 1
    c.train.steps_per_dispatch = 1  # K > 1: K batches stacked, run by lax.scan in one jitted call
    c.train.freeze_backbone = False  # transfer: train the head only
    c.train.init_from = ""         # transfer: a genre run directory

    # Augmentation in the jitted train step (jaxmusic.augment; all off by default).
    c.augment = ml_collections.ConfigDict()
    c.augment.crop_frames = 0      # random crop of min(length, N) valid frames, moved to frame 0
    c.augment.time_shift = 0       # random circular shift of the valid frames by up to +/- N
    c.augment.gain_db = 0.0        # random gain U[-g, g] dB per clip (converted by the feature std)
    c.augment.contrast = 0.0       # random contrast U[1-c, 1+c] around each clip's mean
    c.augment.time_masks = 0       # SpecAugment: number of time masks ...
    c.augment.time_mask_width = 0  # ... each up to this many frames
    c.augment.freq_masks = 0       # SpecAugment: number of frequency masks ...
    c.augment.freq_mask_width = 0  # ... each up to this many bands
    c.augment.mixup_alpha = 0.0    # mixup with lam ~ Beta(a, a); genre labels become soft

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "mse"            # regression: mse | spearman | mse+spearman
    c.loss.spearman_temperature = 0.1
    c.loss.spearman_weight = 1.0   # weight of the Spearman term in mse+spearman
    c.loss.task_weights = (1.0, 1.0, 1.0)  # multitask: per-axis weights
    c.loss.uncertainty_weighting = False   # learned per-task weights (Kendall et al.)
    c.loss.label_smoothing = 0.0
    return c


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load ``get_config()`` from a config file and apply ``--config.x=y`` overrides.

    ``configs/emotion.py:valence,cnn`` passes ``"valence,cnn"`` to ``get_config``
    (the ml_collections convention for parametrised configs).
    """
    path, _, arg = str(path).partition(":")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"jaxmusic_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    if not config.get("name"):
        config.name = path.stem + (f"_{arg.replace(',', '_')}" if arg else "")
    apply_overrides(config, overrides)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Apply ``--config.a.b=value`` overrides; any mistake is a :class:`ConfigError`
    naming the override (unknown field with the nearest names, unparsable value,
    wrong type)."""
    for item in overrides:
        if not item.startswith("--config."):
            raise ConfigError(f"unrecognised argument {item!r} (overrides look like "
                              "--config.train.batch_size=64)")
        key, sep, raw = item[len("--config."):].partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} needs a value: --config.{key}=VALUE")
        parent = config
        parts = key.split(".")
        for depth, p in enumerate(parts[:-1]):
            if not isinstance(parent, ml_collections.ConfigDict) or p not in parent:
                raise ConfigError(f"{item}: unknown config field "
                                  f"{'.'.join(parts[:depth + 1])!r}{_nearest(p, parent)}")
            parent = parent[p]
        leaf = parts[-1]
        if not isinstance(parent, ml_collections.ConfigDict):
            raise ConfigError(f"{item}: {'.'.join(parts[:-1])!r} is a value, not a section")
        if leaf not in parent:
            if parent is config.model:
                parent[leaf] = _parse(raw, None, item)  # backbone keyword: checked by the model
                continue
            raise ConfigError(f"{item}: unknown config field {key!r}{_nearest(leaf, parent)}")
        with parent.ignore_type():
            parent[leaf] = _parse(raw, parent[leaf], item)


def _nearest(name: str, section) -> str:
    names = list(section.keys()) if isinstance(section, ml_collections.ConfigDict) else []
    close = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _parse(raw: str, current, item: str = ""):
    kind = type(current).__name__
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"{item}: expected true or false, got {raw!r}")
    if isinstance(current, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if current is None:
            return raw
        raise ConfigError(f"{item}: cannot parse {raw!r} as {kind}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, tuple) and not isinstance(value, tuple):
        value = (value,)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"{item}: expected {kind}, got {type(value).__name__} {raw!r}")
    return value


def save_config(config: ml_collections.ConfigDict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config.to_dict(), indent=2, default=list) + "\n")


def read_config(path: str | Path) -> ml_collections.ConfigDict:
    """Read a saved ``config.json`` back (tuples restored from JSON lists)."""
    d = json.loads(Path(path).read_text())

    def fix(x):
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(fix(v) for v in x)
        return x

    return ml_collections.ConfigDict(fix(d))


# --- model presets (the lab's settings; see README "Configs") ---------------------------

def lstm_model(**overrides) -> ml_collections.ConfigDict:
    """The submitted lab report's LSTM: bidirectional, 2 layers of 64, dropout 0.4."""
    return ml_collections.ConfigDict({**dict(name="lstm", hidden_size=64, num_layers=2,
                                             bidirectional=True, dropout=0.4, summary="last"),
                                      **overrides})


def cnn_model(**overrides) -> ml_collections.ConfigDict:
    """The lab's 2D CNN: 4 x (Conv2D -> BatchNorm -> ReLU -> MaxPool)."""
    return ml_collections.ConfigDict({**dict(name="cnn", channels=(16, 32, 64, 128),
                                             kernel_size=3), **overrides})


def musicnn_model(arch: str = "musicnn", **overrides) -> ml_collections.ConfigDict:
    """The musicnn / VGG taggers (jaxmusic.models.musicnn) as a backbone; needs the musicnn
    recipe's view (``data.view = "musicnn"``); ``--init-from musicnn:MSD_musicnn`` loads weights."""
    return ml_collections.ConfigDict({**dict(name="musicnn", arch=arch), **overrides})


def ast_model(size: str = "tiny", **overrides) -> ml_collections.ConfigDict:
    """Audio Spectrogram Transformer (Gong et al. 2021), DeiT sizes, strides 10."""
    return ml_collections.ConfigDict({**dict(name="ast", size=size, fstride=10, tstride=10),
                                      **overrides})


def lab_config(set_name: str, view: str, model: ml_collections.ConfigDict,
               task: str = "genre") -> ml_collections.ConfigDict:
    """A lab experiment: the report's training recipe (AdamW 1e-4, weight decay
    1e-4, batch 32, early stopping with patience 3 on validation accuracy)."""
    c = base_config()
    c.task = task
    c.data.set = set_name
    c.data.view = view
    c.model = model
    if task == "classification":
        c.train.select_metric = "macro_f1"
    elif task != "genre":
        c.train.select_metric = "spearman_mean"
    return c


def image_model(name: str, **overrides) -> ml_collections.ConfigDict:
    """An image-style CNN (``lenet``, ``minialexnet``, ``cnn3_dense``; shapes in
    :mod:`jaxmusic.models.image`); set ``data.resize`` to give it fixed pictures."""
    return ml_collections.ConfigDict({"name": name, **overrides})
