"""Pictures, latent maps and the HTML report: values, not just "it ran".

Most tests use small synthetic run directories written here, in the exact format
training and evaluation write; one test trains a real tiny LSTM for the latent
extraction (skipped when the models cannot be imported).
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from jaxmusic import cli
from jaxmusic.data import lab
from jaxmusic.viz import curves, latent, report, show, use_agg
from tests.conftest import GENRES_FOR_TESTS, write_genre_set

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- helpers -----------------------------------------------------------------------------

def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG read back with matplotlib; checks it is a real PNG."""
    import matplotlib.image as mpimg

    data = Path(path).read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC), path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.02, f"{path} looks blank"
    return img.shape[1], img.shape[0]


def expected_pixels(figsize, dpi) -> tuple[int, int]:
    return round(figsize[0] * dpi), round(figsize[1] * dpi)


def command(name: str, argv) -> int:
    """``jaxmusic NAME ARGV...`` in this process."""
    return cli.main([name, *map(str, argv)])


def small_png(path: Path, seed: int = 0, size=(3.0, 2.0)) -> Path:
    plt = use_agg()
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(np.random.default_rng(seed).random((10, 10)), cmap="Blues")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


GENRE_CLASSES = list(lab.CLASSES)


def genre_report(rng, count: int, accuracy: float) -> dict:
    per_class = {c: {"precision": float(rng.uniform(0.1, 0.9)), "recall": float(rng.uniform(0.1, 0.9)),
                     "f1": float(rng.uniform(0.1, 0.9)), "support": int(rng.integers(1, 20))}
                 for c in GENRE_CLASSES}
    return {"accuracy": accuracy, "macro_precision": float(rng.uniform()),
            "macro_recall": float(rng.uniform()), "macro_f1": float(rng.uniform()),
            "micro_precision": accuracy, "micro_recall": accuracy, "micro_f1": accuracy,
            "weighted_f1": float(rng.uniform()), "per_class": per_class,
            "confusion_matrix": rng.integers(0, 5, (10, 10)).tolist(), "count": count,
            "loss": float(rng.uniform(1, 2))}


def write_genre_run(root: Path, name: str, seed: int = 0, model: str = "cnn",
                    evaluated: bool = True, config_name: str | None = None) -> Path:
    """A run directory as `jaxmusic train` + `evaluate` leave it (genre task)."""
    rng = np.random.default_rng(seed)
    wd = root / name
    wd.mkdir(parents=True)
    s = "fma_genre_spectrograms"
    config = {"name": config_name or name, "task": "genre",
              "data": {"set": s, "view": "mel", "prepared": "prepared", "max_length": 0},
              "model": {"name": model, "channels": [16, 32, 64, 128], "dropout": 0.1},
              "train": {"batch_size": 32, "epochs": 6, "optimizer": "adamw",
                        "learning_rate": 0.001, "select_metric": "accuracy",
                        "select_mode": "max", "patience": 3, "dtype": "float32"},
              "loss": {"name": "mse"}}
    (wd / "config.json").write_text(json.dumps(config))
    (wd / "run.json").write_text(json.dumps({
        "task": "genre", "data_kind": "genre", "label_names": GENRE_CLASSES, "set": s,
        "view": "mel", "num_features": 128, "max_length": 1293, "model": model}))
    val_acc = [0.2, 0.35, 0.5, 0.45, 0.3]  # best: epoch 3
    history = [{"epoch": e + 1, "step": 10 * (e + 1), "time_s": 2.0, "samples_per_s": 160.0,
                "train": {"loss": 2.0 - 0.3 * e, "accuracy": 0.2 + 0.15 * e, "grad_norm": 1.0},
                "validation": {"loss": 2.1 - 0.2 * e + 0.25 * max(0, e - 2) ** 2,
                               "accuracy": val_acc[e], "macro_f1": val_acc[e] / 2}}
               for e in range(5)]
    (wd / "history.json").write_text(json.dumps(history))
    if evaluated:
        metrics = {"run": name, "task": "genre", "model": model, "set": s, "view": "mel",
                   "checkpoint_step": 30, "best_epoch": 3,
                   "validation": genre_report(rng, 31, 0.5),
                   "test": {s: genre_report(rng, 40, float(rng.uniform(0.3, 0.6))),
                            s + "_beat": genre_report(rng, 40, float(rng.uniform(0.2, 0.5)))}}
        (wd / "metrics.json").write_text(json.dumps(metrics))
        small_png(wd / f"confusion_{s}.png", seed)
        small_png(wd / f"confusion_{s}_beat.png", seed + 1)
    return wd


def write_multitask_run(root: Path, name: str, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    wd = root / name
    wd.mkdir(parents=True)
    axes = list(lab.TARGETS)
    config = {"name": name, "task": "multitask",
              "data": {"set": "multitask_dataset_beat", "view": "fused"},
              "model": {"name": "lstm", "hidden_size": 64, "num_layers": 2, "bidirectional": True},
              "train": {"batch_size": 32, "epochs": 4, "optimizer": "adamw",
                        "learning_rate": 0.0003, "select_metric": "accuracy", "select_mode": "max"},
              "loss": {"name": "mse+spearman", "task_weights": [1.0, 0.5, 2.0]}}
    (wd / "config.json").write_text(json.dumps(config))
    (wd / "run.json").write_text(json.dumps({
        "task": "multitask", "data_kind": "multitask", "label_names": axes,
        "set": "multitask_dataset_beat", "view": "fused", "num_features": 140,
        "max_length": 130, "model": "lstm"}))
    history = []
    for e in range(4):
        sp = {a: float(0.1 * (e + 1) + 0.05 * i) for i, a in enumerate(axes)}
        history.append({"epoch": e + 1, "step": 5 * (e + 1), "time_s": 1.0, "samples_per_s": 150.0,
                        "train": {"loss": 1.0 / (e + 1)},
                        "validation": {"loss": 1.2 / (e + 1),
                                       **{f"spearman.{a}": v for a, v in sp.items()},
                                       "spearman_mean": float(np.mean(list(sp.values())))}})
    (wd / "history.json").write_text(json.dumps(history))
    val = {"spearman": {a: float(rng.uniform(0.2, 0.7)) for a in axes},
           "pearson": {a: float(rng.uniform(0.2, 0.7)) for a in axes},
           "mse": {a: float(rng.uniform(0.01, 0.1)) for a in axes}, "count": 12, "loss": 0.3}
    val["spearman_mean"] = float(np.mean(list(val["spearman"].values())))
    metrics = {"run": name, "task": "multitask", "model": "lstm", "set": "multitask_dataset_beat",
               "view": "fused", "checkpoint_step": 20, "best_epoch": 4, "validation": val,
               "spearman": val["spearman"], "spearman_mean": val["spearman_mean"],
               "predictions": {"multitask_dataset_beat": str(wd / "predictions_multitask_dataset_beat.csv")}}
    (wd / "metrics.json").write_text(json.dumps(metrics))
    (wd / "comparison_multitask.json").write_text(json.dumps({
        "title": "multitask vs single-task <validation Spearman>",
        "columns": ["model", "valence", "energy", "danceability", "mean"],
        "rows": [["single-task", 0.4123, 0.5234, 0.3345, 0.4234],
                 ["multitask", 0.4456, 0.5567, 0.3678, 0.4567]]}))
    return wd


def clustered_latent(n_per_class=15, classes=3, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    points = centres[labels] + rng.normal(0, 1, (len(labels), dim))
    return {"ids": np.array([f"c{i}" for i in range(len(labels))]), "latent": points.astype(np.float32),
            "labels": labels, "label_names": np.array(GENRE_CLASSES), "data_kind": "genre",
            "set": "fma_genre_spectrograms", "split": "test"}


# --- show ---------------------------------------------------------------------------------

def test_show_draws_two_genres_in_four_views_and_the_histograms(tmp_path, capsys):
    root = tmp_path / "data"
    full = write_genre_set(root, "fma_genre_spectrograms", n_train=12, n_test=6,
                           lengths=(300, 400), seed=0)
    beat = write_genre_set(root, "fma_genre_spectrograms_beat", n_train=12, n_test=6,
                           lengths=(20, 40), seed=1)
    assert command("show", [root, "--out", tmp_path / "fig"]) == 0
    printed = capsys.readouterr().out
    spectro, hist = tmp_path / "fig" / "spectrograms.png", tmp_path / "fig" / "class_histogram.png"
    assert png_size(spectro) == expected_pixels(show.SPECTROGRAM_FIGSIZE, show.DPI)
    assert png_size(hist) == (1400, 450)  # inspect.plot_merge_histogram: 14 x 4.5 in at 100 dpi
    # The conftest cycles Rock, Jazz, ...: the first two clips have different classes.
    for clip_id, cls in (("tr0000", "Rock"), ("tr0001", "Jazz")):
        t, tb = len(full["train"][clip_id]), len(beat["train"][clip_id])
        assert f"clip {clip_id} (" in printed and f"-> {cls})" in printed
        assert f"stored (140, {t}); mel ({t}, 128), chroma ({t}, 12), fused ({t}, 140)" in printed
        assert f"stored (140, {tb}); mel ({tb}, 128), chroma ({tb}, 12)" in printed
    # The histogram counts come from the label files: before and after the merge.
    summary = show.merge_summary(root / "fma_genre_spectrograms")
    train = summary["class_merge"]["train"]
    assert train["before"] == {"Classical": 2, "Indie-Rock": 2, "Jazz": 2, "Pop": 2, "Punk": 2, "Rock": 2}
    assert train["after"]["Metal"] == 2 and train["after"]["Rock"] == 2
    assert train["dropped_by_merge"]["count"] == 2  # Indie-Rock


def test_show_clip_choice_and_a_set_folder_argument(tmp_path):
    root = tmp_path / "data"
    write_genre_set(root, "fma_genre_spectrograms", n_train=6, n_test=6, lengths=(50, 60))
    full, beat = show.find_sets(root / "fma_genre_spectrograms", None)
    assert full == root / "fma_genre_spectrograms" and beat is None
    clips = show.choose_clips(full, beat, "train", ["tr0002", "tr0004"])
    assert [c.record.id for c in clips] == ["tr0002", "tr0004"]
    assert [c.class_name for c in clips] == ["Pop", "Classical"]
    with pytest.raises(lab.DatasetError, match="tr0003"):  # Indie-Rock: dropped by the merge
        show.choose_clips(full, beat, "train", ["tr0000", "tr0003"])
    path = show.plot_spectrograms(clips, tmp_path / "s.png")  # no beat twin: rows left blank
    assert png_size(path) == expected_pixels(show.SPECTROGRAM_FIGSIZE, show.DPI)


# --- curves ---------------------------------------------------------------------------------

def test_curves_mark_the_best_epoch_of_the_selection_metric(tmp_path):
    wd = write_genre_run(tmp_path, "cnn_mel")
    history = json.loads((wd / "history.json").read_text())
    assert curves.best_epoch(history, "accuracy", "max") == 3
    assert curves.best_epoch(history, "loss", "min") == 3  # 1.7, then 1.75 and 2.3
    path = curves.plot_history(wd)
    assert path == wd / "curves.png"
    assert png_size(path) == expected_pixels(curves.FIGSIZE, curves.DPI)

    mt = write_multitask_run(tmp_path, "lstm_multitask")
    cfg = json.loads((mt / "config.json").read_text())
    assert curves.selection(cfg, "multitask") == ("spearman_mean", "max")
    history = json.loads((mt / "history.json").read_text())
    assert curves.best_epoch(history, "spearman_mean", "max") == 4
    assert png_size(curves.plot_history(mt)) == expected_pixels(curves.FIGSIZE, curves.DPI)


def test_curves_refuse_a_run_without_history(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.json"):
        curves.plot_history(tmp_path)


# --- latent ---------------------------------------------------------------------------------

def _title_scores(title: str) -> tuple[float, float]:
    m = re.search(r"silhouette: latent (-?\d\.\d{3}), 2-D (-?\d\.\d{3})", title)
    assert m, title
    return float(m.group(1)), float(m.group(2))


def test_silhouettes_in_the_titles_are_sklearns_on_the_same_points(tmp_path):
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    emb = clustered_latent()
    maps = latent.compute_maps(emb, ["pca", "tsne"], seed=0)
    want_latent = silhouette_score(emb["latent"].astype(np.float64), emb["labels"])
    assert want_latent > 0.5  # well separated clusters
    for m, v in maps.items():
        assert v["xy"].shape == (45, 2)
        s_lat, s_map = _title_scores(v["title"])
        assert s_lat == round(want_latent, 3)
        assert s_map == round(silhouette_score(v["xy"], emb["labels"]), 3)
    # PCA is PCA: same points as sklearn's up to the sign of each axis.
    ref = PCA(2).fit_transform(emb["latent"].astype(np.float64))
    np.testing.assert_allclose(np.abs(maps["pca"]["xy"]), np.abs(ref), rtol=1e-6, atol=1e-6)
    path = latent.plot_maps([{"name": "cnn", "emb": emb, "maps": maps}], tmp_path / "m.png")
    assert png_size(path) == expected_pixels(latent.figure_size(1, 2), latent.DPI)


def test_silhouette_is_undefined_without_genres():
    emb = clustered_latent()
    assert latent.silhouette(emb["latent"], np.zeros(45, int)) is None  # one class
    assert latent.silhouette(emb["latent"], np.arange(45)) is None      # one clip per class
    reg = dict(emb, labels=np.random.default_rng(0).uniform(size=(45, 3)), data_kind="multitask")
    maps = latent.compute_maps(reg, ["pca"])
    assert maps["pca"]["silhouette_latent"] is None
    assert "latent n/a, 2-D n/a" in maps["pca"]["title"]


def test_embed_command_reuses_saved_latents_and_compares_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    wds = [write_genre_run(runs, "cnn_mel", 0), write_genre_run(runs, "lstm_mel", 1, "lstm")]
    embs = [clustered_latent(seed=0), clustered_latent(dim=8, seed=1)]
    for wd, emb in zip(wds, embs):
        latent.save(wd, emb)
    argv = ["--reuse", "--methods", "pca,tsne"]
    for wd in wds:
        argv += ["--workdir", wd]
    assert command("embed", argv) == 0
    out = capsys.readouterr().out
    for wd, emb in zip(wds, embs):
        assert f"reusing {wd / 'latent_fma_genre_spectrograms_test.npz'}" in out
        png = wd / "latent_fma_genre_spectrograms_test.png"
        assert png_size(png) == expected_pixels(latent.figure_size(1, 2), latent.DPI)
        scores = json.loads(png.with_suffix(".json").read_text())["runs"][0]
        assert scores["feature_size"] == emb["latent"].shape[1] and scores["clips"] == 45
        from sklearn.metrics import silhouette_score

        assert scores["silhouette"]["pca"]["latent"] == pytest.approx(
            silhouette_score(emb["latent"].astype(np.float64), emb["labels"]))
    both = runs / "latent_test.png"
    assert png_size(both) == expected_pixels(latent.figure_size(2, 2), latent.DPI)
    names = [r["name"] for r in json.loads(both.with_suffix(".json").read_text())["runs"]]
    assert names == ["cnn_mel", "lstm_mel"]
    reloaded = latent.load(wds[1] / "latent_fma_genre_spectrograms_test.npz")
    np.testing.assert_array_equal(reloaded["latent"], embs[1]["latent"])
    assert list(reloaded["ids"]) == list(embs[1]["ids"]) and reloaded["split"] == "test"


def _models_ready() -> bool:
    try:
        from jaxmusic.models import build_backbone  # noqa: F401
        import jaxmusic.train  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.slow  # trains a real tiny LSTM: ~45 s on a busy 2-core machine (compiles)
@pytest.mark.skipif(not _models_ready(), reason="jaxmusic.models is not importable yet")
def test_latent_of_a_real_tiny_run_has_one_row_per_clip(tmp_path):
    from jaxmusic.config import load_config
    from jaxmusic.data import tfrecords
    from jaxmusic.train import train

    data, prepared = tmp_path / "data", tmp_path / "prepared"
    name = "fma_genre_spectrograms_beat"
    written = write_genre_set(data, name, n_train=30, n_test=10, lengths=(20, 40))
    tfrecords.prepare(data, name, prepared, tfrecords.PrepareOptions(shards=2, progress=False))
    config = load_config(REPO / "configs" / "tiny" / "lstm.py",
                         [f"--config.data.prepared={prepared}", "--config.train.epochs=1"])
    result = train(config, tmp_path / "run", progress=False)
    wd = tmp_path / "run"
    assert command("embed", ["--workdir", wd, "--methods", "pca"]) == 0
    emb = latent.load(wd / f"latent_{name}_test.npz")
    backbone = result["run"].model.backbone
    classes = list(emb["label_names"])
    # conftest cycles GENRES_FOR_TESTS over the clips; the merge drops Indie-Rock
    genre_of = {i: GENRES_FOR_TESTS[int(i[2:]) % len(GENRES_FOR_TESTS)] for i in written["test"]}
    want = {i: classes.index(lab.GENRE_MERGE[g]) for i, g in genre_of.items() if lab.GENRE_MERGE[g]}
    assert len(want) == 8
    assert sorted(emb["ids"]) == sorted(want)  # every kept clip of the split, once
    assert emb["latent"].shape == (len(want), backbone.feature_size)
    assert np.isfinite(emb["latent"]).all() and emb["latent"].std() > 0
    assert {i: int(l) for i, l in zip(emb["ids"], emb["labels"])} == want
    png = wd / f"latent_{name}_test.png"
    assert png_size(png) == expected_pixels(latent.figure_size(1, 1), latent.DPI)
    scores = json.loads(png.with_suffix(".json").read_text())["runs"][0]
    from sklearn.metrics import silhouette_score

    assert scores["silhouette"]["pca"]["latent"] == pytest.approx(
        silhouette_score(emb["latent"].astype(np.float64), emb["labels"]))


# --- report ---------------------------------------------------------------------------------

class _Checker(HTMLParser):
    """Collects tags, text, table cells and image sources; checks nesting."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.images, self.cells, self.tags = [], [], [], [], []
        self.text = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def build_runs(tmp_path) -> tuple[Path, Path, list[Path]]:
    runs = tmp_path / "runs"
    wds = [write_genre_run(runs, "cnn_mel", 0, config_name="cnn <mel> & \"co\""),
           write_genre_run(runs, "transfer/lstm_beat", 2, "lstm"),
           write_multitask_run(runs, "lstm_multitask"),
           write_genre_run(runs, "ast_unfinished", 3, "ast", evaluated=False)]
    curves.plot_history(wds[0])
    latent.save(wds[0], clustered_latent())
    emb = clustered_latent()
    row = {"name": "cnn_mel", "emb": emb, "maps": latent.compute_maps(emb, ["pca"])}
    latent.plot_maps([row], wds[0] / "latent_fma_genre_spectrograms_test.png")
    (wds[0] / "latent_fma_genre_spectrograms_test.json").write_text(
        json.dumps(latent.scores_json([row])))
    (runs / "comparison_transfer.json").write_text(json.dumps({
        "title": "transfer vs scratch", "columns": ["init", "spearman_mean"],
        "rows": [["scratch", 0.31234], ["from cnn_mel", 0.38765]],
        "notes": "Validation Spearman (held out from train)."}))
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "results.json").write_text(json.dumps([
        {"model": "lstm", "input": "beat fused", "batch_size": 32, "framework": "jax",
         "variant": "scan", "train_samples_per_s": 1234.5678, "infer_samples_per_s": 4567.891,
         "compile_s": 3.21, "peak_mem_mb": 512.0, "mfu": 0.0123},
        {"model": "lstm", "input": "beat fused", "batch_size": 32, "framework": "torch",
         "variant": "padded", "train_samples_per_s": 987.654, "infer_samples_per_s": 2345.6,
         "compile_s": None, "peak_mem_mb": 640.5, "mfu": 0.0099}]))
    small_png(bench / "throughput.png", 7)
    return runs, bench, wds


def test_report_holds_every_run_table_and_picture(tmp_path):
    runs, bench, wds = build_runs(tmp_path)
    out = tmp_path / "report.html"
    assert command("report", [runs, "--out", out, "--bench", bench]) == 0
    page = out.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "script" not in checker.tags  # no JavaScript
    # every run, by name, in the summary (a link to its section) and as a section
    for name in ("cnn_mel", "transfer/lstm_beat", "lstm_multitask", "ast_unfinished"):
        assert name in checker.cells
        assert f'id="{report.anchor_id(name)}"' in page and f'href="#{report.anchor_id(name)}"' in page
    cells = set(checker.cells)
    # genre tables: every split's scores and every per-class value, as in metrics.json
    for wd in wds[:2]:
        m = json.loads((wd / "metrics.json").read_text())
        for rep in [m["validation"], *m["test"].values()]:
            for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1",
                        "weighted_f1", "loss"):
                assert f"{rep[key]:.3f}" in cells, key
            for c, v in rep["per_class"].items():
                assert {c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}",
                        str(v["support"])} <= cells
        own = m["test"]["fma_genre_spectrograms"]
        row = checker.cells[checker.cells.index(wd.relative_to(runs).as_posix()):][:12]
        assert row[7:10] == ["test accuracy", f"{own['accuracy']:.3f}",
                             f"{own['macro_f1']:.3f}"]
    # regression tables
    m = json.loads((wds[2] / "metrics.json").read_text())
    for metric in ("spearman", "pearson", "mse"):
        for axis, v in m["validation"][metric].items():
            assert f"{v:.3f}" in cells, (metric, axis)
    assert f"{m['spearman_mean']:.3f}" in cells
    # the unevaluated run: best validation accuracy from its history
    row = checker.cells[checker.cells.index("ast_unfinished"):][:12]
    assert row[7:9] == ["best validation accuracy (history)", "0.500"]
    # comparison tables (the run's own and the loose one) and the benchmark table
    assert {"0.412", "0.457", "0.312", "0.388", "scratch", "from cnn_mel"} <= cells
    text = "".join(checker.text)
    assert "multitask vs single-task <validation Spearman>" in text and "transfer vs scratch" in text
    assert "Validation Spearman (held out from train)." in text and "from comparison_transfer.json" in text
    assert {"1234.568", "4567.891", "3.210", "0.012", "987.654", "torch", "padded"} <= cells
    # escaping: the config name with markup shows as text
    assert 'cnn &lt;mel&gt; &amp; &quot;co&quot;' in page and "cnn <mel>" not in page
    assert "cnn <mel> & \"co\"" in text
    # pictures: every PNG inlined byte for byte, nothing fetched
    pngs = sorted(runs.rglob("*.png")) + sorted(bench.glob("*.png"))
    assert len(pngs) == 7  # cnn_mel: curves, 2 confusions, latent; lstm_beat: 2; bench: 1
    plot = [img for img in checker.images
            if img.get("alt", "").startswith("classic and deep runs side by side")]
    assert len(plot) == 1                   # the comparison plot the report draws itself
    srcs = [img["src"] for img in checker.images if img not in plot]
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert decoded == {p.read_bytes() for p in pngs}
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    # latent silhouettes of the run
    scores = json.loads((wds[0] / "latent_fma_genre_spectrograms_test.json").read_text())
    assert f"{scores['runs'][0]['silhouette']['pca']['latent']:.3f}" in cells


def test_report_without_runs_or_benchmarks_says_so(tmp_path):
    page = report.build_report(tmp_path, bench=tmp_path / "missing")
    assert "no runs found" in page and "benchmarks" not in page
