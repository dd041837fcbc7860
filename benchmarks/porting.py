"""Weight porting: jaxmusic (Flax) variables <-> the PyTorch baselines' state_dict.

One table per model lists every parameter once: its path in the Flax variables,
the PyTorch names it corresponds to, and the conversions both ways. Everything
else (copying into a module, reading gradients back) is derived from the table,
so a parameter can be neither forgotten nor converted twice:

* :func:`to_torch` loads Flax ``{"params": ..., "batch_stats": ...}`` into a
  :class:`benchmarks.torch_models.Classifier` (every entry of its state_dict is
  written, or it raises);
* :func:`to_jax` reads a PyTorch model back into a Flax variables tree;
* :func:`grads_to_jax` reads ``param.grad`` after ``loss.backward()`` into the
  layout of the Flax params, ready to compare with ``jax.grad``.

Layouts: a Flax ``Dense`` kernel is ``[in, out]`` (torch ``weight.T``); a ``Conv``
kernel is ``[kh, kw, in, out]`` (torch ``weight.permute(2, 3, 1, 0)``); the LSTM
stacks directions (see ``jaxmusic.models.lstm``) and has one bias per direction
where PyTorch has two (``b_ih + b_hh``: ported as ``b_ih = bias``, ``b_hh = 0``;
the gradient of our bias is that of either). BatchNorm's running variance is
biased in flax, unbiased in PyTorch; the two are ported as-is (they differ by
``n / (n - 1)``, with ``n`` the frames of a batch: immaterial for inference).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

Array = np.ndarray


@dataclasses.dataclass(frozen=True)
class Entry:
    """One Flax leaf <-> one or more PyTorch tensors."""

    path: tuple[str, ...]                           # in the Flax variables, e.g. ("params", "head", "logits", "kernel")
    torch: tuple[str, ...]                          # PyTorch state_dict names
    to_torch: Callable[[Array], Sequence[Array]]    # Flax leaf -> torch tensors (same order as `torch`)
    to_jax: Callable[[Sequence[Array]], Array]      # torch tensors -> Flax leaf
    grad_to_jax: Callable[[Sequence[Array]], Array] | None = None  # torch grads -> Flax grad (default to_jax)


def _same(path, name) -> Entry:
    return Entry(path, (name,), lambda a: [a], lambda t: t[0])


def _dense(prefix: tuple[str, ...], torch_prefix: str) -> list[Entry]:
    return [
        Entry(prefix + ("kernel",), (f"{torch_prefix}.weight",), lambda a: [a.T], lambda t: t[0].T),
        _same(prefix + ("bias",), f"{torch_prefix}.bias"),
    ]


def _conv(prefix: tuple[str, ...], torch_prefix: str) -> list[Entry]:
    return [
        Entry(prefix + ("kernel",), (f"{torch_prefix}.weight",),
              lambda a: [a.transpose(3, 2, 0, 1)], lambda t: t[0].transpose(2, 3, 1, 0)),
        _same(prefix + ("bias",), f"{torch_prefix}.bias"),
    ]


def _layer_norm(prefix: tuple[str, ...], torch_prefix: str) -> list[Entry]:
    return [_same(prefix + ("scale",), f"{torch_prefix}.weight"),
            _same(prefix + ("bias",), f"{torch_prefix}.bias")]


def _head(variables) -> list[Entry]:
    head = variables["params"]["head"]
    entries = []
    if "norm" in head:
        raise NotImplementedError("the PyTorch Classifier has no head LayerNorm")
    return entries + _dense(("params", "head", "logits"), "head")


# --- per model ---------------------------------------------------------------------------------

def lstm_entries(variables) -> list[Entry]:
    backbone = variables["params"]["backbone"]
    num_layers = len([k for k in backbone if k.endswith("_w_ih")])
    entries = []
    for layer in range(num_layers):
        directions = backbone[f"layer_{layer}_w_ih"].shape[0]
        suffixes = ["", "_reverse"][:directions]
        for kind in ("ih", "hh"):
            names = tuple(f"backbone.lstm.weight_{kind}_l{layer}{s}" for s in suffixes)
            entries.append(Entry(
                ("params", "backbone", f"layer_{layer}_w_{kind}"), names,
                lambda a: [a[d].T for d in range(a.shape[0])],
                lambda t: np.stack([w.T for w in t])))
        names = []
        for s in suffixes:
            names += [f"backbone.lstm.bias_ih_l{layer}{s}", f"backbone.lstm.bias_hh_l{layer}{s}"]
        entries.append(Entry(
            ("params", "backbone", f"layer_{layer}_bias"), tuple(names),
            lambda a: [x for d in range(a.shape[0]) for x in (a[d], np.zeros_like(a[d]))],
            lambda t: np.stack([t[i] + t[i + 1] for i in range(0, len(t), 2)]),
            grad_to_jax=lambda t: np.stack([t[i] for i in range(0, len(t), 2)])))
    return entries + _head(variables)


def cnn_entries(variables) -> list[Entry]:
    backbone = variables["params"]["backbone"]
    num_blocks = len([k for k in backbone if k.startswith("conv_")])
    entries = []
    for level in range(num_blocks):
        entries += _conv(("params", "backbone", f"conv_{level}"), f"backbone.convs.{level}")
        bn = ("backbone", f"batch_norm_{level}")
        t = f"backbone.norms.{level}"
        entries += [_same(("params",) + bn + ("scale",), f"{t}.weight"),
                    _same(("params",) + bn + ("bias",), f"{t}.bias")]
        if "batch_stats" in variables:
            entries += [_same(("batch_stats",) + bn + ("mean",), f"{t}.running_mean"),
                        _same(("batch_stats",) + bn + ("var",), f"{t}.running_var")]
    return entries + _head(variables)


def ast_entries(variables) -> list[Entry]:
    backbone = variables["params"]["backbone"]
    p = ("params", "backbone")
    entries = _conv(p + ("patch_embed",), "backbone.patch_embed")
    entries += [_same(p + (name,), f"backbone.{name}")
                for name in ("pos_embed_patches", "cls_token", "dist_token", "pos_embed_tokens")]
    depth = len([k for k in backbone if k.startswith("block_")])
    for i in range(depth):
        b, t = p + (f"block_{i}",), f"backbone.blocks.{i}"
        entries += _layer_norm(b + ("norm1",), f"{t}.norm1")
        entries += _dense(b + ("qkv",), f"{t}.qkv")
        entries += _dense(b + ("proj",), f"{t}.proj")
        entries += _layer_norm(b + ("norm2",), f"{t}.norm2")
        entries += _dense(b + ("mlp", "fc1"), f"{t}.fc1")
        entries += _dense(b + ("mlp", "fc2"), f"{t}.fc2")
    entries += _layer_norm(p + ("norm",), "backbone.norm")
    return entries + _head(variables)


ENTRIES = {"lstm": lstm_entries, "cnn": cnn_entries, "ast": ast_entries}


# --- derived operations ------------------------------------------------------------------------

def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _ignored(name: str) -> bool:
    return name.endswith("num_batches_tracked")


def to_torch(model_name: str, variables, torch_model) -> None:
    """Copy Flax variables into ``torch_model`` (a ``Classifier``); every tensor is written."""
    import torch

    state = torch_model.state_dict()
    written = set()
    for entry in ENTRIES[model_name](variables):
        values = entry.to_torch(np.asarray(_get(variables, entry.path), np.float32))
        for name, value in zip(entry.torch, values, strict=True):
            if name not in state:
                raise KeyError(f"{name} (from {'/'.join(entry.path)}) is not in the PyTorch model")
            if tuple(state[name].shape) != value.shape:
                raise ValueError(f"{name}: PyTorch shape {tuple(state[name].shape)}, "
                                 f"ported {value.shape} from {'/'.join(entry.path)}")
            state[name] = torch.from_numpy(np.array(value, copy=True)).to(state[name].dtype)
            written.add(name)
    missing = [n for n in state if n not in written and not _ignored(n)]
    if missing:
        raise KeyError(f"PyTorch tensors with no Flax counterpart: {missing}")
    torch_model.load_state_dict(state)


def to_jax(model_name: str, torch_model, like) -> dict[str, Any]:
    """The Flax variables (same tree as ``like``) holding ``torch_model``'s weights."""
    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    out: dict[str, Any] = {}
    for entry in ENTRIES[model_name](like):
        value = entry.to_jax([state[n] for n in entry.torch])
        _check_shape(entry, value, like)
        _set(out, entry.path, value)
    _check_complete(out, like)
    return out


def grads_to_jax(model_name: str, torch_model, like) -> dict[str, Any]:
    """``param.grad`` of ``torch_model`` in the layout of the Flax params ``{"params": ...}``."""
    params = dict(torch_model.named_parameters())
    out: dict[str, Any] = {}
    for entry in ENTRIES[model_name](like):
        if entry.path[0] != "params":
            continue
        grads = []
        for n in entry.torch:
            g = params[n].grad
            grads.append(np.zeros(tuple(params[n].shape), np.float32) if g is None
                         else g.detach().cpu().numpy())
        value = (entry.grad_to_jax or entry.to_jax)(grads)
        _check_shape(entry, value, like)
        _set(out, entry.path, value)
    _check_complete(out, {"params": like["params"]})
    return out


def _check_shape(entry: Entry, value, like) -> None:
    expected = np.shape(_get(like, entry.path))
    if value.shape != expected:
        raise ValueError(f"{'/'.join(entry.path)}: Flax shape {expected}, ported {value.shape}")


def _check_complete(out, like) -> None:
    import jax

    want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(like)}
    got = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(out)}
    if want != got:
        raise KeyError(f"Flax leaves not ported: {sorted(want - got)}; unexpected: {sorted(got - want)}")
