"""`jaxmusic features`: audio collections -> the lab layout."""

from __future__ import annotations

import sys

from jaxmusic import features
from jaxmusic.features import jax_recipe


def add_arguments(parser, command: str) -> None:
    parser.add_argument("--input", required=True,
                        help="genre folders root, audio folder, or the clip table itself")
    parser.add_argument("--layout", required=True, choices=features.LAYOUTS)
    parser.add_argument("--labels", help="label/clip table (CSV or TSV with a header)")
    parser.add_argument("--out", required=True, help="data root (the lab's data/ folder)")
    parser.add_argument("--name", required=True,
                        help="set name: writes <out>/<name> and <out>/<name>_beat")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file")
    parser.add_argument("--duration", type=float,
                        help="seconds per file from its start (shorter files are zero-padded)")
    parser.add_argument("--window", type=float,
                        help="cut whole files into clips of this many seconds (e.g. 30)")
    parser.add_argument("--sample-rate", type=int,
                        help=f"default {features.SAMPLE_RATE} (lab recipe), 16000 (musicnn recipe)")
    parser.add_argument("--recipe", choices=features.RECIPES, default="lab",
                        help="lab: 128 mel dB + 12 chroma (the course's); musicnn: the pretrained "
                             "taggers' 96-band log10(10000 x + 1) mel at 16 kHz (prepare with --view musicnn)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute every clip even if an earlier run wrote it")
    parser.add_argument("--frontend", choices=features.FRONTENDS, default="librosa",
                        help="librosa: the course recipe (default); jax: mel and STFT chroma "
                        "batched with jaxmusic.frontend, beats on the host (>= 10x faster; "
                        "see benchmarks/frontend_results.md for how close it is)")
    parser.add_argument("--fmax", type=float,
                        help="mel cut-off in Hz, e.g. 8000 or 2000 (default: half the sample "
                        "rate, the recipe's); recorded in features_report.json")
    parser.add_argument("--audio-features", action="store_true",
                        help="also keep MFCC 1-20, zero-crossing rate, RMS and tempo per clip "
                        "(<set>/audio_features/) for `jaxmusic baselines`")
    parser.add_argument("--no-progress", action="store_true")


def run(args, command: str) -> int:
    if args.frontend == "jax":
        jax_recipe.use_compile_cache()      # later runs skip compiling the frontend
    result = features.convert(
        args.input, args.layout, args.out, args.name, labels=args.labels,
        test_fraction=args.test_fraction, seed=args.seed, jobs=args.jobs, strict=args.strict,
        duration=args.duration, window=args.window, sample_rate=args.sample_rate,
        progress=not args.no_progress, overwrite=args.overwrite, frontend=args.frontend,
        fmax=args.fmax, audio_features=args.audio_features, recipe_name=args.recipe)
    print(f"{result.set_dir} and {result.beat_dir}: {result.written} clips written, "
          f"{result.skipped} already there, {result.failed} failed, "
          f"{len(result.problems)} problem(s) in all; report {result.report}")
    for p in result.problems:
        where = p.get("line") or p.get("file")
        print(f"  problem: {where}: {p['reason']}", file=sys.stderr)
    return 0
