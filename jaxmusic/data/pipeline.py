"""The tf.data input pipeline over prepared TFRecord shards.

Per process: its own shards (shard ``i`` belongs to process ``i % process_count``)
-> shuffle (training) -> decode raw bytes -> slice the feature view -> crop or
zero-pad the time axis to ``max_length`` (the lab's policy: pad at the end,
truncate longer clips) -> batch -> prefetch, yielding plain numpy dicts of fixed
shapes::

    {"features": f32[B, T, F], "lengths": i32[B], "mask": bool[B],
     "label": i32[B]            (genre sets)
     "targets": f32[B, 3]       (multitask sets; NaN where unlabelled)
     "id": bytes[B]             (evaluation only)}

Training batches are full (``drop_remainder``) and every process yields the same
number per epoch. Evaluation batches keep every clip exactly once: the last
batch is zero-padded with ``mask`` False, and processes with fewer clips yield
fully masked batches so that all processes step together.

Memory is bounded by the shuffle and prefetch buffers, not by the set size. With
``cache`` the training split is decoded into memory once; its batches are the
streaming ones, in the same order (the order is a tf.data pipeline run over record
positions instead of records, see ``_epoch_order``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from jaxmusic.data import lab
from jaxmusic.data.tfrecords import feature_spec, read_manifest, verify_shards


@dataclasses.dataclass(frozen=True)
class PreparedSet:
    """A set written by ``jaxmusic prepare``, described by its manifest."""

    dir: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path, verify: str = "auto") -> "PreparedSet":
        """Read the manifest and check the shards against it (``verify``: "auto" = sizes
        on every open, sha256 on the first one after a change; "sha256" = sha256 now;
        see :func:`jaxmusic.data.tfrecords.verify_shards`)."""
        path = Path(path)
        manifest = read_manifest(path)
        verify_shards(path, manifest, verify)
        return cls(path, manifest)

    @property
    def name(self) -> str:
        return self.manifest["set"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def classes(self) -> list[str] | None:
        return self.manifest["classes"]

    def num_features(self, view: str) -> int:
        lo, hi = self.view_columns(view)
        return hi - lo

    def view_columns(self, view: str) -> tuple[int, int]:
        views = self.manifest["views"]
        if view not in views:
            raise lab.DatasetError(
                f"view {view!r} is not stored in this set (stored: {self.manifest['view']}; "
                f"available views: {sorted(views)})", file=self.dir / "manifest.json")
        lo, hi = views[view]
        return lo, hi

    def train_statistics(self, view: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-feature mean and standard deviation of the training split, for ``view``."""
        lo, hi = self.view_columns(view)
        stats = self._split("train")
        return tuple(stats["feature_mean"][lo:hi]), tuple(stats["feature_std"][lo:hi])

    def has_split(self, split: str) -> bool:
        return split in self.manifest["splits"]

    def _split(self, split: str) -> dict:
        if split not in self.manifest["splits"]:
            raise lab.DatasetError(
                f"split {split!r} is not in this prepared set (has: "
                f"{sorted(self.manifest['splits'])})", file=self.dir / "manifest.json")
        return self.manifest["splits"][split]

    def shards(self, split: str, process_index: int = 0, process_count: int = 1) -> list[dict]:
        shards = self._split(split)["shards"]
        if process_count > len(shards):
            raise lab.DatasetError(
                f"split {split!r} has {len(shards)} shards for {process_count} processes: "
                f"prepare with --shards >= {process_count}", file=self.dir / "manifest.json")
        return shards[process_index::process_count]

    def count(self, split: str, process_index: int | None = None, process_count: int = 1) -> int:
        """Clips in a split, all of them or those of one process."""
        if process_index is None:
            return self._split(split)["count"]
        return sum(s["count"] for s in self.shards(split, process_index, process_count))

    def train_steps(self, split: str, batch_size: int, process_count: int = 1) -> int:
        """Full batches per epoch that every process can deliver."""
        return min(self.count(split, p, process_count) // batch_size
                   for p in range(process_count))

    def eval_steps(self, split: str, batch_size: int, process_count: int = 1) -> int:
        """Batches per process that cover every clip of every process."""
        return max(math.ceil(self.count(split, p, process_count) / batch_size)
                   for p in range(process_count))

    def targets(self, split: str) -> np.ndarray:
        """``[N, 3]`` regression targets of a multitask split (NaN where unlabelled),
        read from its shards without decoding the features."""
        import tensorflow as tf

        if self.kind != "multitask":
            raise lab.DatasetError(f"{self.name} is a {self.kind} set: it has no targets",
                                   file=self.dir / "manifest.json")
        spec = {"targets": feature_spec(self.kind)["targets"]}
        files = [str(self.dir / s["file"]) for s in self.shards(split)]
        ds = tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, spec)["targets"])
        rows = [np.asarray(t) for t in ds.as_numpy_iterator()]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, len(lab.TARGETS)), np.float32)

    def max_length(self, split: str | None = None) -> int:
        if split is None:
            return self.manifest["max_length"]
        return self._split(split)["length"]["max"]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    batch_size: int                  # per process
    max_length: int                  # frames after crop/pad
    view: str = "fused"
    shuffle_buffer: int = 1024
    seed: int = 0
    bucket_boundaries: tuple[int, ...] = ()  # optional length buckets (training)
    prefetch: int = 2
    parallel_reads: int = 4
    # Standardisation statistics of the view's columns (a run's training split, from its
    # run.json or, for a new run, the manifest); None: features are read as stored.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    cache: bool = False              # training: decode the split once into memory, then index it


def _decode_fn(pset: PreparedSet, cfg: PipelineConfig, pad: bool):
    import tensorflow as tf

    spec = feature_spec(pset.kind)
    dtype = {"float16": tf.float16, "float32": tf.float32}[pset.manifest["dtype"]]
    lo, hi = pset.view_columns(cfg.view)
    stored = pset.manifest["num_features"]
    max_len = cfg.max_length
    normalize = cfg.mean is not None
    if normalize:
        if len(cfg.mean) != hi - lo or len(cfg.std) != hi - lo:
            raise ValueError(f"standardisation statistics have {len(cfg.mean)} features, "
                             f"view {cfg.view!r} of {pset.dir} has {hi - lo}")
        mean = tf.constant(cfg.mean, tf.float32)
        # Constant features (std 0) are only centred.
        std = tf.constant([s if s > 1e-6 else 1.0 for s in cfg.std], tf.float32)

    def decode(serialized):
        ex = tf.io.parse_single_example(serialized, spec)
        feats = tf.io.decode_raw(ex["features"], dtype, little_endian=True)
        feats = tf.reshape(feats, [-1, stored])[:max_len, lo:hi]
        feats = tf.cast(feats, tf.float32)
        if normalize:
            feats = (feats - mean) / std  # valid frames only: padding below stays zero
        length = tf.shape(feats)[0]
        if pad:
            feats = tf.pad(feats, [[0, max_len - length], [0, 0]])
            feats = tf.ensure_shape(feats, [max_len, hi - lo])
        out = {"features": feats, "lengths": tf.cast(length, tf.int32),
               "mask": tf.constant(True), "id": ex["id"]}
        if pset.kind == "genre":
            out["label"] = tf.cast(ex["label"], tf.int32)
        else:
            out["targets"] = ex["targets"]
        return out

    return decode


def _files_dataset(pset: PreparedSet, split: str, process_index: int, process_count: int):
    import tensorflow as tf

    files = [str(pset.dir / s["file"]) for s in pset.shards(split, process_index, process_count)]
    return tf.data.Dataset.from_tensor_slices(files)


def train_batches(pset: PreparedSet, split: str, cfg: PipelineConfig, *, epoch: int = 0,
                  process_index: int = 0, process_count: int = 1,
                  steps: int | None = None) -> Iterator[dict]:
    """One epoch of shuffled full batches (``steps`` of them; by default as many
    as every process can deliver). The order depends only on ``(seed, epoch,
    process_index)`` (:func:`_epoch_order`), whether the clips stream from the shards
    or come from memory (``cfg.cache``), so a resumed run sees the same batches as an
    uninterrupted one, and the same command the same batches on any machine."""
    import tensorflow as tf

    if steps is None:
        steps = pset.train_steps(split, cfg.batch_size, process_count)
    if steps == 0:
        raise lab.DatasetError(
            f"split {split!r} has fewer clips per process than one batch of {cfg.batch_size}",
            file=pset.dir / "manifest.json")
    if cfg.cache:
        yield from _cached_train_batches(pset, split, cfg, epoch, process_index, process_count, steps)
        return
    shards = pset.shards(split, process_index, process_count)
    files = tf.constant([str(pset.dir / s["file"]) for s in shards])
    ds = _epoch_order(lambda i: tf.data.TFRecordDataset(tf.gather(files, i)), len(shards), cfg,
                      epoch, process_index)
    if cfg.bucket_boundaries:
        ds = ds.map(_decode_fn(pset, cfg, pad=False), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
        ds = _bucket(ds, cfg)
    else:
        ds = ds.map(_decode_fn(pset, cfg, pad=True), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
        ds = ds.batch(cfg.batch_size, drop_remainder=True)
    # Repeat so that an epoch of `steps` batches is always available (bucketing
    # can leave partial buckets behind), then cut it.
    ds = ds.map(_drop_ids).repeat().take(steps).prefetch(cfg.prefetch)
    yield from ds.as_numpy_iterator()


def _epoch_order(read_shard, n_shards: int, cfg: PipelineConfig, epoch: int, process_index: int):
    """The training order of one epoch of one input stream, as a tf.data pipeline:
    the stream's shards in an order shuffled by the seed, read ``cfg.parallel_reads``
    at a time (deterministic interleave), through a seeded shuffle buffer.

    ``read_shard(i)`` gives the records of the stream's ``i``-th shard: the records
    themselves (streaming) or their positions in memory (cache). Interleave and
    shuffle order elements by their count and the seed alone, never by their
    values, so both give the same order: a function of ``(seed, epoch,
    process_index)`` only, with memory bounded by the shuffle buffer."""
    import tensorflow as tf

    seed = int(np.random.SeedSequence([cfg.seed, epoch, process_index]).generate_state(1)[0] >> 1)
    shards = tf.data.Dataset.range(n_shards).shuffle(64, seed=seed)
    ds = shards.interleave(read_shard, cycle_length=cfg.parallel_reads,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.shuffle(cfg.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=False)


_CACHE: dict = {}
CACHE_MEMORY_FRACTION = 0.25  # "auto" caches a split only if it takes at most this share of free memory


def meminfo(field: str) -> int | None:
    """A ``/proc/meminfo`` field (``MemAvailable``, ``MemTotal``, ...) in bytes; None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _available_memory() -> int | None:
    return meminfo("MemAvailable")


def cached_split_bytes(pset: PreparedSet, split: str, view: str, max_length: int, share: float = 1.0) -> int:
    """Memory of ``share`` of ``split`` decoded as :func:`_cached_split` keeps it (float32, padded)."""
    lo, hi = pset.view_columns(view)
    count = pset.manifest["splits"][split]["count"]
    return int(count * share * max_length * (hi - lo) * 4)


def resolve_cache(setting, pset: PreparedSet, split: str, view: str, max_length: int, share: float = 1.0,
                  bucketed: bool = False) -> tuple[bool, str]:
    """``data.cache`` (True, False or "auto") -> (cache?, why).

    "auto" caches when the split (this process's ``share`` of it) needs at most
    :data:`CACHE_MEMORY_FRACTION` of the free memory and no length buckets are asked
    for (buckets need the streaming pipeline); otherwise it streams.
    """
    if isinstance(setting, str):
        lowered = setting.strip().lower()
        if lowered in ("true", "1", "yes"):
            setting = True
        elif lowered in ("false", "0", "no"):
            setting = False
        elif lowered == "auto":
            setting = "auto"
        else:
            raise ValueError(f"data.cache must be true, false or 'auto', got {setting!r}")
    if setting not in (True, False, "auto"):
        raise ValueError(f"data.cache must be true, false or 'auto', got {setting!r}")
    if setting == "auto":
        if bucketed:
            return False, "auto: streaming (length buckets)"
        need = cached_split_bytes(pset, split, view, max_length, share)
        free = _available_memory()
        if free is None:
            return False, "auto: streaming (free memory unknown)"
        if need > CACHE_MEMORY_FRACTION * free:
            return False, (f"auto: streaming ({need / 2**20:,.0f} MB decoded > {CACHE_MEMORY_FRACTION:.0%} "
                           f"of {free / 2**20:,.0f} MB free)")
        return True, f"auto: in memory ({need / 2**20:,.0f} MB of {free / 2**20:,.0f} MB free)"
    return setting, "in memory" if setting else "streaming"


def _cached_split(pset: PreparedSet, split: str, cfg: PipelineConfig, process_index: int,
                  process_count: int) -> dict:
    """This process's clips of ``split``, decoded, standardised and padded once (kept per process)."""
    what = (str(pset.dir), split, process_count, cfg.view, cfg.max_length, cfg.mean, cfg.std)
    key = (what, process_index)  # one entry per input stream of this process
    if key not in _CACHE:
        read = dataclasses.replace(cfg, batch_size=256, cache=False)
        parts = [{k: v[b["mask"]] for k, v in b.items() if k != "id"}
                 for b in eval_batches(pset, split, read, process_index=process_index,
                                       process_count=process_count)]
        for other in [k for k in _CACHE if k[0] != what]:  # one split at a time: the current run's
            del _CACHE[other]
        _CACHE[key] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _CACHE[key]


def _cached_train_batches(pset, split, cfg, epoch, process_index, process_count, steps) -> Iterator[dict]:
    """Cache mode of :func:`train_batches`: the streaming path's order (:func:`_epoch_order`
    over record positions instead of records), gathered from the in-memory split."""
    import tensorflow as tf

    if cfg.bucket_boundaries:
        raise ValueError("data.cache and data.bucket_boundaries do not combine")
    data = _cached_split(pset, split, cfg, process_index, process_count)
    # The cached arrays hold this stream's shards one after the other, in shard order.
    counts = [s["count"] for s in pset.shards(split, process_index, process_count)]
    if sum(counts) != len(data["lengths"]):
        raise lab.DatasetError(f"split {split!r} holds {len(data['lengths'])} clips in its shards, "
                               f"the manifest says {sum(counts)}", file=pset.dir / "manifest.json")
    starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
    sizes = tf.constant(np.asarray(counts, np.int64))

    def positions(shard):
        first = tf.gather(starts, shard)
        return tf.data.Dataset.range(first, first + tf.gather(sizes, shard))

    order = _epoch_order(positions, len(counts), cfg, epoch, process_index)
    order = order.batch(cfg.batch_size, drop_remainder=True).repeat().take(steps)
    for idx in order.as_numpy_iterator():
        yield {k: v[idx] for k, v in data.items()}


def _drop_ids(batch):
    return {k: v for k, v in batch.items() if k != "id"}


def _bucket(ds, cfg: PipelineConfig):
    import tensorflow as tf

    bounds = sorted(set(list(cfg.bucket_boundaries) + [cfg.max_length]))
    bounds = [b for b in bounds if b <= cfg.max_length]
    bounds_t = tf.constant(bounds, tf.int32)

    def key(ex):
        return tf.cast(tf.searchsorted(bounds_t, [ex["lengths"]], side="left")[0], tf.int64)

    def reduce(k, window):
        width = tf.gather(bounds_t, k)
        shapes = {"features": tf.cast(tf.stack([width, -1]), tf.int64), "lengths": [], "mask": [],
                  "id": []}
        shapes.update({n: ([] if n == "label" else [len(lab.TARGETS)]) for n in ("label", "targets")
                       if n in window.element_spec})
        return window.padded_batch(cfg.batch_size, padded_shapes=shapes, drop_remainder=True)

    return ds.group_by_window(key_func=key, reduce_func=reduce, window_size=cfg.batch_size)


def eval_batches(pset: PreparedSet, split: str, cfg: PipelineConfig, *, process_index: int = 0,
                 process_count: int = 1, steps: int | None = None) -> Iterator[dict]:
    """Every clip of this process's shards exactly once, in shard order, in
    fixed-shape batches; padding rows and extra batches have ``mask`` False."""
    import tensorflow as tf

    if steps is None:
        steps = pset.eval_steps(split, cfg.batch_size, process_count)
    ds = _files_dataset(pset, split, process_index, process_count)
    ds = ds.flat_map(tf.data.TFRecordDataset)
    ds = ds.map(_decode_fn(pset, cfg, pad=True), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=False).prefetch(cfg.prefetch)
    produced = 0
    template = None
    for batch in ds.as_numpy_iterator():
        batch = _pad_batch(batch, cfg.batch_size)
        template = batch
        produced += 1
        yield batch
    if template is None:
        template = _empty_batch(pset, cfg)
    while produced < steps:
        produced += 1
        yield _pad_batch({k: v[:0] for k, v in template.items()}, cfg.batch_size)


def _pad_batch(batch: dict, size: int) -> dict:
    n = len(batch["mask"])
    if n == size:
        return batch
    out = {}
    for k, v in batch.items():
        pad = (np.full((size - n,), b"", dtype=object) if v.dtype == object
               else np.zeros((size - n,) + v.shape[1:], dtype=v.dtype))
        out[k] = np.concatenate([v, pad])
    out["mask"][n:] = False
    return out


def _empty_batch(pset: PreparedSet, cfg: PipelineConfig) -> dict:
    out = {"features": np.zeros((0, cfg.max_length, pset.num_features(cfg.view)), np.float32),
           "lengths": np.zeros((0,), np.int32), "mask": np.zeros((0,), bool),
           "id": np.zeros((0,), object)}
    if pset.kind == "genre":
        out["label"] = np.zeros((0,), np.int32)
    else:
        out["targets"] = np.zeros((0, len(lab.TARGETS)), np.float32)
    return out
