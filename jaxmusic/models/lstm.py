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
   length (gather with ``where(t < len, len-1-t, t)``, :func:`masks.reverse_index`),
   straight into time-major order,
2. both directions run in ONE ``lax.scan``: stacked carries ``h, c [D, B, H]``,
   stacked recurrent weights ``[D, H, 4H]``, one batched matmul per step, and the
   four gates through one sigmoid (``tanh(x) = 2 sigmoid(2x) - 1``),
3. the input projection ``x @ W_ih + b`` is one matmul per direction outside the
   recurrence, done per chunk of ``chunk_size`` steps (an outer scan over chunks;
   ``chunk_size=None``: a single matmul for the whole sequence). The chunk keeps the
   projected gates (4H floats per step and direction, 85 MB per layer for a batch
   of 32 x 1293 frames) in cache instead of in freshly mapped memory,
4. the update is masked (``where(t < length, new, old)``) so the final carry is
   the state at step ``length - 1`` of each direction, which is the summary,
5. a hand-written backward pass (``jax.custom_vjp``) keeps only h and c per step,
   recomputes the gates chunk by chunk, runs the reverse recurrence with one
   matmul per step and gets the weight and input gradients with matmuls over whole
   chunks (autodiff of the scan would keep about a dozen arrays per step and do a
   small weight-gradient matmul in every step). It is checked against PyTorch's
   autograd and float64 finite differences in ``tests/test_models.py``.

``implementation="cudnn"`` runs the layer through cuDNN (``jax.experimental.rnn.lstm``,
GPU only; see :func:`_cudnn_layer`). ``"auto"`` takes the path measured fastest on the
backend (:data:`AUTO_IMPLEMENTATION`): the scan everywhere today.

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

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmusic.models import masks

Dtype = Any

SUMMARIES = ("last", "mean")
IMPLEMENTATIONS = ("auto", "scan", "cudnn")
# What implementation="auto" takes per backend: the train step measured fastest there. On one
# NVIDIA H200 (issue 21; B=32, the lab's 2-layer bidirectional LSTM of 64, train step), the
# scan took 5.8 ms at T=129 and 43.5 ms at T=1293 where jax.experimental.rnn.lstm (cuDNN)
# took 21.8 and 164 ms (torch.nn.LSTM: 3.6 and 7.5 ms). Backends not listed take the scan.
AUTO_IMPLEMENTATION: dict[str, str] = {"cpu": "scan", "gpu": "scan"}


def auto_implementation(backend: str) -> str:
    """The implementation ``"auto"`` resolves to on ``backend`` (``jax.default_backend()``)."""
    return AUTO_IMPLEMENTATION.get(backend, "scan")


def _uniform(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


# tanh(x) = 2 * sigmoid(2x) - 1: the four gates in one sigmoid over [..., 4H] (one fused loop per step).
def _gate_constants(hidden: int) -> tuple[jax.Array, jax.Array]:
    scale = jnp.concatenate([jnp.ones(2 * hidden), jnp.full(hidden, 2.0), jnp.ones(hidden)]).astype(jnp.float32)
    offset = jnp.concatenate([jnp.zeros(2 * hidden), jnp.full(hidden, -1.0), jnp.zeros(hidden)]).astype(jnp.float32)
    return scale, offset


def gate_activations(pre: jax.Array) -> jax.Array:
    """``[sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)]`` from pre-activations ``[..., 4H]`` (PyTorch order)."""
    scale, offset = _gate_constants(pre.shape[-1] // 4)
    return jax.nn.sigmoid(pre * scale) * scale + offset


def _project(x_chunk: tuple[jax.Array, ...], w_ih: jax.Array, bias: jax.Array) -> jax.Array:
    """Input projection of one chunk: D arrays ``[C, B, F]`` -> float32 ``[C, D, B, 4H]``."""
    gates = [
        jnp.einsum("cbf,fg->cbg", x_d, w_ih[d], preferred_element_type=jnp.float32)
        for d, x_d in enumerate(x_chunk)
    ]
    return jnp.stack(gates, axis=1) + bias[None, :, None, :].astype(jnp.float32)


def _recurrent(h: jax.Array, w_hh: jax.Array) -> jax.Array:
    """``h [.., D, B, H] @ w_hh [D, H, 4H]`` per direction, float32 accumulation."""
    return jnp.einsum("...dbh,dhg->...dbg", h.astype(w_hh.dtype), w_hh, preferred_element_type=jnp.float32)


def _cell(pre: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gate activations and the new (h, c) from pre-activations and the previous cell state."""
    act = gate_activations(pre)
    i, f, g, o = jnp.split(act, 4, axis=-1)
    c_new = f * c + i * g
    return act, o * jnp.tanh(c_new), c_new


def _forward(xs, mask, w_ih, w_hh, bias, unroll: int):
    """Masked recurrence over chunks. xs: D arrays [n, C, B, F]; mask [n, C, 1, B, 1].

    Returns the final ``(h, c)`` (float32 [D, B, H]) and the per-step ``(hs, cs)``
    ([n, C, D, B, H], float32). h and c stay separate arrays: a stacked carry makes
    XLA copy the whole output buffer every step instead of updating it in place.
    """
    num_directions = w_ih.shape[0]
    batch = xs[0].shape[2]
    hidden = w_hh.shape[1]

    def step(carry, inputs):
        h, c = carry
        gates_x, valid = inputs
        _, h_new, c_new = _cell(gates_x + _recurrent(h, w_hh), c)
        # Frozen carry on padding: the final carry is the state at step length-1.
        h = jnp.where(valid, h_new, h)
        c = jnp.where(valid, c_new, c)
        return (h, c), (h, c)

    def chunk(carry, inputs):
        x_chunk, mask_chunk = inputs
        gates_x = _project(x_chunk, w_ih, bias)  # one matmul per direction for C steps
        return jax.lax.scan(step, carry, (gates_x, mask_chunk), unroll=unroll)

    zeros = jnp.zeros((num_directions, batch, hidden), jnp.float32)
    return jax.lax.scan(chunk, (zeros, zeros), (tuple(xs), mask))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _recurrence(xs, mask, w_ih, w_hh, bias, unroll):
    """hs [n, C, D, B, H] (compute dtype), h_last [D, B, H] of the masked (bi)LSTM recurrence."""
    (h_last, _), (hs, _) = _forward(xs, mask, w_ih, w_hh, bias, unroll)
    return hs.astype(xs[0].dtype), h_last


def _recurrence_fwd(xs, mask, w_ih, w_hh, bias, unroll):
    (h_last, _), (hs, cs) = _forward(xs, mask, w_ih, w_hh, bias, unroll)
    # Only h and c per step are kept; the gates are recomputed chunk by chunk.
    return (hs.astype(xs[0].dtype), h_last), (xs, mask, w_ih, w_hh, bias, hs, cs)


def _recurrence_bwd(unroll, residuals, cotangents):
    """Hand-written backward pass, chunk by chunk in reverse.

    Per chunk: recompute the gate activations with two matmuls over the C steps,
    run the reverse recurrence for (dh, dc) whose only matmul is ``dgates @ w_hh.T``,
    then get the input and weight gradients of the chunk with matmuls over all C
    steps (instead of one small weight-gradient matmul per step as autodiff of the
    scan would do). Everything a chunk touches stays small enough for the cache.
    """
    xs, mask, w_ih, w_hh, bias, hs, cs = residuals
    d_hs, d_h_last = cotangents
    f32 = jnp.float32
    zero = jnp.zeros((1,) + hs.shape[2:], f32)
    h_start = jnp.concatenate([zero, hs[:-1, -1]])  # state entering each chunk: [n, D, B, H]
    c_start = jnp.concatenate([zero, cs[:-1, -1]])

    def step(carry, inputs):
        dh, dc = carry
        dh_out, valid, k = inputs
        k_i, k_f, k_g, k_o, k_c, f = jnp.split(k, 6, axis=-1)
        dh = dh + dh_out
        dh_new = dh * valid  # gradient reaching the unfrozen update
        dc_new = dc * valid + dh_new * k_c
        d_pre = jnp.concatenate([k_i * dc_new, k_f * dc_new, k_g * dc_new, k_o * dh_new], axis=-1)
        d_rec = jnp.einsum("dbg,dhg->dbh", d_pre.astype(w_hh.dtype), w_hh, preferred_element_type=f32)
        return (dh - dh_new + d_rec, dc - dc * valid + dc_new * f), d_pre

    def chunk(carry, inputs):
        dh, dc, dw_ih, dw_hh, db = carry
        x_chunk, mask_chunk, hs_chunk, cs_chunk, h0, c0, d_hs_chunk = inputs
        h_prev = jnp.concatenate([h0[None], hs_chunk[:-1]])  # [C, D, B, H]
        c_prev = jnp.concatenate([c0[None], cs_chunk[:-1]])
        pre = _project(x_chunk, w_ih, bias) + _recurrent(h_prev, w_hh)
        act, _, c_new = _cell(pre, c_prev)
        i, f, g, o = jnp.split(act, 4, axis=-1)
        tanh_c = jnp.tanh(c_new)
        # Local derivatives of the step, for all C steps at once: d pre_{i,f,g} = k_{i,f,g} * dc_new,
        # d pre_o = k_o * dh_new, dc_new += k_c * dh_new, and f carries dc to the previous step.
        k = jnp.concatenate(
            [
                g * i * (1 - i),
                c_prev * f * (1 - f),
                i * (1 - g * g),
                tanh_c * o * (1 - o),
                o * (1 - tanh_c * tanh_c),
                f,
            ],
            axis=-1,
        )
        valid = mask_chunk.astype(f32)
        (dh, dc), d_pre = jax.lax.scan(step, (dh, dc), (d_hs_chunk.astype(f32), valid, k), reverse=True, unroll=unroll)
        d_pre_c = d_pre.astype(w_ih.dtype)  # [C, D, B, 4H]
        dx_chunk = tuple(
            jnp.einsum("cbg,fg->cbf", d_pre_c[:, d], w_ih[d], preferred_element_type=f32).astype(x_d.dtype)
            for d, x_d in enumerate(x_chunk)
        )
        dw_ih = dw_ih + jnp.stack(
            [jnp.einsum("cbf,cbg->fg", x_d, d_pre_c[:, d], preferred_element_type=f32) for d, x_d in enumerate(x_chunk)]
        )
        dw_hh = dw_hh + jnp.einsum("cdbh,cdbg->dhg", h_prev.astype(w_hh.dtype), d_pre_c, preferred_element_type=f32)
        db = db + jnp.sum(d_pre, axis=(0, 2))
        return (dh, dc, dw_ih, dw_hh, db), dx_chunk

    init = (
        d_h_last.astype(f32),
        jnp.zeros_like(d_h_last, f32),
        jnp.zeros(w_ih.shape, f32),
        jnp.zeros(w_hh.shape, f32),
        jnp.zeros(bias.shape, f32),
    )
    (_, _, dw_ih, dw_hh, db), dxs = jax.lax.scan(
        chunk, init, (tuple(xs), mask, hs, cs, h_start, c_start, d_hs), reverse=True
    )
    return dxs, None, dw_ih.astype(w_ih.dtype), dw_hh.astype(w_hh.dtype), db.astype(bias.dtype)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _scan_layer(
    x: jax.Array,
    lengths: jax.Array,
    mask: jax.Array,
    w_ih: jax.Array,
    w_hh: jax.Array,
    bias: jax.Array,
    *,
    unroll: int,
    chunk_size: int | None,
) -> tuple[jax.Array, jax.Array]:
    """One (bi)directional layer. Returns (outputs [B, T, D*H] zero on padding, h_last [D, B, H]).

    ``x``, ``w_ih`` and ``w_hh`` are in the compute dtype, ``bias`` float32. Time is
    cut into chunks of ``chunk_size`` steps (None: one chunk, i.e. a single input
    projection matmul for the whole sequence); the input projection of a chunk is
    one matmul per direction outside the per-step recurrence. Steps added to fill
    the last chunk are masked like padding.
    """
    num_directions = w_ih.shape[0]
    hidden = w_hh.shape[1]
    batch, steps, features = x.shape
    chunk = steps if not chunk_size or chunk_size >= steps else int(chunk_size)
    num_chunks = -(-steps // chunk)
    padded = num_chunks * chunk

    # Time-major inputs per direction; the backward one is reversed within each length.
    examples = jnp.arange(batch)[None, :]
    reverse = masks.reverse_index(lengths, steps).T  # [T, B]
    xs = [jnp.transpose(x, (1, 0, 2))]
    if num_directions == 2:
        xs.append(x[examples, reverse])  # gather straight into [T, B, F]
    step_mask = mask.T
    if padded != steps:  # extra steps are masked: the carry does not move
        xs = [jnp.pad(s, ((0, padded - steps), (0, 0), (0, 0))) for s in xs]
        step_mask = jnp.pad(step_mask, ((0, padded - steps), (0, 0)))
    xs = tuple(s.reshape(num_chunks, chunk, batch, features) for s in xs)
    step_mask = step_mask.reshape(num_chunks, chunk, 1, batch, 1)

    hs, h_last = _recurrence(xs, step_mask, w_ih, w_hh, bias, unroll)
    hs = hs.reshape(padded, num_directions, batch, hidden)[:steps]  # [T, D, B, H]
    outputs = [jnp.transpose(hs[:, 0], (1, 0, 2))]
    if num_directions == 2:
        outputs.append(hs[:, 1][reverse.T, jnp.arange(batch)[:, None]])  # back to input order, [B, T, H]
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


def cudnn_weights(w_ih: jax.Array, w_hh: jax.Array, bias: jax.Array) -> jax.Array:
    """One layer's parameters as cuDNN's flat float32 weight vector (layout in :func:`_cudnn_layer`)."""
    num_directions, _, gate_size = w_ih.shape
    pieces = []
    for d in range(num_directions):
        pieces += [w_ih[d].T.reshape(-1), w_hh[d].T.reshape(-1)]
    for d in range(num_directions):
        pieces += [bias[d], jnp.zeros((gate_size,), bias.dtype)]
    return jnp.concatenate([p.astype(jnp.float32) for p in pieces])


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
    weights = cudnn_weights(w_ih, w_hh, bias)
    zeros = jnp.zeros((num_directions, batch, hidden), jnp.float32)
    y, h_n, _ = rnn.lstm(
        x.astype(jnp.float32),
        zeros,
        zeros,
        weights,
        jnp.maximum(lengths, 1).astype(jnp.int32),  # cuDNN wants every sequence non-empty
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
    chunk_size: int | None = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    implementation: str = "auto"  # "auto" (AUTO_IMPLEMENTATION: the scan today) | "scan" | "cudnn"

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
        return auto_implementation(jax.default_backend()) == "cudnn" and cudnn_available()

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

        x = jnp.asarray(features, self.dtype)
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
                    unroll=self.unroll, chunk_size=self.chunk_size,
                )
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = nn.Dropout(self.dropout, name=f"dropout_{layer}")(x, deterministic=not train)
            input_size = directions * hidden

        if self.summary == "mean":
            return masks.masked_mean(x, mask)
        # Forward: state at length-1; backward: state after step 0 (its final carry).
        return jnp.concatenate(list(h_last), axis=-1).astype(self.dtype)
