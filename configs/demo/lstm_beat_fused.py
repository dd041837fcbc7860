"""Demo: the lab report's BiLSTM (2 x 64) on beat-synchronised fused features."""

from jaxmusic.config import lab_config, lstm_model


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "fused", lstm_model())
    c.train.epochs = 25
    c.train.learning_rate = 2e-3
    c.train.patience = 5
    return c
