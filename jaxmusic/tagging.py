"""``jaxmusic tag``: the 50 music tags of audio files from a pretrained musicnn tagger.

Each file is read at 16 kHz mono (:func:`jaxmusic.features.load_audio`), turned into
the musicnn input (:func:`jaxmusic.frontend.musicnn_input`) and cut into
consecutive, non-overlapping 3 s patches (187 frames) from the start, as the
``musicnn`` package's extractor does (a file shorter than one patch is zero-padded
to one). All patches of all files given go through the jitted tagger in fixed-size
batches (one compilation); a file's tag probabilities are the mean over its
patches (the package's ``top_tags`` does the same with its taggram).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmusic import features, frontend, pretrained
from jaxmusic.data.lab import DatasetError
from jaxmusic.models import musicnn

BATCH_PATCHES = 16
PATCH_SECONDS = 3.0


@functools.lru_cache(maxsize=4)
def _loaded(name: str):
    module, variables = pretrained.tagger(name)

    @jax.jit
    def apply(x):
        out = module.apply(variables, x, train=False)
        return jax.nn.sigmoid(out["logits"]), out["penultimate"]

    return apply


def file_patches(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """``(patches [P, 187, 96], duration_s, flags)`` of one audio file."""
    y, flags = features.load_audio(path, sr=frontend.MUSICNN.sample_rate)
    # Padded to whole 3 s blocks (the padding is masked): one compilation per block count.
    block = int(PATCH_SECONDS * frontend.MUSICNN.sample_rate)
    padded = np.pad(y, (0, -len(y) % block))
    feats, flen = frontend.musicnn_input_jit(jnp.asarray(padded[None]), jnp.asarray([len(y)]))
    feats = np.asarray(feats[0])[: int(flen[0])]
    n = musicnn.PATCH_FRAMES
    count = max(1, feats.shape[0] // n)
    if feats.shape[0] < n:
        feats = np.pad(feats, ((0, n - feats.shape[0]), (0, 0)))
    return feats[: count * n].reshape(count, n, feats.shape[1]), len(y) / frontend.MUSICNN.sample_rate, flags


def run_patches(name: str, patches: np.ndarray, batch: int = BATCH_PATCHES) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities ``[P, 50]`` and penultimate features ``[P, D]`` of ``patches [P, 187, 96]``."""
    apply = _loaded(name)
    probs, pens = [], []
    for start in range(0, len(patches), batch):
        chunk = patches[start:start + batch]
        pad = batch - len(chunk)
        p, e = apply(jnp.asarray(np.pad(chunk, ((0, pad), (0, 0), (0, 0)))))
        probs.append(np.asarray(p)[: len(chunk)])
        pens.append(np.asarray(e)[: len(chunk)])
    return np.concatenate(probs), np.concatenate(pens)


def tag_files(paths: Sequence[str | Path], name: str = "MTT_musicnn", top_k: int = 5,
              per_patch: bool = False, on_error=None) -> list[dict[str, Any]]:
    """One result per readable file: ``{"file", "duration_s", "patches", "tags": [{"tag", "probability"}]}``.

    With ``per_patch``, ``"per_patch"`` lists each 3 s patch's start time and top tags.
    A file that cannot be read raises :class:`jaxmusic.data.lab.DatasetError`, or is
    passed to ``on_error(path, error)`` and skipped when that is given.
    """
    labels = pretrained.spec(name).labels
    loaded, owners = [], []
    for path in paths:
        try:
            patches, seconds, flags = file_patches(path)
        except DatasetError as e:
            if on_error is None:
                raise
            on_error(path, e)
            continue
        loaded.append((str(path), patches, seconds, flags))
        owners.extend([len(loaded) - 1] * len(patches))
    if not loaded:
        return []
    probs, _ = run_patches(name, np.concatenate([p for _, p, _, _ in loaded]))
    owners = np.asarray(owners)

    def top(p):
        order = np.argsort(-p, kind="stable")[:top_k]
        return [{"tag": labels[i], "probability": round(float(p[i]), 6)} for i in order]

    out = []
    for i, (path, patches, seconds, flags) in enumerate(loaded):
        mine = probs[owners == i]
        result = {"file": path, "model": name, "duration_s": round(seconds, 3), "patches": int(len(mine)),
                  "flags": flags, "tags": top(mine.mean(axis=0))}
        if per_patch:
            step = musicnn.PATCH_FRAMES * frontend.MUSICNN.hop_length / frontend.MUSICNN.sample_rate
            result["per_patch"] = [{"start_s": round(j * step, 3), "tags": top(p)} for j, p in enumerate(mine)]
        out.append(result)
    return out
