"""`jaxmusic report RUNS_DIR --out report.html`: every run on one page.

The page is a single self-contained HTML file: CSS inline, every picture
inlined as a ``data:image/png;base64`` URI, no JavaScript, nothing fetched; it
opens from disk in any browser and can be mailed as is.

Contents, top to bottom:

* a summary table, one row per run (any folder under RUNS_DIR holding a
  ``config.json``) with its headline metric: the test accuracy and macro F1 on
  the run's own set for genre runs, the validation Spearman mean for
  regression/multitask runs (the lab gives no test labels);
* comparison tables (``comparison*.json``: ``{"title", "columns", "rows"}``,
  e.g. transfer vs scratch, multitask vs single-task) found outside run folders,
  and figures lying directly in RUNS_DIR (e.g. the latent comparison);
* per run: key settings and the full config (collapsible), training summary,
  results (genre: accuracy, macro/micro/weighted averages per split and test
  set, per-class tables; regression: Spearman/Pearson/MSE per axis), its own
  comparison tables, silhouettes of its latent maps, and its pictures (curves,
  confusion matrices, latent maps, others);
* the benchmark table (``--bench DIR``: ``results.json``) and its plots.

All text from the files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from jaxmusic.viz import curves, use_agg

BENCH_COLUMNS = ("model", "input", "batch_size", "framework", "variant", "train_samples_per_s",
                 "infer_samples_per_s", "compile_s", "peak_mem_mb", "mfu")
GENRE_COLUMNS = (("count", "clips"), ("accuracy", "accuracy"),
                 ("macro_precision", "macro P"), ("macro_recall", "macro R"),
                 ("macro_f1", "macro F1"), ("micro_f1", "micro F1"),
                 ("weighted_f1", "weighted F1"), ("loss", "loss"))
SKIP_DIRS = {"checkpoints", "tensorboard"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d232b; background: #f6f7f9; line-height: 1.4; }
main { max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { margin: 0 0 .3rem; } h2 { margin-top: 2.5rem; border-bottom: 2px solid #d0d5dc;
     padding-bottom: .2rem; } h3 { margin: 1.4rem 0 .5rem; } h4 { margin: 1rem 0 .3rem; }
section.run { background: #fff; border: 1px solid #dde1e6; border-radius: 6px;
              padding: .2rem 1.4rem 1.2rem; margin-top: 1.5rem; }
section.run h2 { margin-top: 1rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; background: #fff; }
th, td { border: 1px solid #d0d5dc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; } tbody tr:nth-child(even) { background: #f8f9fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.flex { display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: flex-start; }
figure { margin: .5rem 0; background: #fff; } figcaption { font-size: .85rem; color: #555; }
img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
pre { background: #f2f4f7; padding: .6rem; overflow-x: auto; font-size: .8rem; }
details summary { cursor: pointer; color: #2a5db0; }
.muted { color: #66707c; } .warn { color: #a33; }
a { color: #2a5db0; }
.scroll { overflow-x: auto; max-width: 100%; }
table.summary, table.bench { font-size: .82rem; }
"""


# --- small HTML helpers -----------------------------------------------------------------

def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 3) -> str:
    """A cell's text: floats to ``digits`` decimals, ints as they are."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def setting(value) -> str:
    """A config value as written in a config file: ``0.0003``, ``[16, 32]``, ``True``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(setting(v) for v in value) + "]"
    return str(value)


def cell(value, digits: int = 3, tag: str = "td") -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = ' class="num"' if numeric else ""
    return f"<{tag}{cls}>{esc(fmt(value, digits))}</{tag}>"


def table(headers, rows, caption: str | None = None, cls: str | None = None) -> str:
    out = [f'<table{f" class={chr(34)}{esc(cls)}{chr(34)}" if cls else ""}>']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(c if isinstance(c, Raw) else cell(c) for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


class Raw(str):
    """A ready-made (already escaped) table cell."""


def link_cell(text: str, anchor: str) -> Raw:
    return Raw(f'<td><a href="#{esc(anchor)}">{esc(text)}</a></td>')


def image(path: Path, caption: str | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = caption or path.name
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(cap)}">'
            f"<figcaption>{esc(cap)}</figcaption></figure>")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def anchor_id(name: str) -> str:
    return "run-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


# --- runs -------------------------------------------------------------------------------------

def find_runs(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` included) holding a ``config.json``."""
    root = Path(root)
    runs = [p.parent for p in root.rglob("config.json")
            if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])]
    return sorted(set(runs), key=lambda p: str(p.relative_to(root)))


class RunInfo:
    """What the report shows of one run directory (missing files are None)."""

    def __init__(self, root: Path, workdir: Path):
        self.dir = workdir
        rel = workdir.relative_to(root)
        self.name = str(rel) if str(rel) != "." else workdir.resolve().name
        self.anchor = anchor_id(self.name)
        self.errors: list[str] = []
        self.config = self._load("config.json") or {}
        self.info = self._load("run.json") or {}
        self.history = self._load("history.json") or []
        self.metrics = self._load("metrics.json")
        self.task = self.info.get("task") or (self.metrics or {}).get("task") \
            or self.config.get("task", "genre")
        self.model = self.info.get("model") or self.config.get("model", {}).get("name", "?")
        self.set = self.info.get("set") or self.config.get("data", {}).get("set", "?")
        self.view = self.info.get("view") or self.config.get("data", {}).get("view", "?")
        # "classic": a `jaxmusic baselines` model on handcrafted features; else a deep run.
        self.kind = self.info.get("kind") or self.config.get("kind") or "deep"

    @property
    def seeds(self) -> dict | None:
        """``metrics.json``'s ``seeds``: mean and std of the headline metrics over seeds."""
        s = (self.metrics or {}).get("seeds")
        return s if isinstance(s, dict) and s.get("count") else None

    def _load(self, name: str):
        path = self.dir / name
        if not path.exists():
            return None
        try:
            return read_json(path)
        except (OSError, ValueError) as e:
            self.errors.append(f"{name}: unreadable ({e})")
            return None

    @property
    def selection(self) -> tuple[str, str]:
        return curves.selection(self.config, self.task)

    def best_validation(self):
        """(epoch, value) of the best validation selection metric in history.json."""
        metric, mode = self.selection
        best = curves.best_epoch(self.history, metric, mode)
        if best is None:
            return None, None
        rec = next(h for h in self.history if h["epoch"] == best)
        return best, rec["validation"][metric]

    def headline(self) -> dict:
        """{"metric", "value", "macro_f1", "validation"} for the summary table."""
        metric, _ = self.selection
        m = self.metrics or {}
        best_epoch, best_val = self.best_validation()
        val_report = m.get("validation") or {}
        validation = _dotted(val_report, metric) if val_report else best_val
        out = {"metric": "–", "value": None, "macro_f1": None, "validation": validation,
               "validation_metric": metric, "over_seeds": None,
               "best_epoch": m.get("best_epoch") or best_epoch}
        seeds = self.seeds
        if seeds:
            part = seeds.get("test") or seeds.get("validation") or {}
            key = "macro_f1" if self.task == "genre" else "spearman_mean"
            stat = part.get(key) or {}
            if stat.get("mean") is not None:
                label = "test macro F1" if self.task == "genre" and seeds.get("test") else \
                    "validation " + ("macro F1" if self.task == "genre" else "Spearman mean")
                out["over_seeds"] = (f"{label} {stat['mean']:.3f} ± {stat.get('std', 0):.3f} "
                                     f"({seeds['count']} seeds)")
        if self.task == "genre":
            tests = m.get("test") or {}
            own = self.set if self.set in tests else next(iter(tests), None)
            if own is not None:
                label = "test accuracy" + ("" if own == self.set else f" ({own})")
                out.update(metric=label, value=tests[own].get("accuracy"),
                           macro_f1=tests[own].get("macro_f1"))
        elif m.get("spearman_mean") is not None:
            out.update(metric="validation Spearman mean", value=m["spearman_mean"])
        if out["value"] is None and best_val is not None:
            out.update(metric=f"best validation {metric} (history)", value=best_val)
        return out


def _dotted(d: dict, key: str):
    value = d
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return d.get(key) if isinstance(d, dict) else None
        value = value[part]
    return value if isinstance(value, (int, float)) else None


# --- sections -----------------------------------------------------------------------------------

def summary_table(runs: list[RunInfo]) -> str:
    rows = []
    for r in runs:
        h = r.headline()
        rows.append([link_cell(r.name, r.anchor), r.task, r.model, r.set, r.view,
                     len(r.history) if r.kind != "classic" else None, h["best_epoch"],
                     h["metric"], h["value"], h["macro_f1"], h["validation_metric"],
                     h["validation"], r.kind, h["over_seeds"]])
    return ('<div class="scroll">'
            + table(["run", "task", "model", "set", "view", "epochs", "best epoch",
                     "headline metric", "value", "macro F1", "selection metric",
                     "validation", "kind", "over seeds"], rows, cls="summary")
            + '</div><p class="muted">headline: the test accuracy on the run\'s own set for '
            "genre runs, the validation Spearman mean for regression runs; validation: the "
            "selection metric of the evaluated (best) checkpoint. Classic runs (`jaxmusic "
            "baselines`, handcrafted features) report seed 0 here, and mean ± sample std over "
            "their seeds under \"over seeds\".</p>")


def comparison_figure(runs: list[RunInfo]) -> str:
    """One bar chart of every scored run, classic and deep side by side: test accuracy
    and macro F1 for genre runs (error bars: std over seeds where there are seeds),
    the Spearman mean for regression runs."""
    groups = {"genre": [], "regression": []}
    for r in runs:
        h = r.headline()
        if h["value"] is None:
            continue
        seeds = r.seeds or {}
        if r.task == "genre":
            part = seeds.get("test") or {}
            acc, f1 = part.get("accuracy") or {}, part.get("macro_f1") or {}
            groups["genre"].append((r.name, r.kind,
                                    [acc.get("mean", h["value"]), f1.get("mean", h["macro_f1"])],
                                    [acc.get("std", 0.0), f1.get("std", 0.0)]))
        else:
            stat = (seeds.get("validation") or {}).get("spearman_mean") or {}
            groups["regression"].append((r.name, r.kind, [stat.get("mean", h["value"])],
                                         [stat.get("std", 0.0)]))
    panels = [(k, v) for k, v in groups.items() if v]
    if not panels:
        return ""
    plt = use_agg()
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(max(6.0, 0.5 * sum(len(v) for _, v in panels) + 3), 4.8))
    for ax, (task, items) in zip(axes[0], panels):
        labels = ["test accuracy", "test macro F1"] if task == "genre" else ["Spearman mean"]
        x = np.arange(len(items))
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            vals = [v[j] if v[j] is not None else np.nan for _, _, v, _ in items]
            errs = [e[j] or 0.0 for _, _, _, e in items]
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, vals, width, yerr=errs, capsize=3,
                   label=label)
        ax.set_xticks(x, [f"{n}{' (classic)' if k == 'classic' else ''}" for n, k, _, _ in items],
                      rotation=60, ha="right", fontsize=7)
        ax.set_title("genre runs" if task == "genre" else "regression runs (validation)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = ("classic and deep runs side by side (error bars: sample std over seeds, where a "
           "run has seeds)")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(cap)}">'
            f"<figcaption>{esc(cap)}</figcaption></figure>")


def key_settings(r: RunInfo) -> str:
    c = r.config
    if r.kind == "classic":
        return classic_settings(r)
    data, model, train, loss = (c.get(k, {}) for k in ("data", "model", "train", "loss"))
    model_args = ", ".join(f"{k}={setting(v)}" for k, v in model.items() if k != "name")
    rows = [("name", c.get("name", r.name)), ("task", r.task),
            ("model", f"{model.get('name', r.model)}" + (f" ({model_args})" if model_args else "")),
            ("data", f"{data.get('set', r.set)}, view {data.get('view', r.view)}"),
            ("max length (frames)", setting(r.info.get("max_length", data.get("max_length")))),
            ("features per frame", setting(r.info.get("num_features")))]
    for key, label in (("batch_size", "batch size"), ("epochs", "epochs (max)"),
                       ("optimizer", "optimizer"), ("learning_rate", "learning rate"),
                       ("schedule", "schedule"), ("weight_decay", "weight decay"),
                       ("patience", "early-stopping patience"), ("dtype", "compute dtype"),
                       ("class_weights", "class weights"), ("overfit_batches", "overfit batches"),
                       ("init_from", "initialised from"), ("freeze_backbone", "backbone frozen")):
        if key in train and train[key] not in ("", 0, False, None) or key in (
                "batch_size", "epochs", "optimizer", "learning_rate"):
            rows.append((label, setting(train.get(key))))
    metric, mode = r.selection
    rows.append(("checkpoint selection", f"validation {metric} ({mode})"))
    if r.task != "genre" and loss:
        rows.append(("loss", loss.get("name")))
        if r.task == "multitask":
            rows.append(("task weights", setting(loss.get("task_weights"))))
    if r.metrics:
        rows.append(("evaluated checkpoint step", setting(r.metrics.get("checkpoint_step"))))
    if r.history:
        t = sum(h.get("time_s", 0.0) for h in r.history)
        rates = [h["samples_per_s"] for h in r.history if h.get("samples_per_s")]
        rows.append(("training", f"{len(r.history)} epochs, {t:.1f} s"
                     + (f", {sum(rates) / len(rates):.1f} samples/s (mean)" if rates else "")))
    out = [table(["setting", "value"], rows)]
    out.append("<details><summary>full config (config.json)</summary><pre>"
               + esc(json.dumps(c, indent=2, sort_keys=True)) + "</pre></details>")
    return "\n".join(out)


def classic_settings(r: RunInfo) -> str:
    c, m = r.config, r.metrics or {}
    b = c.get("baseline", {})
    params = ", ".join(f"{k}={setting(v)}" for k, v in c.get("model", {}).items() if k != "name")
    rows = [("name", c.get("name", r.name)), ("kind", "classic (jaxmusic baselines)"),
            ("task", r.task), ("model", r.model + (f" ({params})" if params else "")),
            ("data", f"{r.set}, {b.get('features', '?')} handcrafted features per clip"
             + (" (with audio features)" if b.get("audio_features") else "")),
            ("seeds", setting(b.get("seeds"))),
            ("validation fraction", setting(b.get("validation_fraction"))),
            ("grid search", f"yes, {b.get('folds')} folds" if b.get("search") else "no")]
    if m.get("voting_members"):
        rows.append(("voting members (per seed)", "; ".join(", ".join(v)
                                                           for v in m["voting_members"])))
    if m.get("fit_s") is not None:
        rows.append(("fit time, all seeds (s)", setting(m["fit_s"])))
    return table(["setting", "value"], rows) + (
        "<details><summary>full config (config.json)</summary><pre>"
        + esc(json.dumps(c, indent=2, sort_keys=True)) + "</pre></details>")


def seeds_table(m: dict) -> str:
    s = m.get("seeds") or {}
    rows = []
    for part in ("validation", "test"):
        for k, stat in (s.get(part) or {}).items():
            rows.append([part, k, stat.get("mean"), stat.get("std"),
                         ", ".join(fmt(v) for v in stat.get("values", []))])
    if not rows:
        return ""
    return (f"<h4>over {esc(s.get('count'))} seeds (mean, sample std)</h4>"
            + table(["split", "metric", "mean", "std", "per seed"], rows))


def genre_results(m: dict) -> str:
    splits = []
    if m.get("validation"):
        splits.append(("validation", m["validation"]))
    for name, rep in (m.get("test") or {}).items():
        splits.append((f"test: {name}", rep))
    if not splits:
        return '<p class="muted">metrics.json has no scores.</p>'
    out = [table(["split"] + [label for _, label in GENRE_COLUMNS],
                 [[name] + [rep.get(k) for k, _ in GENRE_COLUMNS] for name, rep in splits])]
    per_class = []
    for name, rep in splits:
        if rep.get("per_class"):
            rows = [[c, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support")]
                    for c, v in rep["per_class"].items()]
            per_class.append(f"<div><h4>per class, {esc(name)}</h4>"
                             + table(["class", "precision", "recall", "F1", "support"], rows)
                             + "</div>")
    if per_class:
        out.append('<div class="flex">' + "\n".join(per_class) + "</div>")
    return "\n".join(out)


def regression_results(m: dict) -> str:
    out = []
    blocks = []
    if m.get("validation"):
        blocks.append(("validation (held out from train; the lab gives no test labels)",
                       m["validation"]))
    for name, rep in (m.get("test") or {}).items():
        blocks.append((f"test: {name}", rep))
    for title, rep in blocks:
        axes = list((rep.get("spearman") or {}).keys())
        if not axes:
            continue
        rows = []
        for metric in ("spearman", "pearson", "mse"):
            if metric in rep:
                vals = [rep[metric].get(a) for a in axes]
                finite = [v for v in vals if isinstance(v, (int, float))]
                mean = rep.get("spearman_mean") if metric == "spearman" else (
                    sum(finite) / len(finite) if finite else None)
                rows.append([metric] + vals + [mean])
        out.append(f"<h4>{esc(title)}: {esc(fmt(rep.get('count')))} clips</h4>")
        out.append(table(["metric"] + axes + ["mean"], rows))
    if m.get("predictions"):
        files = ", ".join(Path(p).name for p in m["predictions"].values())
        out.append(f'<p class="muted">test predictions written to: {esc(files)}</p>')
    return "\n".join(out) or '<p class="muted">metrics.json has no scores.</p>'


def comparison_table(path: Path, root: Path | None = None) -> str:
    try:
        c = read_json(path)
        columns, rows = list(c["columns"]), [list(r) for r in c["rows"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f'<p class="warn">{esc(path.name)}: unreadable comparison table ({esc(e)})</p>'
    title = c.get("title") or path.stem
    out = f"<h4>{esc(title)}</h4>"
    if root is not None:
        out += f'<p class="muted">from {esc(path.relative_to(root))}</p>'
    out += table(columns, rows)
    notes = c.get("notes") or c.get("note")
    if notes:
        out += f'<p class="muted">{esc(notes)}</p>'
    return out


def latent_scores(path: Path) -> str:
    try:
        data = read_json(path)
        runs = data["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    rows = []
    for r in runs:
        for method, s in r.get("silhouette", {}).items():
            rows.append([r.get("name"), f"{r.get('set')}/{r.get('split')}", r.get("clips"),
                         r.get("feature_size"), method, s.get("latent"), s.get("map")])
    if not rows:
        return ""
    return (f"<h4>latent space silhouettes ({esc(path.stem)})</h4>"
            + table(["run", "set/split", "clips", "latent size", "method",
                     "silhouette (latent)", "silhouette (2-D)"], rows))


def ordered_pictures(folder: Path) -> list[Path]:
    pngs = sorted(folder.glob("*.png"))

    def rank(p: Path) -> tuple:
        n = p.name
        order = 0 if n == "curves.png" else 1 if n.startswith("confusion") else \
            2 if n.startswith("latent") else 3
        return order, n
    return sorted(pngs, key=rank)


def run_section(r: RunInfo) -> str:
    out = [f'<section class="run" id="{esc(r.anchor)}">',
           f"<h2>{esc(r.name)} <span class=\"muted\">({esc(r.model)}, {esc(r.task)}, "
           f"{esc(r.set)}, {esc(r.view)})</span></h2>"]
    for err in r.errors:
        out.append(f'<p class="warn">{esc(err)}</p>')
    out.append("<h3>configuration</h3>" + key_settings(r))
    out.append("<h3>results</h3>")
    if r.metrics:
        out.append(genre_results(r.metrics) if r.task == "genre"
                   else regression_results(r.metrics))
        out.append(seeds_table(r.metrics))
    else:
        best, value = r.best_validation()
        msg = "not evaluated yet (no metrics.json)"
        if best is not None:
            msg += f"; best validation {r.selection[0]} {fmt(value)} at epoch {best}"
        out.append(f'<p class="muted">{esc(msg)}</p>')
    comparisons = sorted(r.dir.glob("comparison*.json"))
    if comparisons:
        out.append("<h3>comparisons</h3>" + "\n".join(comparison_table(p) for p in comparisons))
    latent = [latent_scores(p) for p in sorted(r.dir.glob("latent_*.json"))]
    if any(latent):
        out.append("<h3>latent space</h3>" + "\n".join(latent))
    pictures = ordered_pictures(r.dir)
    if pictures:
        out.append("<h3>pictures</h3>" + "\n".join(image(p) for p in pictures))
    out.append("</section>")
    return "\n".join(out)


def benchmark_section(bench: Path | None) -> str:
    if bench is None or not bench.is_dir():
        return ""
    out = ['<section id="benchmarks"><h2>benchmarks</h2>']
    results = bench / "results.json"
    if results.exists():
        try:
            records = read_json(results)
            if isinstance(records, dict):
                records = records.get("results", [])
            extra = [k for rec in records for k in rec if k not in BENCH_COLUMNS]
            columns = [c for c in BENCH_COLUMNS if any(c in rec for rec in records)]
            columns += list(dict.fromkeys(extra))
            rows = [[rec.get(c) if not isinstance(rec.get(c), (dict, list))
                     else json.dumps(rec.get(c)) for c in columns] for rec in records]
            out.append(f'<p class="muted">{esc(len(records))} records from {esc(results)}</p>')
            out.append('<div class="scroll">' + table(columns, rows, cls="bench") + "</div>")
        except (OSError, ValueError, TypeError, AttributeError) as e:
            out.append(f'<p class="warn">{esc(results)}: unreadable ({esc(e)})</p>')
    for p in sorted(bench.glob("*.png")):
        out.append(image(p))
    out.append("</section>")
    return "\n".join(out) if len(out) > 2 else ""


def build_report(runs_dir: str | Path, bench: str | Path | None = None,
                 title: str | None = None) -> str:
    root = Path(runs_dir)
    runs = [RunInfo(root, d) for d in find_runs(root)]
    run_dirs = {r.dir.resolve() for r in runs}
    title = title or f"jaxmusic report: {root.resolve().name}"
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">{len(runs)} run(s) under {esc(root)}. Numbers are rounded to '
            "3 decimals; genre runs are scored on the test split of their set and its "
            "full/beat twin, regression runs on their held-out validation split.</p>"]
    body.append("<h2>summary</h2>")
    body.append(summary_table(runs) if runs else
                '<p class="warn">no runs found (no folder with config.json)</p>')
    body.append(comparison_figure(runs))
    loose_comparisons = [p for p in sorted(root.rglob("comparison*.json"))
                         if p.parent.resolve() not in run_dirs
                         and not SKIP_DIRS.intersection(p.relative_to(root).parts)]
    if loose_comparisons:
        body.append("<h2>comparisons</h2>")
        body += [comparison_table(p, root) for p in loose_comparisons]
    if root.resolve() not in run_dirs:
        figures = sorted(root.glob("*.png"))
        scores = [latent_scores(p) for p in sorted(root.glob("latent_*.json"))]
        if figures or any(scores):
            body.append("<h2>figures</h2>")
            body += [s for s in scores if s]
            body += [image(p) for p in figures]
    body += [run_section(r) for r in runs]
    body.append(benchmark_section(Path(bench) if bench else None))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(b for b in body if b) + "\n</main>\n</body>\n</html>\n")
