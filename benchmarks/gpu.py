"""The headline sweep on one accelerator, within a time limit: ``benchmarks/gpu.sh OUTDIR [--quick]``.

Sections, in order of importance, each a ``benchmarks.run`` call appended to
``OUTDIR/results.json`` (every point is saved as soon as it is measured, so a
section cut short by the deadline keeps what it finished):

0. the bf16 matmul rate (the denominator of the bf16 MFU goal);
1. LSTM, CNN, AST tiny and small on beat-synchronised mel, batch 32, JAX float32
   and bfloat16 against PyTorch eager (float32 and autocast bfloat16);
2. the same on full-resolution mel;
3. JAX bfloat16 against ``torch.compile`` at the same points;
4. batch sizes above 32 until memory or the per-point budget stops a variant.

Measured on an H200: ``benchmarks/gpu_h200/`` (RESULTS.md there says what was cut short).

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

from benchmarks import machine, report
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
    # Per-point timing budgets sized on an H200 (benchmarks/gpu_h200/: 40 s per point measured 7
    # of the 8 headline points in 450 s); beat-synchronised points first, the slow full-resolution
    # ones after, so a cut-short sweep keeps the most points.
    common = ["--steps", "5", "--budget-s", "10", "--peak-n", "8192"]
    head = ["--batch-sizes", "32", "--jax-variants", "jit,jit_bf16", "--torch-variants", "eager,eager_bf16"]
    return [
        ("headline beat B=32", [*common, "--models", MODELS, "--inputs", "beat_mel", *head]),
        ("headline full B=32", [*common, "--models", MODELS, "--inputs", "full_mel", *head]),
        ("torch.compile B=32", [*common, "--budget-s", "6", "--models", MODELS, "--inputs", INPUTS,
                                "--batch-sizes", "32", "--jax-variants", "jit_bf16",
                                "--torch-variants", "compile,compile_bf16"]),
        ("batch sizes", [*common, "--models", MODELS, "--inputs", INPUTS,
                         "--batch-sizes", "64,128,256,512,1024,2048", "--budget-s", "5",
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
    results_path = out / "results.json"
    # the bf16 matmul rate (the denominator of the accelerator's bf16 MFU goal, benchmarks.report)
    # first, into a results.json every section appends to: a sweep cut short keeps it
    results_path.write_text(json.dumps({
        "schema": bench.SCHEMA, "commands": [], "records": [], "epoch": [],
        "matmul_peak_bf16": machine.matmul_peak(256 if args.quick else 8192, dtype="bfloat16")},
        indent=1, default=float) + "\n")
    done, skipped = [], []
    for name, section in sections(args.quick):
        if time.monotonic() - t0 > limit:
            skipped.append(name)
            continue
        print(f"== {name} ({time.monotonic() - t0:.0f} s)", flush=True)
        argv_run = [*section, "--out", str(out), "--append"]
        try:
            bench.main(argv_run)
            done.append(name)
        except Exception as e:  # noqa: BLE001 - the next section still runs
            print(f"section {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            skipped.append(f"{name} (failed: {type(e).__name__})")
    results = json.loads(results_path.read_text())
    if not done:
        print("no section finished", file=sys.stderr)
        return 1
    results["gpu_sweep"] = {"sections_done": done, "sections_skipped": skipped,
                            "wall_s": round(time.monotonic() - t0, 1)}
    results_path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    report.write(results, out)
    print(f"wrote {results_path} and {out / 'RESULTS.md'} in {time.monotonic() - t0:.0f} s"
          + (f"; skipped: {', '.join(skipped)}" if skipped else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
