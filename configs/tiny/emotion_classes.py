"""Tiny energy-tertile classifier (CNN) on the sample multitask beat set (tests)."""

from jaxmusic.config import cnn_model, lab_config


def get_config():
    c = lab_config("multitask_dataset_beat", "mel", cnn_model(channels=(4, 8, 8, 16)), task="classification")
    c.data.bins = 3
    c.data.bin_target = "energy"
    c.train.class_weights = True
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.learning_rate = 3e-3
    c.train.log_every = 5
    return c
