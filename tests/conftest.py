"""Shared fixtures: small datasets in the lab's real on-disk format, written here."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Quieten TensorFlow's start-up chatter in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One persistent XLA compilation cache for the whole run (set here, before jax is imported, in
# the first process: xdist's workers and every command a test starts inherit it). Many tests
# compile the same tiny programs (the tiny configs' steps) in fresh processes; a hit skips
# XLA's compilation, never what the program computes (measured: a tiny CNN training command
# 11.7 s cold, 5.7 s from the cache, AMD EPYC). Removed when the run ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxmusic-tests-xla-cache-")
    os.environ["JAXMUSIC_TEST_OWNS_XLA_CACHE"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from jaxmusic import workers  # noqa: E402
from jaxmusic.data import lab  # noqa: E402


def pytest_configure(config):
    """Before xdist starts its workers (this runs in the controller first): compile
    librosa's numba kernels in this one process, so that the workers and the commands
    they start only read numba's cache (two processes writing it at once can corrupt
    it, and every later process then segfaults: see ``jaxmusic.workers``)."""
    if not hasattr(config, "workerinput"):
        workers.compile_librosa_kernels()


def pytest_unconfigure(config):
    if os.environ.get("JAXMUSIC_TEST_OWNS_XLA_CACHE") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

GENRES_FOR_TESTS = ["Rock", "Jazz", "Pop", "Indie-Rock", "Classical", "Punk"]


def random_clip(rng: np.random.Generator, length: int) -> np.ndarray:
    """A (T, 140) clip with mel dB in [-80, 0] and chroma in [0, 1]."""
    mel = rng.uniform(-80, 0, size=(length, lab.N_MEL)).astype(np.float32)
    chroma = rng.uniform(0, 1, size=(length, lab.N_CHROMA)).astype(np.float32)
    return np.concatenate([mel, chroma], axis=1)


def write_genre_set(root: Path, name: str = "fma_genre_spectrograms", n_train: int = 30,
                    n_test: int = 10, lengths=(40, 60), seed: int = 0,
                    genres=GENRES_FOR_TESTS) -> dict[str, dict[str, np.ndarray]]:
    """A genre set; returns {split: {id: features}} of what was written."""
    rng = np.random.default_rng(seed)
    set_dir = root / name
    written: dict[str, dict[str, np.ndarray]] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        written[split] = {}
        for i in range(n):
            clip_id = f"{split[:2]}{i:04d}"
            feats = random_clip(rng, int(rng.integers(lengths[0], lengths[1] + 1)))
            lab.save_features(set_dir / split / lab.feature_file_name(clip_id), feats)
            rows.append((lab.feature_file_name(clip_id), genres[i % len(genres)]))
            written[split][clip_id] = feats
        lab.write_genre_labels(set_dir / f"{split}_labels.txt", rows)
    return written


def write_multitask_set(root: Path, name: str = "multitask_dataset", n_train: int = 24,
                        n_test: int = 6, lengths=(30, 50), seed: int = 1):
    rng = np.random.default_rng(seed)
    set_dir = root / name
    written = {"train": {}, "test": {}}
    targets = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            clip_id = f"{split[:2]}{i:04d}"
            feats = random_clip(rng, int(rng.integers(lengths[0], lengths[1] + 1)))
            lab.save_features(set_dir / split / lab.feature_file_name(clip_id), feats)
            t = rng.uniform(0, 1, 3)
            rows.append((clip_id, t))
            written[split][clip_id] = feats
            targets[clip_id] = t
        if split == "train":
            lab.write_multitask_labels(set_dir / "train_labels.txt", rows)
    return written, targets


@pytest.fixture
def genre_root(tmp_path):
    written = write_genre_set(tmp_path)
    return tmp_path, written


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The embedded sample dataset, size tiny, in the lab layout."""
    from jaxmusic.data import sample

    root = tmp_path_factory.mktemp("sample") / "data"
    # One worker: the suite shares few cores, and in-process skips the pool's start-up.
    sample.generate(root, size="tiny", seed=0, progress=False, workers=1)
    return root


@pytest.fixture(scope="session")
def tiny_prepared(tiny_data, tmp_path_factory):
    """All four tiny sample sets as TFRecords (2 shards per split)."""
    from jaxmusic.data import tfrecords

    out = tmp_path_factory.mktemp("prepared")
    for name in lab.SETS:
        tfrecords.prepare(tiny_data, name, out, tfrecords.PrepareOptions(shards=2, progress=False))
    return out
