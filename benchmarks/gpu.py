"""The headline sweep on one accelerator, within a time limit: ``benchmarks/gpu.sh OUTDIR [--quick]``.

Sections, in order of importance, each a ``benchmarks.run`` call appended to
``OUTDIR/results.json`` (every point is saved as soon as it is measured, so a
section cut short by the deadline keeps what it finished):

1. LSTM, CNN, AST tiny and small on beat-synchronised and full-resolution mel,
   batch 32, JAX float32 and bfloat16 against PyTorch eager (float32 and autocast
   bfloat16);
2. the same with ``torch.compile``;
3. batch sizes above 32 until memory or the per-point budget stops a variant.

Inputs are synthetic (``benchmarks.variants.Workload.batch``): the path imports
neither TensorFlow nor librosa. ``--quick``: tiny models and inputs on whatever
backend there is (the CPU smoke test of tests/test_bench.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import report
from benchmarks import run as bench

MODELS = "lstm,cnn,ast_tiny,ast_small"
INPUTS = "beat_mel,full_mel"


def sections(quick: bool) -> list[tuple[str, list[str]]]:
    """``(name, benchmarks.run arguments)`` in the order they run."""
    if quick:
        common = ["--quick", "--steps", "2", "--budget-s", "20", "--torch-threads", "1"]
        # (the LSTM's bfloat16 step does not run on XLA:CPU: a bf16 x bf16 -> f32 product it
        # does not implement; float32 only here)
        return [
            ("headline", [*common, "--models", "cnn,ast_tiny", "--inputs", "beat_mel", "--batch-sizes", "2",
                          "--jax-variants", "jit,jit_bf16", "--torch-variants", "eager,eager_bf16"]),
            ("lstm", [*common, "--models", "lstm", "--inputs", "beat_mel", "--batch-sizes", "2",
                      "--jax-variants", "jit", "--torch-variants", "eager"]),
            ("batch sizes", [*common, "--models", "cnn", "--inputs", "beat_mel", "--batch-sizes", "4",
                             "--jax-variants", "jit", "--torch-variants", "eager"]),
        ]
    common = ["--steps", "5", "--budget-s", "40", "--peak-n", "8192"]
    return [
        ("headline B=32", [*common, "--models", MODELS, "--inputs", INPUTS, "--batch-sizes", "32",
                           "--jax-variants", "jit,jit_bf16", "--torch-variants", "eager,eager_bf16"]),
        ("torch.compile B=32", [*common, "--models", MODELS, "--inputs", INPUTS, "--batch-sizes", "32",
                                "--jax-variants", "jit_bf16", "--torch-variants", "compile,compile_bf16"]),
        ("batch sizes", [*common, "--models", MODELS, "--inputs", INPUTS,
                         "--batch-sizes", "64,128,256,512,1024,2048", "--budget-s", "20",
                         "--jax-variants", "jit_bf16", "--torch-variants", "eager_bf16"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for results.json and RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU smoke test")
    parser.add_argument("--limit-s", type=float, default=None,
                        help="stop starting sections after this many seconds (default 360; --quick 120)")
    args = parser.parse_args(argv)
    limit = args.limit_s or (120.0 if args.quick else 360.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done, skipped = [], []
    for name, section in sections(args.quick):
        if time.monotonic() - t0 > limit:
            skipped.append(name)
            continue
        print(f"== {name} ({time.monotonic() - t0:.0f} s)", flush=True)
        argv_run = [*section, "--out", str(out), *(["--append"] if done else [])]
        try:
            bench.main(argv_run)
            done.append(name)
        except Exception as e:  # noqa: BLE001 - the next section still runs
            print(f"section {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            skipped.append(f"{name} (failed: {type(e).__name__})")
    results_path = out / "results.json"
    if not results_path.exists():
        print("no section finished", file=sys.stderr)
        return 1
    results = json.loads(results_path.read_text())
    results["gpu_sweep"] = {"sections_done": done, "sections_skipped": skipped,
                            "wall_s": round(time.monotonic() - t0, 1)}
    results_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    report.write(results, out)
    print(f"wrote {results_path} and {out / 'RESULTS.md'} in {time.monotonic() - t0:.0f} s"
          + (f"; skipped: {', '.join(skipped)}" if skipped else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
