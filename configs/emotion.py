"""Lab steps 7 and 9: emotion regression on the multitask set.

    --config configs/emotion.py:valence,lstm     one axis alone (valence|energy|danceability)
    --config configs/emotion.py:multitask,cnn    one model, three heads, weighted loss

Backbones: lstm, cnn, ast. Add ",beat" for the beat-synchronised set. Validation is
a seeded hold-out from the training set (the lab gives no test labels).
"""

from jaxmusic.config import ast_model, cnn_model, lab_config, lstm_model

MODELS = {"lstm": lstm_model, "cnn": cnn_model, "ast": lambda: ast_model("tiny")}
VIEWS = {"lstm": "fused", "cnn": "mel", "ast": "mel"}


def get_config(arg: str = "multitask,lstm"):
    parts = arg.split(",")
    target, model = parts[0], parts[1] if len(parts) > 1 else "lstm"
    beat = "beat" in parts[2:]
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    set_name = "multitask_dataset_beat" if beat else "multitask_dataset"
    multitask = target == "multitask"
    c = lab_config(set_name, VIEWS[model], MODELS[model](),
                   task="multitask" if multitask else "regression")
    if not multitask:
        c.data.targets = (target,)
    c.loss.name = "mse+spearman"
    c.loss.spearman_temperature = 0.1
    c.train.learning_rate = 1e-3
    c.train.patience = 5
    return c
