"""Lab step 3-6: genre classification, mel view of fma_genre_spectrograms."""

from jaxmusic.config import cnn_model, lab_config


def get_config():
    return lab_config("fma_genre_spectrograms", "mel", cnn_model())
