"""`jaxmusic bench`: the JAX vs PyTorch benchmark (benchmarks/, run from the repository root)."""

from __future__ import annotations

import importlib


def _harness():
    try:
        return importlib.import_module("benchmarks.run")
    except ImportError as e:
        raise SystemExit("jaxmusic bench: the benchmarks package is not importable: run it from "
                         f"the repository root ({e})")


def add_arguments(parser, command: str) -> None:
    _harness().add_arguments(parser)


def run(args, command: str) -> int:
    return _harness().run(args)
