"""Output heads on top of a backbone's latent ``[B, feature_size]``; outputs are float32."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

REGRESSION_ACTIVATIONS = ("sigmoid", "none")


class ClassifierHead(nn.Module):
    """Dense to ``num_classes`` logits (float32).

    ``norm=True`` puts a LayerNorm first, as AST's ``mlp_head`` (LayerNorm + Linear).
    """

    num_classes: int
    norm: bool = False

    @nn.compact
    def __call__(self, latent: jax.Array) -> jax.Array:
        x = latent.astype(jnp.float32)
        if self.norm:
            x = nn.LayerNorm(name="norm")(x)
        return nn.Dense(self.num_classes, dtype=jnp.float32, param_dtype=jnp.float32, name="logits")(x)


class RegressionHead(nn.Module):
    """Dense to ``num_outputs`` values (valence, energy, danceability by default).

    ``activation="sigmoid"`` keeps predictions in (0, 1), where the targets live;
    ``"none"`` returns the raw linear output.
    """

    num_outputs: int = 3
    activation: str = "sigmoid"
    norm: bool = False

    @nn.compact
    def __call__(self, latent: jax.Array) -> jax.Array:
        if self.activation not in REGRESSION_ACTIVATIONS:
            raise ValueError(f"activation must be one of {REGRESSION_ACTIVATIONS}, got {self.activation!r}")
        x = latent.astype(jnp.float32)
        if self.norm:
            x = nn.LayerNorm(name="norm")(x)
        y = nn.Dense(self.num_outputs, dtype=jnp.float32, param_dtype=jnp.float32, name="outputs")(x)
        return jax.nn.sigmoid(y) if self.activation == "sigmoid" else y
