"""`jaxmusic show`, `embed`, `report`: pictures, latent maps, the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

from jaxmusic.data import inspect, lab
from jaxmusic.viz import latent, report, show


def add_arguments(parser, command: str) -> None:
    if command == "show":
        parser.add_argument("data_dir", metavar="DATA_DIR",
                            help="the lab root (holding the sets), or a genre set folder")
        parser.add_argument("--set", dest="set_name", default=None,
                            help="genre set under DATA_DIR (default fma_genre_spectrograms)")
        parser.add_argument("--split", default="train", choices=lab.SPLITS)
        parser.add_argument("--ids", nargs=2, metavar="ID", help="the two clip ids to show")
        parser.add_argument("--out", help="folder for the PNGs (default DATA_DIR/figures)")
        parser.add_argument("--sr", type=int, default=show.SAMPLE_RATE, help="sample rate of the features")
        parser.add_argument("--hop", type=int, default=show.HOP_LENGTH, help="hop length of the features")
    elif command == "embed":
        parser.add_argument("--workdir", action="append", required=True,
                            help="a run directory (repeat to compare runs side by side)")
        parser.add_argument("--split", "--set", dest="split", default="test",
                            help="split to embed: test (default), validation or train")
        parser.add_argument("--prepared-set", help="embed this prepared set (under the run's "
                            "data.prepared root) instead of the run's own, e.g. its beat twin")
        parser.add_argument("--methods", default=",".join(latent.METHODS),
                            help="comma-separated, from pca,tsne,umap (default all)")
        parser.add_argument("--out", help="the side-by-side figure (rows: runs); default with "
                            "several runs: latent_<split>.png beside the first run directory")
        parser.add_argument("--reuse", action="store_true",
                            help="reuse a run's saved latent_<set>_<split>.npz if present")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--seed", type=int, default=0)
    else:  # report
        parser.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run directories")
        parser.add_argument("--out", default="report.html", help="the HTML file (default report.html)")
        parser.add_argument("--bench", default="benchmarks",
                            help="benchmark folder with results.json and PNGs (default ./benchmarks; "
                            "skipped when missing)")
        parser.add_argument("--title", help="page title")


def run(args, command: str) -> int:
    return {"show": _show, "embed": _embed, "report": _report}[command](args)


def _show(args) -> int:
    data_dir = Path(args.data_dir)
    out = Path(args.out) if args.out else data_dir / "figures"
    full, beat = show.find_sets(data_dir, args.set_name)
    clips = show.choose_clips(full, beat, args.split, args.ids)
    for line in show.shape_lines(clips):
        print(line)
    spectro = show.plot_spectrograms(clips, out / "spectrograms.png", args.sr, args.hop)
    print(f"spectrograms: {spectro}")
    hist = inspect.plot_merge_histogram(show.merge_summary(full), out / "class_histogram.png")
    print(f"class histogram: {hist}")
    return 0


def _embed(args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in latent.METHODS]
    if unknown or not methods:
        raise SystemExit(f"jaxmusic embed: --methods takes {','.join(latent.METHODS)}, got {args.methods}")
    note = ""
    if "umap" in methods and not latent.umap_available():
        methods.remove("umap")
        note = "UMAP left out: umap-learn is not installed (pip install 'jaxmusic[viz]')"
        print(f"embed: {note}")
    rows = []
    for wd in map(Path, args.workdir):
        emb = None
        if args.reuse:
            cfg = json.loads((wd / "config.json").read_text(encoding="utf-8"))
            cached = latent.npz_path(wd, args.prepared_set or cfg["data"]["set"], args.split)
            if cached.exists():
                emb = latent.load(cached)
                print(f"{wd}: reusing {cached}")
        if emb is None:
            emb = latent.extract(wd, args.split, args.prepared_set, args.batch_size)
            print(f"{wd}: {len(emb['latent'])} clips of {emb['set']}/{args.split}, "
                  f"latent size {emb['latent'].shape[1]} -> {latent.save(wd, emb)}")
        row = {"name": latent.run_name(wd), "emb": emb,
               "maps": latent.compute_maps(emb, methods, args.seed)}
        rows.append(row)
        stem = wd / f"latent_{emb['set']}_{emb['split']}"
        latent.plot_maps([row], stem.with_suffix(".png"), note)
        stem.with_suffix(".json").write_text(json.dumps(latent.scores_json([row]), indent=2) + "\n")
        for m, v in row["maps"].items():
            print(f"  {latent.METHOD_TITLES[m]:<6} silhouette latent "
                  f"{latent.fmt_score(v['silhouette_latent'])}, 2-D {latent.fmt_score(v['silhouette_map'])}")
        print(f"  map: {stem.with_suffix('.png')}")
    if len(rows) > 1 or args.out:
        out = Path(args.out) if args.out else Path(args.workdir[0]).parent / f"latent_{args.split}.png"
        latent.plot_maps(rows, out, note)
        out.with_suffix(".json").write_text(json.dumps(latent.scores_json(rows), indent=2) + "\n")
        print(f"side by side: {out}")
    return 0


def _report(args) -> int:
    root = Path(args.runs_dir)
    if not root.is_dir():
        raise SystemExit(f"jaxmusic report: {root} is not a folder")
    page = report.build_report(root, args.bench, args.title)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    n = len(report.find_runs(root))
    print(f"report: {out} ({n} run{'s' if n != 1 else ''}, {len(page) / 1e6:.1f} MB)")
    return 0
