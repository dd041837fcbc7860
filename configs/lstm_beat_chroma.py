"""Lab step 3-6: genre classification, chroma view of fma_genre_spectrograms_beat."""

from jaxmusic.config import lstm_model, lab_config


def get_config():
    return lab_config("fma_genre_spectrograms_beat", "chroma", lstm_model())
