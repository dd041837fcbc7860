"""Tiny LeNet (image-style CNN) on the sample data's beat mel view, 32 x 32 pictures (tests)."""

from jaxmusic.config import image_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel", image_model("lenet", channels=(4, 8), dense=(32, 16)))
    c.data.resize = (32, 32)
    c.train.batch_size = 8
    c.train.epochs = 2
    c.train.learning_rate = 3e-3
    c.train.log_every = 5
    return c
