"""jaxmusic: music genre recognition and emotion regression from spectrograms in JAX/Flax."""

__version__ = "0.1.0"
