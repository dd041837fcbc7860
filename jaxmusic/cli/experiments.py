"""`jaxmusic transfer`, `compare-multitask`, `cv`, `predict-set`: the lab's comparisons."""

from __future__ import annotations

from jaxmusic import experiments
from jaxmusic.config import load_config

ACCEPTS_EXTRA = True  # --config.x=y overrides


def add_arguments(parser, command: str) -> None:
    if command == "predict-set":
        parser.add_argument("--workdir", required=True)
        parser.add_argument("--set", required=True, help="<prepared set>/<split>, e.g. "
                            "multitask_dataset/test")
        parser.add_argument("--out", help="output file (default: in the run directory)")
        return
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--quiet", action="store_true")
    if command == "transfer":
        parser.add_argument("--init-from", required=True,
                            help="a genre run directory, or musicnn:<MTT_musicnn|MSD_musicnn|MTT_vgg|MSD_vgg>")
        parser.add_argument("--seeds", default="",
                            help="comma-separated train.seed values: mean +/- std over them (default: the config's)")
    if command == "cv":
        parser.add_argument("--folds", type=int, default=5)


def run(args, command: str) -> int:
    if command == "predict-set":
        if args.extra:
            raise SystemExit(f"jaxmusic predict-set: error: unrecognized arguments: {' '.join(args.extra)}")
        experiments.predict_set(args.workdir, args.set, args.out)
        return 0
    config = load_config(args.config, args.extra)
    progress = not args.quiet
    if command == "transfer":
        try:
            seeds = [int(v) for v in args.seeds.split(",") if v.strip()] or [None]
        except ValueError:
            raise SystemExit(f"jaxmusic transfer: --seeds takes whole numbers, got {args.seeds!r}")
        experiments.transfer(config, args.init_from, args.workdir, progress=progress, seeds=seeds)
    elif command == "compare-multitask":
        experiments.compare_multitask(config, args.workdir, progress=progress)
    else:
        experiments.cross_validate(config, args.folds, args.workdir, progress=progress)
    return 0
