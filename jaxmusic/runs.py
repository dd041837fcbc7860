"""The run directory: the one record of a trained model.

A run directory holds

* ``config.json``: the resolved config the run was trained with;
* ``run.json``: everything that shaped the model besides its parameters: task,
  label names (and training class counts), the prepared set, beat or full
  resolution, feature view and count, ``max_length``, the training split's
  per-feature mean and standard deviation, the devices it trained on, and the
  best checkpoint (step, epoch, metric and value);
* ``checkpoints/`` (Orbax, :mod:`jaxmusic.checkpoint`).

Training writes ``run.json`` from the prepared set (:func:`build_run`); every
reader — evaluate, predict, embed, transfer, report — rebuilds the model from
``run.json`` alone (:func:`load_run`), never from whatever the current manifest
says, so a run is scored and used with the statistics it was trained with.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmusic import checkpoint, pretrained, tasks
from jaxmusic.config import read_config
from jaxmusic.data import lab
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet
from jaxmusic.models import Model, build_backbone

CONFIG_FILE = "config.json"
RECORD_FILE = "run.json"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass
class Run:
    """A model and everything around it but its parameters.

    ``record`` is the content of ``run.json``; ``pset`` the run's own prepared set
    when it is on this machine (training and evaluation need it; inference does not).
    """

    config: Any
    record: dict
    task: tasks.Task
    model: Model
    pset: PreparedSet | None = None

    @property
    def max_length(self) -> int:
        return int(self.record["max_length"])

    @property
    def num_features(self) -> int:
        return int(self.record["num_features"])

    def pipeline_config(self, batch_size: int, **changes) -> PipelineConfig:
        """The input pipeline as this run reads data: its view, length and
        standardisation statistics (from ``run.json``, whichever set is read)."""
        mean, std = self.normalization()
        return PipelineConfig(batch_size=batch_size, max_length=self.max_length,
                              view=self.record["view"], mean=mean, std=std, **changes)

    def normalization(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        if not self.record["normalize"]:
            return None, None
        return tuple(self.record["feature_mean"]), tuple(self.record["feature_std"])

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """``(T, F)`` features of this run's view, standardised as in training."""
        mean, std = self.normalization()
        x = np.asarray(features, np.float32)
        if mean is None:
            return x
        s = np.asarray(std, np.float32)
        return (x - np.asarray(mean, np.float32)) / np.where(s > 1e-6, s, 1.0)


def make_model(config, task: tasks.Task, num_features: int, max_length: int) -> Model:
    model_cfg = dict(config.model)
    model_cfg["dtype"] = DTYPES[config.train.dtype]
    if config.model.name == "musicnn" and config.train.freeze_backbone:
        model_cfg["frozen"] = True   # a frozen pretrained tagger normalises with its running statistics
    return Model(backbone=build_backbone(model_cfg, num_features, max_length,
                                         resize=config.data.get("resize", ())),
                 head=task.make_head())


def build_run(config, pset: PreparedSet | None = None) -> Run:
    """A new run from a config and its prepared set (training): the record is
    derived from the set's manifest here, once."""
    if pset is None:
        pset = PreparedSet.open(Path(config.data.prepared) / config.data.set,
                                verify=config.data.get("verify", "auto"))
    bins = int(config.data.get("bins", 0) or 0)
    if config.task == "classification":   # any classes: a genre-kind set's, or bins of a multitask axis
        task_kind = "multitask" if pset.kind == "multitask" else "genre"
        if task_kind == "multitask" and not bins:
            raise ValueError(f"task 'classification' on the multitask set {pset.name} needs data.bins "
                             "(e.g. 3: tertiles) and data.bin_target (the axis)")
    else:
        task_kind = "genre" if config.task == "genre" else "multitask"
    if pset.kind != task_kind:
        raise ValueError(f"task {config.task!r} needs a {task_kind} set, but "
                         f"{pset.name} is a {pset.kind} set")
    counts, label_names, bin_record = None, None, None
    if task_kind == "genre":
        per_class = pset.manifest["splits"]["train"]["per_class"]
        counts = [per_class[c] for c in pset.classes]
        label_names = list(pset.classes)
    elif config.task == "classification":
        axis = str(config.data.bin_target)
        if axis not in lab.TARGETS:
            raise ValueError(f"data.bin_target must be one of {lab.TARGETS}, got {axis!r}")
        values = pset.targets("train")[:, lab.TARGETS.index(axis)]
        edges = tasks.bin_edges(values, bins)
        classes = tasks.bin_labels(values, edges)
        counts = [int(np.sum(classes == k)) for k in range(bins)]
        label_names = list(tasks.bin_names(axis, bins))
        bin_record = {"axis": axis, "edges": list(edges), "split": "train"}
    else:
        label_names = list(config.data.targets)
    mean, std = pset.train_statistics(config.data.view)
    record = {
        "task": config.task, "data_kind": task_kind,
        "label_names": label_names, "bins": bin_record,
        "class_counts": counts, "set": pset.name, "beat": pset.manifest["beat"],
        "view": config.data.view, "num_features": len(mean),
        "max_length": int(config.data.max_length) or pset.max_length(),
        "model": config.model.name, "normalize": bool(config.data.normalize),
        "feature_mean": list(mean), "feature_std": list(std),
    }
    return _assemble(config, record, pset)


def _assemble(config, record: dict, pset: PreparedSet | None) -> Run:
    classifier = record["data_kind"] == "genre" or record["task"] == "classification"
    task = tasks.make_task(config, record["label_names"] if classifier else None,
                           record.get("class_counts"), record.get("bins"))
    model = make_model(config, task, int(record["num_features"]), int(record["max_length"]))
    return Run(config, record, task, model, pset)


def write_json(path: str | Path, value) -> None:
    """Write a JSON file atomically: a run killed while writing leaves the previous one."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def write_record(workdir: str | Path, record: dict) -> None:
    write_json(Path(workdir) / RECORD_FILE, record)


def read_record(workdir: str | Path) -> dict:
    workdir = Path(workdir)
    for name in (CONFIG_FILE, RECORD_FILE):
        if not (workdir / name).exists():
            raise FileNotFoundError(f"{workdir}: no {name} (not a trained jaxmusic run directory)")
    return json.loads((workdir / RECORD_FILE).read_text())


def open_run(workdir: str | Path, *, with_data: bool = True, verify: str | None = None) -> Run:
    """A run rebuilt from its directory (``config.json`` + ``run.json``).

    With ``with_data`` the run's own prepared set is opened when it is there
    (evaluation reads its validation split); its statistics are never used.
    ``verify``: its shard check (default: the run's ``data.verify``)."""
    workdir = Path(workdir)
    record = read_record(workdir)
    config = read_config(workdir / CONFIG_FILE)
    pset = None
    if with_data:
        path = Path(config.data.prepared) / record["set"]
        if (path / "manifest.json").exists():
            pset = PreparedSet.open(path, verify=verify or config.data.get("verify", "auto"))
    return _assemble(config, record, pset)


def load_run(workdir: str | Path, which: str = "best", *, with_data: bool = True, sharding=None,
             verify: str | None = None):
    """``(run, variables, meta)``: the run and its ``best`` or ``latest`` checkpoint's
    variables (``{"params", "batch_stats"?}`` numpy trees, or arrays on ``sharding``)."""
    run = open_run(workdir, with_data=with_data, verify=verify)
    variables, meta = checkpoint.load_variables(workdir, which, sharding)
    return run, variables, meta


def match_source_run(config, source: str | Path):
    """``config`` made to fit a source run for transfer: the same backbone, view and
    picture size (``data.resize``), and for the AST the same input length, which fixes
    its positional embeddings."""
    name = pretrained.parse_init(str(source))
    if name is not None:   # musicnn:<model>: its architecture on the musicnn recipe's view
        config = copy.deepcopy(config)
        keep = dict(config.model) if config.model.name == "musicnn" else {}   # e.g. bn_momentum
        config.model = ml_collections.ConfigDict({**keep, "name": "musicnn", "arch": pretrained.spec(name).arch})
        config.data.view = "musicnn"
        return config
    source = Path(source)
    record = read_record(source)
    src = read_config(source / CONFIG_FILE)
    config = copy.deepcopy(config)
    config.model = src.model
    config.data.view = record["view"]
    with config.data.ignore_type():
        config.data.resize = tuple(src.data.get("resize", ()))
    if src.model.name == "ast":
        config.data.max_length = record["max_length"]
    return config


class LoadedRun:
    """A trained model ready for inference on clips (no prepared data needed)."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.run, self.variables, self.meta = load_run(workdir, "best", with_data=False)
        self.info = self.run.record
        self.task = self.run.task
        model = self.run.model
        self._apply = jax.jit(lambda v, x, n: model.apply(v, x, n, train=False))

    def features(self, full: np.ndarray, beat: np.ndarray) -> np.ndarray:
        """The run's view of one window (``(T, 140)`` full and beat arrays), cropped
        and standardised as in training."""
        view = self.info["view"]
        if full.shape[1] != lab.VIEW_ROWS[view]:
            raise ValueError(f"{self.workdir}: this run reads view {view!r} ({lab.VIEW_ROWS[view]}-row features "
                             f"of its own recipe), given {full.shape[1]}-row features")
        lo, hi = lab.VIEWS[view]
        x = (beat if self.info["beat"] else full)[:, lo:hi]
        return self.run.standardize(x[: self.run.max_length])

    def outputs(self, windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        """``{"output", "latent"}`` for a list of ``(T_i, F)`` windows, in one batch."""
        t = self.run.max_length
        batch = np.zeros((len(windows), t, self.run.num_features), np.float32)
        lengths = np.zeros(len(windows), np.int32)
        for i, w in enumerate(windows):
            batch[i, : len(w)] = w
            lengths[i] = len(w)
        out = self._apply(self.variables, jnp.asarray(batch), jnp.asarray(lengths))
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def __call__(self, windows: list[np.ndarray]) -> np.ndarray:
        return self.outputs(windows)["output"]
