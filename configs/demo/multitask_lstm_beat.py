"""Demo: multitask emotion regression (valence, energy, danceability), BiLSTM, beat fused."""

from jaxmusic.config import lab_config, lstm_model


def get_config():
    c = lab_config("multitask_dataset_beat", "fused", lstm_model(), task="multitask")
    c.loss.name = "mse+spearman"
    c.train.epochs = 30
    c.train.learning_rate = 2e-3
    c.train.patience = 6
    return c
