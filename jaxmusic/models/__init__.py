"""Flax Linen models: backbones (LSTM, CNN, AST, image-style CNNs, musicnn/VGG) -> latent, heads -> outputs.

Every backbone is called as ``backbone(features [B, T, F], lengths [B], *, train)``
and returns ``latent [B, backbone.feature_size]``; frames ``t >= length`` are zero
padding and never change the latent (padding masks live in :mod:`.masks`).
Collections: params (float32), ``batch_stats`` (CNN BatchNorm), rng ``dropout``.

A model never knows about files, devices or the optimiser; :func:`build_backbone`
turns the ``config.model`` section (and ``data.resize``, the image-style input of
:mod:`.resize`) into a module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmusic.models import masks
from jaxmusic.models.ast import AST_SIZES, ASTBackbone, make_ast, patch_grid
from jaxmusic.models.cnn import CNNBackbone
from jaxmusic.models.heads import ClassifierHead, RegressionHead
from jaxmusic.models.image import CNN3Dense, ImageCNN, LeNet, MiniAlexNet
from jaxmusic.models.lstm import LSTMBackbone
from jaxmusic.models.musicnn import MusicnnBackbone
from jaxmusic.models.resize import ResizedBackbone, resize_valid

BACKBONES: dict[str, type[nn.Module]] = {
    "lstm": LSTMBackbone, "cnn": CNNBackbone, "ast": ASTBackbone,
    "lenet": LeNet, "minialexnet": MiniAlexNet, "cnn3_dense": CNN3Dense,
    "musicnn": MusicnnBackbone,
}

__all__ = [
    "AST_SIZES",
    "ASTBackbone",
    "BACKBONES",
    "CNN3Dense",
    "CNNBackbone",
    "ClassifierHead",
    "ImageCNN",
    "LSTMBackbone",
    "LeNet",
    "MiniAlexNet",
    "MusicnnBackbone",
    "Model",
    "RegressionHead",
    "ResizedBackbone",
    "build_backbone",
    "make_ast",
    "masks",
    "patch_grid",
    "resize_valid",
]


def _fields(cls: type[nn.Module]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}


def _plain(value: Any) -> Any:
    """Config values as module fields: lists become tuples (module fields must be hashable)."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def build_backbone(model_cfg: Mapping[str, Any], input_fdim: int, input_tdim: int,
                   resize: Sequence[int] = ()) -> nn.Module:
    """The backbone described by ``model_cfg`` (a ConfigDict or dict).

    ``model_cfg.name`` is one of :data:`BACKBONES`; every other key is a
    keyword argument of that backbone's constructor (``dtype`` may be a name such
    as ``"bfloat16"``). For AST, ``size`` (tiny/small/base, default tiny) sets the
    defaults of ``embed_dim``/``depth``/``num_heads``, and ``input_fdim``/
    ``input_tdim`` come from the arguments (the data's feature count and crop
    length). Unknown keys raise ``ValueError`` naming the key. With ``resize = (H, W)``
    the backbone is built for ``H x W`` pictures and wrapped in
    :class:`ResizedBackbone`, which resizes each clip's valid part to that size.
    """
    cfg = dict(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else model_cfg)
    if "name" not in cfg:
        raise ValueError(f"model config has no 'name' (one of {sorted(BACKBONES)})")
    name = cfg.pop("name")
    if name not in BACKBONES:
        raise ValueError(f"unknown model name {name!r}; expected one of {sorted(BACKBONES)}")
    cls = BACKBONES[name]
    size = cfg.pop("size", "tiny") if name == "ast" else None
    allowed = _fields(cls) - ({"input_fdim", "input_tdim"} if name == "ast" else set())
    for key in cfg:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in model config for {name!r}; allowed: {sorted(allowed)}")
    kwargs = {key: _plain(value) for key, value in cfg.items()}
    if isinstance(kwargs.get("dtype"), str):
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    if isinstance(kwargs.get("param_dtype"), str):
        kwargs["param_dtype"] = jnp.dtype(kwargs["param_dtype"])
    resize = tuple(int(v) for v in resize or ())
    if resize and (len(resize) != 2 or min(resize) < 1):
        raise ValueError(f"data.resize must be (H, W) with positive sizes, got {resize}")
    if resize:
        input_tdim, input_fdim = resize
    backbone = make_ast(size, int(input_fdim), int(input_tdim), **kwargs) if name == "ast" else cls(**kwargs)
    return ResizedBackbone(backbone, resize) if resize else backbone


class Model(nn.Module):
    """Backbone + head: ``{"output": head(latent), "latent": latent}``.

    Params are ``{"backbone": ..., "head": ...}``, so a backbone trained on one task
    can initialise another task's model (transfer learning swaps only ``head``).
    """

    backbone: nn.Module
    head: nn.Module

    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        latent = self.backbone(features, lengths, train=train)
        return {"output": self.head(latent), "latent": latent}
