"""The GTZAN project's LeNet-like CNN on mel-spectrogram pictures (reported test accuracy 0.73).

The GTZAN setting: one folder per genre (10 genres x 100 clips x 30 s), 80/10/10
train/validation/test, SGD with momentum 0.9 at learning rate 1e-3. On a GTZAN copy:

    jaxmusic features --input gtzan/genres --layout genre-folders --out data --name gtzan --test-fraction 0.1
    jaxmusic prepare --source data --set gtzan --out prepared --validation-fraction 0.1111
    jaxmusic train --config configs/gtzan_lenet.py --workdir runs/gtzan_lenet

(``--validation-fraction 0.1111`` takes 1/9 of the remaining 90 %: 10 % of the whole.)
The full-resolution mel (1293 frames x 128 bins) is resized to a 256 x 128 picture.
"""

from jaxmusic.config import image_model, lab_config


def get_config():
    c = lab_config("gtzan", "mel", image_model("lenet"))
    c.data.resize = (256, 128)
    c.train.optimizer = "sgd"
    c.train.learning_rate = 1e-3
    c.train.epochs = 50
    c.train.patience = 8
    return c
