"""The ``jaxmusic`` command line.

Each subcommand lives in the module that owns its work; this file only maps
names to ``module:add_arguments`` / ``module:run`` pairs and imports lazily, so
``jaxmusic --help`` stays fast and a command pulls in only what it needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Each module defines add_arguments(parser)
# and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("jaxmusic.data.sample", "write the embedded sample dataset in the lab layout"),
    "prepare": ("jaxmusic.data.tfrecords", "convert a lab set to sharded TFRecords + manifest"),
    "inspect": ("jaxmusic.data.inspect", "counts, shapes, lengths and class histograms of a set"),
    "train": ("jaxmusic.train", "train a model from a config (then evaluate it)"),
    "evaluate": ("jaxmusic.evaluate", "score a run's best checkpoint; write metrics and tables"),
    "show": ("jaxmusic.viz.show", "spectrograms of two clips (mel, chroma, full and beat) and class histograms"),
    "embed": ("jaxmusic.viz.latent", "latent space of runs: PCA / t-SNE / UMAP maps with silhouette scores"),
    "report": ("jaxmusic.viz.report", "one self-contained HTML page with every run, table and picture"),
    "features": ("jaxmusic.features", "audio collections -> the lab layout (librosa recipe)"),
    "bench": ("benchmarks.run", "JAX vs PyTorch throughput benchmark (run from the repository root)"),
    "predict": ("jaxmusic.predict", "genre (and emotion) of audio files from trained runs"),
    "transfer": ("jaxmusic.experiments", "emotion model: scratch vs fine-tuned vs frozen genre backbone"),
    "compare-multitask": ("jaxmusic.experiments", "multitask model vs one single-axis model per axis"),
    "cv": ("jaxmusic.experiments", "k-fold cross-validation of a config"),
    "predict-set": ("jaxmusic.experiments", "predictions for a prepared split, in the lab's format"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # TensorFlow only runs tf.data here: no oneDNN kernels needed, and no start-up chatter.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # Build only the subparser that is asked for: importing every command module
    # would import jax and tensorflow for `jaxmusic --help`.
    if argv and argv[0] in COMMANDS:
        module_name, help_text = COMMANDS[argv[0]]
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser(prog=f"jaxmusic {argv[0]}", description=help_text)
        # A module serving several commands takes the command's name.
        multi = getattr(module, "MULTI_COMMAND", False)
        module.add_arguments(parser, argv[0]) if multi else module.add_arguments(parser)
        args, extra = parser.parse_known_args(argv[1:])
        args.extra = extra
        if extra and not getattr(module, "ACCEPTS_EXTRA", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        from jaxmusic.data.lab import DatasetError
        try:
            return int((module.run(args, argv[0]) if multi else module.run(args)) or 0)
        except (DatasetError, FileExistsError, FileNotFoundError) as e:
            print(f"jaxmusic {argv[0]}: error: {e}", file=sys.stderr)
            return 2
    parser = argparse.ArgumentParser(
        prog="jaxmusic", description="Music genre and emotion models in JAX/Flax.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<12} {h}" for n, (_, h) in COMMANDS.items()))
    parser.add_argument("command", nargs="?", help="one of the commands below")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2
