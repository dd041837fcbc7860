"""Demo: a small AST (4 layers of 192) on beat-synchronised mel spectrograms."""

from jaxmusic.config import ast_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel", ast_model("tiny", depth=4))
    c.train.epochs = 20
    c.train.learning_rate = 5e-4
    c.train.schedule = "warmup_cosine"
    c.train.warmup_steps = 50
    c.train.patience = 5
    return c
