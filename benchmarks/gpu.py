"""The accelerator sweep, within 8 minutes: ``benchmarks/gpu.sh OUTDIR [--quick]``.

Sections in order of importance, each a ``benchmarks.run`` call appended to
``OUTDIR/results.json`` with its own time slice (``--deadline-s``: a point that would end
past it is not started and is recorded as skipped for time; every point is saved as soon as
it is measured). JAX float32 and bfloat16 against PyTorch eager, ``torch.compile`` and their
autocast bfloat16 forms; float32 products under one policy on both sides (``--float32-matmul``,
default TF32: RESULTS.md's header says which):

1. headline: LSTM, CNN, AST tiny and small at B=32, beat-synchronised then full-resolution
   mel, both numeric paths, eager;
2. the LSTM's B=256 goal point, both paths, eager and ``torch.compile``;
3. ``torch.compile`` (float32 and bf16) beside the JAX variants at the B=32 points;
4. per model, the batch sweep from 64 doubling to the first out-of-memory (per side: a side
   that runs out stops, the other goes on; recorded as such), bf16 JAX against eager_bf16 and
   compile_bf16, beat then full resolution.

Budget (seconds on one H200, from benchmarks/gpu_h200/: JAX compile of the train step
LSTM 1.5, CNN 5-6, AST 15-24; torch.compile's first CNN step 18; steps 2-160 ms at B=32):
start-up and the matmul rates 15, headline 2 x 65 (beat, then full resolution: 4 points
each; per point 2 JAX compiles [~2x the train figure with inference] + 2 x 6 s of steps:
LSTM ~15, CNN ~35, AST 50-60, so ast_small is the first a slice leaves out), LSTM B=256 25,
torch.compile 70, sweeps 190 (AST small and tiny 55 each, CNN 45, LSTM 35), report 10:
465 s of the 480. ``gpu.sh`` stops the sweep at 470 s whatever happens and writes the
report from the points saved. What a slice leaves out is listed in RESULTS.md ("Not
measured", reason "time: ...").

Inputs are synthetic (``benchmarks.variants.Workload.batch``): the path imports neither
TensorFlow nor librosa. ``--quick``: tiny models and inputs on whatever backend there is
(the CPU smoke test of tests/test_bench.py).
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


SWEEP_BATCHES = "64,128,256,512,1024,2048,4096,8192,16384"


def sections(quick: bool) -> list[tuple[str, float, list[str]]]:
    """``(name, time slice in seconds, benchmarks.run arguments)`` in the order they run."""
    if quick:  # (slices only against a hung step: the smoke test checks the sections, not the time)
        common = ["--quick", "--steps", "2", "--budget-s", "20", "--torch-threads", "1"]
        # (the LSTM's bfloat16 step does not run on XLA:CPU: a bf16 x bf16 -> f32 product it
        # does not implement; float32 only here)
        return [
            ("headline", 600, [*common, "--models", "cnn,ast_tiny", "--inputs", "beat_mel", "--batch-sizes", "2",
                              "--jax-variants", "jit,jit_bf16", "--torch-variants", "eager,eager_bf16"]),
            ("lstm", 600, [*common, "--models", "lstm", "--inputs", "beat_mel", "--batch-sizes", "2",
                          "--jax-variants", "jit", "--torch-variants", "eager"]),
            ("batch sizes", 600, [*common, "--models", "cnn", "--inputs", "beat_mel", "--batch-sizes", "4,8",
                                 "--jax-variants", "jit", "--torch-variants", "eager"]),
        ]
    common = ["--steps", "5", "--budget-s", "6", "--peak-n", "8192"]
    both = ["--jax-variants", "jit,jit_bf16"]
    bf16 = ["--jax-variants", "jit_bf16", "--torch-variants", "eager_bf16,compile_bf16"]
    return [
        *[(f"headline {inp} B=32", 65, [*common, "--models", MODELS, "--inputs", inp, "--batch-sizes", "32", *both,
                                         "--torch-variants", "eager,eager_bf16"]) for inp in INPUTS.split(",")],
        ("lstm B=256", 25, [*common, "--models", "lstm", "--inputs", INPUTS, "--batch-sizes", "256", *both,
                            "--torch-variants", "eager,eager_bf16,compile,compile_bf16"]),
        ("torch.compile B=32", 70, [*common, "--models", "cnn,ast_tiny,ast_small,lstm", "--inputs", INPUTS,
                                    "--batch-sizes", "32", *both, "--torch-variants", "compile,compile_bf16"]),
        *[(f"batch sizes {model}", slice_s, [*common, "--budget-s", "4", "--models", model, "--inputs", INPUTS,
                                             "--batch-sizes", SWEEP_BATCHES, *bf16])
          for model, slice_s in (("ast_small", 55), ("ast_tiny", 55), ("cnn", 45), ("lstm", 35))],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for results.json and RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU smoke test")
    parser.add_argument("--limit-s", type=float, default=None,
                        help="start no section after this many seconds and cut each section's slice to "
                             "what is left (default 455; --quick 150)")
    args = parser.parse_args(argv)
    limit = args.limit_s or (150.0 if args.quick else 455.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results_path = out / "results.json"
    # the bf16 matmul rate (the denominator of the bf16 MFU goal) first, into a results.json every
    # section appends to (and raises to its own best rate): a sweep cut short keeps it
    results_path.write_text(json.dumps({
        "schema": bench.SCHEMA, "commands": [], "records": [], "epoch": [],
        "matmul_peak_bf16": machine.matmul_peak(256 if args.quick else 8192, dtype="bfloat16")},
        indent=1, default=float) + "\n")
    done, skipped = [], []
    for name, slice_s, section in sections(args.quick):
        left = limit - (time.monotonic() - t0)
        if left < min(slice_s, 10.0):
            skipped.append(f"{name} (time)")
            continue
        print(f"== {name} ({time.monotonic() - t0:.0f} s; slice {min(slice_s, left):.0f} s)", flush=True)
        argv_run = [*section, "--deadline-s", f"{min(slice_s, left):.0f}", "--out", str(out), "--append"]
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
