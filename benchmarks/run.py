"""The benchmark sweep: ``python -m benchmarks.run`` (or ``jaxmusic bench``).

For each model x input x batch size, every variant (``jax/jit``; ``torch/eager``
padded, ``torch/packed`` for the LSTM, ``torch/compile``) is built and warmed up,
then the variants run interleaved in this process (A B A B ...) for ``--steps``
timed train steps and as many inference steps. Batch sizes grow until memory or
the per-point time budget (``--budget-s``) stops a variant; the others go on.

    python -m benchmarks.run --quick --out /tmp/bench             # smoke run, tiny sizes
    python -m benchmarks.run --models lstm --inputs full_mel --batch-sizes 32
    python -m benchmarks.run --models cnn --inputs full_mel --batch-sizes 32,256 --append

Writes ``results.json`` (one record per measurement), ``RESULTS.md`` and the
plots into ``--out`` (default: this folder). ``--append`` merges the new records
into an existing ``results.json`` (a point measured again replaces the old one),
so a long sweep can be run in pieces. ``--epoch`` adds the end-to-end epoch
(jaxmusic train's input and step against the course helper's DataLoader) on prepared sample data.
``--train-loop`` adds, to each JAX record, the samples/s that ``jaxmusic train``'s own
loop measured with the same config on a small synthetic set of the point's shape
(benchmarks/train_loop.py); the gap to the step's rate is the loop's overhead.
"""

from __future__ import annotations

import os

# Before torch is imported: OpenMP threads that spin while they wait are ruinous on a
# CPU shared with other processes (a step can take 10-100x longer); sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import machine, report, variants  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
MEMORY_FRACTION = 0.75  # never start a step expected to need more than this share of free memory
TORCH_OVER_JAX_MEMORY = 1.0  # torch memory guessed from XLA's estimate, before torch's first step
SCHEMA = 1


def _csv(text: str) -> list[str]:
    """Comma-separated items; commas inside brackets stay (``jit,jit[unroll=8,chunk_size=128]``)."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [t.strip() for t in items + [current] if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="lstm,cnn,ast_tiny,ast_small",
                        help=f"comma-separated, of {', '.join(variants.PRESETS)}")
    parser.add_argument("--inputs", default="full_mel,full_fused,beat_mel,beat_fused",
                        help=f"comma-separated, of {', '.join(variants.INPUTS)}")
    parser.add_argument("--batch-sizes", default=None,
                        help="comma-separated, ascending (default 8,16,...,1024; --quick: 2,4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant and point (default 5)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds per variant and point (build, warm-up, timed steps); a variant whose "
                             "warm-up step takes over a third of it stops growing (default 180)")
    parser.add_argument("--out", default=str(HERE), help="output folder (results.json, RESULTS.md, *.png)")
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs: the smoke test")
    parser.add_argument("--append", action="store_true", help="merge into an existing results.json")
    parser.add_argument("--jax-variants", default="jit",
                        help="comma-separated: jit, jit_bf16, jit_dp, jit_bf16_dp (data parallel over --host-devices), "
                             "each optionally with options in brackets: model keywords, xla_* compiler options "
                             "(xla=none: without the library's), spd=K steps per dispatch, e.g. "
                             "'jit,jit[query_chunk=256],jit[spd=8]' (the first is the reference of the speedups)")
    parser.add_argument("--model-args", default="",
                        help="backbone keywords for the JAX models, e.g. 'unroll=4,chunk_size=128' (the "
                             "JAX variants are then named e.g. jit[unroll=4,chunk_size=128])")
    parser.add_argument("--torch-variants", default=None,
                        help="comma-separated: eager, packed, compile, eager_bf16, compile_bf16 (autocast) "
                             "(default eager, packed, compile; --quick: eager, packed)")
    parser.add_argument("--torch-threads", default="auto",
                        help="intra-op threads of the PyTorch variants: a number, or auto (per variant and "
                             "point, the faster of 1 and all cores; recorded)")
    parser.add_argument("--host-devices", type=int, default=None,
                        help="split the CPU into N XLA devices (XLA_FLAGS=--xla_force_host_platform_device_count=N, "
                             "set before JAX starts) for the data-parallel variants jit_dp / jit_bf16_dp; "
                             "one per core is the fast setting on a CPU host")
    parser.add_argument("--tag", default="",
                        help="suffix '@TAG' for every variant name of this run (e.g. the XLA_FLAGS in use), "
                             "so that its records sit next to untagged ones in one results.json")
    parser.add_argument("--peak-n", type=int, default=None, help="matmul size of the peak measurement")
    parser.add_argument("--float32-matmul", default="tf32", choices=variants.FLOAT32_MATMUL,
                        help="float32 products on an accelerator, the same for JAX and PyTorch: tf32 "
                             "(TensorFloat-32 on both sides; JAX's GPU default) or ieee (full float32 on "
                             "both); ignored on a CPU")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="start no point after this many seconds of the run, nor one the previous "
                             "batch's time says would end past it; those are recorded as skipped (time)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite RESULTS.md and the plots from --out's results.json")
    parser.add_argument("--epoch", action="store_true", help="also run the end-to-end epoch")
    parser.add_argument("--epoch-source", default=None, help="lab-layout data root (sample-data output)")
    parser.add_argument("--epoch-prepared", default=None, help="`jaxmusic prepare` output root")
    parser.add_argument("--epoch-set", default="fma_genre_spectrograms")
    parser.add_argument("--epoch-model", default="cnn", help="a model of --models' list")
    parser.add_argument("--epoch-view", default="mel")
    parser.add_argument("--epoch-batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the end-to-end run (the first is warm-up)")
    parser.add_argument("--epoch-steps-per-dispatch", type=int, default=1,
                        help="train.steps_per_dispatch of the JAX epoch (K batches per jitted call)")
    parser.add_argument("--train-loop", action="store_true",
                        help="also run `jaxmusic train`'s own loop (jaxmusic.train.train) with each JAX variant's "
                             "config on a small synthetic prepared set of the point's shape (2 epochs of "
                             "--train-loop-steps steps) and record its measured samples/s next to the step's "
                             "(train_loop_samples_per_s; benchmarks/train_loop.py)")
    parser.add_argument("--train-loop-steps", type=int, default=None,
                        help="steps per epoch of the --train-loop run (rounded up to a multiple of spd; default 4)")
    parser.add_argument("--train-loop-dir", default=None,
                        help="keep the --train-loop sets and run directories under this folder "
                             "(default: a temporary folder per run, removed)")


# --- one point ---------------------------------------------------------------------------------

def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
    lowered = text.lower()
    if "out of memory" in lowered or "resource_exhausted" in lowered or isinstance(e, MemoryError):
        return "out of memory: " + text
    return text


def _spread(values: list[float], scale: float = 1.0) -> dict:
    """median/min/max of ``scale / value`` (a throughput from step times)."""
    med = statistics.median(values)
    return {"": scale / med, "_min": scale / max(values), "_max": scale / min(values)}


class Sweep:
    def __init__(self, args, peak_flops: float, peak_bf16: float | None = None):
        self.args = args
        self.peak_flops = peak_flops
        self.peak_bf16 = peak_bf16
        self.cores = machine.cores()

    def base(self, w: variants.Workload, framework: str, variant: str) -> dict:
        tag = f"@{self.args.tag}" if self.args.tag else ""
        return {"kind": "step", "model": w.model, "input": w.input.name, "T": w.input.steps, "F": w.input.features,
                "batch_size": w.batch_size, "framework": framework, "variant": variant + tag,
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "model_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in w.model_cfg.items()},
                **variants.model_flops(w)}

    def _torch_threads(self) -> int | None:
        t = self.args.torch_threads
        return None if t == "auto" else int(t)

    def point(self, w: variants.Workload, pairs, alive: dict, history: dict) -> list[dict]:
        args = self.args
        budget = args.budget_s
        records: dict[tuple, dict] = {}
        live = []
        spent: dict[tuple, float] = {}
        jax_bytes = None
        for fw, v in pairs:
            key = (fw, v)
            if alive.get(key, True) is not True:
                continue
            rec = self.base(w, fw, v)
            records[key] = rec
            avail = machine.available_bytes(fw)
            if fw == "torch" and avail:
                if key in history:  # its own peak at the previous batch size, scaled
                    prev_b, prev_mb = history[key]
                    guesses = [prev_mb * 2**20 * w.batch_size / prev_b]
                else:  # before its first step: what XLA needs for the same model
                    guesses = [b * TORCH_OVER_JAX_MEMORY for b in [jax_bytes] if b]
                if guesses and max(guesses) > MEMORY_FRACTION * avail:
                    source = "its peak at the previous batch" if key in history else "XLA's need for the same model"
                    rec.update(status="skipped", reason=f"memory: needs about {max(guesses) / 2**20:,.0f} MB "
                                                        f"(guessed from {source}), {avail / 2**20:,.0f} MB free")
                    alive[key] = rec["reason"]
                    continue
            auto = fw == "torch" and args.torch_threads == "auto" and self.cores > 1
            var = variants.make_variant(w, fw, v, threads=1 if auto else self._torch_threads())
            t0 = time.perf_counter()
            try:
                rec.update(var.prepare())
                if fw == "jax":
                    jax_bytes = var.estimate_bytes()
                    if jax_bytes and avail and jax_bytes > MEMORY_FRACTION * avail:
                        raise MemoryError(f"XLA needs {jax_bytes / 2**20:,.0f} MB, more than "
                                          f"{MEMORY_FRACTION:.0%} of the {avail / 2**20:,.0f} MB free")
                    var.train_step()  # first executions: buffers, thread pools
                    var.infer_step()
                if auto:
                    t1 = min(_timed(var.train_step) for _ in range(1))
                    if t1 < budget / 20:  # all cores can be far slower on a busy machine
                        var.threads = self.cores
                        var.train_step()
                        tn = _timed(var.train_step)
                        rec["threads_tried"] = {"1": round(t1, 4), str(self.cores): round(tn, 4)}
                        var.threads = self.cores if tn < t1 else 1
                    else:
                        rec["threads_tried"] = {"1": round(t1, 4)}
                        var.threads = 1
            except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
                rec.update(status="failed", reason=_reason(e))
                if os.environ.get("BENCH_DEBUG"):
                    traceback.print_exc()
                alive[key] = rec["reason"]
                var.close()
                continue
            rec["threads"] = var.threads
            spent[key] = time.perf_counter() - t0
            live.append((key, var))

        # Warm-up step under the memory probe; it also estimates the step time.
        est = {}
        for key, var in list(live):
            try:
                with machine.MemoryProbe(var.memory_kind) as probe:
                    t_train = _timed(var.train_step)
                with machine.MemoryProbe(var.memory_kind) as probe_infer:
                    t_infer = _timed(var.infer_step)
            except Exception as e:  # noqa: BLE001
                records[key].update(status="failed", reason=_reason(e))
                alive[key] = records[key]["reason"]
                live.remove((key, var))
                var.close()
                continue
            records[key].update(peak_mem_mb=probe.peak_mb, infer_peak_mem_mb=probe_infer.peak_mb,
                                mem_method=probe.method)
            if var.memory_kind == "jax-device" and records[key].get("xla_train_temp_bytes"):
                # on an accelerator jax keeps a process-lifetime peak (no reset): an earlier, larger
                # allocation hides the step's. The compiled step's own temporaries (activations,
                # gradients, workspace) are the figure that compares with torch's growth above
                # its resident parameters, gradients and optimiser state.
                records[key].update(peak_mem_mb=records[key]["xla_train_temp_bytes"] / 2**20,
                                    infer_peak_mem_mb=(records[key].get("xla_infer_temp_bytes") or 0) / 2**20,
                                    mem_method="XLA memory analysis: temporaries of the compiled step")
            est[key] = t_train + t_infer
            spent[key] += est[key]
            if probe.peak_mb is not None:
                history[key] = (w.batch_size, probe.peak_mb)

        n = {key: max(1, min(args.steps, int((budget - spent[key]) / max(est[key], 1e-9))))
             for key, _ in live}
        times = {key: {"train": [], "infer": []} for key, _ in live}
        for phase in ("train", "infer"):
            for r in range(max(n.values(), default=0)):
                for key, var in list(live):
                    if r >= n[key]:
                        continue
                    try:
                        times[key][phase].append(_timed(var.train_step if phase == "train" else var.infer_step))
                    except Exception as e:  # noqa: BLE001
                        records[key].update(status="failed", reason=_reason(e))
                        alive[key] = records[key]["reason"]
                        live.remove((key, var))
                        var.close()

        for key, var in live:  # a dispatch of K steps: per-step times
            k = getattr(var, "steps_per_call", 1)
            if k > 1:
                times[key]["train"] = [t / k for t in times[key]["train"]]
        ref_key = next((k for k in (pairs[0], *(k for k, _ in live if k[0] == "jax")) if k in times), None)
        for key, var in live:
            rec = records[key]
            tt, ti = times[key]["train"], times[key]["infer"]
            rec.update(status="ok", train_steps=len(tt), infer_steps=len(ti))
            for name, values in (("train", tt), ("infer", ti)):
                for suffix, value in _spread(values, w.batch_size).items():
                    rec[f"{name}_samples_per_s{suffix}"] = value
                rec.update({f"{name}_step_s": statistics.median(values), f"{name}_step_s_min": min(values),
                            f"{name}_step_s_max": max(values), f"{name}_step_s_all": values})
            if key[0] == "jax" and ref_key is not None and key != ref_key:
                for name in ("train", "infer"):  # > 1: faster than the reference JAX variant
                    ratio = report.paired_ratio(times[ref_key][name], times[key][name])
                    for suffix, value in (ratio or {}).items():
                        rec[f"speedup_over_{ref_key[1]}_{name}{suffix}"] = value
            if key[0] == "torch" and ref_key is not None:
                for name in ("train", "infer"):
                    ratio = report.paired_ratio(times[key][name], times[ref_key][name])
                    for suffix, value in (ratio or {}).items():
                        rec[f"jax_speedup_{name}{suffix}"] = value
            set_mfu(rec, self.peak_flops, self.peak_bf16)
            rec["budget_s"] = budget
            if est[key] > budget / 3:
                alive[key] = (f"time budget: one train + inference step took {est[key]:.1f} s at batch "
                              f"{w.batch_size} (> budget/3 = {budget / 3:.0f} s)")
                rec["stops_here"] = alive[key]
            var.close()
        gc.collect()
        return list(records.values())


def is_bf16(rec: dict) -> bool:
    """Whether a record's variant runs bfloat16 products (``jit_bf16``, ``eager_bf16``, ...)."""
    return "_bf16" in report._variant_base(rec["variant"])


def set_mfu(rec: dict, peak_flops: float, peak_bf16: float | None = None) -> None:
    """MFU (train: ``mfu``, inference: ``infer_mfu``) = model FLOPs / step time / peak, the peak
    of the record's numeric path: ``peak_bf16`` for a bfloat16 variant where it was measured
    (accelerators), else ``peak_flops`` (the float32 rate: TF32 products on a GPU under the
    default policy)."""
    bf16 = bool(peak_bf16) and is_bf16(rec)
    peak_flops = peak_bf16 if bf16 else peak_flops
    rec["peak_flops"] = peak_flops
    rec["peak_dtype"] = "bfloat16" if bf16 else "float32"
    for name in ("train", "infer"):
        flops = rec.get(f"flops_{name}")
        if flops and rec.get(f"{name}_step_s"):
            rec["mfu" if name == "train" else "infer_mfu"] = flops / rec[f"{name}_step_s"] / peak_flops
            rec[f"{name}_gflop_per_s"] = flops / rec[f"{name}_step_s"] / 1e9


# --- the run -----------------------------------------------------------------------------------

def _key(rec: dict) -> tuple:
    return (rec.get("kind"), rec["model"], rec["input"], rec["batch_size"], rec["framework"], rec["variant"])


def _save(results: dict, out: Path) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=float) + "\n")
    tmp.replace(out / "results.json")


def _defaults(args) -> None:
    if args.batch_sizes is None:
        args.batch_sizes = "2,4" if args.quick else ",".join(map(str, DEFAULT_BATCH_SIZES))
    if args.steps is None:
        args.steps = 2 if args.quick else 5
    if args.budget_s is None:
        args.budget_s = 60.0 if args.quick else 180.0
    if args.torch_variants is None:
        args.torch_variants = "eager,packed" if args.quick else "eager,packed,compile"
    if args.peak_n is None:
        args.peak_n = 512 if args.quick else 4096


def run(args) -> int:
    _defaults(args)
    if args.host_devices:
        from jaxmusic.cli import set_host_devices

        set_host_devices(args.host_devices)
    if args.report_only:
        out = Path(args.out)
        md = report.write(json.loads((out / "results.json").read_text()), out)
        print(f"wrote {md}")
        return 0
    models_table = variants.models_table(args.quick)
    inputs_table = variants.QUICK_INPUTS if args.quick else variants.INPUTS
    models, inputs = _csv(args.models), _csv(args.inputs)
    for m in models:
        if m not in models_table:
            print(f"unknown model {m!r} (one of {', '.join(models_table)})", file=sys.stderr)
            return 2
    for i in inputs:
        if i not in inputs_table:
            print(f"unknown input {i!r} (one of {', '.join(inputs_table)})", file=sys.stderr)
            return 2
    batch_sizes = sorted(int(b) for b in _csv(args.batch_sizes))
    model_args = _model_args(args.model_args)
    jax_variants = [v + (f"[{args.model_args}]" if model_args else "") for v in _csv(args.jax_variants)]
    torch_variants = _csv(args.torch_variants)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = {"schema": SCHEMA, "commands": [], "records": [], "epoch": []}
    if args.append and (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
    results["machine"] = machine.describe()
    results["commands"].append(getattr(args, "command", None) or machine.command_line())
    backend = results["machine"]["backend"]
    print(f"machine: {results['machine']['cpu']} x{results['machine']['cores']}, "
          f"backend {backend}", flush=True)
    policy = variants.float32_matmul_policy(args.float32_matmul, backend)
    if policy:
        results["float32_matmul"] = policy
    peak = machine.matmul_peak(args.peak_n)
    results["matmul_peak"] = peak
    if backend != "cpu":  # the bf16 MFU's rate; the best of every run appended to these results
        bf16 = machine.matmul_peak(args.peak_n, dtype="bfloat16")
        if bf16["peak_flops"] > (results.get("matmul_peak_bf16") or {}).get("peak_flops", 0.0):
            results["matmul_peak_bf16"] = bf16
    run_info = {"command": results["commands"][-1], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "load_average_start": results["machine"].get("load_average_start"), "matmul_peak": peak}
    results.setdefault("runs", []).append(run_info)
    print(f"matmul peak: {peak['peak_flops'] / 1e9:.0f} GFLOP/s (float32, n={args.peak_n})", flush=True)

    existing = {_key(r): i for i, r in enumerate(results["records"])}

    def add(rec: dict) -> None:
        k = _key(rec)
        if k in existing:
            results["records"][existing[k]] = rec
        else:
            existing[k] = len(results["records"])
            results["records"].append(rec)

    # The peak is measured again after every point (the machine is shared: its load
    # changes); every MFU of this run uses the best rate seen.
    peak["samples"] = [peak["peak_flops"]]
    this_run: list[dict] = []
    sweep = Sweep(args, peak["peak_flops"], (results.get("matmul_peak_bf16") or {}).get("peak_flops"))
    started = time.monotonic()
    for model in models:
        cfg = models_table[model]
        pairs = variants.variant_names(cfg["name"], jax_variants, torch_variants)
        for inp in inputs:
            alive: dict = {}
            history: dict = {}
            last_point_s = None
            for b in batch_sizes:
                if not any(alive.get(p, True) is True for p in pairs):
                    break
                w = variants.Workload(model, cfg, inputs_table[inp], b)
                late = _past_deadline(args.deadline_s, time.monotonic() - started, last_point_s)
                if late:
                    for rec in _not_started(sweep, w, pairs, alive, late):
                        add(rec)
                    print(f"{model} {inp} B={b}: {late}", flush=True)
                    break
                t_point = time.monotonic()
                print(f"{model} {inp} B={b}: {', '.join(f'{f}/{v}' for f, v in pairs if alive.get((f, v), True) is True)}",
                      flush=True)
                point_records = sweep.point(w, pairs, alive, history)
                last_point_s = time.monotonic() - t_point
                if args.train_loop:
                    run_train_loop(args, w, point_records)
                for rec in point_records:
                    add(rec)
                    this_run.append(rec)
                    print("   " + _line(rec), flush=True)
                again = machine.matmul_peak(min(args.peak_n, 2048), repeats=3)["peak_flops"]
                peak["samples"].append(again)
                for rec in point_records:  # against the rate right after the point (about the same load)
                    if rec.get("status") == "ok" and rec.get("flops_train") and rec.get("train_step_s"):
                        rec["peak_flops_local"] = again
                        rec["mfu_local"] = rec["flops_train"] / rec["train_step_s"] / again
                if again > peak["peak_flops"]:
                    peak["peak_flops"] = sweep.peak_flops = again
                    for rec in this_run:
                        if rec.get("status") == "ok":
                            set_mfu(rec, again, sweep.peak_bf16)
                results["load_average_end"] = run_info["load_average_end"] = machine.load_average()
                _save(results, out)

    if args.epoch:  # a configuration measured again replaces its old records
        new = run_epoch(args, models_table)
        fresh = {(r["model"], r["input"], r["framework"], r["variant"]) for r in new}
        results["epoch"] = [r for r in results.get("epoch", [])
                            if (r["model"], r["input"], r["framework"], r["variant"]) not in fresh] + new
    results["load_average_end"] = run_info["load_average_end"] = machine.load_average()
    _save(results, out)
    md = report.write(results, out)
    print(f"wrote {out / 'results.json'} and {md}", flush=True)
    return 0


def _past_deadline(deadline_s: float | None, elapsed: float, last_point_s: float | None) -> str | None:
    """Why a point is not started (None: it is): the run's ``--deadline-s`` has passed, or the
    point would end past it, guessed as twice the previous point of its sweep (the batch doubles)."""
    if deadline_s is None:
        return None
    if elapsed >= deadline_s:
        return f"time: the run's deadline ({deadline_s:.0f} s) passed"
    if last_point_s is not None and elapsed + 2 * last_point_s > deadline_s:
        return (f"time: would end past the run's deadline ({deadline_s:.0f} s; the previous batch took "
                f"{last_point_s:.0f} s, {deadline_s - elapsed:.0f} s left)")
    return None


def _not_started(sweep: Sweep, w: variants.Workload, pairs, alive: dict, reason: str) -> list[dict]:
    """Records of the variants still growing at a point the deadline leaves out."""
    return [dict(sweep.base(w, fw, v), status="skipped", reason=reason)
            for fw, v in pairs if alive.get((fw, v), True) is True]


def _model_args(text: str) -> dict:
    import ast

    out = {}
    for item in _csv(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--model-args: expected key=value, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def run_train_loop(args, w: variants.Workload, point_records: list[dict]) -> None:
    """``jaxmusic train``'s own samples/s for each measured JAX variant of a point
    (benchmarks/train_loop.py), after the interleaved steps (its variants are closed)."""
    from benchmarks import train_loop

    for rec in point_records:
        if rec["framework"] != "jax" or rec.get("status") != "ok":
            continue
        variant = rec["variant"].split("@")[0]
        keep = None
        if args.train_loop_dir:
            safe = "".join(c if c.isalnum() or c in "._=-" else "_" for c in variant)
            keep = Path(args.train_loop_dir) / f"{w.model}_{w.input.name}_B{w.batch_size}_{safe}"
        try:
            loop = train_loop.measure(w, variant, args.train_loop_steps or train_loop.DEFAULT_STEPS,
                                      keep_dir=keep, budget_s=args.budget_s, step_s=rec.get("train_step_s"))
        except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
            loop = {"train_loop_skipped": "failed: " + _reason(e)}
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
        train_loop.add_to(rec, loop)
        gc.collect()


def run_epoch(args, models_table) -> list[dict]:
    from benchmarks import epoch

    if not args.epoch_prepared:
        print("--epoch needs --epoch-prepared (and --epoch-source): see benchmarks/RESULTS.md", file=sys.stderr)
        return []
    model = args.epoch_model
    records = epoch.run_epochs(args.epoch_source or "", args.epoch_prepared, args.epoch_set, model,
                               models_table[model], args.epoch_view, args.epoch_batch_size, args.epochs,
                               args.epoch_steps_per_dispatch)
    for rec in records:
        print(f"epoch {rec['framework']}/{rec['variant']}: {rec['train_samples_per_s']:.1f} samples/s "
              f"(epochs {', '.join(f'{t:.2f}' for t in rec['epoch_s'])} s)", flush=True)
    return records


def _line(rec: dict) -> str:
    name = f"{rec['framework']}/{rec['variant']}"
    if rec.get("status") != "ok":
        return f"{name:16s} {rec.get('status')}: {rec.get('reason')}"
    s = (f"{name:16s} train {rec['train_samples_per_s']:9.2f}/s  infer {rec['infer_samples_per_s']:9.2f}/s  "
         f"compile {rec.get('compile_s') or 0:6.1f}s  mem {rec.get('peak_mem_mb') or 0:8.1f}MB")
    if rec.get("mfu"):
        s += f"  MFU {rec['mfu']:.1%}"
    if rec.get("jax_speedup_train"):
        s += f"  jax x{rec['jax_speedup_train']:.2f} train, x{rec['jax_speedup_infer']:.2f} infer"
    if rec.get("threads"):
        s += f"  threads {rec['threads']}"
    if rec.get("train_loop_samples_per_s"):
        s += (f"  train loop {rec['train_loop_samples_per_s']:.2f}/s "
              f"(x{rec['train_loop_over_step']:.2f} of the step's)")
    elif rec.get("train_loop_skipped"):
        s += f"  train loop skipped: {rec['train_loop_skipped']}"
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if argv is not None:  # called from Python: record the equivalent command line
        args.command = " ".join(["python -m benchmarks.run", *map(shlex.quote, argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
