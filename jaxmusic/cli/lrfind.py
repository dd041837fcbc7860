"""`jaxmusic lr-find --config ...`: the learning-rate range test (a plot and a suggested rate)."""

from __future__ import annotations

import json
from pathlib import Path

from jaxmusic import lrfind
from jaxmusic.config import load_config

ACCEPTS_EXTRA = True  # --config.x=y overrides, as for train


def add_arguments(parser, command: str) -> None:
    parser.add_argument("--config", required=True, help="configs/<experiment>.py (its model, data, optimiser)")
    parser.add_argument("--min-lr", type=float, default=1e-7)
    parser.add_argument("--max-lr", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=100, help="updates over the range (default 100)")
    parser.add_argument("--diverge", type=float, default=4.0,
                        help="stop once the smoothed loss exceeds this many times its minimum")
    parser.add_argument("--out", default="lr_find.png", help="the plot (default lr_find.png); "
                        "the numbers go beside it as .json")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args, command: str) -> int:
    config = load_config(args.config, args.extra)
    try:
        result = lrfind.range_test(config, min_lr=args.min_lr, max_lr=args.max_lr, num_steps=args.steps,
                                   diverge=args.diverge)
    except ValueError as e:
        raise SystemExit(f"jaxmusic lr-find: {e}")
    png = lrfind.plot(result, args.out)
    Path(png).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    s = result["suggestion"]
    if args.json:
        print(json.dumps({"suggestion": s, "plot": str(png), "steps": len(result["lr"]),
                          "stopped_early": result["stopped_early"]}))
    else:
        print(f"{len(result['lr'])} steps from {result['lr'][0]:.2e} to {result['lr'][-1]:.2e}"
              + (" (stopped: the loss diverged)" if result["stopped_early"] else ""))
        print(f"suggested learning rate: {s['steepest']:.3e} (steepest descent); "
              f"minimum-loss rate / 10: {s['min_over_10']:.3e}")
        print(f"plot: {png}")
    return 0
