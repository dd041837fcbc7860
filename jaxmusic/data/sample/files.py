"""Writing a generation in the lab's layout: the output folder, each clip's two feature
files, the label files of every set and split, and ``answers/`` (hidden multitask
test labels, ``clips.csv``, ``summary.json``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Sequence

from jaxmusic.data import lab
from jaxmusic.data.sample.planning import GROUPS, SET_PAIRS, ClipSpec
from jaxmusic.data.sample.rendering import synthesize

GENERATOR = "jaxmusic.data.sample"   # written to summary.json: marks a folder as ours
FORMAT_VERSION = 1
# gzip level of the feature files, (full resolution, beat-synchronised); any level reads
# back the same. Float32 dB values hardly compress: level 1 saves ~14% of a 724 KB
# full-resolution file but costs ~45 ms, more than synthesising the clip. So tiny and
# small store those in the gzip stream uncompressed (level 0: still a valid .gz); the
# small beat files and everything in `full` (where disk matters) are deflated.
GZ_LEVEL = {"tiny": (0, 1), "small": (0, 1), "full": (1, 1)}

_OWN_SETS = tuple(n for pair in SET_PAIRS.values() for n in pair)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Empty set folders under ``out``; an earlier sample-data output there is replaced,
    anything else only with ``overwrite``."""
    marker = out / "answers" / "summary.json"
    existing = [out / n for n in _OWN_SETS + ("answers",) if (out / n).exists()]
    if existing:
        ours = False
        if marker.exists():
            try:
                ours = json.loads(marker.read_text()).get("generator") == GENERATOR
            except (OSError, ValueError):
                ours = False
        if not (ours or overwrite):
            raise lab.DatasetError(
                f"{', '.join(p.name for p in existing)} already exist and were not written by "
                "sample-data; pass --overwrite (overwrite=True) to replace them", file=out)
        for p in existing:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for n in _OWN_SETS:
        for split in lab.SPLITS:
            (out / n / split).mkdir(parents=True, exist_ok=True)
    (out / "answers").mkdir(parents=True, exist_ok=True)


def _clip_paths(out: Path, spec: ClipSpec) -> tuple[Path, Path]:
    full_set, beat_set = SET_PAIRS[spec.group]
    return (out / full_set / spec.split / lab.feature_file_name(spec.id, gz=spec.gz_full),
            out / beat_set / spec.split / lab.feature_file_name(spec.id, gz=spec.gz_beat))


def make_clip(job: tuple) -> tuple:
    """One job of a generation: synthesise a clip and write its two feature files.
    ``(seed, out, spec, gz levels) -> (group, index, targets, clips.csv row)``."""
    seed, out, spec, (level_full, level_beat) = job
    clip = synthesize(seed, spec.group, spec.index, spec.genre)
    pf, pb = _clip_paths(Path(out), spec)
    lab.save_features(pf, clip.full, gz=spec.gz_full, compresslevel=level_full)
    lab.save_features(pb, clip.beat, gz=spec.gz_beat, compresslevel=level_beat)
    p = clip.score.params
    row = dict(set=spec.group, split=spec.split, id=spec.id, genre=spec.genre,
               frames=clip.full.shape[0], beat_frames=clip.beat.shape[0],
               tempo=p["tempo"], tracked_tempo=p["tracked_tempo"], key=p["key"],
               mode="major" if p["major"] else "minor", loud=p["loud"], onset_rate=p["onset_rate"],
               jitter_ms=p["jitter"], drift=p["drift"], perc=p["perc"], tilt=p["tilt"],
               cutoff=p["cutoff"], dist=p["dist"],
               valence_fn=clip.score.emotion_fn[0], energy_fn=clip.score.emotion_fn[1],
               danceability_fn=clip.score.emotion_fn[2])
    return spec.group, spec.index, clip.score.targets, row


def write_labels(out: Path, specs: Sequence[ClipSpec], targets: dict) -> dict:
    """Every set's label files in plan order (the multitask test labels go to
    ``answers/``); returns ``{set: {split: clips}}``. ``targets``: (group, index) -> (3,)."""
    counts: dict = {}
    for group in GROUPS:
        full_set, beat_set = SET_PAIRS[group]
        for split in lab.SPLITS:
            sel = [s for s in specs if s.group == group and s.split == split]
            for set_name in (full_set, beat_set):
                counts.setdefault(set_name, {})[split] = len(sel)
            if group == "genre":
                lab.write_genre_labels(out / full_set / f"{split}_labels.txt",
                                       [(s.label_full, s.genre) for s in sel])
                lab.write_genre_labels(out / beat_set / f"{split}_labels.txt",
                                       [(s.label_beat, s.genre) for s in sel])
            else:
                rows = [(s.id, targets[(group, s.index)]) for s in sel]
                if split == "train":
                    lab.write_multitask_labels(out / full_set / "train_labels.txt", rows)
                    lab.write_multitask_labels(out / beat_set / "train_labels.txt", rows)
                else:
                    lab.write_multitask_labels(out / "answers" / "multitask_test_labels.txt", rows)
    return counts


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_clips_csv(out: Path, specs: Sequence[ClipSpec], rows: dict) -> None:
    """``answers/clips.csv``: every clip's generative parameters, in plan order."""
    fields = list(next(iter(rows.values())).keys())
    with open(out / "answers" / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(fields)
        for s in specs:
            w.writerow([_fmt(rows[(s.group, s.index)][k]) for k in fields])


def write_summary(out: Path, specs: Sequence[ClipSpec], size: str, seed: int, sets: dict) -> dict:
    """``answers/summary.json`` (what was generated; it marks the folder as sample-data's)."""
    genre_counts: dict = {}
    for s in specs:
        if s.group == "genre":
            genre_counts.setdefault(s.split, {}).setdefault(s.genre, 0)
            genre_counts[s.split][s.genre] += 1
    summary = {"generator": GENERATOR, "format_version": FORMAT_VERSION, "size": size,
               "seed": int(seed), "sets": sets,
               "genre_strings": {k: dict(sorted(v.items())) for k, v in genre_counts.items()},
               "clips": len(specs)}
    (out / "answers" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
