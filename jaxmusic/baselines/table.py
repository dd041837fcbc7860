"""A lab set -> a feature table (one row of handcrafted features per clip).

Clips stream one feature file at a time (in worker processes with ``jobs`` > 1);
only the per-clip vectors are kept, so memory is flat in the clips' length. A
table is cached in ``<cache>/<set>_<split>.npz`` keyed by the set's label file
and the feature list, so a second run with other models skips the reading.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from jaxmusic import workers
from jaxmusic.features import handcrafted
from jaxmusic.data import lab
from jaxmusic.data.lab import DatasetError
from jaxmusic.data.tfrecords import read_groups

AUDIO_DIR = "audio_features"
REPORT_NAME = "features_report.json"    # written by `jaxmusic features`


@dataclasses.dataclass
class FeatureTable:
    ids: list[str]
    X: np.ndarray                    # (n, d) float64
    names: tuple[str, ...]
    y: np.ndarray | None             # genre: (n,) int; multitask: (n, 3) float (NaN: unknown)
    groups: list[str] | None         # from <split>_groups.txt, when the set has one
    entries: list[lab.LabelEntry]


def mel_scale(set_dir: Path) -> tuple[int, float | None]:
    """(sample rate, fmax) a set's mel bands were made with: from its (or its
    full-resolution twin's) ``features_report.json``, else the lab's."""
    for d in (set_dir, set_dir.with_name(set_dir.name.removesuffix("_beat"))):
        report = d / REPORT_NAME
        if report.exists():
            try:
                settings = json.loads(report.read_text(encoding="utf-8")).get("settings", {})
            except ValueError:
                continue
            return int(settings.get("sample_rate", 22050)), settings.get("fmax")
    return 22050, None


def audio_dir(set_dir: Path) -> Path | None:
    """The set's kept audio features (``jaxmusic features --audio-features``), if any."""
    for d in (set_dir, set_dir.with_name(set_dir.name.removesuffix("_beat"))):
        if (d / AUDIO_DIR / "names.txt").exists():
            return d / AUDIO_DIR
    return None


def _clip_row(file: str, sr: int, fmax: float | None, audio: str | None, clip_id: str):
    try:
        x = lab.load_features(file)
        row = handcrafted.spectrogram_features(x, sr, fmax)
        if audio is not None:
            path = Path(audio) / f"{clip_id}.npy"
            if not path.exists():
                raise DatasetError("no kept audio features for this clip (the set was made "
                                   "with --audio-features, but not this clip: rerun "
                                   "jaxmusic features)", file=path)
            row = np.concatenate([row, np.load(path, allow_pickle=False).astype(np.float64)])
    except DatasetError as e:
        return {"error": str(e)}
    bad = ~np.isfinite(row)
    if bad.any():
        return {"error": f"{file}: a feature came out non-finite ({int(bad.sum())} values)",
                "first": int(np.flatnonzero(bad)[0])}
    return {"row": row}


def _cache_key(set_dir: Path, split: str, names, sr, fmax, files) -> str:
    h = hashlib.sha256()
    label = set_dir / f"{split}_labels.txt"
    h.update(label.read_bytes() if label.exists() else b"")
    h.update(json.dumps([list(names), sr, fmax, [str(f) for f in files]]).encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_table(set_dir: str | Path, split: str, *, jobs: int = 1, cache: Path | None = None,
               use_audio: bool = True) -> FeatureTable:
    """The handcrafted features of every clip of ``split``, in label-file order.

    Genre clips whose genre the merge drops are left out (as in training). A
    bad file (unreadable, NaN in an array) raises :class:`DatasetError` naming it.
    """
    set_dir = Path(set_dir)
    if not set_dir.is_dir():
        raise DatasetError("set folder is missing", file=set_dir)
    info = lab.set_info(set_dir)
    entries = [e for e in lab.read_labels(set_dir, split)
               if e.genre is None or e.label is not None]
    if not entries:
        raise DatasetError(f"no clips in the {split} split", file=set_dir)
    sr, fmax = mel_scale(set_dir)
    adir = audio_dir(set_dir) if use_audio else None
    names = handcrafted.feature_names()
    if adir is not None:
        kept = tuple(l for l in (adir / "names.txt").read_text().split() if l)
        if kept != handcrafted.audio_feature_names():
            raise DatasetError("audio feature names differ from this version's list; "
                               "rerun jaxmusic features --audio-features --overwrite",
                               file=adir / "names.txt")
        names = names + kept
    files = [str(e.file) for e in entries]
    key = _cache_key(set_dir, split, names, sr, fmax, files)
    cache_file = None if cache is None else Path(cache) / f"{set_dir.name}_{split}.npz"
    X = None
    if cache_file is not None and cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as z:
            if str(z["key"]) == key:
                X = z["X"]
    if X is None:
        args = [(f, sr, fmax, None if adir is None else str(adir), e.id)
                for f, e in zip(files, entries)]
        if jobs <= 1 or len(args) < 2:
            with workers.one_blas_thread():
                results = [_clip_row(*a) for a in args]
        else:
            with workers.process_pool(jobs, ["jaxmusic.baselines.table", "librosa"]) as pool:
                try:
                    results = list(pool.map(_clip_row, *zip(*args), chunksize=16))
                except cf.BrokenExecutor as e:
                    raise workers.worker_died("computing hand-crafted features") from e
        for r in results:
            if "error" in r:
                msg = r["error"]
                if "first" in r:
                    msg += f", first: {names[r['first']]}"
                raise DatasetError(msg)
        X = np.stack([r["row"] for r in results])
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + ".tmp.npz")
            np.savez(tmp, X=X, key=np.asarray(key))
            tmp.replace(cache_file)
    if info.kind == "genre":
        y = np.asarray([e.label for e in entries], np.int64)
    else:
        y = np.asarray([e.targets if e.targets is not None else (np.nan,) * len(lab.TARGETS)
                        for e in entries], np.float64)
    groups = read_groups(set_dir, split)
    group_list = None
    if groups is not None:
        missing = [e.id for e in entries if e.id not in groups]
        if missing:
            raise DatasetError(f"{len(missing)} clips have no group (first: {missing[0]!r})",
                               file=set_dir / f"{split}_groups.txt")
        group_list = [groups[e.id] for e in entries]
    return FeatureTable([e.id for e in entries], X, names, y, group_list, entries)
