"""Classification on a set made with the musicnn recipe, for transfer from the pretrained taggers.

    jaxmusic features --recipe musicnn --layout clip-table --input audio/ --labels emotions.csv \\
        --out data --name emotions
    jaxmusic prepare --source data --set emotions --view musicnn --out prepared
    jaxmusic transfer --config configs/musicnn_transfer.py:musicnn --config.data.set=emotions \\
        --init-from musicnn:MSD_musicnn --seeds 0,1,2 --workdir runs/transfer_musicnn

The argument picks the architecture (musicnn | vgg | vgg_msd); `--init-from musicnn:NAME`
sets it to NAME's. Classes come from the set (a clip table's label column); or use a
multitask set made with the musicnn recipe and `--config.data.bins=3`.
"""

from jaxmusic.config import lab_config, musicnn_model


def get_config(arch: str = "musicnn"):
    # BatchNorm momentum 0.9: TF's 0.99 leaves the running statistics near their start after
    # the few dozen updates of a small set (a from-scratch model then fails in eval mode).
    c = lab_config("emotions", "musicnn", musicnn_model(arch, bn_momentum=0.9), task="classification")
    c.data.normalize = False          # the taggers were trained on the raw log-compressed mel
    c.train.class_weights = True
    c.train.batch_size = 8
    c.train.epochs = 10
    c.train.learning_rate = 1e-3
    c.train.patience = 0
    return c
