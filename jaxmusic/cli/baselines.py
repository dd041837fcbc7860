"""`jaxmusic baselines`: classic models on handcrafted features, as run directories."""

from __future__ import annotations

import os

# XGBoost and LightGBM run OpenMP threads; on a shared CPU spinning threads cost
# more than they give (10x slower fits were seen on a busy 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from jaxmusic.baselines import experiment  # noqa: E402
from jaxmusic.baselines import models as M  # noqa: E402
from jaxmusic.data.lab import DatasetError  # noqa: E402


def add_arguments(parser, command: str = "baselines") -> None:
    parser.add_argument("--source", required=True, help="data root (the lab's data/ folder)")
    parser.add_argument("--set", dest="set_name", required=True,
                        help="set name under --source, e.g. fma_genre_spectrograms_beat")
    parser.add_argument("--workdir", required=True,
                        help="output folder: one run directory per model, baselines.json")
    parser.add_argument("--models",
                        help="comma-separated (default: all of the set's kind): genre "
                        + ",".join(M.CLASSIFIERS) + "; multitask " + ",".join(M.REGRESSORS))
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeded train/validation splits (mean ± std over them; default 5)")
    parser.add_argument("--search", action="store_true",
                        help="grid search with group-aware k-fold CV, per seed on that seed's train part")
    parser.add_argument("--folds", type=int, default=3, help="CV folds of --search (default 3)")
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes reading features / threads of the tree models")
    parser.add_argument("--no-audio-features", action="store_true",
                        help="ignore audio features kept by `jaxmusic features --audio-features`")
    parser.add_argument("--quiet", action="store_true")


def run(args, command: str = "baselines") -> int:
    names = [m for m in (args.models or "").split(",") if m.strip()] or None
    opts = experiment.Options(models=names, seeds=args.seeds, search=args.search,
                              folds=args.folds, validation_fraction=args.validation_fraction,
                              jobs=max(1, args.jobs or os.cpu_count() or 1),
                              use_audio=not args.no_audio_features, progress=not args.quiet)
    try:
        summary = experiment.run_baselines(args.source, args.set_name, args.workdir, opts,
                                           log=(lambda *a: None) if args.quiet else print)
    except ValueError as e:          # unknown model names (DatasetError: cli.main says it)
        if isinstance(e, DatasetError):
            raise
        raise SystemExit(f"jaxmusic baselines: error: {e}")
    c = summary["comparison"]
    print(c["title"])
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in c["rows"]])
              for i, h in enumerate(c["columns"])]
    for row in [c["columns"]] + c["rows"]:
        print("  " + "  ".join(("" if v is None else str(v)).ljust(w) for v, w in zip(row, widths)))
    print(f"{summary['total_s']:.1f} s in all ({summary['features_s']:.1f} s features); "
          f"run directories and {experiment.SUMMARY_NAME} in {args.workdir}")
    return 0
