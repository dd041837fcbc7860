"""`jaxmusic sample-data`, `prepare`, `inspect`: the data layer's commands."""

from __future__ import annotations

import json
from pathlib import Path

from jaxmusic.data import inspect, lab, sample, tfrecords


def add_arguments(parser, command: str) -> None:
    if command == "sample-data":
        parser.add_argument("out", help="output folder (the lab's data/ root)")
        parser.add_argument("--size", choices=sample.SIZES, default="small",
                            help="tiny: ~200+80 clips for tests; small: demo (~1000); full: real counts")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--workers", type=int, default=None,
                            help="processes (default: up to 2; the output is the same for any number)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace existing set folders not written by sample-data")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
    elif command == "prepare":
        parser.add_argument("--source", required=True, help="lab data root (holds the set folders)")
        parser.add_argument("--set", dest="sets", action="append", required=True,
                            help="set name, e.g. fma_genre_spectrograms (repeat for several)")
        parser.add_argument("--out", required=True, help="output root; shards go to OUT/<set>/")
        parser.add_argument("--shards", type=int, default=4, help="shards per split (default 4)")
        parser.add_argument("--validation-fraction", type=float, default=0.2)
        parser.add_argument("--seed", type=int, default=0, help="split seed")
        parser.add_argument("--folds", type=int, default=0,
                            help="k-fold cross-validation: cut train into k folds (overrides "
                                 "--validation-fraction)")
        parser.add_argument("--fold", type=int, default=0, help="with --folds: the validation fold")
        parser.add_argument("--dtype", choices=sorted(tfrecords.STORE_DTYPES), default="float16",
                            help="stored feature dtype (default float16)")
        parser.add_argument("--view", choices=sorted(lab.VIEWS), default="fused",
                            help="feature columns to store (default fused: mel and chroma)")
        parser.add_argument("--skip-bad", action="store_true",
                            help="skip bad items, recording each with its reason in the manifest")
        parser.add_argument("--no-group-split", action="store_true",
                            help="ignore train_groups.txt when splitting")
        parser.add_argument("--quiet", action="store_true")
    else:  # inspect
        parser.add_argument("path", help="a lab set folder, or a prepared folder (with manifest.json)")
        parser.add_argument("--plot", help="write the class histograms before/after the merge here "
                            "(default: <path>/class_histogram.png for genre sets)")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--verify", action="store_true",
                            help="prepared folder: check every shard's sha256 against the manifest "
                                 "(by default: sizes always, sha256 on the first open)")
        parser.add_argument("--quiet", action="store_true")


def run(args, command: str) -> int:
    if command == "sample-data":
        return _sample_data(args)
    if command == "prepare":
        return _prepare(args)
    return _inspect(args)


def _sample_data(args) -> int:
    s = sample.generate(args.out, size=args.size, seed=args.seed, progress=not args.quiet,
                        workers=args.workers, overwrite=args.overwrite)
    print(f"wrote sample data ({s['size']}, seed {s['seed']}) to {s['out']} "
          f"in {s['seconds']:.1f} s ({s['workers']} worker{'s' if s['workers'] != 1 else ''})")
    for name, splits in s["sets"].items():
        print(f"  {name:<30} " + "  ".join(f"{k} {v:>5}" for k, v in splits.items()))
    print(f"  {'answers/':<30} multitask_test_labels.txt, clips.csv, summary.json")
    return 0


def _prepare(args) -> int:
    opts = tfrecords.PrepareOptions(
        shards=args.shards, validation_fraction=args.validation_fraction, seed=args.seed,
        dtype=args.dtype, view=args.view, skip_bad=args.skip_bad,
        group_split=not args.no_group_split, progress=not args.quiet, folds=args.folds,
        fold=args.fold)
    for set_name in args.sets:
        m = tfrecords.prepare(args.source, set_name, args.out, opts)
        counts = ", ".join(f"{s} {v['count']}" for s, v in m["splits"].items())
        print(f"{set_name}: {counts} clips; max length {m['max_length']}; "
              f"{len(m['skipped'])} skipped -> {Path(args.out) / set_name}")
        for item in m["skipped"]:
            where = f"{item['file']}:{item['line']}" if item["line"] else item["file"]
            print(f"  skipped {where}: {item['reason']}")
    return 0


def _inspect(args) -> int:
    path = Path(args.path)
    if (path / tfrecords.MANIFEST_FILE).exists():
        m = tfrecords.read_manifest(path)
        checked = tfrecords.verify_shards(path, m, "sha256" if args.verify else "auto")
        summary = {"set": m["set"], "kind": m["kind"], "prepared": True, "view": m["view"],
                   "dtype": m["dtype"], "max_length": m["max_length"],
                   "splits": {s: {"clips": v["count"], "length": v["length"],
                                  "per_class": v["per_class"], "shards": len(v["shards"])}
                              for s, v in m["splits"].items()},
                   "skipped": len(m["skipped"]), "class_merge": m["class_merge"],
                   "shards_verified": checked}
    else:
        summary = inspect.summarise_lab_set(path, progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if summary["kind"] == "genre":
        plot = Path(args.plot) if args.plot else path / "class_histogram.png"
        inspect.plot_merge_histogram(summary, plot)
        print(f"class histogram: {plot}")
    return 0


def _print_summary(summary: dict) -> None:
    print(f"{summary['set']} ({summary['kind']}{', prepared' if summary.get('prepared') else ''})")
    if summary.get("shards_verified"):
        how = {"size": "sizes match the manifest (sha256 checked before: stamp current)",
               "sha256": "sizes and sha256 match the manifest"}[summary["shards_verified"]]
        print(f"  shards: {sum(s['shards'] for s in summary['splits'].values())} files, {how}")
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
