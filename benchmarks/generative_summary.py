"""The tables of benchmarks/generative_results.md, from the runs of generative_measure.sh."""
import json, sys
import numpy as np
root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/gen"   # W of generative_measure.sh
S = "fma_genre_spectrograms_beat"
rows = {}
for name, pat in [("real only", "base_s{}"), ("+ 50 % generated (ratio 0.5)", "aug_r0.5_s{}"), ("+ 100 % generated (ratio 1.0)", "aug_r1.0_s{}")]:
    vals = []
    for s in (0, 1, 2):
        try:
            m = json.load(open(f"{root}/runs/{pat.format(s)}/metrics.json"))
        except FileNotFoundError:
            continue
        t = m["test"][S]
        vals.append((s, t["accuracy"], t["macro_f1"], m["validation"]["accuracy"], m["validation"]["macro_f1"], m["best_epoch"]))
    rows[name] = vals
print("| training set | seeds | test accuracy | test macro F1 | validation accuracy | validation macro F1 |")
print("|---|---:|---:|---:|---:|---:|")
for name, vals in rows.items():
    if not vals: continue
    a = np.array([v[1:5] for v in vals])
    cell = lambda c: f"{a[:, c].mean():.3f} +/- {a[:, c].std(ddof=1) if len(a) > 1 else 0:.3f}"
    print(f"| {name} | {len(vals)} | {cell(0)} | {cell(1)} | {cell(2)} | {cell(3)} |")
print()
print("| run | seed | test accuracy | test macro F1 | best epoch |")
print("|---|---:|---:|---:|---:|")
for name, vals in rows.items():
    for s, acc, f1, va, vf, be in vals:
        print(f"| {name} | {s} | {acc:.3f} | {f1:.3f} | {be} |")
