"""The ``jaxmusic`` command line: the only place that parses arguments.

Each command group has a module here (``jaxmusic/cli/<group>.py``) defining
``add_arguments(parser, command)`` and ``run(args, command) -> int``; it calls
into the library, which holds no argparse. Modules are imported lazily, so
``jaxmusic --help`` stays fast and a command pulls in only what it needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jaxmusic.config import ConfigError
from jaxmusic.data.lab import DatasetError
from jaxmusic.workers import WorkerDied

# name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("jaxmusic.cli.data", "write the embedded sample dataset in the lab layout"),
    "prepare": ("jaxmusic.cli.data", "convert a lab set to sharded TFRecords + manifest"),
    "inspect": ("jaxmusic.cli.data", "counts, shapes, lengths and class histograms of a set"),
    "features": ("jaxmusic.cli.features", "audio collections -> the lab layout (librosa recipe)"),
    "train": ("jaxmusic.cli.train", "train a model from a config (then evaluate it)"),
    "evaluate": ("jaxmusic.cli.train", "score a run's best checkpoint; write metrics and tables"),
    "predict": ("jaxmusic.cli.predict", "genre (and emotion) of audio files from trained runs"),
    "serve": ("jaxmusic.cli.serve", "web page + JSON API: classify uploaded songs with trained runs"),
    "tag": ("jaxmusic.cli.tag", "music tags of audio files from a pretrained musicnn tagger"),
    "transfer": ("jaxmusic.cli.experiments", "emotion model: scratch vs fine-tuned vs frozen genre backbone"),
    "compare-multitask": ("jaxmusic.cli.experiments", "multitask model vs one single-axis model per axis"),
    "generate": ("jaxmusic.cli.generate", "generative augmentation: train a spectrogram generator, add its samples"),
    "lr-find": ("jaxmusic.cli.lrfind", "learning-rate range test: loss vs rate plot and a suggested rate"),
    "cv": ("jaxmusic.cli.experiments", "k-fold cross-validation of a config"),
    "predict-set": ("jaxmusic.cli.experiments", "predictions for a prepared split, in the lab's format"),
    "show": ("jaxmusic.cli.viz", "spectrograms of two clips (mel, chroma, full and beat) and class histograms"),
    "embed": ("jaxmusic.cli.viz", "latent space of runs: PCA / t-SNE / UMAP maps with silhouette scores"),
    "report": ("jaxmusic.cli.viz", "one self-contained HTML page with every run, table and picture"),
    "baselines": ("jaxmusic.cli.baselines", "classic models (SVM, kNN, forests, boosting, voting) on handcrafted features"),
    "bench": ("jaxmusic.cli.bench", "JAX vs PyTorch throughput benchmark (run from the repository root)"),
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
        return _run_command(argv[0], argv[1:])
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


def _run_command(command: str, argv: list[str]) -> int:
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"jaxmusic {command}", description=help_text)
    module.add_arguments(parser, command)
    args, extra = parser.parse_known_args(argv)
    args.extra = extra
    if extra and not getattr(module, "ACCEPTS_EXTRA", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(module.run(args, command) or 0)
    except (ConfigError, DatasetError, FileExistsError, FileNotFoundError, WorkerDied) as e:
        print(f"jaxmusic {command}: error: {e}", file=sys.stderr)
        return 2
