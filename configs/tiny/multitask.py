"""Tiny multitask LSTM (three regression heads) on the sample multitask beat set (tests)."""

from jaxmusic.config import lab_config, lstm_model


def get_config():
    c = lab_config("multitask_dataset_beat", "fused",
                   lstm_model(hidden_size=16, num_layers=1, dropout=0.0), task="multitask")
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.learning_rate = 3e-3
    c.train.log_every = 5
    return c
