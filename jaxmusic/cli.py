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


def set_host_devices(n: int) -> None:
    """Split the CPU into ``n`` XLA devices (``--xla_force_host_platform_device_count``).

    Only possible before JAX starts its CPU backend. With one device per core, the
    data-parallel step runs one program per core, which XLA:CPU schedules better
    than one program over all cores (benchmarks/NOTES.md: 1.2-1.3x for the CNN and
    the AST on 2 cores, nothing for the LSTM). Other backends (GPU, TPU) are unaffected.
    """
    if n < 1:
        raise ValueError(f"--host-devices must be at least 1, got {n}")
    flag = f"--xla_force_host_platform_device_count={n}"
    if "jax" in sys.modules:
        import jax

        have = len(jax.local_devices(backend="cpu"))
        if have != n:
            raise RuntimeError(f"--host-devices {n}: JAX is already running with {have} CPU devices; "
                               f"start the process with XLA_FLAGS={flag}")
        return
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join(flags + [flag])


def _pop_host_devices(argv: list[str]) -> tuple[list[str], int | None]:
    """``--host-devices N`` / ``--host-devices=N`` anywhere in ``argv`` (any command)."""
    out, n, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--host-devices" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--host-devices="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        try:
            n = int(value)
        except ValueError:
            raise SystemExit(f"jaxmusic: error: --host-devices needs a whole number, got {value!r}")
    return out, n


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv, host_devices = _pop_host_devices(list(argv))
    if host_devices is not None:
        set_host_devices(host_devices)
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
        epilog="commands:\n" + "\n".join(f"  {n:<12} {h}" for n, (_, h) in COMMANDS.items())
        + "\n\nany command takes --host-devices N: split the CPU into N XLA devices for data parallelism "
          "(one per core trains the CNN and the AST faster; see README)")
    parser.add_argument("command", nargs="?", help="one of the commands below")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2
