"""`jaxmusic inspect`: counts, shapes, length statistics and class histograms.

Takes a lab set folder (reads every feature file, streaming) or a prepared
folder (reads its manifest). Writes the lab's step-2 picture: samples per
class before and after the 20 -> 10 merge.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxmusic.data import lab


def summarise_lab_set(set_dir: Path, progress: bool = True) -> dict:
    from tqdm import tqdm

    info = lab.set_info(set_dir)
    cmap = lab.class_map(set_dir)
    out = {"set": info.name, "kind": info.kind, "beat": info.beat, "splits": {}}
    for split in lab.SPLITS:
        entries = lab.read_labels(set_dir, split)
        lengths = []
        shape = None
        for rec in tqdm(lab.iter_records(set_dir, split, keep_dropped=True, entries=entries),
                        total=len(entries), desc=f"{info.name}/{split}", unit="clip",
                        disable=not progress):
            lengths.append(rec.length)
            shape = (lab.N_FEATURES, rec.length)
        lengths_arr = np.asarray(lengths)
        summary = {
            "clips": len(entries),
            "example_file_shape": shape,
            "views": {v: hi - lo for v, (lo, hi) in lab.VIEWS.items()},
            "length": {"min": int(lengths_arr.min()), "max": int(lengths_arr.max()),
                       "mean": round(float(lengths_arr.mean()), 1),
                       "median": float(np.median(lengths_arr))},
        }
        if info.kind == "genre":
            out.setdefault("class_merge", {})[split] = lab.merge_counts(entries, cmap)
        out["splits"][split] = summary
    return out


def plot_merge_histogram(summary: dict, path: Path) -> Path:
    """Bar charts of clips per genre string (before) and per class (after the merge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for s in summary["class_merge"].values():
        for k, v in s["before"].items():
            before[k] = before.get(k, 0) + v
        for k, v in s["after"].items():
            after[k] = after.get(k, 0) + v
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for ax, counts, title in ((axes[0], before, f"before the merge ({len(before)} genre strings)"),
                              (axes[1], after, f"after the merge ({len(after)} classes)")):
        names = sorted(counts)
        ax.bar(names, [counts[n] for n in names], color="tab:blue")
        ax.set_title(title)
        ax.set_ylabel("clips (train + test)")
        ax.tick_params(axis="x", rotation=60)
        for lbl in ax.get_xticklabels():
            lbl.set_horizontalalignment("right")
    fig.suptitle(f"{summary['set']}: clips per genre (train + test)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_arguments(parser) -> None:
    parser.add_argument("path", help="a lab set folder, or a prepared folder (with manifest.json)")
    parser.add_argument("--plot", help="write the class histograms before/after the merge here "
                        "(default: <path>/class_histogram.png for genre sets)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true")


def run(args) -> int:
    path = Path(args.path)
    if (path / "manifest.json").exists():
        from jaxmusic.data.tfrecords import read_manifest

        m = read_manifest(path)
        summary = {"set": m["set"], "kind": m["kind"], "prepared": True, "view": m["view"],
                   "dtype": m["dtype"], "max_length": m["max_length"],
                   "splits": {s: {"clips": v["count"], "length": v["length"],
                                  "per_class": v["per_class"], "shards": len(v["shards"])}
                              for s, v in m["splits"].items()},
                   "skipped": len(m["skipped"]), "class_merge": m["class_merge"]}
    else:
        summary = summarise_lab_set(path, progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if summary["kind"] == "genre":
        plot = Path(args.plot) if args.plot else path / "class_histogram.png"
        plot_merge_histogram(summary, plot)
        print(f"class histogram: {plot}")
    return 0


def _print_summary(summary: dict) -> None:
    print(f"{summary['set']} ({summary['kind']}{', prepared' if summary.get('prepared') else ''})")
    for split, s in summary["splits"].items():
        if "clips" not in s:
            continue
        ln = s["length"]
        print(f"  {split:<10} {s['clips']:>6} clips  frames min {ln['min']} median "
              f"{ln['median']:g} max {ln['max']}")
        if s.get("example_file_shape"):
            views = ", ".join(f"{v} (T, {n})" for v, n in s["views"].items())
            print(f"             file shape {tuple(s['example_file_shape'])}; views: {views}")
        if s.get("per_class"):
            print("             classes: " + ", ".join(f"{k} {v}" for k, v in s["per_class"].items()))
    for split, merge in (summary.get("class_merge") or {}).items():
        before = ", ".join(f"{k} {v}" for k, v in merge["before"].items())
        print(f"  {split}_labels.txt genre strings: {before}")
        print("             after the merge: " + ", ".join(f"{k} {v}" for k, v in merge["after"].items())
              + f"; dropped by the merge: {merge['dropped_by_merge']['count']}")
