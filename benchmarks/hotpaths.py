"""Micro-benchmarks of the models' hot paths, with the alternatives a model change could take.

    python -m benchmarks.hotpaths [--only lstm,cnn,attention] [--quick] [--out benchmarks/HOTPATHS.md]

Each study times one hot path at the benchmark's shapes (a jitted forward and
backward, median of ``--repeats`` after a warm-up), in the current formulation and
in alternatives, so that ``NOTES.md`` can predict what a change to
``jaxmusic.models`` would buy before anyone makes it:

* ``lstm``: the bidirectional recurrence (B=32, H=64, T=1293): the per-step
  recurrent matmul as a batched einsum over directions (jaxmusic's), one
  block-diagonal matmul for both directions, or two separate dots; scan unroll 1
  and 8. Forward only (the inner loop is the same in the backward pass).
* ``cnn``: one conv block (conv 3x3 + bias + ReLU + 2x2 max-pool, forward and
  backward) at each of the four blocks' shapes: NHWC (jaxmusic's) against NCHW,
  float32 against bfloat16.
* ``attention``: one attention layer with key padding, forward and backward, at
  AST-tiny's full-resolution shape (B=8, N=1538, 3 heads of 64):
  ``jax.nn.dot_product_attention`` (jaxmusic's), the plain einsum-softmax-einsum,
  and a query-chunked form; float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _time(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- LSTM recurrence ---------------------------------------------------------------------------

def lstm_study(quick: bool, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    batch, hidden, steps, directions = (8, 16, 64, 2) if quick else (32, 64, 1293, 2)
    key = jax.random.PRNGKey(0)
    gates_x = jax.random.normal(key, (steps, directions, batch, 4 * hidden), jnp.float32)
    w_hh = jax.random.normal(key, (directions, hidden, 4 * hidden), jnp.float32) * 0.1

    def cell(pre, c):
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def batched(h, w):
        return jnp.einsum("dbh,dhg->dbg", h, w)

    def block_diagonal(h, w):
        # [B, D*H] @ blockdiag(w) [D*H, D*4H]: one plain 2-D matmul (twice the FLOPs).
        d, hh, g = w.shape
        big = jnp.zeros((d * hh, d * g), w.dtype)
        for k in range(d):
            big = big.at[k * hh:(k + 1) * hh, k * g:(k + 1) * g].set(w[k])
        out = jnp.transpose(h, (1, 0, 2)).reshape(h.shape[1], d * hh) @ big
        return jnp.transpose(out.reshape(h.shape[1], d, g), (1, 0, 2))

    def separate(h, w):
        return jnp.stack([h[k] @ w[k] for k in range(w.shape[0])])

    rows = []
    for name, matmul in (("batched einsum (jaxmusic)", batched), ("block-diagonal 2-D matmul", block_diagonal),
                         ("separate dots", separate)):
        for unroll in (1, 8):
            def run(gx, w, matmul=matmul, unroll=unroll):
                def step(carry, g):
                    h, c = carry
                    h, c = cell(g + matmul(h, w), c)
                    return (h, c), h

                zeros = jnp.zeros((directions, batch, hidden), jnp.float32)
                return jax.lax.scan(step, (zeros, zeros), gx, unroll=unroll)[1]

            fn = jax.jit(run)
            t = _time(fn, gates_x, w_hh, repeats=repeats)
            rows.append({"study": "lstm", "variant": name, "unroll": unroll, "ms": t * 1e3,
                         "us_per_step": t / steps * 1e6, "shape": f"B={batch} H={hidden} T={steps} D={directions}"})
    return rows


# --- CNN block -----------------------------------------------------------------------------------

def cnn_study(quick: bool, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    batch = 4 if quick else 32
    steps, freq = (64, 32) if quick else (1293, 128)
    channels = (1, 16, 32, 64, 128)
    rows = []
    for level in range(4):
        c_in, c_out = channels[level], channels[level + 1]
        t, f = steps // 2**level, freq // 2**level
        for layout in ("NHWC", "NCHW"):
            for dtype in (jnp.float32, jnp.bfloat16):
                key = jax.random.PRNGKey(level)
                shape = (batch, t, f, c_in) if layout == "NHWC" else (batch, c_in, t, f)
                x = jax.random.normal(key, shape, jnp.float32).astype(dtype)
                w = (jax.random.normal(key, (3, 3, c_in, c_out), jnp.float32) * 0.1).astype(dtype)
                dn = ("NHWC", "HWIO", "NHWC") if layout == "NHWC" else ("NCHW", "HWIO", "NCHW")
                window = (1, 2, 2, 1) if layout == "NHWC" else (1, 1, 2, 2)

                def block(w, x, dn=dn, window=window):
                    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
                    y = jax.nn.relu(y)
                    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, window, window, "VALID")
                    return jnp.sum(y.astype(jnp.float32))

                fn = jax.jit(jax.grad(block, argnums=(0, 1)))
                ms = _time(fn, w, x, repeats=repeats) * 1e3
                flops = 3 * 2 * batch * t * f * 9 * c_in * c_out
                rows.append({"study": "cnn", "variant": f"block {level} {layout} {jnp.dtype(dtype).name}",
                             "ms": ms, "gflop_per_s": flops / ms / 1e6,
                             "shape": f"B={batch} T={t} F={f} {c_in}->{c_out}"})
        rows += _torch_conv_block(batch, t, f, c_in, c_out, repeats)
        # The same block as an explicit im2col: the k*k shifted copies of the input
        # side by side, then one matmul (XLA's dot emitter instead of its convolution).
        key = jax.random.PRNGKey(level)
        x = jax.random.normal(key, (batch, t, f, c_in), jnp.float32)
        w = jax.random.normal(key, (3, 3, c_in, c_out), jnp.float32) * 0.1

        def im2col_block(w, x):
            xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            cols = jnp.concatenate([xp[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)],
                                   axis=-1)  # [B, T, F, 9*C_in]
            y = jax.nn.relu(cols @ w.reshape(9 * x.shape[-1], -1))
            y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            return jnp.sum(y)

        fn = jax.jit(jax.grad(im2col_block, argnums=(0, 1)))
        ms = _time(fn, w, x, repeats=repeats) * 1e3
        flops = 3 * 2 * batch * t * f * 9 * c_in * c_out
        rows.append({"study": "cnn", "variant": f"block {level} NHWC im2col+matmul float32", "ms": ms,
                     "gflop_per_s": flops / ms / 1e6, "shape": f"B={batch} T={t} F={f} {c_in}->{c_out}"})
    return rows


def _torch_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _torch_conv_block(batch, t, f, c_in, c_out, repeats) -> list[dict]:
    """PyTorch's (oneDNN) conv block, forward and backward: the reference."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:  # pragma: no cover
        return []
    rows = []
    for fmt in ("NCHW", "channels_last"):
        x = torch.randn(batch, c_in, t, f, requires_grad=True)
        w = (torch.randn(c_out, c_in, 3, 3) * 0.1).requires_grad_()
        if fmt == "channels_last":
            x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

        def step():
            x.grad = w.grad = None
            y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
            y.sum().backward()

        ms = _torch_time(step, repeats) * 1e3
        flops = 3 * 2 * batch * t * f * 9 * c_in * c_out
        rows.append({"study": "cnn", "variant": f"torch {fmt} float32", "ms": ms, "gflop_per_s": flops / ms / 1e6,
                     "shape": f"B={batch} T={t} F={f} {c_in}->{c_out}"})
    return rows


# --- attention -----------------------------------------------------------------------------------

def attention_study(quick: bool, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp

    batch, tokens, heads, head_dim = (2, 130, 2, 16) if quick else (8, 1538, 3, 64)
    key = jax.random.PRNGKey(0)
    q, k, v = (jax.random.normal(kk, (batch, tokens, heads, head_dim), jnp.float32)
               for kk in jax.random.split(key, 3))
    lengths = jnp.asarray([tokens - 17 * i for i in range(batch)], jnp.int32)

    def library(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="xla")

    def einsum(q, k, v):
        scale = q.shape[-1] ** -0.5
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
        mask = jnp.arange(k.shape[1])[None, None, None, :] < lengths[:, None, None, None]
        probs = jax.nn.softmax(jnp.where(mask, logits, -1e30), axis=-1).astype(v.dtype)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v)

    def chunked(q, k, v, chunk=256):
        n = q.shape[1]
        pad = -n % chunk
        qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
        qc = qp.reshape(q.shape[0], -1, chunk, *q.shape[2:]).swapaxes(0, 1)
        out = jax.lax.map(lambda qq: jax.checkpoint(einsum)(qq, k, v), qc)
        return out.swapaxes(0, 1).reshape(q.shape[0], -1, *q.shape[2:])[:, :n]

    rows = []
    try:
        import torch
        import torch.nn.functional as F

        tq, tk, tv = (torch.from_numpy(jax.device_get(a)).transpose(1, 2).contiguous().requires_grad_()
                      for a in (q, k, v))
        mask = (torch.arange(tokens)[None, :] < torch.from_numpy(jax.device_get(lengths))[:, None])[:, None, None]

        def torch_step():
            for a in (tq, tk, tv):
                a.grad = None
            F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask).sum().backward()

        ms = _torch_time(torch_step, repeats) * 1e3
        rows.append({"study": "attention", "variant": "torch SDPA (reference) float32", "ms": ms,
                     "gflop_per_s": 3 * 4 * batch * heads * tokens * tokens * head_dim / ms / 1e6,
                     "shape": f"B={batch} N={tokens} heads={heads} d={head_dim}"})
    except ImportError:  # pragma: no cover
        pass
    for name, fn in (("jax.nn.dot_product_attention xla (jaxmusic)", library), ("einsum-softmax-einsum", einsum),
                     ("query-chunked 256 + remat", chunked)):
        for dtype in (jnp.float32, jnp.bfloat16):
            args = [a.astype(dtype) for a in (q, k, v)]

            def loss(q, k, v, fn=fn):
                return jnp.sum(fn(q, k, v).astype(jnp.float32))

            step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
            ms = _time(step, *args, repeats=repeats) * 1e3
            flops = 3 * 4 * batch * heads * tokens * tokens * head_dim
            rows.append({"study": "attention", "variant": f"{name} {jnp.dtype(dtype).name}", "ms": ms,
                         "gflop_per_s": flops / ms / 1e6,
                         "shape": f"B={batch} N={tokens} heads={heads} d={head_dim}"})
    return rows


STUDIES = {"lstm": lstm_study, "cnn": cnn_study, "attention": attention_study}


def to_markdown(rows: list[dict], command: str, peak: dict | None) -> str:
    lines = ["# Hot-path micro-benchmarks", "", f"`{command}`", ""]
    if peak:
        lines += [f"Matmul peak in this run: {peak['peak_flops'] / 1e9:.0f} GFLOP/s (float32, n={peak['n']}).", ""]
    for study in STUDIES:
        sel = [r for r in rows if r["study"] == study]
        if not sel:
            continue
        cols = [c for c in sel[0] if c != "study"]
        lines += [f"## {study}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in sel:
            lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c])
                                           for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import machine

    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpaths", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STUDIES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="markdown file (default: print)")
    args = parser.parse_args(argv)
    peak = machine.matmul_peak(512 if args.quick else 4096)
    rows = []
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        for row in STUDIES[name](args.quick, args.repeats):
            print(row, flush=True)
            rows.append(row)
    md = to_markdown(rows, " ".join(["python -m benchmarks.hotpaths", *(argv or sys.argv[1:])]), peak)
    if args.out:
        Path(args.out).write_text(md + "\n")
    else:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
