"""Tiny AST (2 layers of 32) on the sample data's beat-synchronised mel view (tests)."""

from jaxmusic.config import ast_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel",
                   ast_model("tiny", embed_dim=32, depth=2, num_heads=2))
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.learning_rate = 1e-3
    c.train.log_every = 5
    return c
