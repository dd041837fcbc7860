"""Collection planning: which clips, from which audio, with which label, on which side."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxmusic.data import lab
from jaxmusic.data.lab import DatasetError
from jaxmusic.features.audio import AUDIO_EXTENSIONS, UNDECODABLE_EXTENSIONS, audio_seconds

LAYOUTS = ("genre-folders", "clip-table", "labelled-folder")


@dataclasses.dataclass
class ClipSpec:
    """One clip to make: where its audio is and what it is."""

    id: str
    source: str                  # path relative to the input root (as recorded)
    path: str                    # absolute path to read
    start: float | None = None   # seconds (None: from the start)
    duration: float | None = None  # seconds (None: to the end)
    group: str = ""
    label: str | None = None                      # genre string
    targets: tuple[float, float, float] | None = None
    split: str | None = None     # given by the table, else chosen by split_groups


@dataclasses.dataclass
class Plan:
    kind: str                    # "genre" or "multitask"
    clips: list[ClipSpec]
    problems: list[dict]         # found while planning (file + reason)


_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def clean_id(text: str) -> str:
    """A clip id safe in a file name and in both label-file formats."""
    out = _ID_BAD.sub("_", text.strip()).strip("._")
    return out or "clip"


def _fmt_seconds(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _audio_files(folder: Path, root: Path, problems: list[dict]) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or _is_hidden(p, root):
            continue
        ext = p.suffix.lower()
        if ext in AUDIO_EXTENSIONS:
            files.append(p)
        elif ext in UNDECODABLE_EXTENSIONS:
            problems.append({"file": str(p), "reason": f"{ext} audio is not decodable by "
                             "libsndfile (convert to WAV/FLAC, e.g. with ffmpeg)"})
    return files


def _window_clips(base: ClipSpec, window: float | None, duration: float | None,
                  problems: list[dict]) -> list[ClipSpec]:
    """Cut a whole-file clip into ``window``-second clips, or fix its duration."""
    if window is None:
        if duration is not None:
            base.duration = duration
        return [base]
    try:
        total = audio_seconds(base.path)
    except DatasetError as e:
        problems.append({"file": base.path, "reason": e.reason})
        return []
    n_full = int(total // window)
    starts = [k * window for k in range(n_full)]
    rest = total - n_full * window
    if n_full == 0 or rest >= window / 2:
        starts.append(n_full * window)          # zero-padded, flagged "padded"
    clips = []
    for k, s in enumerate(starts):
        clips.append(dataclasses.replace(base, id=f"{base.id}_{k:03d}", start=s,
                                         duration=window, group=base.group or base.source))
    return clips


def _unique_ids(items: list[tuple[Path, str]], root: Path) -> list[str]:
    """File stems as ids; where stems collide, the relative path instead."""
    stems = Counter(clean_id(p.stem) for p, _ in items)
    ids = []
    for p, _ in items:
        stem = clean_id(p.stem)
        ids.append(stem if stems[stem] == 1
                   else clean_id(str(p.relative_to(root).with_suffix("")).replace(os.sep, ".")))
    return ids


def plan_genre_folders(root: Path, window: float | None = None,
                       duration: float | None = None) -> Plan:
    if not root.is_dir():
        raise DatasetError("input is not a folder (layout genre-folders)", file=root)
    problems: list[dict] = []
    items: list[tuple[Path, str]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in _audio_files(folder, root, problems):
            items.append((f, folder.name))
    if not items:
        raise DatasetError("no audio files in genre sub-folders (expected "
                           "<input>/<genre>/<file>.wav)", file=root)
    clips = []
    for (f, genre), clip_id in zip(items, _unique_ids(items, root)):
        rel = f.relative_to(root).as_posix()
        base = ClipSpec(clip_id, rel, str(f), group=rel, label=genre)
        clips += _window_clips(base, window, duration, problems)
    return Plan("genre", clips, problems)


_FILE_COLS = ("file", "filename", "file_name", "path", "audio", "track")
_LABEL_COLS = ("label", "genre", "class")
_GROUP_COLS = ("group", "song", "song_id", "songid")


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV (or TSV) with a header: ``(lower-cased columns, [(line, row)])``."""
    lines = lab.read_table_lines(path, "label table")
    delimiter = "\t" if "\t" in lines[0] else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    if len(set(header)) != len(header):
        raise DatasetError(f"duplicate column names in header {header}", file=path, line=1)
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"expected {len(header)} columns ({','.join(header)}), "
                               f"got {len(row)}: {row!r}", file=path, line=lineno)
        rows.append((lineno, {h: c.strip() for h, c in zip(header, row)}))
    if not rows:
        raise DatasetError("label table has a header but no rows", file=path)
    return header, rows


def _pick(header: Sequence[str], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in header), None)


def _find_audio(root: Path, name: str) -> Path | None:
    """A table's file reference: a path (with extension) or a bare id."""
    if not name or os.path.isabs(name) or ".." in Path(name).parts:
        return None
    p = root / name
    if p.is_file():
        return p
    for ext in AUDIO_EXTENSIONS:
        for cand in (root / (name + ext), root / (name + ext.upper())):
            if cand.is_file():
                return cand
    return None


def plan_table(root: Path, table: Path, layout: str, window: float | None = None,
               duration: float | None = None) -> Plan:
    """Plan a ``clip-table`` or ``labelled-folder`` collection."""
    if not root.is_dir():
        raise DatasetError("audio folder is missing", file=root)
    header, rows = _read_table(table)
    multitask = all(t in header for t in lab.TARGETS)
    file_col = _pick(header, _FILE_COLS)
    id_col = "id" if "id" in header else None
    label_col = None if multitask else _pick(header, _LABEL_COLS)
    group_col = _pick(header, _GROUP_COLS)
    split_col = "split" if "split" in header else None
    if layout == "clip-table":
        missing = [c for c in ("start", "end") if c not in header]
        if file_col is None:
            missing.insert(0, "file")
        if not multitask and label_col is None:
            missing.append("label")
        if missing:
            raise DatasetError(f"clip table needs columns file,start,end,label[,group]; "
                               f"missing {missing} in header {header}", file=table, line=1)
    else:
        if file_col is None and id_col is None:
            file_col = header[0]
        if not multitask and label_col is None:
            if len(header) < 2:
                raise DatasetError("label table needs a file column and a label column",
                                   file=table, line=1)
            label_col = next(h for h in header if h not in (file_col, id_col))
    problems: list[dict] = []
    clips: list[ClipSpec] = []
    for lineno, row in rows:
        where = f"{table}:{lineno}"
        ref = row[file_col] if file_col else row[id_col]
        audio = _find_audio(root, ref)
        if audio is None:
            problems.append({"file": str(root / ref), "line": where,
                             "reason": f"audio file {ref!r} not found in {root}"})
            continue
        try:
            targets = None
            label = None
            if multitask:
                targets = tuple(lab.unit_interval(row[t], t, table, lineno) for t in lab.TARGETS)
            else:
                label = row[label_col]
                if not label or any(ch in label for ch in "\t\r\n"):
                    raise DatasetError(f"bad label {label!r}", file=table, line=lineno)
            split = None
            if split_col and row[split_col]:
                split = row[split_col].lower()
                if split not in lab.SPLITS:
                    raise DatasetError(f"split {row[split_col]!r} is not train or test",
                                       file=table, line=lineno)
            start = dur = None
            if "start" in header and row.get("start", "") != "":
                start = _seconds(row["start"], "start", table, lineno)
                end = _seconds(row["end"], "end", table, lineno)
                if end <= start:
                    raise DatasetError(f"end {end:g} s is not after start {start:g} s",
                                       file=table, line=lineno)
                dur = end - start
        except DatasetError as e:
            problems.append({"file": str(audio), "line": where, "reason": e.reason})
            continue
        rel = audio.relative_to(root).as_posix()
        group = row[group_col] if group_col and row[group_col] else rel
        if id_col and row[id_col]:
            clip_id = clean_id(row[id_col])
        elif start is not None:
            clip_id = clean_id(f"{audio.stem}_{_fmt_seconds(start)}-{_fmt_seconds(start + dur)}")
        else:
            clip_id = clean_id(audio.stem)
        base = ClipSpec(clip_id, rel, str(audio), start=start, duration=dur, group=group,
                        label=label, targets=targets, split=split)
        if start is None:
            clips += _window_clips(base, window, duration, problems)
        else:
            clips.append(base)
    seen: dict[str, str] = {}
    for c in clips:
        if c.id in seen:
            raise DatasetError(f"two clips get the id {c.id!r} ({seen[c.id]} and {c.source}); "
                               "give an id column", file=table)
        seen[c.id] = c.source
    if not clips:
        raise DatasetError("no usable rows (see the problems above)" if problems
                           else "no rows", file=table)
    return Plan("multitask" if multitask else "genre", clips, problems)


def _seconds(text: str, name: str, table: Path, line: int) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DatasetError(f"{name} {text!r} is not a number of seconds",
                           file=table, line=line) from None
    if not math.isfinite(v) or v < 0:
        raise DatasetError(f"{name} {text!r} is not a time", file=table, line=line)
    return v


def split_groups(clips: Sequence[ClipSpec], test_fraction: float, seed: int) -> dict[str, str]:
    """Clip id -> ``train``/``test``, whole groups at a time.

    Genre clips are stratified by their group's most common label; each class
    sends shuffled groups to test while that brings its test share closer to
    ``test_fraction`` of its clips. Splits given in the table are kept (and
    checked: a group on both sides is refused). Deterministic for a seed.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError(f"test fraction {test_fraction} is outside [0, 1)")
    groups: dict[str, list[ClipSpec]] = defaultdict(list)
    for c in clips:
        groups[c.group].append(c)
    out: dict[str, str] = {}
    free: dict[str, list[str]] = defaultdict(list)      # stratum -> groups to place
    for g in sorted(groups):
        given = {c.split for c in groups[g] if c.split}
        if len(given) > 1:
            raise DatasetError(f"group {g!r} is given on both sides of the split "
                               f"({', '.join(c.id + '=' + str(c.split) for c in groups[g])})")
        if given:
            side = given.pop()
            for c in groups[g]:
                out[c.id] = side
            continue
        labels = Counter(c.label for c in groups[g] if c.label is not None)
        stratum = min(labels, key=lambda l: (-labels[l], l)) if labels else ""
        free[stratum].append(g)
    rng = np.random.default_rng(seed)
    for stratum in sorted(free):
        names = free[stratum]
        total = sum(len(groups[g]) for g in names)
        target = test_fraction * total
        taken = 0
        for i in rng.permutation(len(names)):
            g = names[int(i)]
            size = len(groups[g])
            side = "train"
            if taken + size / 2 <= target:
                side = "test"
                taken += size
            for c in groups[g]:
                out[c.id] = side
    return out



def make_plan(input_path: Path, layout: str, labels, window: float | None,
              duration: float | None) -> tuple[Plan, Path, Path | None]:
    """The plan of a collection; returns ``(plan, audio root, label table)`` (a
    ``--input`` that is the table itself is split into both)."""
    if layout == "genre-folders":
        return plan_genre_folders(input_path, window, duration), input_path, labels
    if labels is None:
        if input_path.is_file():
            labels, input_path = input_path, input_path.parent
        else:
            raise DatasetError(f"layout {layout} needs --labels TABLE", file=input_path)
    return plan_table(input_path, Path(labels), layout, window, duration), input_path, labels
