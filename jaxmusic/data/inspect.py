"""`jaxmusic inspect`: counts, shapes, length statistics and class histograms.

Takes a lab set folder (reads every feature file, streaming) or a prepared
folder (reads its manifest). Writes the lab's step-2 picture: samples per
class before and after the 20 -> 10 merge.
"""

from __future__ import annotations

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
            shape = (rec.features.shape[1], rec.length)
        lengths_arr = np.asarray(lengths)
        summary = {
            "clips": len(entries),
            "example_file_shape": shape,
            "views": {v: hi - lo for v, (lo, hi) in lab.VIEWS.items()
                      if shape is not None and v in lab.views_of(shape[0])},
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
