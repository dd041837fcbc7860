"""`jaxmusic prepare`: one lab set -> sharded TFRecords, a manifest, tfds metadata.

Output folder ``OUT/<set name>/``:

* ``<set>-<split>.tfrecord-<i:05d>-of-<n:05d>`` for split in train, validation,
  test: TFRecord files of ``tf.train.Example`` records (written and read without
  TensorFlow by :mod:`jaxmusic.data.records`; map keys sorted) with ``id``, ``features`` (raw
  little-endian float16/float32 bytes, row-major ``(length, num_features)``),
  ``length``, ``num_features``, ``source`` and ``label`` + ``genre`` (genre sets)
  or ``targets`` (multitask sets; NaN where the lab gives no label);
* ``manifest.json``: counts per split and class, shard files with counts, byte
  sizes and sha256, length statistics, the stored view, dtype, split seed, skipped
  items;
* ``manifest.verified.json``: the stamp of the last full sha256 check (see
  :func:`verify_shards`);
* ``dataset_info.json`` + ``features.json`` (+ ``label.labels.txt``): tfds
  metadata, written without TensorFlow, so ``tfds.builder_from_directory(OUT/<set>)``
  loads the shards too.

The validation split is carved from train, seeded and stratified by class
(genre) or by group (``train_groups.txt``: ``Id<TAB>Group``) so no group sits
on both sides. Records stream one file at a time; output is byte-deterministic.

Opening a prepared set checks its shards against the manifest (:func:`verify_shards`):
every shard's byte size on every open, and its sha256 on the first open after the
shards or the manifest changed (a stamp file remembers the last check) or whenever
asked (``verify="sha256"``). A shard that fails is named, with what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxmusic.data import lab, records

FORMAT_VERSION = 1
STORE_DTYPES = {"float16": np.float16, "float32": np.float32}
SPLITS = ("train", "validation", "test")
MANIFEST_FILE = "manifest.json"
STAMP_FILE = "manifest.verified.json"
# data.verify / PreparedSet.open(verify=...): "auto" checks sizes on every open and
# sha256 on the first (until the stamp goes stale); "sha256" hashes on every open.
VERIFY_MODES = ("auto", "sha256")


def shard_name(set_name: str, split: str, index: int, count: int) -> str:
    return f"{set_name}-{split}.tfrecord-{index:05d}-of-{count:05d}"


# --- splitting ------------------------------------------------------------------

def read_groups(set_dir: Path, split: str) -> dict[str, str] | None:
    """``<split>_groups.txt`` (``Id<TAB>Group`` with a header), if present."""
    path = set_dir / f"{split}_groups.txt"
    if not path.exists():
        return None
    groups: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        parts = text.split("\t")
        if len(parts) != 2:
            raise lab.DatasetError(f"expected '<id><TAB><group>', got {text!r}",
                                   file=path, line=lineno)
        groups[parts[0].strip()] = parts[1].strip()
    return groups


def split_train_validation(entries: Sequence[lab.LabelEntry], fraction: float, seed: int,
                           groups: dict[str, str] | None = None, folds: int = 0, fold: int = 0
                           ) -> tuple[list[lab.LabelEntry], list[lab.LabelEntry]]:
    """Seeded split of train entries; stratified by label; whole groups when given.

    Each stratum (a class, or for multitask data everything) is shuffled with
    its own seeded generator and ``round(fraction * n)`` items go to
    validation, so the split is independent of the order of the label file.
    With ``folds`` = k > 1, every stratum is cut into k folds of (nearly) equal
    size instead and fold ``fold`` is the validation split (k-fold CV).
    """
    if folds > 1:
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in [0, {folds}), got {fold}")
    elif not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    elif fraction == 0.0:
        return list(entries), []
    if groups is not None:
        missing = [e.id for e in entries if e.id not in groups]
        if missing:
            raise lab.DatasetError(f"{len(missing)} clips have no group (first: {missing[0]!r})",
                                   file="train_groups.txt")
        units: dict[str, list[lab.LabelEntry]] = {}
        for e in entries:
            units.setdefault(groups[e.id], []).append(e)
    else:
        units = {e.id: [e] for e in entries}
    # Stratum of a unit: the most common label inside it (-1 for regression).
    strata: dict[int, list[str]] = {}
    for key, members in sorted(units.items()):
        labels = [m.label for m in members if m.label is not None]
        stratum = max(set(labels), key=labels.count) if labels else -1
        strata.setdefault(stratum, []).append(key)
    if folds > 1:
        val_keys = set()
        for stratum, keys in sorted(strata.items()):
            order = [keys[i] for i in np.random.default_rng([seed, stratum + 1]).permutation(len(keys))]
            total, seen = sum(len(units[k]) for k in order), 0
            for k in order:
                if (seen * folds // total + stratum + 1) % folds == fold:
                    val_keys.add(k)
                seen += len(units[k])
        train = [e for e in entries if (groups[e.id] if groups else e.id) not in val_keys]
        val = [e for e in entries if (groups[e.id] if groups else e.id) in val_keys]
        return train, val
    # Largest-remainder allocation: the validation share is round(fraction * N)
    # overall and as close to `fraction` as whole units allow in every stratum.
    sizes = {st: sum(len(units[k]) for k in keys) for st, keys in strata.items()}
    want = {st: fraction * n for st, n in sizes.items()}
    quota = {st: int(w) for st, w in want.items()}
    spare = round(fraction * sum(sizes.values())) - sum(quota.values())
    for st in sorted(strata, key=lambda st: (-(want[st] - quota[st]), st))[:max(spare, 0)]:
        quota[st] += 1
    val_keys: set[str] = set()
    for stratum, keys in sorted(strata.items()):
        rng = np.random.default_rng([seed, stratum + 1])
        taken = 0
        for i in rng.permutation(len(keys)):
            if taken >= quota[stratum]:
                break
            val_keys.add(keys[i])
            taken += len(units[keys[i]])
    train = [e for e in entries if (groups[e.id] if groups else e.id) not in val_keys]
    val = [e for e in entries if (groups[e.id] if groups else e.id) in val_keys]
    return train, val


# --- encoding -------------------------------------------------------------------

def check_rows(rec: lab.Record, view: str, set_dir: Path | None = None) -> None:
    """A view reads files of one recipe: 140 rows (mel/chroma/fused) or 96 (musicnn)."""
    rows = rec.features.shape[1]
    if rows != lab.VIEW_ROWS[view]:
        made = "the musicnn recipe" if rows == lab.VIEW_ROWS["musicnn"] else "the lab recipe"
        hint = "--view musicnn" if rows == lab.VIEW_ROWS["musicnn"] else "--view mel|chroma|fused"
        raise lab.DatasetError(f"clip {rec.id} has {rows} feature rows ({made}); view {view!r} needs "
                               f"{lab.VIEW_ROWS[view]}: prepare it with {hint}", file=set_dir)


def encode_example(rec: lab.Record, kind: str, dtype: np.dtype, view: str) -> bytes:
    """One clip as a serialised ``tf.train.Example`` (see the module docstring)."""
    check_rows(rec, view)
    lo, hi = lab.VIEWS[view]
    feats = np.ascontiguousarray(rec.features[:, lo:hi], dtype=np.dtype(dtype).newbyteorder("<"))
    f = {"id": rec.id, "features": feats.tobytes(), "length": rec.length, "num_features": hi - lo,
         "source": rec.source}
    if kind == "genre":
        f["label"] = rec.label
        f["genre"] = rec.genre
    else:
        f["targets"] = rec.targets if rec.targets is not None else np.full(len(lab.TARGETS), np.nan, np.float32)
    return records.encode_example(f)


# --- writing ------------------------------------------------------------------------

@dataclasses.dataclass
class PrepareOptions:
    shards: int = 4
    validation_fraction: float = 0.2
    seed: int = 0
    dtype: str = "float16"
    view: str = "fused"
    skip_bad: bool = False
    group_split: bool = True
    progress: bool = True
    folds: int = 0   # k-fold cross-validation: k folds, validation = fold `fold`
    fold: int = 0


def _write_split(out: Path, set_name: str, split: str, set_dir: Path,
                 entries: Sequence[lab.LabelEntry], kind: str, opts: PrepareOptions,
                 skipped: lab.SkipLog | None, bar) -> dict:
    n = max(1, min(opts.shards, len(entries)))
    names = [shard_name(set_name, split, i, n) for i in range(n)]
    counts = [0] * n
    lengths: list[int] = []
    per_class: dict[str, int] = {}
    classes = lab.class_map(set_dir).classes
    writers = [records.RecordWriter(out / (nm + ".tmp")) for nm in names]
    lo, hi = lab.VIEWS[opts.view]
    frames, col_sum, col_sq = 0, np.zeros(hi - lo), np.zeros(hi - lo)
    try:
        written = 0
        for rec in lab.iter_records(set_dir, "train" if split == "validation" else split,
                                    skipped=skipped, entries=entries):
            check_rows(rec, opts.view, set_dir)
            shard = written % n  # round-robin: balanced shards
            writers[shard].write(encode_example(rec, kind, STORE_DTYPES[opts.dtype], opts.view))
            counts[shard] += 1
            written += 1
            lengths.append(rec.length)
            stored = rec.features[:, lo:hi].astype(STORE_DTYPES[opts.dtype]).astype(np.float64)
            frames += len(stored)
            col_sum += stored.sum(0)
            col_sq += (stored * stored).sum(0)
            if rec.label is not None:
                per_class[classes[rec.label]] = per_class.get(classes[rec.label], 0) + 1
            bar.update(1)
    finally:
        for w in writers:
            w.close()
    shards = []
    for nm, c in zip(names, counts):
        os.replace(out / (nm + ".tmp"), out / nm)
        shards.append({"file": nm, "count": c, "bytes": (out / nm).stat().st_size,
                       "sha256": file_sha256(out / nm)})
    lengths_arr = np.asarray(lengths or [0])
    mean = col_sum / max(frames, 1)
    std = np.sqrt(np.maximum(col_sq / max(frames, 1) - mean * mean, 0.0))
    return {
        # Per-feature statistics over every frame (the pipeline standardises
        # with the train split's).
        "feature_mean": [round(float(v), 6) for v in mean],
        "feature_std": [round(float(v), 6) for v in std],
        "count": int(sum(counts)),
        "per_class": {c: per_class.get(c, 0) for c in classes} if kind == "genre" else None,
        "shards": shards,
        "length": {"min": int(lengths_arr.min()), "max": int(lengths_arr.max()),
                   "mean": float(lengths_arr.mean()), "median": float(np.median(lengths_arr))},
        "labelled": kind == "genre" or all(e.targets is not None for e in entries),
    }


def prepare(source: str | os.PathLike, set_name: str, out_dir: str | os.PathLike,
            opts: PrepareOptions | None = None) -> dict:
    """Convert ``source/set_name`` to shards in ``out_dir/set_name``; returns the manifest."""
    from tqdm import tqdm

    opts = opts or PrepareOptions()
    if opts.dtype not in STORE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORE_DTYPES)}, got {opts.dtype!r}")
    if opts.view not in lab.VIEWS:
        raise ValueError(f"view must be one of {sorted(lab.VIEWS)}, got {opts.view!r}")
    set_dir = Path(source) / set_name
    if not set_dir.is_dir():
        raise lab.DatasetError("set folder is missing", file=set_dir)
    info = lab.set_info(set_dir)
    cmap = lab.class_map(set_dir)
    out = Path(out_dir) / set_name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{set_name}-*.tfrecord-*"):
        old.unlink()
    skipped = lab.SkipLog() if opts.skip_bad else None

    entries = {s: lab.read_labels(set_dir, s, skipped=skipped) for s in lab.SPLITS}
    merge = {s: lab.merge_counts(e, cmap) for s, e in entries.items()} if info.kind == "genre" else None
    kept = {s: [e for e in es if e.genre is None or e.label is not None]
            for s, es in entries.items()}
    groups = read_groups(set_dir, "train") if opts.group_split else None
    train, val = split_train_validation(kept["train"], opts.validation_fraction, opts.seed, groups,
                                        opts.folds, opts.fold)
    parts = {"train": train, "validation": val, "test": kept["test"]}

    total = sum(len(v) for v in parts.values())
    splits = {}
    with tqdm(total=total, desc=f"prepare {set_name}", unit="clip",
              disable=not opts.progress) as bar:
        for split, es in parts.items():
            if es:
                splits[split] = _write_split(out, set_name, split, set_dir, es, info.kind,
                                             opts, skipped, bar)
    lo, hi = lab.VIEWS[opts.view]
    manifest = {
        "format_version": FORMAT_VERSION,
        "set": set_name,
        "kind": info.kind,
        "beat": info.beat,
        "source": str(set_dir.resolve()),
        "view": opts.view,
        "num_features": hi - lo,
        "views": {k: [a - lo, b - lo] for k, (a, b) in lab.VIEWS.items()
                  if lo <= a and b <= hi and lab.VIEW_ROWS[k] == lab.VIEW_ROWS[opts.view]},
        "dtype": opts.dtype,
        "classes": list(cmap.classes) if info.kind == "genre" else None,
        "targets": list(lab.TARGETS) if info.kind == "multitask" else None,
        "split": {"validation_fraction": opts.validation_fraction, "seed": opts.seed,
                  "folds": opts.folds, "fold": opts.fold,
                  "stratified": info.kind == "genre", "grouped": groups is not None},
        "max_length": max((s["length"]["max"] for s in splits.values()), default=0),
        "splits": splits,
        "class_merge": merge,
        "skipped": skipped.items if skipped is not None else [],
    }
    (out / STAMP_FILE).unlink(missing_ok=True)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    _write_stamp(out, manifest)       # the shards were hashed just now
    write_tfds_metadata(out, manifest)
    return manifest


_TFDS_FEATURES = "tensorflow_datasets.core.features."


def _tfds_tensor(cls: str, dtype: str, shape: tuple[int, ...] = ()) -> dict:
    return {"pythonClassName": _TFDS_FEATURES + cls,
            "tensor": {"dtype": dtype, "encoding": "none",
                       "shape": {"dimensions": [str(d) for d in shape]} if shape else {}}}


def write_tfds_metadata(out: Path, manifest: dict) -> None:
    """Make the shards loadable with ``tfds.builder_from_directory``.

    Writes, without TensorFlow, what ``tfds.folder_dataset.write_metadata`` writes for
    these features (tests/test_records.py compares the two): ``dataset_info.json``
    (splits, shard lengths, bytes; version 1.0.0), ``features.json`` (``id``,
    ``source``, ``genre``: Text; ``features``: a string Tensor; ``length``,
    ``num_features``: int64 Scalars; ``label``: a ClassLabel; ``targets``: a float32
    Tensor of shape (3,)) and, for a genre set, ``label.labels.txt``.
    """
    text = {"pythonClassName": _TFDS_FEATURES + "text_feature.Text", "text": {}}
    feats = {"id": text, "features": _tfds_tensor("tensor_feature.Tensor", "string"),
             "length": _tfds_tensor("scalar.Scalar", "int64"),
             "num_features": _tfds_tensor("scalar.Scalar", "int64"), "source": text}
    if manifest["kind"] == "genre":
        feats["label"] = {"pythonClassName": _TFDS_FEATURES + "class_label_feature.ClassLabel",
                          "classLabel": {"numClasses": str(len(manifest["classes"]))}}
        feats["genre"] = text
        (out / "label.labels.txt").write_text("".join(c + "\n" for c in manifest["classes"]))
    else:
        feats["targets"] = _tfds_tensor("tensor_feature.Tensor", "float32", (len(lab.TARGETS),))
    features = {"featuresDict": {"features": feats}, "pythonClassName": _TFDS_FEATURES + "features_dict.FeaturesDict"}
    info = {
        "description": (f"jaxmusic prepared set {manifest['set']}: features are raw "
                        f"{manifest['dtype']} bytes of shape (length, num_features)."),
        "fileFormat": "tfrecord",
        "name": manifest["set"],
        "splits": [{"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": split,
                    "numBytes": str(sum((out / s["file"]).stat().st_size for s in split_info["shards"])),
                    "shardLengths": [str(s["count"]) for s in split_info["shards"]]}
                   for split, split_info in manifest["splits"].items()],
        "version": "1.0.0",
    }
    (out / "features.json").write_text(json.dumps(features, indent=4, sort_keys=True))
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True))


def read_manifest(prepared_set_dir: str | os.PathLike) -> dict:
    path = Path(prepared_set_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise lab.DatasetError("no manifest.json: run `jaxmusic prepare` for this set first",
                               file=path) from None
    except json.JSONDecodeError as e:
        raise lab.DatasetError(f"manifest is not valid JSON ({e})", file=path) from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise lab.DatasetError(f"manifest format {manifest.get('format_version')} is not "
                               f"{FORMAT_VERSION}: prepare the set again", file=path)
    return manifest


# --- verifying ------------------------------------------------------------------------

def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _all_shards(manifest: dict) -> list[dict]:
    return [sh for split in manifest["splits"].values() for sh in split["shards"]]


def _stamp_key(set_dir: Path, manifest: dict) -> dict:
    """What a full check vouches for: this manifest (its bytes) and the shards as they
    are on disk (size and modification time)."""
    files = {}
    for sh in _all_shards(manifest):
        st = (set_dir / sh["file"]).stat()
        files[sh["file"]] = [st.st_size, st.st_mtime_ns]
    return {"manifest_sha256": file_sha256(set_dir / MANIFEST_FILE), "shards": files}


def _write_stamp(set_dir: Path, manifest: dict) -> None:
    """Record that every shard matched its sha256 (best effort: a read-only folder keeps
    no stamp, and is then hashed on every open)."""
    tmp = set_dir / f"{STAMP_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(_stamp_key(set_dir, manifest), indent=1) + "\n")
        os.replace(tmp, set_dir / STAMP_FILE)
    except OSError:
        tmp.unlink(missing_ok=True)


def _stamp_is_current(set_dir: Path, manifest: dict) -> bool:
    try:
        return json.loads((set_dir / STAMP_FILE).read_text()) == _stamp_key(set_dir, manifest)
    except (OSError, ValueError):
        return False


def verify_shards(prepared_set_dir: str | os.PathLike, manifest: dict, mode: str = "auto") -> str:
    """Check every shard of a prepared set against its manifest; returns what was
    checked (``"size"`` or ``"sha256"``).

    Always: each shard exists and has the manifest's byte size (manifests written
    before sizes were recorded skip this; the stamp covers them). Then sha256 of
    every shard when ``mode`` is ``"sha256"``, or (``"auto"``) unless a current stamp
    says that the same manifest and the same shards (sizes, modification times)
    already passed; a pass writes the stamp. ``prepare`` stamps the shards it
    wrote, so "auto" hashes again only after something touched them. A failing shard raises :class:`lab.DatasetError`
    naming the file, the expected and the found size or hash.
    """
    if mode not in VERIFY_MODES:
        raise ValueError(f"data.verify must be one of {', '.join(map(repr, VERIFY_MODES))}, "
                         f"got {mode!r}")
    set_dir = Path(prepared_set_dir)
    shards = _all_shards(manifest)
    for sh in shards:
        path = set_dir / sh["file"]
        if not path.is_file():
            raise lab.DatasetError(f"shard is missing (listed in {MANIFEST_FILE}): "
                                   "prepare the set again", file=path)
        if "bytes" not in sh:        # an older manifest: the sha256 check below covers it
            continue
        size = path.stat().st_size
        if size != sh["bytes"]:
            raise lab.DatasetError(
                f"shard is {size} bytes, {MANIFEST_FILE} says {sh['bytes']} (truncated or "
                "changed since `jaxmusic prepare`): prepare the set again", file=path)
    if mode == "auto" and _stamp_is_current(set_dir, manifest):
        return "size"
    for sh in shards:
        path = set_dir / sh["file"]
        digest = file_sha256(path)
        if digest != sh["sha256"]:
            raise lab.DatasetError(
                f"shard sha256 is {digest}, {MANIFEST_FILE} says {sh['sha256']} (changed "
                "since `jaxmusic prepare`): prepare the set again", file=path)
    _write_stamp(set_dir, manifest)
    return "sha256"

