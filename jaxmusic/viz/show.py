"""`jaxmusic show DATA_DIR`: the lab's first two steps as pictures.

1. Two clips of different genres side by side, as mel spectrogram,
   beat-synchronised mel, chromagram and beat-synchronised chromagram
   (``librosa.display.specshow``). Full-resolution views have time in seconds on
   x (the lab's recipe: 22050 Hz, hop 512); beat-synchronised views have the
   beat index. Mel views have mel frequency on y and a colour bar in dB;
   chroma views have the pitch class. Each title gives the view's shape
   ``(frames, features)`` as the readers return it.
2. Clips per class before and after the 20 -> 10 merge
   (:func:`jaxmusic.data.inspect.plot_merge_histogram`).

``DATA_DIR`` is the lab root (holding ``fma_genre_spectrograms`` and its
``_beat`` twin) or one genre set folder. The beat-synchronised clip is the one
with the same id in the twin set.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxmusic.data import lab
# The lab's feature recipe: frames are hops of 512 samples at 22050 Hz.
from jaxmusic.recipe import HOP_LENGTH, SAMPLE_RATE
from jaxmusic.viz import use_agg

MEL_DB_RANGE = (-80.0, 0.0)  # power_to_db(ref=np.max), top_db 80

SPECTROGRAM_FIGSIZE = (14.0, 14.0)
DPI = 100


@dataclasses.dataclass
class Clip:
    """One clip in both resolutions (``beat`` is None without a twin set)."""

    record: lab.Record
    class_name: str | None
    beat: lab.Record | None


def find_sets(data_dir: Path, set_name: str | None) -> tuple[Path, Path | None]:
    """(full-resolution genre set, its beat-synchronised twin or None)."""
    data_dir = Path(data_dir)
    if (data_dir / "train_labels.txt").exists():  # a set folder itself
        full = data_dir
    else:
        full = data_dir / (set_name or "fma_genre_spectrograms")
    if not (full / "train_labels.txt").exists():
        raise lab.DatasetError(f"no genre set here (expected {full}/train_labels.txt); "
                               "give the lab root or a genre set folder", file=data_dir)
    if lab.set_info(full).kind != "genre":
        raise lab.DatasetError("`show` needs a genre set, this is a multitask set", file=full)
    if full.name.endswith("_beat"):  # given the beat set: show it next to its full twin
        twin = full.with_name(full.name[: -len("_beat")])
        return (twin, full) if twin.exists() else (full, None)
    twin = full.with_name(full.name + "_beat")
    return full, (twin if (twin / "train_labels.txt").exists() else None)


def choose_clips(full: Path, beat: Path | None, split: str = "train",
                 ids: list[str] | None = None) -> list[Clip]:
    """Two clips of different (merged) classes: the given ids, or the first clip of
    the split and the first one after it with another class."""
    cmap = lab.class_map(full)
    entries = [e for e in lab.read_labels(full, split) if e.label is not None]
    by_id = {e.id: e for e in entries}
    if ids:
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise lab.DatasetError(f"clip id(s) {missing} not in {split}_labels.txt "
                                   "(or dropped by the class merge)", file=full)
        chosen = [by_id[i] for i in ids]
    else:
        if not entries:
            raise lab.DatasetError(f"no labelled clips in {split}", file=full)
        first = entries[0]
        other = next((e for e in entries if e.label != first.label), None)
        if other is None:
            raise lab.DatasetError(f"every clip of {split} has the class "
                                   f"{cmap.classes[first.label]}; need two classes", file=full)
        chosen = [first, other]
    beat_entries = {}
    if beat is not None:
        beat_entries = {e.id: e for e in lab.read_labels(beat, split)}
    clips = []
    for e in chosen:
        b = beat_entries.get(e.id)
        clips.append(Clip(lab.load_record(e), cmap.classes[e.label],
                          lab.load_record(b) if b is not None else None))
    return clips


def shape_lines(clips: list[Clip]) -> list[str]:
    lines = []
    for c in clips:
        r = c.record
        lines.append(f"clip {r.id} ({r.genre} -> {c.class_name}): file {r.source}")
        lines.append(f"  full resolution: stored (140, {r.length}); "
                     + ", ".join(f"{v} {r.view(v).shape}" for v in lab.views_of(r.features.shape[1])))
        if c.beat is not None:
            b = c.beat
            lines.append(f"  beat-synchronised: stored (140, {b.length}); "
                         + ", ".join(f"{v} {b.view(v).shape}" for v in lab.views_of(b.features.shape[1])))
        else:
            lines.append("  beat-synchronised: no twin set found")
    return lines


def plot_spectrograms(clips: list[Clip], path: Path, sr: int = SAMPLE_RATE,
                      hop_length: int = HOP_LENGTH) -> Path:
    """Rows: mel, beat mel, chroma, beat chroma; columns: the clips."""
    import librosa.display
    from matplotlib.ticker import MaxNLocator

    plt = use_agg()
    rows = [("mel", False), ("mel", True), ("chroma", False), ("chroma", True)]
    fig, axes = plt.subplots(len(rows), len(clips), figsize=SPECTROGRAM_FIGSIZE,
                             squeeze=False, layout="constrained")
    for col, clip in enumerate(clips):
        for row, (view, beat) in enumerate(rows):
            ax = axes[row, col]
            rec = clip.beat if beat else clip.record
            kind = ("beat-synchronised " if beat else "") + view
            if rec is None:
                ax.set_axis_off()
                ax.set_title(f"{kind}: no beat-synchronised twin set")
                continue
            data = rec.view(view).T  # (features, frames), as librosa draws it
            x_axis = "frames" if beat else "time"
            if view == "mel":
                img = librosa.display.specshow(
                    data, sr=sr, hop_length=hop_length, x_axis=x_axis, y_axis="mel",
                    fmax=sr / 2, ax=ax, cmap="magma", vmin=MEL_DB_RANGE[0], vmax=MEL_DB_RANGE[1])
                fig.colorbar(img, ax=ax, format="%+2.0f dB")
            else:
                img = librosa.display.specshow(
                    data, sr=sr, hop_length=hop_length, x_axis=x_axis, y_axis="chroma",
                    ax=ax, cmap="viridis", vmin=0.0, vmax=1.0)
                fig.colorbar(img, ax=ax, label="relative energy")
            if beat:
                ax.set_xlabel("beat")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            else:
                ax.set_xlabel("time (s)" if rec.length * hop_length / sr < 60 else "time (m:s)")
            ax.set_title(f"{rec.id} · {clip.record.genre} ({clip.class_name})\n"
                         f"{kind}, shape {rec.view(view).shape}", fontsize=10)
    fig.suptitle("Two clips of different genres (shapes are (frames, features); "
                 f"time axis at {sr} Hz, hop {hop_length})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def merge_summary(set_dir: Path) -> dict:
    """What :func:`jaxmusic.data.inspect.plot_merge_histogram` needs, from the
    label files alone (the feature files are not read)."""
    cmap = lab.class_map(set_dir)
    return {"set": set_dir.name,
            "class_merge": {split: lab.merge_counts(lab.read_labels(set_dir, split), cmap)
                            for split in lab.SPLITS}}
