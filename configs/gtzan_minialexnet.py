"""The GTZAN project's AlexNet-like CNN with batch norm (reported test accuracy 0.81).

Same data and recipe as ``configs/gtzan_lenet.py`` (genre folders, 80/10/10, SGD
momentum 0.9, learning rate 1e-3, 256 x 128 pictures). Ablations:
``--config.model.batch_norm=false``, ``--config.model.dropout=0``.
"""

from jaxmusic.config import image_model, lab_config


def get_config():
    c = lab_config("gtzan", "mel", image_model("minialexnet"))
    c.data.resize = (256, 128)
    c.train.optimizer = "sgd"
    c.train.learning_rate = 1e-3
    c.train.epochs = 50
    c.train.patience = 8
    return c
