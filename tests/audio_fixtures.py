"""Synthesised audio for the tests: tones, chords in known keys, click tracks at
known tempi, noise, silence; and writers for WAV/FLAC/OGG collections.

Everything is deterministic (seeded) and short, so tests stay fast.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

SR = 22050
# MIDI note numbers of a few chords (root position).
CHORDS: dict[str, tuple[int, ...]] = {
    "C": (60, 64, 67),        # C E G
    "G": (67, 71, 74),        # G B D
    "Am": (57, 60, 64),       # A C E
    "F": (65, 69, 72),        # F A C
    "D": (62, 66, 69),        # D F# A
}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def midi_hz(note: int) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.3,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def chord(name: str, seconds: float, sr: int = SR, amp: float = 0.2,
          harmonics: int = 3) -> np.ndarray:
    """A chord of decaying-harmonic tones (a little like a keyboard)."""
    out = np.zeros(int(round(seconds * sr)), np.float64)
    for k, note in enumerate(CHORDS[name]):
        f0 = midi_hz(note)
        for h in range(1, harmonics + 1):
            if f0 * h < sr / 2:
                out += tone(f0 * h, seconds, sr, amp / h, phase=0.3 * k + 0.1 * h)
    return out.astype(np.float32)


def chord_pitch_classes(name: str) -> set[int]:
    return {note % 12 for note in CHORDS[name]}


def click_track(bpm: float, seconds: float, sr: int = SR, start: float = 0.25,
                amp: float = 0.8, seed: int = 0) -> np.ndarray:
    """Short noise bursts at a fixed tempo (plus a quiet bass tone underneath)."""
    n = int(round(seconds * sr))
    y = np.zeros(n, np.float32)
    rng = np.random.default_rng(seed)
    burst_len = int(0.03 * sr)
    env = np.exp(-np.arange(burst_len) / (0.005 * sr)).astype(np.float32)
    for t in np.arange(start, seconds, 60.0 / bpm):
        i = int(round(t * sr))
        m = min(burst_len, n - i)
        if m > 0:
            y[i:i + m] += amp * env[:m] * rng.uniform(-1, 1, m).astype(np.float32)
    y += tone(55.0, seconds, sr, 0.05)
    return y


def noise(seconds: float, sr: int = SR, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)


def silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), np.float32)


def song(seed: int, seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    """A distinct short 'song' per seed: chord + clicks + noise."""
    names = sorted(CHORDS)
    bpm = 90 + 10 * (seed % 6)
    y = (chord(names[seed % len(names)], seconds, sr, amp=0.15)
         + click_track(bpm, seconds, sr, amp=0.5, seed=seed)
         + noise(seconds, sr, 0.01, seed=seed))
    return y.astype(np.float32)


def write_audio(path: str | Path, y: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    """Write with soundfile; the format follows the extension (.wav/.flac/.ogg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, subtype=subtype)
    return path


def write_corrupt(path: str | Path) -> Path:
    """A file with an audio extension that is not audio."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(64)))
    return path


def write_empty_wav(path: str | Path, sr: int = SR) -> Path:
    """A valid WAV header with no samples."""
    return write_audio(path, np.zeros(0, np.float32), sr, subtype="PCM_16")


def write_nan_wav(path: str | Path, seconds: float = 1.0, sr: int = SR) -> Path:
    """A float WAV holding NaN samples."""
    y = noise(seconds, sr)
    y[len(y) // 2: len(y) // 2 + 10] = np.nan
    return write_audio(path, y, sr, subtype="FLOAT")


def genre_folders(root: str | Path, genres: Sequence[str], per_genre: int = 2,
                  seconds: float = 2.0, ext: str = ".wav") -> list[Path]:
    """GTZAN-style ``<root>/<genre>/<genre>.0000k<ext>``."""
    root = Path(root)
    files = []
    for gi, genre in enumerate(genres):
        for k in range(per_genre):
            y = song(seed=10 * gi + k, seconds=seconds)
            files.append(write_audio(root / genre / f"{genre.lower()}.{k:05d}{ext}", y))
    return files


def write_table(path: str | Path, header: Sequence[str], rows: Iterable[Sequence],
                delimiter: str = ",") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)
    return path


def prepared_musicnn_set(root: str | Path, name: str) -> Path:
    """Three 'emotions' of synthesised music (calm chords, busy clicks, noise), 4 clips of 3 s
    each, through `features --recipe musicnn --layout clip-table` and `prepare --view musicnn`
    into ``root/prep/<name>`` (a quarter for test, a quarter of the rest for validation);
    returns ``root``."""
    from jaxmusic import features
    from jaxmusic.data import tfrecords

    root = Path(root)
    makers = {"calm": lambda k: chord(["C", "F", "Am", "G"][k], 3.0, amp=0.1),
              "busy": lambda k: click_track(100 + 20 * k, 3.0) + chord("D", 3.0, amp=0.05),
              "noisy": lambda k: noise(3.0, amp=0.1, seed=k)}
    rows = []
    for label, make in makers.items():
        for k in range(4):
            write_audio(root / "audio" / f"{label}{k}.wav", make(k))
            rows.append((f"{label}{k}.wav", 0.0, 3.0, label, f"{label}{k}"))
    table = write_table(root / "clips.csv", ["file", "start", "end", "label", "group"], rows)
    features.convert(root / "audio", "clip-table", root / "data", name, labels=table, progress=False,
                     test_fraction=0.25, seed=0, recipe_name="musicnn")
    tfrecords.prepare(root / "data", name, root / "prep",
                      tfrecords.PrepareOptions(shards=1, view="musicnn", validation_fraction=0.25, progress=False))
    return root
