"""Emotion classification (the emotion studies' setting): three levels of one axis, or
any label table's classes, selected on macro F1 with class weights.

    --config configs/emotion_classes.py:energy          tertiles of energy on the multitask set
    --config configs/emotion_classes.py:valence,cnn     (valence|energy|danceability) x (lstm|cnn|ast)
    --config configs/emotion_classes.py:table,cnn --config.data.set=MY_EMOTIONS
                                                        the classes of a set made by
                                                        `jaxmusic features --layout clip-table`
                                                        (a label column: e.g. anger/fear/happy/sad/tender)

Add ",beat" for the beat-synchronised multitask set. The cut points are the training
split's tertiles (``data.bins = 3``), so the three classes are balanced there; they are
written to run.json (``bins``) with the class names (``label_names``).
"""

from jaxmusic.config import ast_model, cnn_model, lab_config, lstm_model

MODELS = {"lstm": lstm_model, "cnn": cnn_model, "ast": lambda: ast_model("tiny")}
VIEWS = {"lstm": "fused", "cnn": "mel", "ast": "mel"}
AXES = ("valence", "energy", "danceability")


def get_config(arg: str = "energy,lstm"):
    parts = arg.split(",")
    target, model = parts[0], parts[1] if len(parts) > 1 else "lstm"
    beat = "beat" in parts[2:]
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    if target not in AXES + ("table",):
        raise ValueError(f"target must be one of {AXES + ('table',)}, got {target!r}")
    set_name = "multitask_dataset_beat" if beat else "multitask_dataset"
    c = lab_config(set_name, VIEWS[model], MODELS[model](), task="classification")
    if target != "table":
        c.data.bins = 3
        c.data.bin_target = target
    c.train.class_weights = True
    c.train.learning_rate = 1e-3
    c.train.patience = 5
    return c
