"""Mixed precision on CPU: bfloat16 matrix-product operands, float32 everything else.

With ``dtype=bfloat16`` a Flax ``Dense`` calls ``lax.dot_general`` on bfloat16
operands with a bfloat16 result. XLA:CPU runs that product on its generic path
(measured 90 GFLOP/s for ``[4672, 192] x [192, 768]``, below float32's 123),
while the same product with ``preferred_element_type=float32`` reaches the
AMX/AVX512-BF16 kernels (322-434 GFLOP/s); XLA:CPU also computes bfloat16
element-wise ops in float32, paying a convert on each side of every op (see
benchmarks/NOTES.md). So on CPU, ``dtype=bfloat16`` means (:func:`policy`):
activations, normalisation and the loss stay float32, and the matrix products of
``Dense`` layers and attention take bfloat16 operands and accumulate in float32
(the TPU's default matmul precision), in the forward pass and, through custom
VJPs, in both backward products (JAX's own transpose rules would make those
float32). Used by the AST; on GPU/TPU the model computes in bfloat16 as Flax does.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_BF16 = jnp.dtype(jnp.bfloat16)


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return lax.dot_general(a.astype(_BF16), b.astype(_BF16), (((a.ndim - 1,), (0,)), ((), ())),
                           preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``x @ kernel`` (contracting the last axis of ``x``) with bfloat16 operands, float32 result."""
    return _matmul(x, kernel)


def _bf16_matmul_fwd(x, kernel):
    # the bf16 operands are kept for the backward pass; zero-size arrays carry the input dtypes
    return _matmul(x, kernel), (x.astype(_BF16), kernel.astype(_BF16), jnp.zeros((0,), x.dtype),
                                jnp.zeros((0,), kernel.dtype))


def _bf16_matmul_bwd(res, g):
    x, kernel, x_like, k_like = res
    g = g.astype(_BF16)
    dx = _matmul(g, kernel.T)
    dk = lax.dot_general(x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]), (((0,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)
    return dx.astype(x_like.dtype), dk.astype(k_like.dtype)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """``dot_general`` of a ``Dense`` layer (last axis x first axis) as :func:`bf16_matmul`."""
    (lc, rc), (lb, rb) = dimension_numbers
    if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lb or rb or rhs.ndim != 2:
        raise ValueError(f"bf16_dot_general serves Dense products only, got {dimension_numbers}")
    return bf16_matmul(lhs, rhs)


def _einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a.astype(_BF16), b.astype(_BF16), preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def bf16_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """Two-operand ``einsum`` whose every index appears in exactly two of ``a``, ``b`` and the
    result, or in all three (batch): bfloat16 operands, float32 result, in both passes."""
    return _einsum(spec, a, b)


def _bf16_einsum_fwd(spec, a, b):
    return _einsum(spec, a, b), (a.astype(_BF16), b.astype(_BF16), jnp.zeros((0,), a.dtype),
                                 jnp.zeros((0,), b.dtype))


def _bf16_einsum_bwd(spec, res, g):
    a, b, a_like, b_like = res
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    g = g.astype(_BF16)
    return (_einsum_last(f"{out},{sb}->{sa}", g, b).astype(a_like.dtype),
            _einsum_last(f"{sa},{out}->{sb}", a, g).astype(b_like.dtype))


def _einsum_last(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``_einsum`` with ``a`` laid out so that its contracted indices come last.

    XLA:CPU's bfloat16 kernels take products whose left operand is contracted on its
    minor axes; XLA would fold a plain transpose back into the product (and then fail
    with ``Unsupported element type for DotThunk``), hence the optimisation barrier.
    """
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    contracted = [c for c in sa if c not in out]
    order = [c for c in sa if c not in contracted] + contracted
    if order != list(sa):
        a = lax.optimization_barrier(jnp.transpose(a.astype(_BF16), [sa.index(c) for c in order]))
        sa = "".join(order)
    return _einsum(f"{sa},{sb}->{out}", a, b)


bf16_einsum.defvjp(_bf16_einsum_fwd, _bf16_einsum_bwd)
einsum_last = _einsum_last  # for other custom VJPs' backward products (models.ast)


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a model computing in ``dtype`` runs on this backend (:func:`policy`)."""

    dtype: Any                 # activations
    dense: Any = None          # ``dot_general`` for ``nn.Dense`` (None: Flax's)
    einsum: Any = None         # ``einsum(spec, a, b)`` for activation x activation products

    def product(self, spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
        if self.einsum is not None:
            return self.einsum(spec, a, b)
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def policy(dtype) -> Policy:
    """bfloat16 on CPU: float32 activations, bfloat16 products (module doc); else ``dtype`` throughout."""
    if jnp.dtype(dtype) == _BF16 and jax.default_backend() == "cpu":
        return Policy(jnp.dtype(jnp.float32), bf16_dot_general, bf16_einsum)
    return Policy(jnp.dtype(dtype))
