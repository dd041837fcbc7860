"""`jaxmusic generate train|sample`: generative augmentation (jaxmusic.generative)."""

from __future__ import annotations

from pathlib import Path

from jaxmusic import generative


def add_arguments(parser, command: str) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="train|sample")
    fit = actions.add_parser("train", help="fit a class-conditional diffusion generator on a prepared "
                             "set's training split")
    fit.add_argument("--prepared", required=True, help="prepared root (`jaxmusic prepare --out`)")
    fit.add_argument("--set", required=True, help="set name under --prepared (a genre or label-table set)")
    fit.add_argument("--workdir", required=True, help="new generator directory")
    d = generative.GeneratorConfig()
    fit.add_argument("--crop", type=int, default=d.crop,
                     help=f"frames per clip (default {d.crop}; shorter training clips are not used)")
    fit.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    fit.add_argument("--batch-size", type=int, default=d.batch_size)
    fit.add_argument("--learning-rate", type=float, default=d.learning_rate)
    fit.add_argument("--channels", default=",".join(map(str, d.channels)),
                     help="U-Net channels per level (default %(default)s)")
    fit.add_argument("--seed", type=int, default=d.seed)
    fit.add_argument("--quiet", action="store_true")
    gen = actions.add_parser("sample", help="write a prepared set: the original one plus generated "
                             "training clips")
    gen.add_argument("--workdir", required=True, help="a generator directory (`generate train`)")
    gen.add_argument("--ratio", type=float, required=True,
                     help="generated clips per real training clip (0.5: half as many more)")
    gen.add_argument("--out", required=True, help="new prepared root; the set goes to OUT/<set>/")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    gen.add_argument("--ddim-steps", type=int, default=50, help="DDIM steps (default 50)")
    gen.add_argument("--balance", choices=generative.BALANCE, default="proportional",
                     help="classes of the generated clips: as the training counts (default) or equal")
    gen.add_argument("--overwrite", action="store_true", help="replace OUT/<set>/ if it exists")
    gen.add_argument("--quiet", action="store_true")


def run(args, command: str) -> int:
    if args.action == "train":
        try:
            channels = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise generative.GeneratorError(f"--channels must be whole numbers separated by commas, "
                                            f"got {args.channels!r}") from None
        cfg = generative.GeneratorConfig(crop=args.crop, channels=channels, steps=args.steps,
                                         batch_size=args.batch_size, learning_rate=args.learning_rate,
                                         seed=args.seed)
        path = Path(args.prepared) / args.set
        if not (path / "manifest.json").exists():
            raise generative.GeneratorError(f"no prepared set {args.set!r} under {args.prepared} "
                                            "(run `jaxmusic prepare` first)", file=path)
        rec = generative.train_generator(path, args.workdir, cfg, progress=not args.quiet)
        print(f"generator: {rec['clips_used']} clips ({rec['clips_shorter_than_crop']} shorter than "
              f"{cfg.crop} frames not used), loss {rec['history'][0]['loss']:.3f} -> "
              f"{rec['history'][-1]['loss']:.3f} in {rec['seconds']:.0f} s -> {args.workdir}")
        return 0
    generative.write_augmented_set(args.workdir, args.ratio, args.out, seed=args.seed,
                                   ddim_steps=args.ddim_steps, balance=args.balance,
                                   overwrite=args.overwrite, progress=not args.quiet)
    return 0
