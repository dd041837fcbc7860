"""Load on `jaxmusic serve`: N concurrent API requests against one server on this machine.

    python -m benchmarks.serve_load --workdir runs/demo/cnn_beat_mel \\
        --emotion-workdir runs/demo/multitask_lstm_beat --requests 50 --seconds 30

Starts ``jaxmusic serve`` (a subprocess on a free port of 127.0.0.1), writes
``--distinct`` synthetic songs of ``--seconds`` each (chords, clicks and noise:
real WAV files, decoded by the server like any upload), asks for each once, one at
a time (the reference answers and the sequential latency), then sends
``--requests`` requests at once (one thread each, released together by a
barrier) and waits at most ``--timeout`` seconds. Every answer must be its clip's
reference (same labels in the same order, probabilities within 1.5e-4); the
script exits 1 otherwise. Prints a markdown table and writes ``--out`` (JSON):
latency p50/p95/max, throughput, the same-run ratio of concurrent to sequential
throughput, what the batchers did, and the machine (CPU model, cores, load).

``--memory-minutes 1,5`` then measures the server's own peak memory per request:
for each length, one song of that many minutes (44.1 kHz stereo FLAC) is sent
alone, the server's peak RSS having been reset just before (``/proc/PID/clear_refs``),
and its rise above the RSS before the request is recorded (``peak_rss_growth_mb``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cores, cpu_model, load_average
from jaxmusic.serve.client import ServeProcess, peak_rss_growth_mb, post_audio, request_json

REPO = Path(__file__).resolve().parents[1]


def song(seed: int, seconds: float, sr: int = 22050) -> np.ndarray:
    """A distinct synthetic song per seed: a chord, a click track at a seed's tempo, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    y = sum(0.1 / k * np.sin(2 * np.pi * root * r * k * t) for r in (1, 1.26, 1.5) for k in (1, 2, 3))
    beat = 60.0 / (80 + 10 * (seed % 8))
    clicks = np.exp(-(t % beat) / 0.005) * rng.uniform(-1, 1, t.size) * 0.4
    return (y + clicks + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def same_answer(a: dict, b: dict) -> bool:
    if [g["label"] for g in a["genres"]] != [g["label"] for g in b["genres"]]:
        return False
    pa = np.array([g["probability"] for g in a["genres"]])
    pb = np.array([g["probability"] for g in b["genres"]])
    return bool(np.abs(pa - pb).max() <= 1.5e-4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", action="append", required=True, help="genre run(s) to serve")
    p.add_argument("--emotion-workdir")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--distinct", type=int, default=5, help="different clips among the requests")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each clip")
    p.add_argument("--timeout", type=float, default=600.0, help="the most the concurrent requests may take")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `jaxmusic serve` argument (repeat)")
    p.add_argument("--memory-minutes", default="",
                   help="comma-separated song lengths (minutes) whose per-request peak RSS to measure")
    p.add_argument("--out", default="benchmarks/serve_load.json")
    args = p.parse_args(argv)
    import soundfile as sf

    serve_args = [a for w in args.workdir for a in ("--workdir", w)]
    if args.emotion_workdir:
        serve_args += ["--emotion-workdir", args.emotion_workdir]
    serve_args += ["--quiet", *args.serve_arg]
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp, ServeProcess(serve_args, cwd=REPO) as server:
        paths = []
        for i in range(args.distinct):
            path = Path(tmp) / f"song{i}.wav"
            sf.write(str(path), song(i, args.seconds), 22050, subtype="PCM_16")
            paths.append(path)
        reference, sequential = {}, []
        for path in paths:
            t0 = time.perf_counter()
            status, out = post_audio(server.url, path)
            sequential.append(time.perf_counter() - t0)
            if status != 200:
                print(f"reference request failed ({status}): {out}", file=sys.stderr)
                return 1
            reference[path.name] = out
        stats_before = request_json(f"{server.url}/api/stats")[1]["batchers"]

        barrier = threading.Barrier(args.requests + 1)
        results: list[tuple[int, dict, float, str] | None] = [None] * args.requests

        def one(i: int) -> None:
            path = paths[i % len(paths)]
            barrier.wait()
            t0 = time.perf_counter()
            try:
                status, out = post_audio(server.url, path, timeout=args.timeout)
            except Exception as e:  # a refused or dropped connection counts as a failure
                status, out = -1, {"error": f"{type(e).__name__}: {e}"}
            results[i] = (status, out, time.perf_counter() - t0, path.name)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(args.requests)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        deadline = start + args.timeout
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - start
        stats_after = request_json(f"{server.url}/api/stats")[1]["batchers"]
        memory = {}
        for minutes in [float(m) for m in args.memory_minutes.split(",") if m]:
            path = Path(tmp) / f"long{minutes:g}.flac"
            y = song(100, minutes * 60, 44100)
            sf.write(str(path), np.stack([y, y[::-1]], axis=1), 44100, subtype="PCM_16")
            grew, status = peak_rss_growth_mb(server.proc.pid, lambda: post_audio(server.url, path,
                                                                                 timeout=args.timeout)[0])
            if status != 200:
                print(f"the {minutes:g} min song was refused ({status})", file=sys.stderr)
                return 1
            memory[f"{minutes:g} min"] = {"peak_rss_growth_mb": round(grew, 1),
                                          "upload_mb": round(path.stat().st_size / 2**20, 2)}

    answered = [r for r in results if r is not None]
    wrong = [r for r in answered if r[0] != 200 or not same_answer(r[1], reference[r[3]])]
    latencies = [r[2] for r in answered]
    batches = {name: {k: s[k] - stats_before[name][k] for k in ("calls", "windows", "requests")}
               | {"max_requests_per_call": s["max_requests_per_call"], "compiled_programs": s["compiled_programs"]}
               for name, s in stats_after.items()}
    seq_throughput = len(sequential) / sum(sequential)
    report = {
        "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]) if argv is None else argv,
        "cpu": cpu_model(), "cores": cores(), "load_average_before": load_before, "load_average_after": load_average(),
        "requests": args.requests, "distinct_clips": args.distinct, "clip_seconds": args.seconds,
        "answered": len(answered), "correct": len(answered) - len(wrong), "wall_s": round(wall, 3),
        "latency_s": {"p50": round(percentile(latencies, 50), 3), "p95": round(percentile(latencies, 95), 3),
                      "max": round(max(latencies), 3)} if latencies else None,
        "throughput_rps": round(len(answered) / wall, 3),
        "sequential": {"latency_s_median": round(statistics.median(sequential), 3),
                       "throughput_rps": round(seq_throughput, 3)},
        "concurrent_over_sequential_throughput": round(len(answered) / wall / seq_throughput, 2),
        "batchers": batches,
        "memory_per_request": memory,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    lat = report["latency_s"] or {}
    print(f"| requests | clip | answered correctly | wall | p50 | p95 | max | throughput | vs sequential |\n"
          f"|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {args.requests} | {args.seconds:g} s | {report['correct']}/{args.requests} | {wall:.1f} s | "
          f"{lat.get('p50', float('nan')):.2f} s | {lat.get('p95', float('nan')):.2f} s | "
          f"{lat.get('max', float('nan')):.2f} s | {report['throughput_rps']:.2f} req/s | "
          f"{report['concurrent_over_sequential_throughput']:.2f}x |")
    print(f"cpu: {report['cpu']} ({report['cores']} cores); load before {load_before}; batchers {batches}")
    for length, m in memory.items():
        print(f"one {length} song ({m['upload_mb']} MB FLAC): server peak RSS +{m['peak_rss_growth_mb']} MB")
    for r in wrong[:5]:
        print(f"wrong answer for {r[3]}: status {r[0]}: {str(r[1])[:300]}", file=sys.stderr)
    ok = len(answered) == args.requests and not wrong
    if not ok:
        print(f"FAILED: {len(answered)}/{args.requests} answered in {args.timeout:g} s, {len(wrong)} wrong",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
