"""The hard-techno sub-genre study's network: 3 convolutions, dense 256, dropout, 128 x 128 pictures.

A clip table of 8 s clips cut from whole songs (5 classes; every clip of one song on
one side of the split), class weights for the unbalanced classes:

    jaxmusic features --input songs/ --layout clip-table --labels tracks.csv --out data --name subgenres
    jaxmusic prepare --source data --set subgenres --out prepared
    jaxmusic train --config configs/subgenre_cnn3.py --workdir runs/subgenre_cnn3

The study's variants: ``--config.data.resize='(256, 256)'``, and the 2 kHz "low-pass"
mel cut-off (a set extracted with ``jaxmusic features --fmax 2000``, then
``--config.data.set=<that set>``). Five seeds: ``--config.train.seed=0..4``.
"""

from jaxmusic.config import image_model, lab_config


def get_config():
    c = lab_config("subgenres", "mel", image_model("cnn3_dense"))
    c.data.resize = (128, 128)
    c.train.class_weights = True
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3
    c.train.epochs = 40
    c.train.patience = 6
    return c
