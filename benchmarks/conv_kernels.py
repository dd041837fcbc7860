"""One CNN-block convolution, XLA (as jaxmusic.models.cnn runs it) against PyTorch conv2d (oneDNN), interleaved.

    python -m benchmarks.conv_kernels      (NOTES.md entry 14)
"""
import time, numpy as np, jax, jax.numpy as jnp, torch
from jax import lax
from jaxmusic.models.cnn import _NHWC, conv_general_dilated
torch.set_num_threads(2)
B, T, F, Ci, Co = 8, 646, 64, 16, 32
x = np.random.default_rng(0).normal(size=(B, T, F, Ci)).astype(np.float32)
w = np.random.default_rng(1).normal(size=(3, 3, Ci, Co)).astype(np.float32)
flops = 2 * B * T * F * Ci * Co * 9
opts = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
jf = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC), compiler_options=opts)
jg = jax.jit(jax.grad(lambda x, w: jnp.sum(conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_NHWC) ** 2), argnums=(0, 1)), compiler_options=opts)
xj, wj = jnp.asarray(x), jnp.asarray(w)
tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
tw = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
tf = lambda: torch.nn.functional.conv2d(tx, tw, padding=1)
def tg():
    y = tf(); (y ** 2).sum().backward(); tx.grad = None; tw.grad = None
fns = {"xla fwd": lambda: jf(xj, wj).block_until_ready(), "torch fwd": lambda: tf(),
       "xla fwd+grads": lambda: jax.block_until_ready(jg(xj, wj)), "torch fwd+grads": tg}
for f in fns.values(): f()
t = {k: [] for k in fns}
for _ in range(5):
    for k, f in fns.items():
        t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
for k, v in t.items():
    n = flops * (3 if "grads" in k else 1)
    print(f"{k:16s} median {np.median(v)*1e3:7.1f} ms  {n / min(v) / 1e9:6.1f} GFLOP/s (best)")
for a, b in (("xla fwd", "torch fwd"), ("xla fwd+grads", "torch fwd+grads")):
    r = [y / x for x, y in zip(t[a], t[b])]
    print(f"torch/xla time ratio {a}: median {np.median(r):.2f} ({min(r):.2f}-{max(r):.2f})")
