"""Demo: the lab's 4-block CNN on full-resolution mel spectrograms of the sample data."""

from jaxmusic.config import cnn_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms", "mel", cnn_model())
    c.train.epochs = 6
    c.train.learning_rate = 1e-3
    c.train.schedule = "warmup_cosine"
    c.train.warmup_steps = 20
    return c
