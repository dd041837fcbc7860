"""Audio Spectrogram Transformer (Gong et al., 2021) over ``features [B, T, F]``.

* Patch embedding: a ``patch x patch`` convolution with strides
  ``(fstride, tstride)`` over the spectrogram image (frequency x time), giving a
  grid of ``patch_grid(F, T)`` patches (128 x 1024 -> 12 x 101 = 1212).
* A class token and a distillation token; learned positional embeddings for the
  grid of ``(input_fdim, input_tdim)``, sliced along time when a batch has fewer
  frames (so one model serves crops of any length up to ``input_tdim``).
* Pre-LayerNorm transformer blocks (multi-head self-attention, MLP with exact
  GELU), a final LayerNorm, and the latent = mean of the class and distillation
  token outputs (AST's ``(x[:, 0] + x[:, 1]) / 2``).
* Key padding: a time patch ``j`` is valid iff ``j * tstride + patch <=
  max(length, patch)`` (:func:`masks.valid_patches`); the two tokens are always
  valid. Tokens are ordered time-major (all frequency patches of time patch 0,
  then of time patch 1, ...), so the valid tokens are a prefix and attention
  takes per-example key lengths (``jax.nn.dot_product_attention``'s
  ``key_value_seq_lengths``, which its cuDNN flash kernel supports natively; see
  :func:`attention` for the formulation used elsewhere).

Parameters and porting from the PyTorch AST (``ASTModel``): ``patch_embed``
kernel ``[16, 16, 1, D]`` = ``v.patch_embed.proj.weight.permute(2, 3, 1, 0)``
(H = frequency, W = time); ``cls_token``/``dist_token`` ``[D]``;
``pos_embed_tokens [2, D]`` = ``v.pos_embed[0, :2]``; ``pos_embed_patches
[f_dim, t_dim, D]`` = ``v.pos_embed[0, 2:].reshape(f_dim, t_dim, D)`` (AST flattens
the grid frequency-major; the grid layout here is independent of token order).
Attention dropout is not applied (the cuDNN kernel has none; both paths stay identical);
``dropout`` applies after the positional embedding, the attention projection and
inside the MLP, as timm's ``drop_rate``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxmusic.models import masks, precision

Dtype = Any

# DeiT sizes: (embed_dim, depth, num_heads).
AST_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn")

_init = nn.initializers.truncated_normal(0.02)


def patch_grid(fdim: int, tdim: int, patch: int = 16, fstride: int = 10, tstride: int = 10) -> tuple[int, int]:
    """Number of patches along (frequency, time): ``((F - patch)//fstride + 1, (T - patch)//tstride + 1)``."""
    if fdim < patch or tdim < patch:
        raise ValueError(f"spectrogram {fdim}x{tdim} (F x T) is smaller than one {patch}x{patch} patch")
    return (fdim - patch) // fstride + 1, (tdim - patch) // tstride + 1


def _masked_logits(q, k, kv_lengths, product):
    """``[B, N, Q, S]`` scaled logits, float32, ``finfo.min`` on the keys at or after ``kv_lengths``."""
    logits = product("bqnh,bknh->bnqk", q, k) / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    valid = jnp.arange(k.shape[1])[None, :] < kv_lengths[:, None]  # [B, S]
    return jnp.where(valid[:, None, None, :], logits, jnp.finfo(jnp.float32).min)


def _plain_attention(q, k, v, kv_lengths, policy):
    weights = jax.nn.softmax(_masked_logits(q, k, kv_lengths, policy.product), axis=-1).astype(v.dtype)
    return policy.product("bnqk,bknh->bqnh", weights, v).astype(v.dtype)


def query_chunks(queries: int, chunk: int | None) -> tuple[int, int]:
    """``(number, size)`` of query blocks of at most ``chunk`` queries, as even as possible,
    and at least two once there are more than ``chunk // 2`` queries. With 256: 1538 queries
    (full resolution) in 7 blocks of 220 (the last 2 rows padding), 146 (beat-synchronised)
    in 2 of 73, 100 in one (the plain form). NOTES.md entry 21 has the measurements."""
    if not chunk or queries <= max(1, int(chunk) // 2):
        return 1, queries
    number = max(2, -(-queries // int(chunk)))
    return number, -(-queries // number)


def _blocks(x, number, size):
    """``[B, Q, ...] -> [number, B, size, ...]`` (zero rows appended up to ``number * size``)."""
    x = jnp.pad(x, ((0, 0), (0, number * size - x.shape[1])) + ((0, 0),) * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(x.shape[0], number, size, *x.shape[2:]), 1, 0)


def _unblock(x, queries):
    return jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1, *x.shape[3:])[:, :queries]


def _block_forward(qb, k, v, kv_lengths, policy):
    """One query block: output ``[B, c, N, H]`` and the log-sum-exp of its logits ``[B, N, c]``."""
    logits = _masked_logits(qb, k, kv_lengths, policy.product)
    top = jnp.max(logits, axis=-1, keepdims=True)
    e = jnp.exp(logits - top)
    total = jnp.sum(e, axis=-1, keepdims=True)
    out = policy.product("bnqk,bknh->bqnh", (e / total).astype(v.dtype), v).astype(v.dtype)
    return out, (top + jnp.log(total))[..., 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def chunked_attention(q, k, v, kv_lengths, chunk: int, policy: precision.Policy):
    """:func:`attention`'s maths, the queries in blocks of at most ``chunk`` (flash-style).

    Forward: one block at a time (``lax.map``), keeping the output and each row's
    log-sum-exp. Backward (custom VJP): block by block again, the weights recomputed
    as ``exp(logits - lse)``, ``dq`` per block and ``dk``/``dv`` accumulated. Only
    ``[B, N, chunk, S]`` logits ever exist (the plain form holds ``[B, N, Q, S]`` several
    times over), and the residuals are ``q, k, v``, the output and ``lse``.
    """
    return _chunked_forward(q, k, v, kv_lengths, chunk, policy)[0]


def _chunked_forward(q, k, v, kv_lengths, chunk, policy):
    number, size = query_chunks(q.shape[1], chunk)
    out, lse = lax.map(lambda qb: _block_forward(qb, k, v, kv_lengths, policy), _blocks(q, number, size))
    return _unblock(out, q.shape[1]), (number, size, lse)


def _chunked_fwd(q, k, v, kv_lengths, chunk, policy):
    out, (_, _, lse) = _chunked_forward(q, k, v, kv_lengths, chunk, policy)
    return out, (q, k, v, kv_lengths, out, lse)


def _chunked_bwd(chunk, policy, res, g):
    q, k, v, kv_lengths, out, lse = res
    queries = q.shape[1]
    number, size = query_chunks(queries, chunk)
    scale = 1.0 / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    # backward products: bfloat16 operands under the CPU bf16 policy, the contracted axes of
    # the left operand last (precision.einsum_last); float32 otherwise
    product = precision.einsum_last if policy.einsum is not None else policy.product
    g = g.astype(jnp.float32)
    # delta = rowsum(dO * O): the softmax gradient's correction term, [B, N, Q]
    delta = jnp.einsum("bqnh,bqnh->bnq", g, out.astype(jnp.float32))

    def step(carry, xs):
        dk, dv = carry
        qb, gb, lse_b, delta_b = xs
        weights = jnp.exp(_masked_logits(qb, k, kv_lengths, policy.product) - lse_b[..., None])
        dv = dv + product("bnqk,bqnh->bknh", weights, gb)
        dweights = product("bqnh,bknh->bnqk", gb, v)
        dlogits = weights * (dweights - delta_b[..., None]) * scale
        dq = product("bnqk,bknh->bqnh", dlogits, k)
        dk = dk + product("bnqk,bqnh->bknh", dlogits, qb)
        return (dk, dv), dq

    zeros = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    deltas = jnp.moveaxis(_blocks(jnp.moveaxis(delta, 2, 1), number, size), 3, 2)  # [nb, B, N, c]
    (dk, dv), dq = lax.scan(step, zeros, (_blocks(q, number, size), _blocks(g, number, size), lse, deltas))
    return _unblock(dq, queries).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


chunked_attention.defvjp(_chunked_fwd, _chunked_bwd)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, kv_lengths: jax.Array, implementation: str,
              policy: precision.Policy | None = None, query_chunk: int | None = None) -> jax.Array:
    """Multi-head attention ``[B, Q, N, H] x [B, S, N, H] -> [B, Q, N, H]`` over the first ``kv_lengths`` keys.

    ``"cudnn"``: ``jax.nn.dot_product_attention`` (cuDNN flash attention, GPU, 16-bit
    dtypes). ``"xla"``: the same maths as two einsums and a float32 softmax; on CPU
    this measured ~25% faster (fwd+bwd) than ``jax.nn.dot_product_attention``'s own
    XLA path, which builds its mask and head groups with extra transposes. The two
    products follow ``policy`` (bfloat16 operands on CPU under bfloat16 compute).
    With ``query_chunk`` (and more queries than that), :func:`chunked_attention`.
    """
    if implementation == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=kv_lengths, implementation="cudnn")
    policy = policy or precision.policy(q.dtype)
    if query_chunks(q.shape[1], query_chunk)[0] == 1:
        return _plain_attention(q, k, v, kv_lengths, policy)
    return chunked_attention(q, k, v, kv_lengths, int(query_chunk), policy)


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2``, PyTorch's ``F.gelu`` formula.

    ``jax.nn.gelu(approximate=False)`` computes ``Phi`` through ``erfc``, which XLA:CPU
    expands into two branches with an exponential; ``erf`` is one rational polynomial
    (3.2x faster forward on ``[4672, 768]``, values within 1.2e-6 of PyTorch's). The
    backward pass keeps only ``x`` and recomputes ``Phi(x) + x phi(x)`` (autodiff would
    keep ``erf``'s derivative and value too: two more arrays of the MLP's width per
    block). XLA's temporaries of an ast_tiny beat-mel B=32 float32 step: 1,198 MB with
    ``jax.nn.gelu``, 1,048 MB with this, and the barrier in the backward pass takes
    another 49 MB off (858 -> 809 MB with the chunked attention). NOTES.md entry 18.
    """
    return 0.5 * x * (1.0 + lax.erf(x * _SQRT_HALF))


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, g):
    # Tied to the incoming gradient, XLA can neither merge this recomputation with the
    # forward pass's erf (and keep that alive until here) nor schedule it early.
    x, g = lax.optimization_barrier((x, g))
    cdf = 0.5 * (1.0 + lax.erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
    return (g * (cdf + x * pdf).astype(g.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


class MLP(nn.Module):
    hidden: int
    dropout: float
    policy: precision.Policy
    param_dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        dim, p = x.shape[-1], self.policy
        x = nn.Dense(self.hidden, dtype=p.dtype, param_dtype=self.param_dtype, kernel_init=_init,
                     dot_general=p.dense, name="fc1")(x)
        x = nn.Dropout(self.dropout)(gelu(x), deterministic=not train)
        x = nn.Dense(dim, dtype=p.dtype, param_dtype=self.param_dtype, kernel_init=_init,
                     dot_general=p.dense, name="fc2")(x)
        return nn.Dropout(self.dropout)(x, deterministic=not train)


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``.

    With ``query_tokens=n`` only the first ``n`` tokens are updated (they still
    attend to every valid token): the last block only needs the two summary tokens.
    """

    num_heads: int
    mlp_ratio: float
    dropout: float
    attention: str
    policy: precision.Policy
    param_dtype: Dtype
    query_tokens: int | None = None
    query_chunk: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array, train: bool) -> jax.Array:
        batch, tokens, dim = x.shape
        head_dim, p = dim // self.num_heads, self.policy
        y = nn.LayerNorm(epsilon=1e-6, dtype=p.dtype, param_dtype=self.param_dtype, name="norm1")(x)
        qkv = nn.Dense(3 * dim, dtype=p.dtype, param_dtype=self.param_dtype, kernel_init=_init,
                       dot_general=p.dense, name="qkv")(y)
        q, k, v = jnp.split(qkv.reshape(batch, tokens, 3, self.num_heads, head_dim), 3, axis=2)
        if self.query_tokens is not None:
            x, q = x[:, : self.query_tokens], q[:, : self.query_tokens]
        y = attention(q[:, :, 0], k[:, :, 0], v[:, :, 0], kv_lengths, self.attention, p, self.query_chunk)
        y = nn.Dense(dim, dtype=p.dtype, param_dtype=self.param_dtype, kernel_init=_init,
                     dot_general=p.dense, name="proj")(y.reshape(batch, x.shape[1], dim))
        x = x + nn.Dropout(self.dropout)(y, deterministic=not train)
        y = nn.LayerNorm(epsilon=1e-6, dtype=p.dtype, param_dtype=self.param_dtype, name="norm2")(x)
        mlp = MLP(int(dim * self.mlp_ratio), self.dropout, p, self.param_dtype, name="mlp")
        return x + mlp(y, train=train)


class ASTBackbone(nn.Module):
    """AST over ``features [B, T, F]`` -> ``latent [B, embed_dim]``."""

    input_fdim: int
    input_tdim: int
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention: str = "auto"  # "auto": cuDNN flash attention on GPU for 16-bit dtypes, else XLA
    # XLA attention: queries in blocks of at most this many, two from half a block up (None or 0:
    # all at once); see query_chunks(). 256: full-resolution input (1538 tokens) in 7 blocks,
    # beat-synchronised (<= 146) in 2. XLA's temporaries of an ast_tiny full-resolution B=8 step
    # 10.3 -> 2.6 GB (NOTES.md entry 11), of a beat-mel B=32 step 1,048 -> 858 MB (entry 18); at
    # full resolution 7 blocks train 1.18x faster than 13 (entry 21)
    query_chunk: int | None = 256
    # recompute each block's activations in the backward pass (nn.remat); measured to save
    # nothing with the chunked attention on XLA:CPU (NOTES.md entry 11), so off
    remat: bool = False

    @property
    def feature_size(self) -> int:
        return self.embed_dim

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency, time) of the positional embedding."""
        return patch_grid(self.input_fdim, self.input_tdim, self.patch_size, self.fstride, self.tstride)

    def num_tokens(self, tdim: int | None = None) -> int:
        """Sequence length seen by the transformer: 2 tokens + the patches of a ``tdim``-frame input."""
        f_dim, t_dim = patch_grid(
            self.input_fdim, self.input_tdim if tdim is None else tdim, self.patch_size, self.fstride, self.tstride
        )
        return 2 + f_dim * t_dim

    def _attention_implementation(self) -> str | None:
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attention!r}")
        if self.attention == "auto":
            half = jnp.dtype(self.dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
            return "cudnn" if jax.default_backend() == "gpu" and half else "xla"
        return self.attention

    @nn.compact
    def __call__(self, features: jax.Array, lengths: jax.Array, *, train: bool) -> jax.Array:
        batch, steps, num_features = features.shape
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if num_features != self.input_fdim:
            raise ValueError(
                f"ASTBackbone built for {self.input_fdim} frequency bins, got features with F={num_features}"
            )
        if steps > self.input_tdim:
            raise ValueError(f"ASTBackbone built for at most {self.input_tdim} frames, got T={steps}")
        f_max, t_max = self.grid
        f_dim, t_dim = patch_grid(num_features, steps, self.patch_size, self.fstride, self.tstride)

        policy = precision.policy(self.dtype)  # bfloat16 on CPU: float32 activations, bf16 products
        dtype = policy.dtype
        # Patch embedding on the (frequency x time) image: [B, F, T, 1] -> [B, f_dim, t_dim, D].
        image = jnp.transpose(jnp.asarray(features, dtype), (0, 2, 1))[..., None]
        patches = nn.Conv(
            self.embed_dim,
            (self.patch_size, self.patch_size),
            strides=(self.fstride, self.tstride),
            padding="VALID",
            dtype=dtype,
            param_dtype=self.param_dtype,
            name="patch_embed",
        )(image)
        pos_patches = self.param("pos_embed_patches", _init, (f_max, t_max, self.embed_dim), self.param_dtype)
        patches = patches + pos_patches[None, :, :t_dim].astype(dtype)
        # Time-major token order: valid patches form a prefix of the sequence.
        patches = jnp.transpose(patches, (0, 2, 1, 3)).reshape(batch, t_dim * f_dim, self.embed_dim)

        cls_token = self.param("cls_token", _init, (self.embed_dim,), self.param_dtype)
        dist_token = self.param("dist_token", _init, (self.embed_dim,), self.param_dtype)
        pos_tokens = self.param("pos_embed_tokens", _init, (2, self.embed_dim), self.param_dtype)
        tokens = (jnp.stack([cls_token, dist_token]) + pos_tokens).astype(dtype)
        x = jnp.concatenate([jnp.broadcast_to(tokens[None], (batch, 2, self.embed_dim)), patches], axis=1)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)

        valid_t = masks.valid_patches(lengths, self.patch_size, self.tstride, t_dim)
        kv_lengths = (2 + valid_t * f_dim).astype(jnp.int32)
        implementation = self._attention_implementation()
        block = nn.remat(EncoderBlock, static_argnums=(3,)) if self.remat else EncoderBlock
        for i in range(self.depth):
            x = block(
                self.num_heads, self.mlp_ratio, self.dropout, implementation, policy, self.param_dtype,
                query_tokens=2 if i == self.depth - 1 else None,  # only the two summary tokens are read
                query_chunk=self.query_chunk,
                name=f"block_{i}",
            )(x, kv_lengths, train)
        x = nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=self.param_dtype, name="norm")(x[:, :2])
        return (x[:, 0] + x[:, 1]) / 2


def make_ast(size: str, input_fdim: int, input_tdim: int, **kw: Any) -> ASTBackbone:
    """An :class:`ASTBackbone` of DeiT size ``tiny``/``small``/``base``; ``kw`` overrides any field."""
    if size not in AST_SIZES:
        raise ValueError(f"unknown AST size {size!r}; expected one of {sorted(AST_SIZES)}")
    embed_dim, depth, num_heads = AST_SIZES[size]
    args = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    args.update(kw)
    return ASTBackbone(input_fdim=input_fdim, input_tdim=input_tdim, **args)
