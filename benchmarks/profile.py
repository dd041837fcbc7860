"""Where a train step's time goes, per operation, for JAX and PyTorch side by side.

    python -m benchmarks.profile --model ast_tiny --input beat_mel --batch-size 32 \\
        --variants jax/jit,jax/jit_bf16,torch/eager --out benchmarks/profiles

Each variant is the benchmark's own (``benchmarks.variants``: ``jax/jit`` is
``jaxmusic train``'s step), built, warmed up, then ``--steps`` train steps run
under the framework's profiler:

* JAX: ``jax.profiler.trace`` with ``--xla_cpu_enable_xprof_traceme=true`` (set
  here, before JAX starts) records one event per executed HLO instruction. Each
  is matched to the compiled program's text, which gives its kind (a YNNPACK
  product/convolution, a loop fusion, a copy, ...) and the JAX operation it came
  from (``metadata.op_name``, e.g. ``transpose(jvp(Model))/backbone/block_3/mlp/erfc``).
  Rows group the instructions by phase (forward = ``jvp``, backward =
  ``transpose``, update = the rest), layer (block numbers folded: ``block_*``)
  and operation.
* PyTorch: ``torch.profiler`` (CPU activities), self time per ``aten::`` operator.

Times are per step (summed over the step's threads: with 2 cores a step's op
time can exceed its wall time). Writes ``profile_<model>_<input>_B<b>.json`` and
``.md`` into ``--out``.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import machine, variants  # noqa: E402

# `%name = <type> opcode(...), kind=kX, calls=%comp, metadata={op_name="..."`
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s([a-z][\w\-]*)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_KIND = re.compile(r"kind=(k\w+)")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_YNN = '"__ynn_fusion"'


def hlo_instructions(text: str) -> dict[str, dict]:
    """Every instruction of an HLO module's text: ``name -> {opcode, kind, shape, op_name, inner}``.

    ``inner``: the opcodes inside a fusion's called computation (what the fused
    kernel computes)."""
    computations: dict[str, list[str]] = {}
    current = None
    out: dict[str, dict] = {}
    for line in text.splitlines():
        head = re.match(r"^\s*(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
        if head and "=" not in line.split("{")[0]:
            current = head.group(1)
            computations[current] = []
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        if current is not None:
            computations[current].append(opcode)
        op_name = _OP_NAME.search(rest)
        kind = _KIND.search(rest)
        calls = _CALLS.search(rest)
        out[name] = {"opcode": opcode, "shape": shape.strip(), "op_name": op_name.group(1) if op_name else "",
                     "kind": kind.group(1) if kind else "", "calls": calls.group(1) if calls else "",
                     "ynn": _YNN in rest}
    for info in out.values():
        inner = computations.get(info.pop("calls"), [])
        info["inner"] = sorted(set(inner) - {"parameter", "bitcast", "constant", "broadcast", "reshape"})
    return out


def kernel_kind(info: dict) -> str:
    """What kind of kernel an instruction runs as."""
    inner = set(info["inner"])
    library = " (YNNPACK)" if info["ynn"] else ""
    if info["opcode"] in ("dot", "convolution") or inner & {"dot", "convolution"}:
        product = "convolution" if (info["opcode"] == "convolution" or "convolution" in inner) else "dot"
        return product + library
    if info["ynn"]:
        return "reduce (YNNPACK)" if "reduce" in inner else "fusion (YNNPACK)"
    if info["opcode"] in ("copy", "transpose") or (inner and inner <= {"copy", "transpose"}):
        return "copy/transpose"
    if info["opcode"] == "fusion":
        return "reduce fusion" if inner & {"reduce", "reduce-window"} else "element-wise fusion"
    return info["opcode"]


def _phase_and_path(op_name: str) -> tuple[str, str]:
    """``(forward|backward|update, layer path)`` of an HLO instruction's JAX ``op_name``."""
    parts = op_name.split("/")[1:]  # drop jit(train_step)
    phase = "update"
    path = []
    for p in parts:
        if p.startswith("transpose("):
            phase = "backward"
        elif p.startswith("jvp(") and phase != "backward":
            phase = "forward"
        if p.startswith(("jvp(", "transpose(", "jit(", "remat", "checkpoint", "while", "body", "closed_call",
                         "pjit", "custom_vjp_call", "custom_jvp_call", "vmap(")):
            continue
        path.append(re.sub(r"_\d+$", "_*", p))
    return phase, "/".join(path) or "(top)"


def jax_profile(var, steps: int) -> dict:
    """Per-instruction self time of ``steps`` train steps of a :class:`variants.JaxVariant`."""
    import jax

    instructions = hlo_instructions(var._train.as_text())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(steps):
                var.train_step()
        wall = (time.perf_counter() - t0) / steps
        trace = glob.glob(f"{tmp}/**/perfetto_trace.json.gz", recursive=True)
        if not trace:
            raise RuntimeError("jax.profiler wrote no perfetto trace")
        with gzip.open(trace[0]) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op: dict[str, float] = collections.Counter()
    intervals = []
    for e in events:
        if e.get("ph") == "X" and e.get("name") in instructions:
            per_op[e["name"]] += e.get("dur", 0.0) / 1e6 / steps  # us -> s per step
            intervals.append((e["ts"], e["ts"] + e.get("dur", 0.0)))
    rows = []
    for name, seconds in per_op.items():
        info = instructions[name]
        phase, path = _phase_and_path(info["op_name"])
        rows.append({"op": name, "s": seconds, "phase": phase, "layer": path, "kernel": kernel_kind(info),
                     "shape": info["shape"], "fused": info["inner"]})
    return {"wall_s": wall, "ops": rows, "busy_s": _union(intervals) / 1e6 / steps}


def _union(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: time in which some operation ran."""
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def torch_profile(var, steps: int) -> dict:
    """Per-``aten::`` operator self time of ``steps`` train steps of a :class:`variants.TorchVariant`."""
    import torch

    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            var.train_step()
    wall = (time.perf_counter() - t0) / steps
    rows = []
    for a in prof.key_averages():
        if a.self_cpu_time_total <= 0:
            continue
        rows.append({"op": a.key, "s": a.self_cpu_time_total / 1e6 / steps, "calls": a.count / steps})
    return {"wall_s": wall, "ops": rows}


def grouped(rows: list[dict]) -> list[dict]:
    """JAX rows summed by (phase, layer, kernel kind), largest first."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = (r["phase"], r["layer"], r["kernel"])
        g = groups.setdefault(key, {"phase": key[0], "layer": key[1], "kernel": key[2], "s": 0.0, "ops": 0})
        g["s"] += r["s"]
        g["ops"] += 1
    return sorted(groups.values(), key=lambda g: -g["s"])


def by_kernel(rows: list[dict]) -> dict[str, float]:
    totals: dict[str, float] = collections.Counter()
    for r in rows:
        totals[r["kernel"]] += r["s"]
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def profile_point(model: str, input_name: str, batch_size: int, names: list[str], steps: int,
                  torch_threads: int | None, quick: bool = False) -> dict:
    inputs = variants.QUICK_INPUTS if quick else variants.INPUTS
    w = variants.Workload(model, variants.model_config(model, quick), inputs[input_name], batch_size)
    out = {"model": model, "input": input_name, "batch_size": batch_size, "steps": steps, "variants": {}}
    for name in names:
        framework, variant = name.split("/", 1)
        var = variants.make_variant(w, framework, variant, threads=torch_threads)
        var.prepare()
        for _ in range(2):
            var.train_step()
        prof = jax_profile(var, steps) if framework == "jax" else torch_profile(var, steps)
        total = sum(r["s"] for r in prof["ops"])
        rec = {"wall_s": prof["wall_s"], "op_s": total}
        if "busy_s" in prof:  # the step's time in which no HLO operation runs on any thread
            rec["busy_s"] = prof["busy_s"]
            rec["idle_s"] = max(0.0, prof["wall_s"] - prof["busy_s"])
        if framework == "jax":
            rec["kernels"] = by_kernel(prof["ops"])
            rec["groups"] = grouped(prof["ops"])[:40]
            rec["top_ops"] = sorted(prof["ops"], key=lambda r: -r["s"])[:25]
        else:
            rec["top_ops"] = sorted(prof["ops"], key=lambda r: -r["s"])[:40]
        out["variants"][name] = rec
        var.close()
        print(f"{name}: {prof['wall_s'] * 1e3:.0f} ms/step wall, {total * 1e3:.0f} ms/step in ops", flush=True)
    return out


def _ms(s: float) -> str:
    return f"{s * 1e3:,.1f}"


def markdown(result: dict) -> str:
    lines = [f"# Train-step profile: {result['model']} on {result['input']}, B={result['batch_size']}", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores; "
             f"{', '.join(result['machine'].get('cpu_flags', []))}); load average {result['load_average']}; "
             f"{result['steps']} profiled steps after 2 warm-up steps. Times are per step, summed over threads.", ""]
    for name, rec in result["variants"].items():
        lines += [f"## {name}", "", f"Wall {_ms(rec['wall_s'])} ms per step; {_ms(rec['op_s'])} ms in operations"
                  + (f" (summed over threads); some operation running during {_ms(rec['busy_s'])} ms, none during "
                     f"{_ms(rec['idle_s'])} ms ({rec['idle_s'] / rec['wall_s']:.0%} of the step: dispatch and "
                     "waits between operations)." if "busy_s" in rec else "."), ""]
        if "kernels" in rec:
            lines += ["| kernel kind | ms/step | share |", "|---|---:|---:|"]
            lines += [f"| {k} | {_ms(s)} | {s / rec['op_s']:.1%} |" for k, s in rec["kernels"].items()]
            lines += ["", "| phase | layer / operation | kernel | ms/step | share | instructions |",
                      "|---|---|---|---:|---:|---:|"]
            lines += [f"| {g['phase']} | `{g['layer']}` | {g['kernel']} | {_ms(g['s'])} | {g['s'] / rec['op_s']:.1%} "
                      f"| {g['ops']} |" for g in rec["groups"][:25]]
        else:
            lines += ["| operator | ms/step | share | calls/step |", "|---|---:|---:|---:|"]
            lines += [f"| `{r['op']}` | {_ms(r['s'])} | {r['s'] / rec['op_s']:.1%} | {r['calls']:g} |"
                      for r in rec["top_ops"][:25]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(variants.PRESETS))
    parser.add_argument("--input", required=True, choices=sorted(variants.INPUTS))
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--variants", default="jax/jit,torch/eager",
                        help="comma-separated framework/variant, as in benchmarks.run (jax/jit[...] too)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=None, help="PyTorch intra-op threads (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "profiles"))
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs (the smoke test)")
    args = parser.parse_args(argv)
    from benchmarks.run import _csv

    result = profile_point(args.model, args.input, args.batch_size, _csv(args.variants), args.steps,
                           args.torch_threads, args.quick)
    result["command"] = " ".join(["python -m benchmarks.profile", *map(shlex.quote, argv or sys.argv[1:])])
    result["machine"] = machine.describe()
    result["load_average"] = machine.load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"profile_{args.model}_{args.input}_B{args.batch_size}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    stem.with_suffix(".md").write_text(markdown(result) + "\n")
    print(f"wrote {stem}.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
