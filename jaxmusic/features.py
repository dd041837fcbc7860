"""Audio collections -> the course lab's dataset layout, with the course's librosa recipe.

This is the reference extractor: it makes feature files the way the lab's were
made (see REFERENCE section 1), one clip at a time on the CPU:

* ``librosa.load``-equivalent reading at 22050 Hz mono (any rate, any channel
  count; soundfile decodes, soxr_hq resamples, channels are averaged);
* mel: ``melspectrogram(n_fft=2048, hop_length=512, n_mels=128, power=2.0)``
  then ``power_to_db(ref=np.max)``; chroma: ``chroma_cqt(hop_length=512)``;
  fused: mel rows over chroma rows, written ``(140, T)`` by
  :func:`jaxmusic.data.lab.save_features`;
* beat-synchronised twin: ``effects.hpss``, ``beat.beat_track`` on the
  percussive part, ``util.sync(fused, beats, aggregate=np.median)``. With no
  beats (silence, a drone) beats fall on a fixed 120 BPM grid and the clip is
  flagged ``beat_grid_fallback``.

Collections (``--layout``):

``genre-folders``
    ``<input>/<genre>/<...>/<file>.wav`` (GTZAN: ``blues/blues.00000.wav``).
``clip-table``
    a CSV ``file,start,end,label[,group][,id][,split]``: clips cut by time from
    longer files; ``group`` (default: the file) keeps every clip of one song on
    one side of the train/test split.
``labelled-folder``
    a folder of audio plus a table: ``file,label`` (genre strings) or
    ``Id,valence,energy,danceability`` (a multitask set; the audio is
    ``<Id>.<ext>`` or the optional ``file`` column).

Output: ``<out>/<name>/`` and its ``<out>/<name>_beat/`` twin, each with
``{train,test}/<id>.fused.full.npy.gz``, ``{train,test}_labels.txt``,
``{train,test}_groups.txt`` (``Id<TAB>Group``) and, when a genre collection
uses classes outside the lab's 20 genre strings, ``classes.txt`` (one class a
line, index = line number). ``<out>/<name>/features_report.json`` lists every
clip (source, span, group, split, flags) and every problem (file + reason).

Runs are parallel (``--jobs``, one process per job), resumable (clips already
written are skipped; nothing is rewritten when nothing changed) and
deterministic (the same input gives byte-identical files whatever ``--jobs``).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxmusic import recipe
from jaxmusic.data import lab
from jaxmusic.data.lab import DatasetError

SAMPLE_RATE = recipe.SAMPLE_RATE
N_FFT = recipe.N_FFT
HOP_LENGTH = recipe.HOP_LENGTH
N_MELS = recipe.N_MELS
FALLBACK_BPM = 120.0
SILENCE_PEAK = 1e-6            # peak |sample| at or below this: flagged "silent"
RES_TYPE = "soxr_hq"           # librosa.load's default resampler

# What soundfile/libsndfile decodes (MP3 needs libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                    ".aifc", ".au", ".snd", ".w64", ".caf", ".rf64")
# Audio that libsndfile cannot decode: reported, never silently ignored.
UNDECODABLE_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".ape", ".alac")

LAYOUTS = ("genre-folders", "clip-table", "labelled-folder")
FLAG_SILENT = "silent"
FLAG_PADDED = "padded"
FLAG_TRUNCATED = "truncated"
FLAG_BEAT_FALLBACK = "beat_grid_fallback"
REPORT_NAME = "features_report.json"
JOURNAL_NAME = ".features_journal.jsonl"
CLASSES_NAME = "classes.txt"
GROUPS_HEADER = "Id\tGroup"
REPORT_VERSION = 1


# --- one clip: load and extract ------------------------------------------------------

def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, offset: float | None = None,
               duration: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as ``librosa.load(path, sr=sr, offset=offset, duration=duration)``
    would (mono float32 at ``sr``), and check it.

    Any sample rate and channel count (channels are averaged). Refuses with a
    :class:`DatasetError` naming the file: unreadable or corrupt, no samples
    (empty file, or ``offset`` past its end), non-finite samples. Returns
    ``(y, flags)``; flags: ``silent`` (peak at or below 1e-6), ``padded``
    (shorter than ``duration``: zeros appended), ``truncated`` (fewer frames
    than the header promises).
    """
    import soundfile as sf
    import librosa

    path = Path(path)
    flags: list[str] = []
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = int(f.samplerate)
            declared = int(f.frames)
            start = int(offset * native_sr) if offset else 0
            if start:
                if start >= declared > 0:
                    raise DatasetError(f"offset {offset:g} s is past the end of the audio "
                                       f"({declared / native_sr:.3f} s)", file=path)
                f.seek(start)
            want = int(duration * native_sr) if duration is not None else -1
            y = f.read(frames=want, dtype="float32", always_2d=True)
    except DatasetError:
        raise
    except Exception as e:  # soundfile.LibsndfileError, RuntimeError, TypeError, ...
        raise DatasetError(f"unreadable or corrupt audio ({type(e).__name__}: {e})",
                           file=path) from None
    if y.shape[0] == 0:
        raise DatasetError("no audio samples (zero-length)", file=path)
    expected = max(declared - start, 0) if want < 0 else min(want, max(declared - start, 0))
    if y.shape[0] < expected:
        flags.append(FLAG_TRUNCATED)
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{int(bad.sum())} non-finite (NaN/inf) samples, first at "
                           f"{(start + first) / native_sr:.3f} s", file=path)
    y = librosa.to_mono(np.ascontiguousarray(y.T)) if y.shape[1] > 1 else y[:, 0]
    y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type=RES_TYPE)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if duration is not None:
        target = int(math.ceil(int(duration * native_sr) * sr / native_sr))
        if y.shape[0] < target:
            y = np.concatenate([y, np.zeros(target - y.shape[0], np.float32)])
            flags.append(FLAG_PADDED)
    if not np.any(np.abs(y) > SILENCE_PEAK):
        flags.append(FLAG_SILENT)
    return y, flags


def beat_grid(n_frames: int, sr: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH,
              bpm: float = FALLBACK_BPM) -> np.ndarray:
    """Frames of a fixed-tempo beat grid (the fallback when tracking finds none)."""
    step = 60.0 / bpm * sr / hop_length
    return np.round(np.arange(step, n_frames, step)).astype(int)


def extract(y: np.ndarray, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The course recipe on mono audio: ``(full (T, 140), beat (B, 140), flags)``.

    ``full`` is mel dB (128) then chroma_cqt (12) per frame; ``beat`` the
    per-beat medians of ``full``. Flags: ``silent``, ``beat_grid_fallback``.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise DatasetError(f"expected non-empty mono audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DatasetError("audio has non-finite samples")
    flags: list[str] = []
    silent = not np.any(np.abs(y) > SILENCE_PEAK)
    if silent:
        flags.append(FLAG_SILENT)
    with warnings.catch_warnings():
        # Short or silent clips make librosa warn (n_fft too large, empty
        # tuning set); the result is still the recipe's.
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                             n_mels=N_MELS, power=2.0)
        mel_db = librosa.power_to_db(mel, ref=np.max)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP_LENGTH)
        n_frames = min(mel_db.shape[1], chroma.shape[1])
        fused = np.vstack([mel_db[:, :n_frames], chroma[:, :n_frames]]).astype(np.float32)
        beats = np.zeros(0, dtype=int)
        if not silent:
            _, percussive = librosa.effects.hpss(y)
            _, beats = librosa.beat.beat_track(y=percussive, sr=sr, hop_length=HOP_LENGTH)
        if len(beats) == 0:
            beats = beat_grid(n_frames, sr)
            flags.append(FLAG_BEAT_FALLBACK)
        beat = librosa.util.sync(fused, beats, aggregate=np.median)
    return (np.ascontiguousarray(fused.T), np.ascontiguousarray(beat.T, dtype=np.float32),
            flags)


RECIPES = ("lab", "musicnn")


def extract_musicnn(y: np.ndarray, sr: int = recipe.MUSICNN_SAMPLE_RATE
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The musicnn recipe of one clip at 16 kHz: ``(full (T, 96), beat (n_beats, 96), flags)``.

    ``full`` is ``log10(10000 * melspectrogram(sr=16000, n_fft=512, hop_length=256,
    n_mels=96) + 1)`` per frame, the input of the pretrained musicnn taggers
    (:func:`jaxmusic.frontend.musicnn_input` computes the same in JAX); ``beat`` its
    per-beat medians (beats as in :func:`extract`, at hop 256).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise DatasetError(f"expected non-empty mono audio, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DatasetError("audio has non-finite samples")
    flags: list[str] = []
    silent = not np.any(np.abs(y) > SILENCE_PEAK)
    if silent:
        flags.append(FLAG_SILENT)
    hop = recipe.MUSICNN_HOP_LENGTH
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=recipe.MUSICNN_N_FFT, hop_length=hop,
                                             n_mels=recipe.MUSICNN_BANDS)
        full = np.log10(10000.0 * mel + 1.0).astype(np.float32)
        beats = np.zeros(0, dtype=int)
        if not silent:
            _, percussive = librosa.effects.hpss(y)
            _, beats = librosa.beat.beat_track(y=percussive, sr=sr, hop_length=hop)
        if len(beats) == 0:
            beats = beat_grid(full.shape[1], sr, hop)
            flags.append(FLAG_BEAT_FALLBACK)
        beat = librosa.util.sync(full, beats, aggregate=np.median)
    return np.ascontiguousarray(full.T), np.ascontiguousarray(beat.T, dtype=np.float32), flags


def audio_seconds(path: str | os.PathLike) -> float:
    """Duration from the file header (refuses unreadable files like :func:`load_audio`)."""
    import soundfile as sf
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise DatasetError(f"unreadable or corrupt audio ({type(e).__name__}: {e})",
                           file=path) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DatasetError("no audio samples (zero-length)", file=path)
    return info.frames / info.samplerate


# --- the plan: which clips, with which label, on which side -----------------------------

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


# --- the run ---------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    set_dir: Path
    beat_dir: Path
    report: Path
    written: int
    skipped: int
    failed: int
    problems: list[dict]


def _worker_init() -> None:
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    warnings.simplefilter("ignore", UserWarning)


def make_clip(spec: dict, sr: int, full_path: str, beat_path: str, recipe_name: str = "lab") -> dict:
    """Load, extract and write one clip (runs in a worker). Returns its report entry,
    or ``{"problem": ...}`` for a refused file."""
    try:
        y, load_flags = load_audio(spec["path"], sr=sr, offset=spec["start"],
                                   duration=spec["duration"])
        full, beat, flags = (extract_musicnn if recipe_name == "musicnn" else extract)(y, sr)
    except DatasetError as e:
        return {"problem": {"id": spec["id"], "file": e.file or spec["path"], "reason": e.reason}}
    except Exception as e:  # librosa failing on one clip must not stop the run
        return {"problem": {"id": spec["id"], "file": spec["path"],
                            "reason": f"feature extraction failed ({type(e).__name__}: {e})"}}
    lab.save_features(full_path, full)
    lab.save_features(beat_path, beat)
    all_flags = sorted(set(load_flags) | set(flags))
    return {"id": spec["id"], "frames": int(full.shape[0]), "beats": int(beat.shape[0]),
            "flags": all_flags}


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _label_bytes(writer, rows) -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "labels.txt"
        writer(p, rows)
        return p.read_bytes()


def _settings(sr: int, layout: str, test_fraction: float, seed: int,
              duration: float | None, window: float | None, recipe_name: str = "lab") -> dict:
    import librosa
    if recipe_name == "musicnn":
        return {"recipe": "musicnn", "sample_rate": sr, "n_fft": recipe.MUSICNN_N_FFT,
                "hop_length": recipe.MUSICNN_HOP_LENGTH, "n_mels": recipe.MUSICNN_BANDS,
                "mel": "log10(10000 * melspectrogram(power=2.0) + 1)",
                "beat": "beat_track(hpss percussive) -> util.sync(aggregate=np.median)",
                "beat_fallback_bpm": FALLBACK_BPM, "resampler": RES_TYPE,
                "librosa": librosa.__version__, "layout": layout,
                "test_fraction": test_fraction, "seed": seed,
                "duration": duration, "window": window}
    return {"sample_rate": sr, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
            "mel": "power_to_db(melspectrogram(power=2.0), ref=np.max)",
            "chroma": "chroma_cqt(hop_length=512)",
            "beat": "beat_track(hpss percussive) -> util.sync(aggregate=np.median)",
            "beat_fallback_bpm": FALLBACK_BPM, "resampler": RES_TYPE,
            "librosa": librosa.__version__, "layout": layout,
            "test_fraction": test_fraction, "seed": seed,
            "duration": duration, "window": window}


def _load_known(set_dir: Path) -> tuple[dict | None, dict[str, dict]]:
    """Entries of clips made by earlier runs: the last report plus the journal."""
    known: dict[str, dict] = {}
    settings = None
    report = set_dir / REPORT_NAME
    if report.exists():
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            settings = data.get("settings")
            for clip_id, entry in data.get("clips", {}).items():
                known[clip_id] = dict(entry, id=clip_id)
        except (ValueError, AttributeError):
            pass
    journal = set_dir / JOURNAL_NAME
    if journal.exists():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue                      # a torn last line after a kill
            if isinstance(entry, dict) and "id" in entry:
                known[entry["id"]] = entry
    return settings, known


def convert(input_path: str | os.PathLike, layout: str, out: str | os.PathLike, name: str, *,
            labels: str | os.PathLike | None = None, test_fraction: float = 0.2, seed: int = 0,
            jobs: int = 1, strict: bool = False, duration: float | None = None,
            window: float | None = None, sample_rate: int | None = None,
            progress: bool = True, overwrite: bool = False, recipe_name: str = "lab") -> Result:
    """Turn an audio collection into a lab set ``<out>/<name>`` and ``<out>/<name>_beat``.

    ``duration``: seconds taken from the start of each whole file (shorter files
    are zero-padded and flagged). ``window``: whole files cut into consecutive
    clips of that many seconds (``<id>_000``, ``<id>_001`` ...; a tail of at least
    half a window is kept, zero-padded and flagged; all clips of a file share its
    group). Rows of a clip table keep their own start/end. The split is
    group-aware (:func:`split_groups`). Clips written by an earlier run with the
    same settings are skipped; a bad file is recorded in the report and the run
    goes on, unless ``strict`` (then :class:`DatasetError`). Returns counts and
    the problems; ``features_report.json`` has every clip and problem.
    """
    input_path = Path(input_path)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    if clean_id(name) != name:
        raise DatasetError(f"set name {name!r} must be letters, digits, '.', '_' or '-'")
    if duration is not None and window is not None:
        raise DatasetError("give --duration or --window, not both")
    for what, v in (("duration", duration), ("window", window)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise DatasetError(f"--{what} must be a positive number of seconds, got {v}")
    if layout == "genre-folders":
        plan = plan_genre_folders(input_path, window, duration)
    else:
        if labels is None:
            if input_path.is_file():
                labels, input_path = input_path, input_path.parent
            else:
                raise DatasetError(f"layout {layout} needs --labels TABLE", file=input_path)
        plan = plan_table(input_path, Path(labels), layout, window, duration)

    sides = split_groups(plan.clips, test_fraction, seed)
    set_dir = Path(out) / name
    beat_dir = Path(out) / f"{name}_beat"
    if recipe_name not in RECIPES:
        raise DatasetError(f"unknown recipe {recipe_name!r} (one of {', '.join(RECIPES)})")
    if sample_rate is None:
        sample_rate = recipe.MUSICNN_SAMPLE_RATE if recipe_name == "musicnn" else SAMPLE_RATE
    if recipe_name == "musicnn" and sample_rate != recipe.MUSICNN_SAMPLE_RATE:
        raise DatasetError(f"the musicnn recipe is defined at {recipe.MUSICNN_SAMPLE_RATE} Hz, "
                           f"got --sample-rate {sample_rate}")
    settings = _settings(sample_rate, layout, test_fraction, seed, duration, window, recipe_name)
    old_settings, known = (None, {}) if overwrite else _load_known(set_dir)
    if old_settings is not None and old_settings != settings:
        changed = sorted(k for k in settings if old_settings.get(k) != settings[k])
        raise DatasetError(f"this set was made with other settings ({', '.join(changed)}); "
                           "use --overwrite or another --name", file=set_dir / REPORT_NAME)
    for d in (set_dir, beat_dir):
        for split in lab.SPLITS:
            (d / split).mkdir(parents=True, exist_ok=True)

    problems: list[dict] = list(plan.problems)
    if strict and problems:
        p = problems[0]
        raise DatasetError(p["reason"], file=p.get("file"))
    entries: dict[str, dict] = {}
    todo: list[ClipSpec] = []
    paths: dict[str, tuple[Path, Path]] = {}
    for c in plan.clips:
        fname = lab.feature_file_name(c.id)
        full_path = set_dir / sides[c.id] / fname
        beat_path = beat_dir / sides[c.id] / fname
        paths[c.id] = (full_path, beat_path)
        for d in (set_dir, beat_dir):       # a clip whose side changed: drop the old copy
            other = d / ("test" if sides[c.id] == "train" else "train") / fname
            if other.exists():
                other.unlink()
        old = known.get(c.id)
        if (old is not None and full_path.exists() and beat_path.exists()
                and old.get("source") == c.source and old.get("start") == c.start
                and old.get("duration") == c.duration and "frames" in old):
            entries[c.id] = old
        else:
            todo.append(c)
    skipped = len(entries)

    journal_path = set_dir / JOURNAL_NAME
    failed = 0
    written = 0
    spec_of = {c.id: c for c in plan.clips}

    def record(result: dict) -> None:
        nonlocal failed, written
        if "problem" in result:
            failed += 1
            problems.append(result["problem"])
            if strict:
                p = result["problem"]
                raise DatasetError(p["reason"], file=p["file"])
            return
        c = spec_of[result["id"]]
        entry = {"id": c.id, "source": c.source, "start": c.start, "duration": c.duration,
                 "frames": result["frames"], "beats": result["beats"], "flags": result["flags"]}
        entries[c.id] = entry
        written += 1
        with open(journal_path, "a", encoding="utf-8") as j:
            j.write(json.dumps(entry, sort_keys=True) + "\n")

    bar = None

    def advance() -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(skipped=skipped, failed=failed, refresh=False)

    if todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="clip", desc=f"features {name}", disable=not progress,
                   dynamic_ncols=True)
        bar.set_postfix(skipped=skipped, failed=0)
    try:
        args = [({"id": c.id, "path": c.path, "start": c.start, "duration": c.duration},
                 sample_rate, str(paths[c.id][0]), str(paths[c.id][1]), recipe_name) for c in todo]
        if jobs <= 1 or len(todo) <= 1:
            _in_process(args, record, advance)
        else:
            with cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=_mp_context(),
                                        initializer=_worker_init) as pool:
                futures = [pool.submit(make_clip, *a) for a in args]
                try:
                    for fut in cf.as_completed(futures):
                        record(fut.result())
                        advance()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()

    _write_set_files(plan, sides, entries, problems, set_dir, beat_dir, settings,
                     input_path, labels)
    if journal_path.exists():
        journal_path.unlink()
    return Result(set_dir, beat_dir, set_dir / REPORT_NAME, written, skipped, failed, problems)


def _mp_context():
    """Workers forked from a fresh server process that has imported librosa once
    (its numba kernels compile at import): never a fork of this process, which
    may hold JAX or BLAS threads. Falls back to spawn where forkserver is missing."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # pragma: no cover - not on this platform
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(["jaxmusic.features", "librosa", "librosa.beat",
                                "librosa.effects", "librosa.feature", "soundfile"])
    return ctx


def _in_process(args, record, advance) -> None:
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)      # same BLAS threading as the workers
    except ImportError:  # pragma: no cover
        limits = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for a in args:
                record(make_clip(*a))
                advance()
    finally:
        if limits is not None:
            limits.restore_original_limits()


def _write_set_files(plan: Plan, sides: dict[str, str], entries: dict[str, dict],
                     problems: list[dict], set_dir: Path, beat_dir: Path, settings: dict,
                     input_path: Path, labels) -> None:
    done = [c for c in plan.clips if c.id in entries]
    lab_genres = plan.kind == "genre" and all(c.label in lab.GENRE_MERGE for c in plan.clips)
    classes = sorted({c.label for c in plan.clips if c.label is not None})
    for d in (set_dir, beat_dir):
        for split in lab.SPLITS:
            rows = [c for c in done if sides[c.id] == split]
            if plan.kind == "genre":
                data = _label_bytes(lab.write_genre_labels,
                                    [(lab.feature_file_name(c.id), c.label) for c in rows])
            else:
                data = _label_bytes(lab.write_multitask_labels, [(c.id, c.targets) for c in rows])
            _write_if_changed(d / f"{split}_labels.txt", data)
            groups = "\n".join([GROUPS_HEADER] + [f"{c.id}\t{_field(c.group)}" for c in rows])
            _write_if_changed(d / f"{split}_groups.txt", (groups + "\n").encode("utf-8"))
        if plan.kind == "genre" and not lab_genres:
            _write_if_changed(d / CLASSES_NAME, ("\n".join(classes) + "\n").encode("utf-8"))
    clips = {}
    for c in plan.clips:
        if c.id not in entries:
            continue
        e = entries[c.id]
        clips[c.id] = {"source": c.source, "start": c.start, "duration": c.duration,
                       "group": c.group, "split": sides[c.id],
                       "label": c.label, "targets": list(c.targets) if c.targets else None,
                       "frames": e["frames"], "beats": e["beats"], "flags": e["flags"]}
    counts = Counter(sides[c.id] for c in done)
    flag_counts = Counter(f for e in clips.values() for f in e["flags"])
    report = {
        "version": REPORT_VERSION,
        "set": set_dir.name, "beat_set": beat_dir.name, "kind": plan.kind,
        "classes": None if plan.kind != "genre" else classes,
        "lab_genre_strings": lab_genres if plan.kind == "genre" else None,
        "settings": settings,
        "counts": {"clips": len(clips), "train": counts.get("train", 0),
                   "test": counts.get("test", 0), "problems": len(problems),
                   "flags": dict(sorted(flag_counts.items()))},
        "problems": sorted(problems, key=lambda p: (str(p.get("file")), str(p.get("id")),
                                                    p["reason"])),
        "clips": clips,
    }
    _write_if_changed(set_dir / REPORT_NAME,
                      (json.dumps(report, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _field(text: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", text)
