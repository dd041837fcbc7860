"""Benchmarks of jaxmusic against PyTorch baselines (``python -m benchmarks.run``).

PyTorch is imported only here and in the tests that need it; jaxmusic itself never
depends on it.

* :mod:`benchmarks.torch_models` - the course's three models in PyTorch.
* :mod:`benchmarks.porting` - JAX variables <-> PyTorch state_dict (and gradients).
* :mod:`benchmarks.variants` - one "variant" = a framework + implementation with a
  train step and an inference step on one batch shape.
* :mod:`benchmarks.machine` - machine description, matmul peak, memory probes.
* :mod:`benchmarks.epoch` - an end-to-end epoch: the train loop's input + jit vs DataLoader.
* :mod:`benchmarks.report` - RESULTS.md tables and the log-log plots.
* :mod:`benchmarks.run` - the sweep and its command line.
"""
