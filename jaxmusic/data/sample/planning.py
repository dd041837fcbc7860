"""The plan of a generation: which clips, with which ids, genres, splits and file-name
quirks, and how each clip is seeded.

A plan depends on ``(size, seed)`` alone and lists every clip in label-file order.
Each clip draws its random numbers from its own stream, ``[seed, group, index,
stage]`` (:func:`clip_rng`), so any clip can be recomputed alone, in any process
and order.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxmusic.data import lab
from jaxmusic.data.sample.genres import GENRE_WEIGHTS

GROUPS = ("genre", "multitask")          # seed stream index = position here
SET_PAIRS = {
    "genre": ("fma_genre_spectrograms", "fma_genre_spectrograms_beat"),
    "multitask": ("multitask_dataset", "multitask_dataset_beat"),
}
SIZES = ("tiny", "small", "full")

# Random streams of a clip: its score (parameters, arrangement, targets) and its rendering.
COMPOSE, RENDER = 0, 1


def clip_rng(seed: int, group: str, index: int, stage: int) -> np.random.Generator:
    """The random stream of one stage of one clip."""
    return np.random.default_rng([seed, GROUPS.index(group), index, stage])


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    group: str            # "genre" or "multitask"
    index: int            # seed index within the group
    split: str            # "train" or "test"
    id: str
    genre: str            # for multitask clips: the genre model used (not written)
    gz_full: bool         # False: the full-set file is written unpacked (.npy)
    gz_beat: bool
    label_full: str       # name in the full set's label file (genre sets)
    label_beat: str       # name in the beat set's label file


_COUNTS = {
    # (genre train, genre test, multitask train, multitask test)
    "tiny": (160, 40, 120, 40),
    "small": (500, 150, 300, 80),
    "full": (3067, 767, 1198, 299),
}


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    rest = total - minimum * len(weights)
    raw = rest * weights / weights.sum()
    n = np.floor(raw).astype(int)
    order = np.argsort(-(raw - n), kind="stable")
    n[order[: rest - n.sum()]] += 1
    return n + minimum


def plan(size: str = "small", seed: int = 0) -> list[ClipSpec]:
    """Every clip of a generation, in label-file order (deterministic)."""
    if size not in _COUNTS:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    g_train, g_test, m_train, m_test = _COUNTS[size]
    rng = np.random.default_rng([seed, 7919])
    names = list(lab.GENRE_STRINGS)
    w = np.array([GENRE_WEIGHTS[g] for g in names], float)
    if size == "tiny":
        n_train = np.full(len(names), g_train // len(names))
        n_test = np.full(len(names), g_test // len(names))
    else:
        n_train = _allocate(g_train, w, 3)
        n_test = _allocate(g_test, w, 1)
    specs: list[ClipSpec] = []
    ids = rng.choice(np.arange(100, 156000), g_train + g_test, replace=False)
    index = 0
    for split, counts in (("train", n_train), ("test", n_test)):
        genres = np.repeat(np.array(names), counts)
        rng.shuffle(genres)
        for g in genres:
            cid = str(int(ids[index]))
            u = rng.random(4)
            gz_full, gz_beat = bool(u[0] >= 0.03), bool(u[1] >= 0.03)
            lf = lab.feature_file_name(cid, gz=True)              # unpacked files still say .gz
            lb = f"{cid}.beatsync.fused.npy" + ("" if gz_beat else ".gz")
            if split == "test" and u[2] < 0.25:
                lf = f"{cid}.full.fused.npy.gz"
            if split == "test" and u[3] < 0.25:
                lb = f"{cid}.full.fused.npy.gz"
            specs.append(ClipSpec("genre", index, split, cid, str(g), gz_full, gz_beat, lf, lb))
            index += 1
    mids = rng.choice(np.arange(1, 20000), m_train + m_test, replace=False)
    mg = rng.choice(np.array(names), m_train + m_test, p=w / w.sum())
    for i in range(m_train + m_test):
        cid = str(int(mids[i]))
        u = rng.random(2)
        specs.append(ClipSpec("multitask", i, "train" if i < m_train else "test", cid, str(mg[i]),
                              bool(u[0] >= 0.03), bool(u[1] >= 0.03), cid, cid))
    # guarantee every quirk at least once per set and split (tests rely on them)
    for group in GROUPS:
        for split in lab.SPLITS:
            sel = [i for i, s in enumerate(specs) if s.group == group and s.split == split]
            if sel and all(specs[i].gz_full for i in sel):
                s = specs[sel[0]]
                specs[sel[0]] = dataclasses.replace(s, gz_full=False)
            if sel and all(specs[i].gz_beat for i in sel):
                s = specs[sel[-1]]
                lb = s.label_beat if group == "multitask" or s.label_beat.endswith(".gz") \
                    else s.label_beat + ".gz"
                specs[sel[-1]] = dataclasses.replace(s, gz_beat=False, label_beat=lb)
            if group == "genre" and split == "test" and sel:
                if not any(specs[i].label_full.endswith(".full.fused.npy.gz") for i in sel):
                    s = specs[sel[1 % len(sel)]]
                    specs[sel[1 % len(sel)]] = dataclasses.replace(
                        s, label_full=f"{s.id}.full.fused.npy.gz")
    return specs


def find_clip(specs: Sequence[ClipSpec], clip_id: str, group: str) -> ClipSpec:
    for s in specs:
        if s.id == clip_id and s.group == group:
            return s
    raise KeyError(f"no {group} clip {clip_id!r} in the plan")
