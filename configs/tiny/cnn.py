"""Tiny CNN on the sample data's beat-synchronised mel view: runs in seconds (tests)."""

from jaxmusic.config import cnn_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel", cnn_model(channels=(4, 8, 8, 16)))
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.learning_rate = 3e-3
    c.train.log_every = 5
    return c
