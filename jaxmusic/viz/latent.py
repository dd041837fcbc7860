"""`jaxmusic embed`: the latent space of trained runs (lab step 10).

For every clip of a split, the vector just before the output layer (the
backbone's ``latent [feature_size]``) is taken from the run's best checkpoint and
saved as ``latent_<set>_<split>.npz`` (``ids``, ``latent``, ``labels``,
``label_names``, ``data_kind``) in the run directory. It is then mapped to 2-D
by PCA, t-SNE (scikit-learn) and UMAP (umap-learn, the ``viz`` extra, when it
imports) and drawn coloured by genre. Each panel's title gives the silhouette
score (scikit-learn, Euclidean) of the genre labels in the latent space and in
the 2-D map: how well the classes separate, comparable between models.

Written per run: ``latent_<set>_<split>.png`` and ``latent_<set>_<split>.json``
(the silhouettes). With several ``--workdir``s, one more figure (rows: runs,
columns: methods) at ``--out`` so the models' spaces can be compared.

Regression and multitask runs have no genre: their points are coloured by the
first target (valence) where it is known, and no silhouette is given.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from jaxmusic import workers
from jaxmusic.evaluate import Evaluator
from jaxmusic.viz import use_agg

METHODS = ("pca", "tsne", "umap")
METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
PANEL_SIZE = (4.6, 4.2)   # inches per map
LEGEND_WIDTH = 1.8         # inches for the class legend on the right
DPI = 100


# --- extraction ----------------------------------------------------------------------

def extract(workdir: str | Path, split: str = "test", set_name: str | None = None,
            batch_size: int | None = None) -> dict:
    """The latent vector of every clip of ``split`` (of the run's own prepared set,
    or of ``set_name`` under the same prepared root), from the best checkpoint."""
    ev = Evaluator(workdir)
    run, meta = ev.run, ev.meta
    pset = ev.prepared(set_name or run.record["set"])
    if not pset.has_split(split):
        raise ValueError(f"{pset.name} has no {split!r} split")
    res = ev.predict(pset, split, batch_size, with_latent=True)
    return {"ids": np.asarray(res["ids"], dtype=str), "latent": np.asarray(res["latent"]),
            "labels": np.asarray(res["truth"]),
            "label_names": np.asarray(run.task.label_names, dtype=str),
            "data_kind": run.task.data_kind, "set": pset.name, "split": split,
            "feature_size": int(run.model.backbone.feature_size),
            "checkpoint_step": meta.get("restored_step")}


def npz_path(workdir: Path, set_name: str, split: str) -> Path:
    return Path(workdir) / f"latent_{set_name}_{split}.npz"


def save(workdir: Path, emb: dict) -> Path:
    path = npz_path(workdir, emb["set"], emb["split"])
    np.savez(path, ids=emb["ids"], latent=emb["latent"], labels=emb["labels"],
             label_names=emb["label_names"], data_kind=np.asarray(emb["data_kind"]))
    return path


def load(path: str | Path) -> dict:
    """An ``latent_<set>_<split>.npz`` back as the dict :func:`extract` returns."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        emb = {k: z[k] for k in z.files}
    emb["data_kind"] = str(emb["data_kind"])
    stem = path.stem[len("latent_"):]
    emb["set"], _, emb["split"] = stem.rpartition("_")
    emb["feature_size"] = int(emb["latent"].shape[1])
    return emb


# --- maps and scores ---------------------------------------------------------------------

def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embed_2d(latent: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` map of ``latent`` by ``pca``, ``tsne`` or ``umap``."""
    latent = np.asarray(latent, np.float64)
    n = len(latent)
    if n < 3:
        raise ValueError(f"need at least 3 clips for a 2-D map, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(latent)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed)
        # Below a few thousand points OpenMP threads cost more than they give
        # (30x slower on a busy 2-core machine).
        with workers.one_thread() if n <= 2000 else contextlib.nullcontext():
            return tsne.fit_transform(latent)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed,
                         n_jobs=1).fit_transform(latent)
    raise ValueError(f"unknown method {method!r} (one of {METHODS})")


def class_labels(emb: dict) -> np.ndarray | None:
    """Integer class per clip for genre runs, None otherwise."""
    labels = np.asarray(emb["labels"])
    if emb["data_kind"] != "genre" or labels.ndim != 1:
        return None
    return labels.astype(np.int64)


def silhouette(points: np.ndarray, labels: np.ndarray | None) -> float | None:
    """sklearn's mean silhouette (Euclidean), or None where it is undefined
    (no classes, fewer than 2 classes, or as many classes as points)."""
    if labels is None:
        return None
    k = len(np.unique(labels))
    if k < 2 or k >= len(labels):
        return None
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(np.asarray(points, np.float64), labels))


def fmt_score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def panel_title(method: str, s_latent: float | None, s_map: float | None) -> str:
    return (f"{METHOD_TITLES[method]}\nsilhouette: latent {fmt_score(s_latent)}, "
            f"2-D {fmt_score(s_map)}")


def compute_maps(emb: dict, methods, seed: int = 0) -> dict:
    """{method: {"xy", "silhouette_latent", "silhouette_map", "title"}}."""
    labels = class_labels(emb)
    s_latent = silhouette(emb["latent"], labels)
    out = {}
    for m in methods:
        xy = embed_2d(emb["latent"], m, seed)
        s_map = silhouette(xy, labels)
        out[m] = {"xy": xy, "silhouette_latent": s_latent, "silhouette_map": s_map,
                  "title": panel_title(m, s_latent, s_map)}
    return out


# --- figures -------------------------------------------------------------------------------

def figure_size(n_runs: int, n_methods: int) -> tuple[float, float]:
    return (PANEL_SIZE[0] * n_methods + LEGEND_WIDTH, PANEL_SIZE[1] * n_runs)


def plot_maps(rows: list[dict], path: Path, note: str = "") -> Path:
    """``rows``: one per run, each ``{"name", "emb", "maps"}`` (:func:`compute_maps`);
    rows are runs, columns the methods of the first row."""
    plt = use_agg()
    from matplotlib.lines import Line2D

    methods = list(rows[0]["maps"])
    fig, axes = plt.subplots(len(rows), len(methods), squeeze=False,
                             figsize=figure_size(len(rows), len(methods)), layout="constrained")
    cmap = plt.get_cmap("tab10" if max(len(r["emb"]["label_names"]) for r in rows) <= 10
                        else "tab20")
    legend_names: list[str] = []
    scatter_cbar = None
    for r, row in enumerate(rows):
        emb = row["emb"]
        labels = class_labels(emb)
        names = [str(n) for n in emb["label_names"]]
        for c, m in enumerate(methods):
            ax = axes[r, c]
            xy = row["maps"][m]["xy"]
            if labels is not None:
                colours = [cmap(int(i) % cmap.N) for i in labels]
                ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=12, alpha=0.85, linewidths=0)
                for n in names:
                    if n not in legend_names:
                        legend_names.append(n)
            else:
                values = np.asarray(emb["labels"], float)
                values = values[:, 0] if values.ndim == 2 else values
                if np.isfinite(values).all():
                    scatter_cbar = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="coolwarm",
                                              vmin=0, vmax=1, s=12)
                else:
                    ax.scatter(xy[:, 0], xy[:, 1], color="gray", s=12)
            ax.set_title(row["maps"][m]["title"], fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{row['name']}\n{emb['set']} / {emb['split']}, "
                              f"{len(xy)} clips, {emb['latent'].shape[1]}-d", fontsize=9)
    if legend_names:
        handles = [Line2D([], [], marker="o", linestyle="", color=cmap(i % cmap.N), label=n)
                   for i, n in enumerate(legend_names)]
        fig.legend(handles=handles, loc="outside right center", title="genre", fontsize=9)
    if scatter_cbar is not None:
        fig.colorbar(scatter_cbar, ax=axes[:, -1].tolist(), label="valence (regression runs)")
    title = "Latent space (vector before the output layer), coloured by genre"
    if scatter_cbar is not None:
        title += " (regression runs: by valence)" if legend_names else " (here: by valence)"
    fig.suptitle(title + (f"\n{note}" if note else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def scores_json(rows: list[dict]) -> dict:
    return {"runs": [{"name": row["name"], "set": row["emb"]["set"],
                      "split": row["emb"]["split"], "clips": int(len(row["emb"]["latent"])),
                      "feature_size": int(row["emb"]["latent"].shape[1]),
                      "silhouette": {m: {"latent": v["silhouette_latent"],
                                         "map": v["silhouette_map"]}
                                     for m, v in row["maps"].items()}}
                     for row in rows]}


def run_name(workdir: Path) -> str:
    """The run directory's name (unique, unlike config names), with the model."""
    cfg = Path(workdir) / "config.json"
    if cfg.exists():
        model = json.loads(cfg.read_text(encoding="utf-8")).get("model", {}).get("name")
        if model and model not in workdir.name:
            return f"{workdir.name} ({model})"
    return Path(workdir).name
