"""Demo: the lab's 4-block CNN on beat-synchronised mel spectrograms of the sample data.

(Full-resolution mel, configs/cnn_mel.py, trains at about 2 samples/s on 2 CPU cores:
too slow for a demo; see benchmarks/RESULTS.md.)
"""

from jaxmusic.config import cnn_model, lab_config


def get_config():
    c = lab_config("fma_genre_spectrograms_beat", "mel", cnn_model())
    c.train.epochs = 15
    c.train.learning_rate = 1e-3
    c.train.schedule = "warmup_cosine"
    c.train.warmup_steps = 20
    c.train.patience = 4
    return c
