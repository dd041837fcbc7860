"""RESULTS.md and the log-log plots, from the records of ``results.json``."""

from __future__ import annotations

import datetime as _dt
import statistics
from collections import defaultdict
from pathlib import Path

# The project's goals (issue 14): train-step throughput ratios jaxmusic / PyTorch, per
# numeric path, peak memory, MFU and the end-to-end epoch.
FLOAT32 = ("jit", "jit_dp")             # JAX variants of the float32 path (the best one counts)
BFLOAT16 = ("jit_bf16", "jit_bf16_dp")  # bfloat16 products: counted where the processor has BF16
AST_POINTS = [("beat_mel", 8), ("beat_mel", 32), ("full_mel", 8)]
RATIO_GOALS = [
    # (model, input, batch size, path name, JAX variants, torch variant, minimum ratio)
    ("lstm", "full_mel", 32, "float32", FLOAT32, "eager", 2.0),
    ("lstm", "full_mel", 32, "float32", FLOAT32, "packed", 20.0),
    ("cnn", "full_mel", 32, "float32", FLOAT32, "eager", 1.5),
    *[(m, inp, b, path, jv, "eager", 1.3) for m in ("ast_tiny", "ast_small") for inp, b in AST_POINTS
      for path, jv in (("float32", FLOAT32), ("bfloat16", BFLOAT16))],
]
MEMORY_GOALS = [(m, inp, b) for m in ("ast_tiny", "ast_small") for inp, b in AST_POINTS] + [("cnn", "full_mel", 32)]
MFU_GOALS = {"ast_tiny": 0.5, "ast_small": 0.5, "cnn": 0.3, "lstm": 0.15}
EPOCH_GOAL = 1.5
# On an accelerator (issue 21): the LSTM >= 1.3x torch.nn.LSTM (eager) at beat and full resolution,
# B=32 and 256; AST tiny and small >= 1.3x PyTorch eager at every batch measured and never behind
# torch.compile; ast_small's bf16 MFU >= 40% of the measured bf16 matmul rate at its best batch;
# the CNN >= 4x eager at every batch >= 256. Each per numeric path (float32 against torch's
# float32, under the run's float32 product policy; bfloat16 against autocast).
GPU_INPUTS = ("beat_mel", "full_mel")
GPU_PATHS = (("float32", FLOAT32, ""), ("bfloat16", BFLOAT16, "_bf16"))
GPU_LSTM_GOAL = ((32, 256), 1.3)
GPU_AST_GOAL = (("ast_tiny", "ast_small"), 1.3, 1.0)  # against eager, against torch.compile
GPU_CNN_GOAL = (256, 4.0)
GPU_BF16_MFU_GOAL = {"ast_small": 0.4}


def has_bf16(results: dict) -> bool:
    """Whether the bfloat16 path counts: an accelerator, or a CPU with AVX512-BF16 or AMX."""
    m = results.get("machine", {})
    if m.get("backend", "cpu") != "cpu":
        return True
    return any(f in ("avx512_bf16", "amx_bf16") for f in m.get("cpu_flags", []))


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def _range(rec: dict, key: str) -> str:
    v = rec.get(key)
    if v is None:
        return "-"
    lo, hi = rec.get(f"{key}_min"), rec.get(f"{key}_max")
    if lo is None or hi is None:
        return _fmt(v)
    return f"{_fmt(v)} ({_fmt(lo)}-{_fmt(hi)})"


def _label(rec: dict) -> str:
    return f"{rec['framework']}/{rec['variant']}"


def paired_ratio(slow_times: list[float], fast_times: list[float]) -> dict | None:
    """Ratio of step times round by round (rounds paired as run, A B A B): median, min, max."""
    pairs = [a / b for a, b in zip(slow_times, fast_times)]
    if not pairs:
        return None
    return {"": statistics.median(pairs), "_min": min(pairs), "_max": max(pairs)}


def _paired(torch_rec: dict, jax_rec: dict, phase: str = "train"):
    """(median, min, max) of torch step time / JAX step time from the stored per-round times."""
    r = paired_ratio(torch_rec.get(f"{phase}_step_s_all") or [], jax_rec.get(f"{phase}_step_s_all") or [])
    return None if r is None else (r[""], r["_min"], r["_max"])


def _variant_base(variant: str) -> str:
    return variant.partition("[")[0].partition("@")[0]


def _ratio_row(records: list[dict], model: str, inp: str, b: int, path: str, jax_variants: tuple,
               variant: str, target: float) -> list[str]:
    """One goals row: the fastest of ``jax_variants`` at the point against ``torch/variant``
    (paired train ratio), or why it was not measured."""
    here = [r for r in records if (r["model"], r["input"], r["batch_size"]) == (model, inp, b)]
    ok = [r for r in here if r.get("status") == "ok"]
    torch_rec = next((r for r in ok if r["framework"] == "torch" and r["variant"] == variant), None)
    pairs = {j["variant"]: _paired(torch_rec, j) for j in ok
             if torch_rec and j["framework"] == "jax" and j["variant"] in jax_variants}
    pairs = {k: v for k, v in pairs.items() if v is not None}
    name = f"{model} {inp} B={b}"
    if not pairs:
        why = next((f"not measured ({r['framework']}/{r['variant']}: {r.get('reason')})" for r in here
                    if r.get("status") != "ok" and (r["variant"] in jax_variants or r["variant"] == variant)),
                   "not measured")
        return [name, f"{path}: jax vs torch/{variant} train", f">= {target:g}x", why, "-"]
    jv, (ratio, lo, hi) = max(pairs.items(), key=lambda kv: kv[1][0])
    return [name, f"{path}: jax/{jv} vs torch/{variant} train", f">= {target:g}x",
            f"{ratio:.2f}x ({_fmt(lo)}-{_fmt(hi)})", "yes" if ratio >= target else "**no**"]


def goal_rows(records: list[dict], bf16: bool = True, epochs: list[dict] | None = None) -> list[list[str]]:
    """The goals table: one row per (point, path, figure); ``bf16``: whether the bfloat16 path counts."""
    ok = [r for r in records if r.get("status") == "ok"]
    rows = []

    def point(model, inp, b):
        return [r for r in ok if (r["model"], r["input"], r["batch_size"]) == (model, inp, b)]

    for model, inp, b, path, jax_variants, variant, target in RATIO_GOALS:
        if path == "bfloat16" and not bf16:
            rows.append([f"{model} {inp} B={b}", f"{path}: jax vs torch/{variant} train", f">= {target:g}x",
                         "not counted: no BF16 on this processor", "-"])
            continue
        rows.append(_ratio_row(records, model, inp, b, path, jax_variants, variant, target))
    for model, inp, b in MEMORY_GOALS:
        here = point(model, inp, b)
        torch_rec = next((r for r in here if r["framework"] == "torch" and r["variant"] == "eager"
                          and r.get("peak_mem_mb")), None)
        for path, jax_variants in (("float32", FLOAT32), ("bfloat16", BFLOAT16)):
            if path == "bfloat16" and not bf16:
                continue
            jax_recs = [r for r in here if r["framework"] == "jax" and r["variant"] in jax_variants
                        and r.get("peak_mem_mb")]
            if not (torch_rec and jax_recs):
                continue
            best = min(jax_recs, key=lambda r: r["peak_mem_mb"])
            ratio = best["peak_mem_mb"] / torch_rec["peak_mem_mb"]
            rows.append([f"{model} {inp} B={b}", f"{path}: peak memory jax/{best['variant']} / torch/eager",
                         "<= 1.0x", f"{ratio:.2f}x ({_fmt(best['peak_mem_mb'])} / {_fmt(torch_rec['peak_mem_mb'])} MB)",
                         "yes" if ratio <= 1.0 else "**no**"])
    for model, target in MFU_GOALS.items():
        jax_recs = [r for r in ok if r["model"] == model and r["framework"] == "jax" and r["variant"] in FLOAT32
                    and r.get("mfu")]
        if not jax_recs:
            rows.append([f"{model} (best point)", "MFU jax train", f">= {target:.0%}", "not measured", "-"])
            continue
        best = max(jax_recs, key=lambda r: r["mfu"])
        rows.append([f"{model} {best['input']} B={best['batch_size']} (best point)", "MFU jax train",
                     f">= {target:.0%}", f"{best['mfu']:.1%}", "yes" if best["mfu"] >= target else "**no**"])
    for r in epochs or []:
        if r.get("framework") == "jax" and r.get("jax_speedup") is not None:
            rows.append([f"{r['model']} epoch on {r['input']} B={r['batch_size']}",
                         f"{r['variant']} vs DataLoader+eager (end to end, interleaved)", f">= {EPOCH_GOAL:g}x",
                         f"{r['jax_speedup']:.2f}x ({_fmt(r.get('jax_speedup_min'))}-{_fmt(r.get('jax_speedup_max'))})",
                         "yes" if r["jax_speedup"] >= EPOCH_GOAL else "**no**"])
    return rows


def _batches(records: list[dict], model: str, inp: str, jax_variants: tuple, least: int = 0) -> list[int]:
    """Batch sizes at which a JAX variant of the path has a record (measured, failed or skipped)."""
    return sorted({r["batch_size"] for r in records if (r["model"], r["input"]) == (model, inp)
                   and r["framework"] == "jax" and r["variant"] in jax_variants and r["batch_size"] >= least})


def gpu_goal_rows(records: list[dict], bf16_peak: dict | None) -> list[list[str]]:
    """The goals table on an accelerator (``GPU_*``): paired train ratios of the fastest JAX
    variant of each numeric path against the PyTorch variant of the same path, at the points
    each goal names (every measured batch for AST, every one from 256 for the CNN), and
    ast_small's bf16 MFU at its best batch against ``bf16_peak`` (a jitted bf16 ``jnp.dot``)."""
    ok = [r for r in records if r.get("status") == "ok"]
    rows = []
    batches, target = GPU_LSTM_GOAL
    for inp in GPU_INPUTS:
        for b in batches:
            for path, jax_variants, suffix in GPU_PATHS:
                rows.append(_ratio_row(records, "lstm", inp, b, path, jax_variants, "eager" + suffix, target))
    models, eager_goal, compile_goal = GPU_AST_GOAL
    least, cnn_goal = GPU_CNN_GOAL
    for model, goals, least_b in [(m, (("eager", eager_goal), ("compile", compile_goal)), 0) for m in models] + [
            ("cnn", (("eager", cnn_goal),), least)]:
        for inp in GPU_INPUTS:
            measured = False
            for path, jax_variants, suffix in GPU_PATHS:
                for b in _batches(records, model, inp, jax_variants, least_b):
                    measured = True
                    rows += [_ratio_row(records, model, inp, b, path, jax_variants, torch + suffix, goal)
                             for torch, goal in goals]
            if not measured:
                where = f"B>={least_b}" if least_b else "any B"
                rows.append([f"{model} {inp} {where}", "jax vs torch/" + "/".join(t for t, _ in goals) + " train",
                             " / ".join(f">= {g:g}x" for _, g in goals), "not measured", "-"])
    peak = (bf16_peak or {}).get("peak_flops")
    for model, target in GPU_BF16_MFU_GOAL.items():
        recs = [r for r in ok if r["model"] == model and r["framework"] == "jax" and r["variant"] in BFLOAT16
                and r.get("flops_train") and r.get("train_step_s")]
        if not (recs and peak):
            rows.append([f"{model} (best batch)", "bf16 MFU jax train", f">= {target:.0%}", "not measured", "-"])
            continue
        best = max(recs, key=lambda r: r["flops_train"] / r["train_step_s"])
        mfu = best["flops_train"] / best["train_step_s"] / peak
        rows.append([f"{model} {best['input']} B={best['batch_size']} (best batch)",
                     f"bf16 MFU jax/{best['variant']} train (of {peak / 1e12:.0f} TFLOP/s, bf16 jnp.dot n={bf16_peak['n']})",
                     f">= {target:.0%}", f"{mfu:.1%}", "yes" if mfu >= target else "**no**"])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_section(results: dict) -> str:
    m = results.get("machine", {})
    peak = results.get("matmul_peak", {})
    lines = [
        f"- CPU: {m.get('cpu', '?')} ({m.get('cores', '?')} cores; {', '.join(m.get('cpu_flags', []))}); "
        f"memory {m.get('memory_gb', '?')} GB",
        f"- Backend: {m.get('backend', '?')}; devices: {', '.join(m.get('devices', []))}"
        + (f"; torch devices: {', '.join(m['torch_devices'])}" if m.get("torch_devices") else ""),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
        + f", Python {m.get('python', '?')}",
        f"- Environment: {m.get('env', {}) or 'defaults'}; torch intra-op threads {m.get('torch_threads', '?')}",
        *([f"- float32 products (the same on both sides): {results['float32_matmul']}"]
          if results.get("float32_matmul") else []),
        *[f"- bfloat16 matmul rate (the bf16 MFU's denominator): {bf16['peak_flops'] / 1e12:.0f} TFLOP/s "
          f"(jitted bf16 `jnp.dot`, n={bf16['n']})" for bf16 in [results.get("matmul_peak_bf16")] if bf16],
        "- The machine is shared with other jobs (load averages below, 1/5/15 min): figures are noisy; "
        "the interleaved runs and paired ratios cancel most of it, absolute rates and MFU do not",
    ]
    known = {r.get("command"): r for r in results.get("runs", [])}
    runs = [known.get(c, {"command": c}) for c in results.get("commands", [])]
    if peak and runs and "matmul_peak" not in runs[-1]:
        runs[-1] = dict(runs[-1], matmul_peak=peak)
    lines.append("- Runs (each its own process; MFU uses the best float32 matmul rate, a jitted `jnp.dot` of "
                 "square matrices, measured in the same run before and after every point):")
    for r in runs:
        p = r.get("matmul_peak") or {}
        samples = p.get("samples") or []
        rate = (f"peak {p['peak_flops'] / 1e9:.0f} GFLOP/s (n={p.get('n')}; samples "
                f"{', '.join(f'{x / 1e9:.0f}' for x in samples)})" if p else "peak not recorded")
        lines.append(f"  - `{r.get('command')}` at {r.get('started', '?')}: {rate}; load "
                     f"{r.get('load_average_start')} -> {r.get('load_average_end')}")
    return "\n".join(lines)


def train_loop_cell(rec: dict) -> str:
    """``jaxmusic train``'s own samples/s at the point (``--train-loop``) and its ratio to the step's."""
    rate = rec.get("train_loop_samples_per_s")
    if rate:
        ratio = rec.get("train_loop_over_step")
        return _fmt(rate) + (f" (x{ratio:.2f})" if ratio else "")
    if rec.get("train_loop_skipped"):
        return "skipped: " + rec["train_loop_skipped"]
    return "-"


def point_tables(records: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["model"], r["input"])].append(r)
    out = []
    header = ["B", "variant", "train samples/s (min-max)", "train loop samples/s (x step)",
              "infer samples/s (min-max)", "jax speedup train",
              "jax speedup infer", "compile s", "peak MB", "GFLOP/step", "MFU", "steps", "note"]
    for (model, inp), recs in groups.items():
        rows = []
        for r in sorted(recs, key=lambda r: (r["batch_size"], r["framework"] != "jax", r["variant"])):
            if r.get("status") != "ok":
                rows.append([r["batch_size"], _label(r)] + ["-"] * 10 + [f"{r.get('status')}: {r.get('reason', '')}"])
                continue
            flops = r.get("flops_train")
            rows.append([
                r["batch_size"], _label(r), _range(r, "train_samples_per_s"), train_loop_cell(r),
                _range(r, "infer_samples_per_s"),
                _range(r, "jax_speedup_train") if r["framework"] != "jax" else "",
                _range(r, "jax_speedup_infer") if r["framework"] != "jax" else "",
                _fmt(r.get("compile_s")), _fmt(r.get("peak_mem_mb")),
                _fmt(flops / 1e9 if flops else None), f"{r['mfu']:.1%}" if r.get("mfu") else "-",
                f"{r.get('train_steps', '-')}/{r.get('infer_steps', '-')}",
                (f"threads {r['threads']}" if r.get("threads") else ""),
            ])
        out.append(f"### {model} on {inp}\n\n" + _table(header, rows))
    return "\n\n".join(out)


def scaling_table(records: list[dict]) -> str:
    """Train samples/s and peak memory against the batch, for every sweep of four or more batch sizes."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[(r["model"], r["input"], _label(r))].append(r)
    rows = []
    for (model, inp, label), recs in sorted(groups.items()):
        if len(recs) < 4:
            continue
        recs.sort(key=lambda r: r["batch_size"])
        stop = next((r["stops_here"] for r in recs if r.get("stops_here")), "") or next(
            (f"B={r['batch_size']}: {r.get('reason')}" for r in sorted(records, key=lambda r: r["batch_size"])
             if (r["model"], r["input"], _label(r)) == (model, inp, label) and r.get("status") != "ok"
             and r["batch_size"] > recs[-1]["batch_size"]), "")
        rows.append([model, inp, label, " / ".join(str(r["batch_size"]) for r in recs),
                     " / ".join(_fmt(r["train_samples_per_s"]) for r in recs),
                     " / ".join(_fmt(r.get("peak_mem_mb")) for r in recs),
                     f"{recs[-1]['train_samples_per_s'] / recs[0]['train_samples_per_s']:.2f}x", stop])
    if not rows:
        return "No sweep over four or more batch sizes in these results."
    return _table(["model", "input", "variant", "batch sizes", "train samples/s", "peak MB",
                   "largest / smallest batch", "sweep ended by"], rows)


def epoch_table(epochs: list[dict]) -> str:
    if not epochs:
        return "Not run in this sweep (`--epoch`)."
    rows = [[r["model"], r["input"], r["batch_size"],
             _label(r) + (f" ({r['placement']})" if r.get("placement") else "")
             + (f" on {r['devices']} devices" if (r.get("devices") or 1) > 1 else ""), r["clips"],
             _range(r, "train_samples_per_s"), _fmt(r.get("first_epoch_samples_per_s")),
             _fmt(r.get("load_s")), _fmt(r.get("compile_s")),
             ", ".join(f"{t:.2f}" for t in r["epoch_s"])] for r in epochs]
    return _table(["model", "data", "B", "pipeline", "clips/epoch", "steady samples/s (min-max)",
                   "first epoch samples/s", "load s", "compile s", "epoch times s"], rows)


def plot(records: list[dict], path: Path, key: str, title: str) -> bool:
    ok = [r for r in records if r.get("status") == "ok" and r.get(key)]
    if not ok:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["model"], r["input"]) for r in ok})
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, (model, inp) in zip(axes.flat, panels):
        lines = defaultdict(list)
        for r in ok:
            if (r["model"], r["input"]) == (model, inp):
                lines[_label(r)].append(r)
        for label, recs in sorted(lines.items()):
            recs.sort(key=lambda r: r["batch_size"])
            b = [r["batch_size"] for r in recs]
            y = [r[key] for r in recs]
            lo = [r[key] - r.get(f"{key}_min", r[key]) for r in recs]
            hi = [r.get(f"{key}_max", r[key]) - r[key] for r in recs]
            ax.errorbar(b, y, yerr=[lo, hi], marker="o", capsize=3, label=label,
                        linestyle="-" if label.startswith("jax") else "--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{model} / {inp}")
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict, out_dir: Path) -> Path:
    """RESULTS.md + train/infer plots in ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    records = results.get("records", [])
    plots = []
    for key, name, title in (("train_samples_per_s", "train_throughput.png", "train step (AdamW, CE)"),
                             ("infer_samples_per_s", "infer_throughput.png", "inference")):
        if plot(records, out_dir / name, key, f"{title}: samples/s vs batch size"):
            plots.append(name)
    skipped = [r for r in records if r.get("status") != "ok"]
    parts = [
        "# jaxmusic benchmark results",
        "",
        f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by:",
        "",
        "```",
        *results.get("commands", []),
        "```",
        "",
        "## Machine",
        "",
        machine_section(results),
        "",
        "## Method",
        "",
        "Per point (model x input x batch size) every variant is built, compiled and warmed up, "
        "then the variants run interleaved (A B A B ...) in one process so that drift and other "
        "load hit all of them alike. Train step = forward, softmax cross-entropy, backward, AdamW "
        "(lr 1e-4, weight decay 1e-4); inference = forward in eval/inference mode. Figures are the "
        "median over timed steps (min-max in brackets). The JAX speedup is paired: the ratio of "
        "step times within each round, median (min-max) over rounds; the tables give it against "
        "`jax/jit` (float32), the goals per numeric path against the fastest JAX variant of that path "
        "at the point: float32 (`jit`, `jit_dp`) and bfloat16 (`jit_bf16`, `jit_bf16_dp`: bfloat16 "
        "products with float32 accumulation; counted on processors with AVX512-BF16 or AMX and on "
        "accelerators); `_dp`: the batch split over one XLA device per core, run with "
        "`--host-devices 2`; see NOTES.md. The memory goals compare the smallest JAX peak of each "
        "path with PyTorch eager's at the same point. The MFU goals count the float32 variants "
        "only (`jit`, `jit_dp`); a bfloat16 variant's MFU is against the float32 peak on a CPU, against the "
        "measured bfloat16 matmul rate on an accelerator. Compile time is apart "
        "(JAX: lower+compile of the train step; torch.compile: the first call). Peak memory: RSS "
        "growth during one step (after `malloc_trim`) on CPU, device statistics on GPU. FLOPs: "
        "the model FLOPs of benchmarks/flops.py, counted from the model's config and the input shape "
        "(every product, convolution and attention product; backward 2x forward, 1x for a layer "
        "whose input is the data; no element-wise work, no recomputation), the same for every "
        "variant and framework; XLA's own count is kept in results.json (`flops_train_xla`). Inputs are "
        "random spectrograms with realistic lengths (full: 1291-1293 of T=1293 frames; beat: "
        "50-129 of T=129), zero-padded. \"Train loop samples/s\" (`--train-loop`; `-` where not run): "
        "after the point, `jaxmusic train`'s own loop (`jaxmusic.train.train`) ran with the JAX "
        "variant's very config (model, dtype, batch, seed, optimiser recipe, steps per dispatch) "
        "on a synthetic set of the point's shape written by `jaxmusic prepare`'s writer (clips "
        "drawn like the step's batch, no validation split), 2 epochs of `--train-loop-steps` steps (default 4, rounded up to a "
        "multiple of `spd`); the figure is the rate the loop itself measured over its second epoch "
        "(`history.json`), in brackets its ratio to the step's median rate. The gap is the "
        "loop's overhead: input (the split placed as data.placement decides, the per-epoch "
        "iterator start included), host-to-device transfers, the per-epoch metric fetch and "
        "logging; validation and checkpointing are outside the epoch's clock. It is run alone, "
        "not interleaved with the step, and over few steps, so a per-epoch fixed cost weighs "
        "more than in a long epoch: a lower bound on the loop's steady rate.",
        "",
        "## Goals",
        "",
        _table(["point", "figure", "goal", "measured", "met"],
               goal_rows(records, has_bf16(results), results.get("epoch"))
               if results.get("machine", {}).get("backend", "cpu") == "cpu"
               else gpu_goal_rows(records, results.get("matmul_peak_bf16"))),
        "",
        "## All points",
        "",
        point_tables(records) if records else "No points measured.",
        "",
        "## Scaling with the batch size (one device)",
        "",
        "Train throughput and peak memory along each batch-size sweep. Device-count scaling needs real "
        "devices: simulated CPU devices (`--xla_force_host_platform_device_count`) split the same two cores, "
        "so they show correctness (tests/test_distributed.py, tests/test_train.py), not speed. Accuracy "
        "against the batch size: docs/large_batch/large_batch.md.",
        "",
        scaling_table(records),
        "",
        "## End-to-end epoch (input pipeline + train step)",
        "",
        epoch_table(results.get("epoch", [])),
        "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if skipped:
        parts += ["## Not measured", "",
                  "\n".join(f"- {r['model']} {r['input']} B={r['batch_size']} {_label(r)}: "
                            f"{r.get('status')} ({r.get('reason', '')})" for r in skipped), ""]
    if results.get("notes"):
        parts += ["## Notes", "", results["notes"], ""]
    path = out_dir / "RESULTS.md"
    path.write_text("\n".join(parts))
    return path
