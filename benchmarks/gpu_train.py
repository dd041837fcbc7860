"""`jaxmusic train` at the speed of its step, on one GPU: ``benchmarks/gpu_train.sh OUTDIR [--quick]``.

For each point (the CNN and ast_tiny on beat-synchronised mel at B=256 and B=1024, the
LSTM at B=256; bfloat16 by default), side by side in one process:

* the benchmark step: :class:`benchmarks.variants.JaxVariant` (the library's config,
  state and compiled step on one synthetic batch), ``--step-calls`` calls dispatched back
  to back and timed to the last one's end (median of 3 rounds);
* the train loop: :func:`benchmarks.train_loop.measure`, i.e. :func:`jaxmusic.train.train`
  with the point's config on one synthetic prepared set written once by ``jaxmusic
  prepare``'s own writer (``--clips`` clips of the point's shape, no validation split):
  its own ``samples_per_s`` of the second epoch (the first compiles; validation and
  checkpoint saves are outside the epoch's clock). The split is placed as ``data.placement``
  "auto" decides (recorded).

Writes ``OUTDIR/results.json`` and ``OUTDIR/RESULTS.md`` (the loop over the step, goal
>= 0.9). Needs no TensorFlow and no librosa. ``--quick``: tiny shapes and batches on the
CPU, the smoke test of the script itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from benchmarks import train_loop, variants

POINTS = (("cnn", 256), ("cnn", 1024), ("ast_tiny", 256), ("ast_tiny", 1024), ("lstm", 256))
QUICK_POINTS = (("cnn", 8), ("cnn", 16), ("ast_tiny", 8), ("lstm", 8))
GOAL = 0.9


def step_rate(workload: variants.Workload, variant: str, calls: int, rounds: int = 3) -> dict:
    """Samples/s of the library's step on one batch: ``calls`` dispatches back to back."""
    v = variants.JaxVariant(workload, variant)
    info = v.prepare()
    for _ in range(2):                                   # warm-up
        v.state, metrics = v._train(v.state, v.train_batch)
    metrics["loss"].block_until_ready()
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            v.state, metrics = v._train(v.state, v.train_batch)
        metrics["loss"].block_until_ready()
        rates.append(calls * workload.batch_size / (time.perf_counter() - t0))
    v.close()
    return {"step_samples_per_s": statistics.median(rates), "step_rounds": rates,
            "step_compile_s": info["compile_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--quick", action="store_true", help="tiny shapes on the CPU (smoke test)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                   help="default: bfloat16 (float32 with --quick)")
    p.add_argument("--clips", type=int, default=0, help="clips of the synthetic set (default 16384; 64 quick)")
    p.add_argument("--step-calls", type=int, default=0, help="default 20 (4 quick)")
    p.add_argument("--points", default="", help="MODEL:BATCH,... instead of the default points")
    args = p.parse_args(argv)
    import jax

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    dtype = args.dtype or ("float32" if quick else "bfloat16")
    variant = "jit_bf16" if dtype == "bfloat16" else "jit"
    inp = (variants.QUICK_INPUTS if quick else variants.INPUTS)["beat_mel"]
    clips = args.clips or (64 if quick else 16384)
    calls = args.step_calls or (4 if quick else 20)
    points = QUICK_POINTS if quick else POINTS
    if args.points:
        points = tuple((m, int(b)) for m, b in (x.split(":") for x in args.points.split(",")))
    models = variants.models_table(quick)
    work = out / "set"
    t0 = time.perf_counter()
    biggest = variants.Workload(points[0][0], models[points[0][0]], inp, max(b for _, b in points))
    prepared = train_loop.write_set(biggest, clips, work)
    write_s = time.perf_counter() - t0
    print(f"wrote {clips} clips of {inp.steps}x{inp.features} in {write_s:.1f} s", flush=True)
    records = []
    for model, batch in points:
        w = variants.Workload(model, models[model], inp, batch)
        rec = {"model": model, "input": inp.name, "batch_size": batch, "dtype": dtype, "variant": variant}
        try:
            rec.update(step_rate(w, variant, calls))
            rec.update(train_loop.measure(w, variant, prepared=prepared, keep_dir=work / f"{model}-{batch}"))
        except Exception as e:  # one point's failure (out of memory, ...) is recorded, the rest go on
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        loop = rec.get("train_loop_samples_per_s")
        if loop and rec.get("step_samples_per_s"):
            rec["loop_over_step"] = loop / rec["step_samples_per_s"]
        records.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if not isinstance(v, list)}), flush=True)
        (out / "results.json").write_text(json.dumps(
            {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
             "jax": jax.__version__, "host": platform.node(), "clips": clips, "write_s": write_s,
             "records": records}, indent=1) + "\n")
    (out / "RESULTS.md").write_text(report(json.loads((out / "results.json").read_text()), argv))
    return 0


def report(results: dict, argv=None) -> str:
    rows = []
    for r in results["records"]:
        ratio = r.get("loop_over_step")
        status = r.get("error") or r.get("train_loop_skipped") or (
            "met" if ratio is not None and ratio >= GOAL else "missed")
        rows.append(f"| {r['model']} | {r['input']} | {r['batch_size']} | {r['dtype']} | "
                    f"{_fmt(r.get('step_samples_per_s'))} | {_fmt(r.get('train_loop_samples_per_s'))} | "
                    f"{'-' if ratio is None else f'{ratio:.2f}'} | {r.get('train_loop_placement') or '-'} | {status} |")
    command = "benchmarks/gpu_train.sh OUTDIR " + " ".join(argv or [])
    return "\n".join([
        "# `jaxmusic train` against its step", "",
        f"{results['device']} ({results['backend']}, jax {results['jax']}); generated "
        f"{time.strftime('%Y-%m-%d %H:%M')} by `{command.strip()}`; a synthetic prepared set of "
        f"{results['clips']} clips written in {results['write_s']:.0f} s.", "",
        f"Goal: the loop's samples/s >= {GOAL:.0%} of the step's at every point.", "",
        "| model | input | batch | dtype | step samples/s | loop samples/s | loop / step | placement | goal |",
        "|---|---|---:|---|---:|---:|---:|---|---|", *rows, "",
        "Step: the library's compiled step on one synthetic batch, dispatched back to back (median of 3 rounds). "
        "Loop: `jaxmusic train`'s own samples/s of its second epoch (input, host transfers and metric fetches "
        "included; validation and checkpoints outside its clock).", ""])


def _fmt(x) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
