"""The course's LSTM backbone, written for throughput.

Semantics (the course's PyTorch ``nn.LSTM`` on packed sequences):

* Stacked layers, optional bidirectional; dropout between stacked layers as
  ``nn.LSTM(dropout=...)`` (on the outputs of every layer but the last).
* ``summary="last"``: the forward direction's hidden state at the last valid step
  (``length - 1``) concatenated with the backward direction's output at step 0; the
  backward direction runs over the valid part only, starting at ``length - 1``.
  ``summary="mean"``: the mean of the top layer's outputs over the valid steps.
* Padded steps never influence the result: the latent does not depend on how much
  padding follows a clip.

Fast path (portable, any backend): per layer,

1. the backward direction's input is each sequence reversed within its valid
   length (:func:`masks.reverse_within_length`),
2. the input projection ``x @ W_ih + b`` of every step and both directions is one
   einsum outside the recurrence,
3. both directions run in ONE ``lax.scan`` with a stacked carry ``[D, B, H]`` and
   stacked recurrent weights ``[D, H, 4H]``: one batched matmul per step,
4. the update is masked (``where(t < length, new, old)``) so the final carry is
   the state at step ``length - 1`` of each direction, which is the summary.

On a GPU the layer runs through cuDNN (``jax.experimental.rnn.lstm``) instead; see
:func:`_cudnn_layer`. ``implementation="scan"`` forces the portable path.

Parameters (float32, three per layer ``l``, directly in the module's params;
``D`` = 1 or 2 directions, direction 0 = forward, 1 = backward; gate order i, f,
g, o as PyTorch; PyTorch names on the right)::

    layer_{l}_w_ih : [D, F_in, 4H]   [0] = weight_ih_l{l}.T   [1] = weight_ih_l{l}_reverse.T
    layer_{l}_w_hh : [D, H, 4H]      [0] = weight_hh_l{l}.T   [1] = weight_hh_l{l}_reverse.T
    layer_{l}_bias : [D, 4H]         [d] = bias_ih_l{l}[_reverse] + bias_hh_l{l}[_reverse]

``F_in`` is the feature size for layer 0 and ``D * H`` above it. Initialisation is
PyTorch's: every weight and bias uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (the single
bias is the sum of two such draws in PyTorch; here it is one draw).

Compute dtype: inputs and weights are cast to ``dtype`` for the matmuls; the
recurrent state ``(h, c)`` and the gate nonlinearities stay float32, so a bfloat16
run does not accumulate rounding over a thousand steps.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmusic.models import masks

Dtype = Any

SUMMARIES = ("last", "mean")
IMPLEMENTATIONS = ("auto", "scan", "cudnn")


def _uniform(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def lstm_gates(gates: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PyTorch LSTM cell update from pre-activations ``gates [..., 4H]`` (order i, f, g, o)."""
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
    return h_new, c_new


def _scan_layer(
    x: jax.Array,
    lengths: jax.Array,
    mask: jax.Array,
    w_ih: jax.Array,
    w_hh: jax.Array,
    bias: jax.Array,
    *,
    unroll: int,
) -> tuple[jax.Array, jax.Array]:
    """One (bi)directional layer with the masked scan. Returns (outputs [B,T,D*H], h_last [D,B,H]).

    ``x`` and the weights are already in the compute dtype. Outputs are zero on
    padded steps.
    """
    num_directions, _, gate_size = w_ih.shape
    hidden = gate_size // 4
    batch, steps, _ = x.shape
    if num_directions == 2:
        inputs = jnp.stack([x, masks.reverse_within_length(x, lengths)])  # [2, B, T, F]
    else:
        inputs = x[None]
    # All input projections at once, time-major for the scan: [T, D, B, 4H].
    gates_x = jnp.einsum("dbtf,dfg->tdbg", inputs, w_ih) + bias[None, :, None, :].astype(x.dtype)
    step_mask = mask.T[:, None, :, None]  # [T, 1, B, 1]: same for both directions

    def step(carry, inp):
        h, c = carry
        gx, valid = inp
        gates = gx.astype(jnp.float32) + jnp.einsum(
            "dbh,dhg->dbg", h.astype(w_hh.dtype), w_hh, preferred_element_type=jnp.float32
        )
        h_new, c_new = lstm_gates(gates, c)
        h = jnp.where(valid, h_new, h)
        c = jnp.where(valid, c_new, c)
        return (h, c), h

    zeros = jnp.zeros((num_directions, batch, hidden), jnp.float32)
    (h_last, _), hs = jax.lax.scan(step, (zeros, zeros), (gates_x, step_mask), unroll=unroll)
    hs = hs.astype(x.dtype)  # [T, D, B, H]
    outputs = [jnp.transpose(hs[:, 0], (1, 0, 2))]
    if num_directions == 2:
        outputs.append(masks.reverse_within_length(jnp.transpose(hs[:, 1], (1, 0, 2)), lengths))
    out = jnp.concatenate(outputs, axis=-1) if num_directions == 2 else outputs[0]
    out = jnp.where(mask[:, :, None], out, jnp.zeros((), out.dtype))
    return out, h_last


def cudnn_available() -> bool:
    """True when this process runs on a GPU and jax ships the cuDNN RNN kernels."""
    if jax.default_backend() != "gpu":
        return False
    try:
        from jax.experimental import rnn  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the jax build
        return False
    return getattr(rnn, "gpu_rnn", None) is not None


def _cudnn_layer(
    x: jax.Array,
    lengths: jax.Array,
    mask: jax.Array,
    w_ih: jax.Array,
    w_hh: jax.Array,
    bias: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One layer through cuDNN (GPU only; float32 only in jax 0.10). Same contract as _scan_layer.

    cuDNN's flat weight layout for one bidirectional layer (see
    ``jax.experimental.rnn``): ``W_ih^fwd, W_hh^fwd, W_ih^bwd, W_hh^bwd, b_ih^fwd,
    b_hh^fwd, b_ih^bwd, b_hh^bwd``, each matrix PyTorch-shaped ``[4H, in]``. Our
    single bias goes in ``b_ih`` and ``b_hh`` is zero. One layer per call so that
    dropout between layers stays ours. ``seq_lengths`` gives the packed-sequence
    semantics: ``h_n`` is the forward state at ``length - 1`` and the backward
    state after step 0.
    """
    from jax.experimental import rnn

    num_directions, input_size, gate_size = w_ih.shape
    hidden = gate_size // 4
    batch = x.shape[0]
    pieces = []
    for d in range(num_directions):
        pieces += [w_ih[d].T.reshape(-1), w_hh[d].T.reshape(-1)]
    for d in range(num_directions):
        pieces += [bias[d], jnp.zeros((gate_size,), bias.dtype)]
    weights = jnp.concatenate([p.astype(jnp.float32) for p in pieces])
    zeros = jnp.zeros((num_directions, batch, hidden), jnp.float32)
    y, h_n, _ = rnn.lstm(
        x.astype(jnp.float32),
        zeros,
        zeros,
        weights,
        lengths.astype(jnp.int32),
        input_size=input_size,
        hidden_size=hidden,
        num_layers=1,
        dropout=0.0,
        bidirectional=num_directions == 2,
    )
    y = jnp.where(mask[:, :, None], y, 0.0).astype(x.dtype)
    return y, h_n


class LSTMBackbone(nn.Module):
    """(Bi)LSTM over ``features [B, T, F]`` -> ``latent [B, feature_size]``."""

    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.1
    summary: str = "last"
    unroll: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    implementation: str = "auto"  # "auto" (cuDNN on GPU, else scan) | "scan" | "cudnn"

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def feature_size(self) -> int:
        return self.hidden_size * self.num_directions

    def _use_cudnn(self) -> bool:
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}")
        if self.implementation == "scan":
            return False
        if self.implementation == "cudnn":
            return True
        return cudnn_available()

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> jax.Array:
        if self.summary not in SUMMARIES:
            raise ValueError(f"summary must be one of {SUMMARIES}, got {self.summary!r}")
        batch, steps, num_features = features.shape
        lengths = jnp.clip(jnp.asarray(lengths, jnp.int32), 0, steps)
        mask = masks.padding_mask(lengths, steps)
        use_cudnn = self._use_cudnn()
        hidden, directions = self.hidden_size, self.num_directions
        init = _uniform(1.0 / hidden**0.5)

        x = features.astype(self.dtype)
        input_size = num_features
        h_last = None
        for layer in range(self.num_layers):
            w_ih = self.param(f"layer_{layer}_w_ih", init, (directions, input_size, 4 * hidden), self.param_dtype)
            w_hh = self.param(f"layer_{layer}_w_hh", init, (directions, hidden, 4 * hidden), self.param_dtype)
            bias = self.param(f"layer_{layer}_bias", init, (directions, 4 * hidden), self.param_dtype)
            if use_cudnn:
                x, h_last = _cudnn_layer(x, lengths, mask, w_ih, w_hh, bias)
            else:
                x, h_last = _scan_layer(
                    x, lengths, mask, w_ih.astype(self.dtype), w_hh.astype(self.dtype), bias,
                    unroll=self.unroll,
                )
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = nn.Dropout(self.dropout, name=f"dropout_{layer}")(x, deterministic=not train)
            input_size = directions * hidden

        if self.summary == "mean":
            return masks.masked_mean(x, mask)
        # Forward: state at length-1; backward: state after step 0 (its final carry).
        return jnp.concatenate(list(h_last), axis=-1).astype(self.dtype)
