"""Demo: a small AST (2 layers of 96, 3 heads) on beat-synchronised mel spectrograms."""

from jaxmusic.config import ast_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel",
                   ast_model("tiny", embed_dim=96, depth=2, num_heads=3))
    c.train.epochs = 20
    c.train.learning_rate = 1e-3
    c.train.schedule = "warmup_cosine"
    c.train.warmup_steps = 20
    c.train.patience = 0  # small validation set: noisy; the best checkpoint is kept anyway
    return c
