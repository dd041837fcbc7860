"""Throughput and accuracy of the JAX audio frontend against librosa.

    python -m benchmarks.frontend                      # 30 s clips, batch 1 and 64
    python -m benchmarks.frontend --quick              # a smoke run (short clips)

For each view (mel, chroma, fused) and batch size, the methods are timed in
turn inside every run (interleaved, so a busy machine slows all of them alike)
and the median over runs is reported as clips/s:

* JAX: ``jaxmusic.frontend.frontend_jit`` (compiled once, warmed up), one call on
  ``[B, samples]``; mel-only and chroma-only configs skip the other rows.
* librosa: the calls the lab's recipe makes, one clip at a time (how the
  extractor uses it), and, for mel and chroma_stft, one call on the whole
  ``[B, samples]`` array (librosa broadcasts over leading axes).

librosa works clip by clip, so its clips/s does not depend on the batch; to keep
the run short on a shared machine, its per-clip timings at batch 64 use the
first ``--librosa-clips`` clips of the batch (default 16; chroma_cqt 4).

The accuracy section compares the frontend with librosa on the same clips.
Results go to ``benchmarks/frontend_results.md`` with the machine description.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

SR = 22050
HOP = 512


def synth_clips(n: int, seconds: float, seed: int = 0) -> np.ndarray:
    """``[n, seconds * SR]`` float32: chord sequences, a click track, a little noise."""
    rng = np.random.default_rng(seed)
    length = int(seconds * SR)
    t = np.arange(length) / SR
    out = np.zeros((n, length), np.float32)
    for i in range(n):
        y = np.zeros(length)
        seg = int(rng.uniform(1.0, 3.0) * SR)
        for s0 in range(0, length, seg):
            root = rng.integers(48, 72)
            for note in (root, root + rng.choice([3, 4]), root + 7):
                f = 440.0 * 2 ** ((note - 69) / 12)
                for h in (1, 2, 3):
                    y[s0:s0 + seg] += 0.15 / h * np.sin(2 * np.pi * f * h * t[s0:s0 + seg])
        bpm = rng.uniform(80, 160)
        for beat in np.arange(rng.uniform(0, 0.5), seconds, 60 / bpm):
            k = int(beat * SR)
            m = min(600, length - k)
            y[k:k + m] += 0.6 * np.exp(-np.arange(m) / 100) * rng.uniform(-1, 1, m)
        y += 0.01 * rng.standard_normal(length)
        out[i] = y
    return out


def machine() -> dict[str, str]:
    import jax
    import jaxlib
    import librosa
    import scipy
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in text]
        flags = ", ".join(have)
    except OSError:
        pass
    try:
        import flax
        flax_v = flax.__version__
    except ImportError:
        flax_v = "-"
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "isa": flags,
        "python": platform.python_version(), "jax": jax.__version__,
        "jaxlib": jaxlib.__version__, "flax": flax_v, "numpy": np.__version__,
        "scipy": scipy.__version__, "librosa": librosa.__version__,
        "jax backend": jax.default_backend(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
    }


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# --- methods ------------------------------------------------------------------------

def librosa_methods(view: str) -> dict[str, tuple[Callable[[np.ndarray], object], bool]]:
    """name -> (function of one clip or a batch, batched?)."""
    import librosa

    def mel(y):
        S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=HOP, n_mels=128,
                                           power=2.0)
        if S.ndim == 2:
            return librosa.power_to_db(S, ref=np.max)
        return np.stack([librosa.power_to_db(s, ref=np.max) for s in S])

    def chroma_stft(y):
        return librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP)

    def chroma_stft_t0(y):
        return librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP, tuning=0.0)

    def chroma_cqt(y):
        return librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=HOP)

    def fused(y):
        return np.vstack([mel(y), chroma_cqt(y)])

    if view == "mel":
        return {"librosa mel (per clip)": (mel, False), "librosa mel (one call on [B, N])": (mel, True)}
    if view == "chroma":
        return {"librosa chroma_stft(tuning=0) (per clip)": (chroma_stft_t0, False),
                "librosa chroma_stft(tuning=0) (one call on [B, N])": (chroma_stft_t0, True),
                "librosa chroma_stft (tuning estimated, per clip)": (chroma_stft, False),
                "librosa chroma_cqt (lab recipe, per clip)": (chroma_cqt, False)}
    return {"librosa mel + chroma_cqt (lab recipe, per clip)": (fused, False),
            "librosa mel + chroma_stft(tuning=0) (per clip)":
                (lambda y: np.vstack([mel(y), chroma_stft_t0(y)]), False)}


SAME = {"mel": "librosa mel (per clip)",
        "chroma": "librosa chroma_stft(tuning=0) (per clip)",
        "fused": "librosa mel + chroma_stft(tuning=0) (per clip)"}
RECIPE = {"mel": "librosa mel (per clip)",
          "chroma": "librosa chroma_cqt (lab recipe, per clip)",
          "fused": "librosa mel + chroma_cqt (lab recipe, per clip)"}


def jax_config(view: str, stft: str):
    from jaxmusic.frontend import FrontendConfig
    if view == "mel":
        return FrontendConfig(n_chroma=0, stft=stft)
    if view == "chroma":
        return FrontendConfig(n_mels=0, stft=stft)
    return FrontendConfig(stft=stft)


# --- timing ---------------------------------------------------------------------------

def bench_view(view: str, audio: np.ndarray, runs: int, librosa_clips: int,
               cqt_clips: int, impls: list[str]) -> list[dict]:
    import jax
    import jax.numpy as jnp
    from jaxmusic import frontend as fe

    batch = audio.shape[0]
    x = jnp.asarray(audio)
    tasks: dict[str, tuple[Callable[[], object], int]] = {}
    compile_s: dict[str, float] = {}
    for impl in impls:
        cfg = jax_config(view, impl)
        t0 = time.perf_counter()
        compiled = fe.frontend_jit.lower(x, None, config=cfg).compile()
        compile_s[impl] = time.perf_counter() - t0
        fn = (lambda c=compiled: jax.block_until_ready(c(x, None)))
        fn()                                    # warm-up
        tasks[f"JAX frontend ({impl} STFT)"] = (fn, batch)
    for name, (f, batched) in librosa_methods(view).items():
        if batched:
            if batch == 1:
                continue
            tasks[name] = ((lambda f=f: f(audio)), batch)
        else:
            n = min(batch, cqt_clips if "cqt" in name else librosa_clips)
            tasks[name] = ((lambda f=f, n=n: [f(audio[i]) for i in range(n)]), n)
            f(audio[0])                          # warm-up (numba, FFT plans)
    times: dict[str, list[float]] = {k: [] for k in tasks}
    cpu: dict[str, list[float]] = {k: [] for k in tasks}
    for _ in range(runs):
        for name, (fn, _) in tasks.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    rows = []
    for name, (fn, n) in tasks.items():
        med = statistics.median(times[name])
        rows.append({"view": view, "batch": batch, "method": name, "clips": n,
                     "median_s": med, "clips_per_s": n / med,
                     "clips_per_cpu_s": n / statistics.median(cpu[name]),
                     "compile_s": compile_s.get(name.split("(")[-1].split()[0], None)
                     if name.startswith("JAX") else None})
    return rows


# --- accuracy ---------------------------------------------------------------------------

def accuracy(audio: np.ndarray) -> dict[str, float]:
    import jax.numpy as jnp
    import librosa
    from jaxmusic import frontend as fe

    res: dict[str, float] = {}
    for impl in ("blocks", "xla"):
        feats, flen = fe.frontend_jit(jnp.asarray(audio), config=fe.FrontendConfig(stft=impl))
        feats = np.asarray(feats)
        e_all = e_60 = e_40 = e_ch = 0.0
        e_all64 = e_lib64 = 0.0
        corr = []
        for i, y in enumerate(audio):
            S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=HOP, n_mels=128)
            mel = librosa.power_to_db(S, ref=np.max).T
            S64 = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=SR, n_fft=2048,
                                                 hop_length=HOP, n_mels=128)
            mel64 = librosa.power_to_db(S64, ref=np.max).T
            ours = feats[i, :mel.shape[0], :128]
            err = np.abs(ours - mel)
            e_all = max(e_all, float(err.max()))
            e_60 = max(e_60, float(err[mel > -60].max()))
            e_40 = max(e_40, float(err[mel > -40].max()))
            e_all64 = max(e_all64, float(np.abs(ours - mel64).max()))
            e_lib64 = max(e_lib64, float(np.abs(mel - mel64).max()))
            ch = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP, tuning=0.0).T
            e_ch = max(e_ch, float(np.abs(feats[i, :ch.shape[0], 128:] - ch).max()))
            cqt = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=HOP).T
            corr.append(np.corrcoef(feats[i, :cqt.shape[0], 128:].ravel(), cqt.ravel())[0, 1])
        res[f"{impl}: mel dB, max abs error vs librosa, all bands (down to -80 dB)"] = e_all
        res[f"{impl}: mel dB, max abs error vs librosa, bands above -60 dB"] = e_60
        res[f"{impl}: mel dB, max abs error vs librosa, bands above -40 dB"] = e_40
        res[f"{impl}: mel dB, max abs error vs librosa on float64 audio"] = e_all64
        res[f"{impl}: chroma, max abs error vs chroma_stft(tuning=0)"] = e_ch
        res[f"{impl}: chroma correlation with chroma_cqt (mean over clips)"] = float(np.mean(corr))
        res["librosa float32 vs float64 audio: mel dB, max abs error"] = e_lib64
    # Beat-synchronous pooling: exact equality with librosa.util.sync.
    feats, flen = fe.frontend_jit(jnp.asarray(audio[:2]))
    feats = np.asarray(feats)
    beats = [np.arange(7, int(flen[0]), 23), np.arange(3, int(flen[1]), 17)]
    bf, nb = fe.pad_beats(beats, max_beats=max(len(b) for b in beats))
    pooled, nseg = fe.beat_sync_jit(jnp.asarray(feats), flen, jnp.asarray(bf), jnp.asarray(nb))
    worst = 0.0
    for i in range(2):
        ref = librosa.util.sync(feats[i, :int(flen[i])].T, beats[i], aggregate=np.median).T
        worst = max(worst, float(np.abs(np.asarray(pooled)[i, :int(nseg[i])] - ref).max()))
    res["beat_sync, max abs error vs librosa.util.sync(aggregate=np.median)"] = worst
    return res


# --- report -------------------------------------------------------------------------------

def write_report(path: Path, rows: list[dict], acc: dict[str, float], info: dict[str, str],
                 command: str, seconds: float, runs: int, loads: tuple[str, str],
                 notes: str) -> None:
    lines = ["# JAX audio frontend vs librosa", "",
             f"Command: `{command}`", "",
             f"{seconds:g} s clips at {SR} Hz (synthetic: chords, clicks, noise); median of "
             f"{runs} interleaved runs; clips/s = clips / wall time of one call.", "",
             "clips/CPU-s = clips / CPU time of this process (all its threads): less "
             "sensitive to other load on a shared machine than wall time.", "",
             "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- load average (1, 5, 15 min) before / after: {loads[0]} / {loads[1]}", ""]
    lines += ["## Throughput", "",
              "| view | batch | method | clips timed | median s | clips/s | clips/CPU-s "
              "| x same computation | x lab recipe | compile s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for view in ("mel", "chroma", "fused"):
        for batch in sorted({r["batch"] for r in rows if r["view"] == view}):
            group = [r for r in rows if r["view"] == view and r["batch"] == batch]
            same = next((r for r in group if r["method"] == SAME[view]), None)
            recipe = next((r for r in group if r["method"] == RECIPE[view]), None)
            for r in group:
                cols = []
                for base in (same, recipe):
                    cols.append("" if base is None else
                                f"{r['clips_per_s'] / base['clips_per_s']:.1f}")
                comp = "" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
                lines.append(f"| {view} | {batch} | {r['method']} | {r['clips']} | "
                             f"{r['median_s']:.3f} | {r['clips_per_s']:.1f} | "
                             f"{r['clips_per_cpu_s']:.1f} | {cols[0]} | {cols[1]} | {comp} |")
    lines += ["", "Ratios are of clips/s (wall time). *Same computation*: the librosa per-clip "
              "row that computes what the frontend computes (" +
              "; ".join(f"{v}: {m}" for v, m in SAME.items()) + "). *Lab recipe*: "
              "what the lab's files used (" + "; ".join(f"{v}: {m}" for v, m in RECIPE.items()) +
              "); the frontend's chroma is STFT-based, so for chroma and fused this compares "
              "different transforms.", ""]
    lines += ["## Agreement with librosa (same audio)", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in acc.items()]
    if notes:
        lines += ["", notes.strip()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--views", nargs="+", default=["mel", "chroma", "fused"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--librosa-clips", type=int, default=16)
    parser.add_argument("--cqt-clips", type=int, default=4)
    parser.add_argument("--impls", nargs="+", default=["blocks", "xla"])
    parser.add_argument("--accuracy-clips", type=int, default=4)
    parser.add_argument("--out", default=str(Path(__file__).with_name("frontend_results.md")))
    parser.add_argument("--notes", default="", help="markdown appended to the results file")
    parser.add_argument("--quick", action="store_true", help="3 s clips, batch 1 and 4, 2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.batches, args.runs = 3.0, [1, 4], 2
    command = "python -m benchmarks.frontend " + " ".join(argv if argv is not None else sys.argv[1:])
    loads_before = load_avg()
    info = machine()
    audio = synth_clips(max(args.batches), args.seconds)
    rows = []
    for batch in args.batches:
        for view in args.views:
            print(f"timing view={view} batch={batch} ...", flush=True)
            rows += bench_view(view, audio[:batch], args.runs, args.librosa_clips,
                               args.cqt_clips, args.impls)
            for r in rows[-6:]:
                if r["view"] == view and r["batch"] == batch:
                    print(f"  {r['method']:55s} {r['clips_per_s']:8.2f} clips/s", flush=True)
    print("accuracy ...", flush=True)
    acc = accuracy(audio[:args.accuracy_clips])
    for k, v in acc.items():
        print(f"  {k}: {v:.3g}")
    write_report(Path(args.out), rows, acc, info, command.strip(), args.seconds, args.runs,
                 (loads_before, load_avg()), args.notes)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
