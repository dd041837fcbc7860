"""The input pipeline over prepared TFRecord shards, without TensorFlow.

Shards are read by :mod:`jaxmusic.data.records` (TFRecord framing with both CRCs
checked, ``tf.train.Example`` parsed with plain protobuf), in parallel over shards,
and each clip is decoded once into fixed-shape arrays: the view's columns sliced,
standardised with the statistics handed in (padding stays 0), cropped or zero-padded
at the end to ``max_length`` (the lab's policy)::

    {"features": f32[N, T, F], "lengths": i32[N],
     "label": i32[N]            (genre sets)
     "targets": f32[N, 3]       (multitask sets; NaN where unlabelled)
     "id": bytes[N]}

Training draws batches from such a decoded split by index. The **epoch order** is
one function of ``(seed, epoch, stream)`` (:func:`epoch_order`: a numpy permutation
of the stream's clips), whatever the machine and however the clips reach the step:

* ``device``: the split lives on the accelerator and the jitted step gathers its
  batch by index (:mod:`jaxmusic.parallel`'s resident split; ``train.steps_per_dispatch``
  indices go in one call);
* ``host``: numpy gathers each batch and two are kept in flight onto the devices
  (:func:`jaxmusic.parallel.prefetch_to_devices`);
* ``stream``: for sets larger than memory, the same indices read their records
  one by one through Grain (:mod:`jaxmusic.data.stream`).

:func:`resolve_placement` chooses (``data.placement``: auto | device | host | stream).
A stream ``r`` of ``n`` owns the shards ``r, r + n, ...`` (its clips in shard order);
a process runs its share of the streams, and a global batch is every stream's batch in
stream order. Training batches are full and every stream yields the same number of
them per epoch; evaluation batches (:func:`eval_batches`) hold every clip exactly once,
the last one zero-padded with ``mask`` False, and processes with fewer clips yield fully
masked batches so that all processes step together.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from jaxmusic.data import lab, records
from jaxmusic.data.tfrecords import read_manifest, verify_shards


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
        """The shards of stream ``process_index`` of ``process_count``."""
        shards = self._split(split)["shards"]
        if process_count > len(shards):
            raise lab.DatasetError(
                f"split {split!r} has {len(shards)} shards for {process_count} input streams: "
                f"prepare with --shards >= {process_count}", file=self.dir / "manifest.json")
        return shards[process_index::process_count]

    def shard_paths(self, split: str, process_index: int = 0, process_count: int = 1) -> list[Path]:
        return [self.dir / s["file"] for s in self.shards(split, process_index, process_count)]

    def count(self, split: str, process_index: int | None = None, process_count: int = 1) -> int:
        """Clips in a split, all of them or those of one stream."""
        if process_index is None:
            return self._split(split)["count"]
        return sum(s["count"] for s in self.shards(split, process_index, process_count))

    def train_steps(self, split: str, batch_size: int, process_count: int = 1) -> int:
        """Full batches per epoch that every stream can deliver."""
        return min(self.count(split, p, process_count) // batch_size
                   for p in range(process_count))

    def eval_steps(self, split: str, batch_size: int, process_count: int = 1) -> int:
        """Batches per process that cover every clip of every process."""
        return max(math.ceil(self.count(split, p, process_count) / batch_size)
                   for p in range(process_count))

    def targets(self, split: str) -> np.ndarray:
        """``[N, 3]`` regression targets of a multitask split (NaN where unlabelled),
        read from its shards in shard order."""
        if self.kind != "multitask":
            raise lab.DatasetError(f"{self.name} is a {self.kind} set: it has no targets",
                                   file=self.dir / "manifest.json")
        rows = [np.asarray(ex["targets"], np.float32)
                for ex in records.read_examples(self.shard_paths(split))]
        return np.stack(rows) if rows else np.zeros((0, len(lab.TARGETS)), np.float32)

    def max_length(self, split: str | None = None) -> int:
        if split is None:
            return self.manifest["max_length"]
        return self._split(split)["length"]["max"]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    batch_size: int                  # per stream (training) or per process (evaluation)
    max_length: int                  # frames after crop/pad
    view: str = "fused"
    seed: int = 0
    bucket_boundaries: tuple[int, ...] = ()  # optional length buckets (training, host placement)
    # Standardisation statistics of the view's columns (a run's training split, from its
    # run.json or, for a new run, the manifest); None: features are read as stored.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    workers: int = 0                 # decoding threads (0: one per core, at most one per shard)


# --- decoding -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
    """How a stored clip becomes a row of the decoded arrays."""

    kind: str
    dtype: np.dtype
    stored: int
    lo: int
    hi: int
    max_length: int
    mean: np.ndarray | None
    std: np.ndarray | None

    @classmethod
    def of(cls, pset: PreparedSet, cfg: PipelineConfig) -> "Layout":
        lo, hi = pset.view_columns(cfg.view)
        mean = std = None
        if cfg.mean is not None:
            if len(cfg.mean) != hi - lo or len(cfg.std) != hi - lo:
                raise ValueError(f"standardisation statistics have {len(cfg.mean)} features, "
                                 f"view {cfg.view!r} of {pset.dir} has {hi - lo}")
            mean = np.asarray(cfg.mean, np.float32)
            # Constant features (std 0) are only centred.
            std = np.asarray([s if s > 1e-6 else 1.0 for s in cfg.std], np.float32)
        dtype = np.dtype(pset.manifest["dtype"]).newbyteorder("<")
        return cls(pset.kind, dtype, pset.manifest["num_features"], lo, hi, cfg.max_length, mean, std)

    @property
    def num_features(self) -> int:
        return self.hi - self.lo

    def empty(self, n: int) -> dict:
        out = {"features": np.zeros((n, self.max_length, self.num_features), np.float32),
               "lengths": np.zeros((n,), np.int32), "id": np.full((n,), b"", object)}
        if self.kind == "genre":
            out["label"] = np.zeros((n,), np.int32)
        else:
            out["targets"] = np.zeros((n, len(lab.TARGETS)), np.float32)
        return out


def decode_into(ex: dict, layout: Layout, out: dict, i: int) -> None:
    """Decode one parsed example into row ``i`` of ``out`` (arrays of ``layout.empty``)."""
    x = np.frombuffer(ex["features"], layout.dtype).reshape(-1, layout.stored)
    x = x[: layout.max_length, layout.lo: layout.hi].astype(np.float32)
    if layout.mean is not None:
        x = (x - layout.mean) / layout.std
    n = len(x)
    out["features"][i, :n] = x
    out["lengths"][i] = n
    out["id"][i] = ex["id"]
    if layout.kind == "genre":
        out["label"][i] = ex["label"]
    else:
        out["targets"][i] = ex["targets"]


def _decode_shard(path: Path, count: int, layout: Layout) -> dict:
    """Every clip of one shard, decoded into the arrays of :class:`Layout` (``count``
    from the manifest: a shard that holds another number is an error naming it)."""
    out = layout.empty(count)
    i = -1
    for i, ex in enumerate(records.read_examples([path])):
        if i >= count:
            raise lab.DatasetError(f"shard holds more than the {count} records its manifest lists: "
                                   "prepare the set again", file=path)
        decode_into(ex, layout, out, i)
    if i + 1 != count:
        raise lab.DatasetError(f"shard holds {i + 1} records, its manifest lists {count}: "
                               "prepare the set again", file=path)
    return out


def _workers(cfg: PipelineConfig, n_shards: int) -> int:
    want = cfg.workers or os.cpu_count() or 1
    return max(1, min(want, n_shards))


def _decoded_shards(pset: PreparedSet, shards: Sequence[dict], cfg: PipelineConfig) -> Iterator[dict]:
    """Each shard's decoded arrays in shard order, decoded ``cfg.workers`` at a time (at
    most that many shards ahead of the consumer)."""
    layout = Layout.of(pset, cfg)
    if not shards:
        return
    n = _workers(cfg, len(shards))
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        submit = lambda s: pool.submit(_decode_shard, pset.dir / s["file"], s["count"], layout)  # noqa: E731
        futures = [submit(s) for s in shards[:n]]
        for i in range(len(shards)):
            part = futures[i].result()
            futures[i] = None
            if i + n < len(shards):
                futures.append(submit(shards[i + n]))
            yield part


def _concat(parts: Sequence[dict], layout: Layout) -> dict:
    if not parts:
        return layout.empty(0)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclasses.dataclass(frozen=True)
class LocalSplit:
    """The clips of this process's input streams, decoded (stream after stream, each
    stream's shards in order): ``arrays`` as in the module docstring, ``offsets[i]``
    the first row of ``streams[i]``."""

    arrays: dict
    streams: tuple[int, ...]
    stream_count: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]


_CACHE: dict = {}


def load_split(pset: PreparedSet, split: str, cfg: PipelineConfig, streams: Sequence[int] = (0,),
               stream_count: int = 1) -> LocalSplit:
    """Streams ``streams`` of ``stream_count`` of a split, decoded into memory once (the
    latest split asked for is kept, so that every epoch and a repeated run reuse it)."""
    key = (str(pset.dir), split, tuple(streams), stream_count, cfg.view, cfg.max_length, cfg.mean, cfg.std)
    if key not in _CACHE:
        _CACHE.clear()  # one split at a time: the current run's
        layout = Layout.of(pset, cfg)
        shards = [s for r in streams for s in pset.shards(split, r, stream_count)]
        counts = tuple(pset.count(split, r, stream_count) for r in streams)
        offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(counts)[:-1]]))
        arrays = _concat(list(_decoded_shards(pset, shards, cfg)), layout)
        _CACHE[key] = LocalSplit(arrays, tuple(streams), stream_count, offsets, counts)
    return _CACHE[key]


def split_bytes(pset: PreparedSet, split: str, view: str, max_length: int, share: float = 1.0) -> int:
    """Memory of ``share`` of ``split`` decoded as :func:`load_split` keeps it (float32, padded)."""
    lo, hi = pset.view_columns(view)
    count = pset.manifest["splits"][split]["count"]
    return int(count * share * max_length * (hi - lo) * 4)


# --- the epoch order ------------------------------------------------------------------------------

def epoch_order(count: int, seed: int, epoch: int, stream: int) -> np.ndarray:
    """The training order of one epoch of one input stream: a permutation of its
    ``count`` clips, a function of ``(seed, epoch, stream)`` alone (numpy's PCG64,
    the same on every machine)."""
    return np.random.default_rng([seed, epoch, stream]).permutation(count).astype(np.int64)


def epoch_indices(local: LocalSplit, batch_size: int, seed: int, epoch: int, steps: int) -> np.ndarray:
    """``[steps, batch_size * len(streams)]`` rows of ``local.arrays`` for one epoch: step
    ``s`` holds every stream's ``s``-th batch (``batch_size`` clips of its order), stream
    after stream. A stream's order repeats if ``steps`` asks for more than one pass."""
    parts = []
    for stream, offset, count in zip(local.streams, local.offsets, local.counts):
        need = steps * batch_size
        if count == 0:
            raise lab.DatasetError(f"input stream {stream} of {local.stream_count} has no clips")
        order = epoch_order(count, seed, epoch, stream)
        order = np.tile(order, -(-need // count))[:need]
        parts.append(offset + order.reshape(steps, batch_size))
    return np.concatenate(parts, axis=1)


def bucket_indices(local: LocalSplit, cfg: PipelineConfig, epoch: int, steps: int
                   ) -> list[tuple[np.ndarray, int]]:
    """Length buckets (one stream): ``steps`` batches ``(rows, width)``. The epoch order is
    walked once (repeated if needed); each clip joins the bucket of the smallest boundary
    that holds it, and a bucket that fills to ``cfg.batch_size`` is the next batch, padded
    to its boundary."""
    if len(local.streams) != 1:
        raise ValueError("length buckets need a single input stream")
    bounds = sorted({b for b in cfg.bucket_boundaries if b <= cfg.max_length} | {cfg.max_length})
    lengths = local.arrays["lengths"]
    order = epoch_order(local.counts[0], cfg.seed, epoch, local.streams[0])
    buckets: dict[int, list[int]] = {}
    out: list[tuple[np.ndarray, int]] = []
    while len(out) < steps:
        emitted = len(out)
        for i in order:
            k = int(np.searchsorted(bounds, lengths[i], side="left"))
            buckets.setdefault(k, []).append(int(i))
            if len(buckets[k]) == cfg.batch_size:
                out.append((np.asarray(buckets.pop(k)), bounds[k]))
                if len(out) == steps:
                    break
        if len(out) == emitted:
            raise ValueError("no length bucket fills one batch")
    return out


def gather(arrays: dict, rows: np.ndarray, width: int | None = None) -> dict:
    """A training batch of ``rows`` of decoded arrays (``width``: frames kept)."""
    batch = {k: v[rows] for k, v in arrays.items() if k != "id"}
    if width is not None:
        batch["features"] = batch["features"][:, :width]
    batch["mask"] = np.ones(len(rows), bool)
    return batch


def train_batches(pset: PreparedSet, split: str, cfg: PipelineConfig, *, epoch: int = 0,
                  process_index: int = 0, process_count: int = 1,
                  steps: int | None = None) -> Iterator[dict]:
    """One epoch of full batches of stream ``process_index`` of ``process_count`` from host
    memory (the ``host`` placement's batches; ``steps`` of them, by default as many as every
    stream can deliver), in the order of :func:`epoch_indices`."""
    if steps is None:
        steps = pset.train_steps(split, cfg.batch_size, process_count)
    if steps == 0:
        raise lab.DatasetError(
            f"split {split!r} has fewer clips per stream than one batch of {cfg.batch_size}",
            file=pset.dir / "manifest.json")
    local = load_split(pset, split, cfg, (process_index,), process_count)
    if cfg.bucket_boundaries:
        for rows, width in bucket_indices(local, cfg, epoch, steps):
            yield gather(local.arrays, rows, width)
        return
    for rows in epoch_indices(local, cfg.batch_size, cfg.seed, epoch, steps):
        yield gather(local.arrays, rows)


# --- where the training split lives ----------------------------------------------------------------

PLACEMENTS = ("auto", "device", "host", "stream")
DEVICE_MEMORY_FRACTION = 0.25  # "auto": on the device when the split takes at most this share of its memory
HOST_MEMORY_FRACTION = 0.25    # "auto": in host memory when it takes at most this share of the free memory


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


def resolve_placement(setting: str, need: int, device_free: int | None, host_free: int | None,
                      bucketed: bool = False) -> tuple[str, str]:
    """``data.placement`` -> (placement, why). ``need``: bytes of this process's decoded
    split; ``device_free``: bytes free on one device (None: unknown, e.g. a CPU, whose
    "device" memory is host memory); ``host_free``: free host memory (None: unknown).

    "auto" takes ``device`` when the split fits :data:`DEVICE_MEMORY_FRACTION` of the
    device's free memory, else ``host`` when it fits :data:`HOST_MEMORY_FRACTION` of the
    free host memory, else ``stream``; length buckets (varying batch shapes) need ``host``
    or ``stream``."""
    setting = str(setting).strip().lower()
    if setting not in PLACEMENTS:
        raise ValueError(f"data.placement must be one of {', '.join(PLACEMENTS)}, got {setting!r}")
    if setting != "auto":
        if setting == "device" and bucketed:
            raise ValueError("data.placement=device gathers fixed-shape batches on the device: it does "
                             "not combine with data.bucket_boundaries (use host or stream)")
        return setting, f"{setting} (asked for)"
    mb = need / 2**20
    on_device = device_free if device_free is not None else host_free
    if not bucketed and on_device is not None and need <= DEVICE_MEMORY_FRACTION * on_device:
        return "device", f"auto: device ({mb:,.0f} MB <= {DEVICE_MEMORY_FRACTION:.0%} of {on_device / 2**20:,.0f} MB free)"
    if host_free is not None and need <= HOST_MEMORY_FRACTION * host_free:
        why = "length buckets" if bucketed else f"{mb:,.0f} MB > {DEVICE_MEMORY_FRACTION:.0%} of the device's free memory"
        return "host", f"auto: host ({why}; {mb:,.0f} MB <= {HOST_MEMORY_FRACTION:.0%} of {host_free / 2**20:,.0f} MB free)"
    return "stream", (f"auto: stream ({mb:,.0f} MB decoded > {HOST_MEMORY_FRACTION:.0%} of "
                      f"{(host_free or 0) / 2**20:,.0f} MB free host memory)")


# --- evaluation ----------------------------------------------------------------------------------

def eval_batches(pset: PreparedSet, split: str, cfg: PipelineConfig, *, process_index: int = 0,
                 process_count: int = 1, steps: int | None = None) -> Iterator[dict]:
    """Every clip of this process's shards exactly once, in shard order, in
    fixed-shape batches; padding rows and extra batches have ``mask`` False. Shards are
    decoded ``cfg.workers`` at a time, so memory is bounded by a few shards."""
    if steps is None:
        steps = pset.eval_steps(split, cfg.batch_size, process_count)
    layout = Layout.of(pset, cfg)
    size = cfg.batch_size
    produced = 0
    pending = layout.empty(0)
    for part in _decoded_shards(pset, pset.shards(split, process_index, process_count), cfg):
        pending = _concat([pending, part], layout)
        while len(pending["lengths"]) >= size:
            yield _with_mask(pending, size, size)
            pending = {k: v[size:] for k, v in pending.items()}
            produced += 1
    if len(pending["lengths"]) or produced < steps:
        n = len(pending["lengths"])
        padded = _concat([pending, layout.empty(size - n)], layout)
        yield _with_mask(padded, size, n)
        produced += 1
    while produced < steps:
        yield _with_mask(layout.empty(size), size, 0)
        produced += 1


def _with_mask(arrays: dict, size: int, valid: int) -> dict:
    batch = {k: v[:size] for k, v in arrays.items()}
    batch["mask"] = np.arange(size) < valid
    return batch
