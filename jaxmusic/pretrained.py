"""The ``musicnn`` package's pretrained taggers, read into :mod:`jaxmusic.models.musicnn`.

The ``musicnn`` wheel (PyPI, ISC licence; ``pip install --no-deps musicnn==0.1.0``, the
``.[pretrained]`` extra without its TensorFlow-1-era dependencies) ships
four TensorFlow 1 checkpoints, one folder each, the checkpoint prefix being the
folder itself (files ``.index``, ``.data-00000-of-00001``, ``.meta``):

============  ============  =====================================
name          architecture  trained on (50 tags)
============  ============  =====================================
MTT_musicnn   musicnn       MagnaTagATune
MSD_musicnn   musicnn       Million Song Dataset
MTT_vgg       vgg           MagnaTagATune
MSD_vgg       vgg_msd       Million Song Dataset
============  ============  =====================================

Only the checkpoint files are read (``tf.train.load_checkpoint``'s reader on the prefix);
the package's Python code (TensorFlow 1 graph building) is never imported. The
folder is found with ``importlib.util.find_spec("musicnn")``, which does not run
the package. Every variable of the inference graph lands in the Flax tree
(``params`` and ``batch_stats``); a checkpoint variable left over or a Flax leaf
left without a value raises.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmusic.models import musicnn

PACKAGE = "musicnn"

# musicnn/configuration.py (the tag order of the output layer); tests check it against the package.
MTT_LABELS = (
    'guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano', 'ambient',
    'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals', 'no vocals',
    'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo',
    'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal', 'beats', 'harp', 'cello',
    'no voice', 'weird', 'country', 'metal', 'female voice', 'choral')
MSD_LABELS = (
    'rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s', 'alternative rock',
    'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow',
    'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues', 'hard rock', 'ambient',
    'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop', '70s', 'party', 'country',
    'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb',
    'indie pop', 'sad', 'House', 'happy')


@dataclasses.dataclass(frozen=True)
class PretrainedSpec:
    name: str
    arch: str                    # "musicnn" | "vgg"
    labels: tuple[str, ...]

    @property
    def dataset(self) -> str:
        return self.name.split("_")[0]


MODELS = {
    "MTT_musicnn": PretrainedSpec("MTT_musicnn", "musicnn", MTT_LABELS),
    "MSD_musicnn": PretrainedSpec("MSD_musicnn", "musicnn", MSD_LABELS),
    "MTT_vgg": PretrainedSpec("MTT_vgg", "vgg", MTT_LABELS),
    "MSD_vgg": PretrainedSpec("MSD_vgg", "vgg_msd", MSD_LABELS),   # its graph's pools: see models.musicnn
}

INIT_PREFIX = "musicnn:"     # --init-from musicnn:MSD_musicnn


class PretrainedMissing(RuntimeError):
    """The musicnn package (the checkpoints' source) is not installed."""


def spec(name: str) -> PretrainedSpec:
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name]


def package_dir() -> Path:
    """The installed ``musicnn`` folder (located without importing the package)."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise PretrainedMissing("the pretrained taggers need the musicnn package's checkpoints: "
                                "pip install --no-deps musicnn==0.1.0 (its declared dependencies, "
                                "e.g. numpy<1.17, are not needed and would break this environment)")
    return Path(list(found.submodule_search_locations)[0])


def available() -> bool:
    try:
        return all(os.path.exists(checkpoint_prefix(n) + ".index") for n in MODELS)
    except PretrainedMissing:
        return False


def checkpoint_prefix(name: str) -> str:
    """The TensorFlow checkpoint prefix of model ``name`` (``<package>/<name>/``)."""
    spec(name)
    return str(package_dir() / name) + os.sep


def _tf_names(arch: str) -> dict[str, str]:
    """Flax module path (``a/b``) -> TensorFlow variable scope, per architecture."""
    if arch == "musicnn":
        convs = ["conv_timbral74", "conv_timbral77", "conv_temporal128", "conv_temporal64", "conv_temporal32",
                 "conv_mid1", "conv_mid2", "conv_mid3"]
        bns = ["bn_input", "bn_timbral74", "bn_timbral77", "bn_temporal128", "bn_temporal64", "bn_temporal32",
               "bn_mid1", "bn_mid2", "bn_mid3", "bn_pool", "bn_dense"]
        names = {c: "conv2d" + (f"_{i}" if i else "") for i, c in enumerate(convs)}
        names.update({"dense": "dense", "logits": "dense_1"})
    else:
        bns = ["bn_input"] + [f"bn{i}" for i in range(1, 6)]
        names = {f"conv{i}": f"{i}CNN" for i in range(1, 6)}
        names["logits"] = "dense"
    names.update({b: "batch_normalization" + (f"_{i}" if i else "") for i, b in enumerate(bns)})
    return names


_BN_PARAMS = {"scale": "gamma", "bias": "beta"}
_BN_STATS = {"mean": "moving_mean", "var": "moving_variance"}


def load_checkpoint_arrays(name: str) -> dict[str, np.ndarray]:
    """Every model variable of checkpoint ``name`` (optimiser slots and counters left out)."""
    try:
        import tensorflow as tf  # the checkpoint reader (the `tf` extra)
    except ImportError as e:
        raise ImportError(f"reading the musicnn checkpoints needs TensorFlow's checkpoint reader ({e}): "
                          "pip install 'jaxmusic[tf]'") from None

    # tf.train.load_checkpoint would take the prefix (a folder path ending in "/") for a
    # folder and follow its `checkpoint` file, which names the author's machine; the
    # reader it returns, opened on the prefix directly:
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_prefix(name))
    out = {}
    for key in reader.get_variable_to_shape_map():
        if "Adam" in key or key in ("beta1_power", "beta2_power") or key.endswith("global_step"):
            continue
        out[key] = np.asarray(reader.get_tensor(key), np.float32)
    return out


def load_variables(name: str) -> dict[str, Any]:
    """The Flax variables ``{"params": ..., "batch_stats": ...}`` of the tagger of model ``name``."""
    arch = spec(name).arch
    arrays = load_checkpoint_arrays(name)
    tagger = musicnn.make_tagger(arch, num_classes=len(spec(name).labels))
    shapes = jax.eval_shape(lambda: tagger.init(jax.random.PRNGKey(0),
                                                jnp.zeros((1, musicnn.PATCH_FRAMES, musicnn.N_BANDS)),
                                                train=False))
    names = _tf_names(arch)
    used: set[str] = set()
    out: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for collection in ("params", "batch_stats"):
        for module, leaves in shapes[collection].items():
            scope = names[module]
            out[collection][module] = {}
            for leaf, shape in leaves.items():
                if module.startswith("bn"):
                    tf_leaf = (_BN_PARAMS if collection == "params" else _BN_STATS)[leaf]
                else:
                    tf_leaf = leaf   # kernel / bias
                key = f"{scope}/{tf_leaf}"
                if key not in arrays:
                    raise ValueError(f"{checkpoint_prefix(name)}: no variable {key} for {collection}/{module}/{leaf}")
                value = arrays[key]
                if value.shape != tuple(shape.shape):
                    value = value.reshape(shape.shape)   # mid-end conv [7, C, 1, F] -> [7, C, F]
                out[collection][module][leaf] = jnp.asarray(value)
                used.add(key)
    left = sorted(set(arrays) - used)
    if left:
        raise ValueError(f"{checkpoint_prefix(name)}: variables not mapped into the Flax tree: {left}")
    return out


def tagger(name: str) -> tuple[Any, dict[str, Any]]:
    """``(module, variables)`` of pretrained model ``name``, ready for ``module.apply(variables, x, train=False)``."""
    s = spec(name)
    return musicnn.make_tagger(s.arch, num_classes=len(s.labels)), load_variables(name)


def parse_init(init_from: str) -> str | None:
    """``"musicnn:MSD_musicnn"`` -> ``"MSD_musicnn"``; anything else (a run directory) -> None."""
    if init_from.startswith(INIT_PREFIX):
        name = init_from[len(INIT_PREFIX):]
        spec(name)
        return name
    return None
