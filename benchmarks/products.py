"""One layer's three products (forward, input gradient, weight gradient), XLA against PyTorch.

    python -m benchmarks.products --m 4672 --k 192 --n 768

Defaults: the AST MLP's first layer of ast_tiny on beat-synchronised mel at B=32 (32 clips x
146 tokens, width 192 -> 768). Each product is a jitted ``jnp.einsum`` and a ``torch.einsum``
of the same float32 arrays, checked equal, then timed interleaved (A B A B ...); the speed
ratio is the median of the paired per-round ratios (NOTES.md entry 20).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.products", description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=4672, help="rows (tokens)")
    parser.add_argument("--k", type=int, default=192, help="input width")
    parser.add_argument("--n", type=int, default=768, help="output width")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    m, k, n = args.m, args.k, args.n
    products = {"forward [M,K] x [K,N]": ((m, k), (k, n), "mk,kn->mn"),
                "input gradient [M,N] x [K,N]^T": ((m, n), (k, n), "mn,kn->mk"),
                "weight gradient [M,K]^T x [M,N]": ((m, k), (m, n), "mk,mn->kn")}
    rng = np.random.default_rng(0)
    flops = 2.0 * m * k * n
    print(f"M={m} K={k} N={n}, float32; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    for name, (sa, sb, eq) in products.items():
        a, b = rng.standard_normal(sa, np.float32), rng.standard_normal(sb, np.float32)
        ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
        f = jax.jit(lambda x, y, eq=eq: jnp.einsum(eq, x, y))
        np.testing.assert_allclose(np.asarray(f(ja, jb)), torch.einsum(eq, ta, tb).numpy(), rtol=1e-3, atol=1e-2)
        tj, tt = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            f(ja, jb).block_until_ready()
            tj.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            torch.einsum(eq, ta, tb)
            tt.append(time.perf_counter() - t0)
        ratio = statistics.median(t / j for t, j in zip(tt, tj))
        print(f"{name}: jax {flops / min(tj) / 1e9:.0f} GFLOP/s, torch {flops / min(tt) / 1e9:.0f} GFLOP/s, "
              f"jax speed {ratio:.2f}x torch's (paired median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
