"""The course lab's on-disk dataset layout: the one module that knows its quirks.

Layout (see README "Data"): a root folder holding four sets, each with
``train/``, ``test/``, ``train_labels.txt`` and ``test_labels.txt``:

* ``fma_genre_spectrograms`` and ``fma_genre_spectrograms_beat``: a header line,
  then ``<file name>\\t<genre string>`` per clip (20 genre strings, merged to 10
  classes by :data:`GENRE_MERGE`).
* ``multitask_dataset`` and ``multitask_dataset_beat``: a header
  ``Id,valence,energy,danceability``, then ``<id>,<v>,<e>,<d>`` per clip, each
  value in [0, 1]. The test labels are not given (no ``test_labels.txt``).

Each clip is ``<id>.fused.full.npy.gz`` (gzip of ``np.save``) or the unpacked
``<id>.fused.full.npy``: a float32 array of shape ``(140, T)``, rows ``0:128``
mel dB and rows ``128:140`` chroma. Readers transpose to ``(T, 140)``.

File names in label files are spelled in several ways (``.gz`` or not, a
``beatsync.fused`` or ``full.fused`` infix); :func:`resolve_feature_file` maps
each to the file on disk or says clearly that it cannot.

Everything downstream sees clean :class:`Record` objects. Bad input raises
:class:`DatasetError` naming the file (and line); with ``skip_bad`` the problem
is appended to a :class:`SkipLog` instead and nothing else is lost.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import re
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from jaxmusic import recipe

N_MEL = recipe.N_MELS
N_CHROMA = recipe.N_CHROMA
N_FEATURES = recipe.N_FEATURES
# Column ranges of each feature view in the (T, 140) fused array.
VIEWS: dict[str, tuple[int, int]] = {
    "mel": (0, N_MEL),
    "chroma": (N_MEL, N_FEATURES),
    "fused": (0, N_FEATURES),
    "musicnn": (0, recipe.MUSICNN_BANDS),
}
# Feature rows of the files each view is read from: the lab recipe's 140, or the
# musicnn recipe's 96 (`jaxmusic features --recipe musicnn`, the pretrained taggers' input).
VIEW_ROWS: dict[str, int] = {"mel": N_FEATURES, "chroma": N_FEATURES, "fused": N_FEATURES,
                             "musicnn": recipe.MUSICNN_BANDS}
FEATURE_ROWS = (N_FEATURES, recipe.MUSICNN_BANDS)


def views_of(rows: int) -> tuple[str, ...]:
    """The views a feature file of ``rows`` rows is read through."""
    return tuple(v for v, n in VIEW_ROWS.items() if n == rows)

# The lab's 20 genre strings -> 10 classes (None: dropped from the task).
GENRE_MERGE: dict[str, str | None] = {
    "Rock": "Rock",
    "Psych-Rock": "Rock",
    "Indie-Rock": None,
    "Post-Rock": "Rock",
    "Psych-Folk": "Folk",
    "Folk": "Folk",
    "Metal": "Metal",
    "Punk": "Metal",
    "Post-Punk": None,
    "Trip-Hop": "Trip-Hop",
    "Pop": "Pop",
    "Electronic": "Electronic",
    "Hip-Hop": "Hip-Hop",
    "Classical": "Classical",
    "Blues": "Blues",
    "Chiptune": "Electronic",
    "Jazz": "Jazz",
    "Soundtrack": None,
    "International": None,
    "Old-Time": None,
}
GENRE_STRINGS: tuple[str, ...] = tuple(GENRE_MERGE)
CLASSES: tuple[str, ...] = tuple(sorted({c for c in GENRE_MERGE.values() if c}))
CLASS_INDEX: dict[str, int] = {c: i for i, c in enumerate(CLASSES)}

TARGETS = recipe.TARGETS
MULTITASK_HEADER = "Id," + ",".join(TARGETS)
GENRE_HEADER = "Id\tGenre"

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class SetInfo:
    name: str
    kind: str  # "genre" or "multitask"
    beat: bool


SETS: dict[str, SetInfo] = {
    "fma_genre_spectrograms": SetInfo("fma_genre_spectrograms", "genre", False),
    "fma_genre_spectrograms_beat": SetInfo("fma_genre_spectrograms_beat", "genre", True),
    "multitask_dataset": SetInfo("multitask_dataset", "multitask", False),
    "multitask_dataset_beat": SetInfo("multitask_dataset_beat", "multitask", True),
}


def set_info(set_dir: str | os.PathLike) -> SetInfo:
    """The kind of a set, from its folder name (or its label file's header)."""
    path = Path(set_dir)
    if path.name in SETS:
        return SETS[path.name]
    # A renamed folder: decide by the header of its training labels.
    labels = path / "train_labels.txt"
    if labels.exists():
        with open(labels, encoding="utf-8") as f:
            header = f.readline().strip()
        kind = "multitask" if header.replace(" ", "").lower() == MULTITASK_HEADER.lower() else "genre"
        return SetInfo(path.name, kind, "beat" in path.name)
    raise DatasetError(f"{path}: not a lab dataset set (expected one of {sorted(SETS)} "
                       "or a folder with train_labels.txt)")


class DatasetError(ValueError):
    """Bad input in the lab layout; the message names the file (and line)."""

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 line: int | None = None):
        self.file = None if file is None else str(file)
        self.line = line
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)


@dataclasses.dataclass
class SkipLog:
    """Every item skipped under ``skip_bad``, with where and why."""

    items: list[dict] = dataclasses.field(default_factory=list)

    def add(self, err: DatasetError, *, split: str | None = None, clip_id: str | None = None):
        self.items.append({"split": split, "id": clip_id, "file": err.file,
                           "line": err.line, "reason": err.reason})

    def __len__(self) -> int:
        return len(self.items)


@dataclasses.dataclass
class Record:
    """One clip, clean: features (T, 140) float32 in the fused layout."""

    id: str
    features: np.ndarray
    length: int
    label: int | None = None          # merged class index (genre sets)
    genre: str | None = None          # the genre string as written
    targets: np.ndarray | None = None  # (3,) valence, energy, danceability
    source: str = ""

    def view(self, name: str) -> np.ndarray:
        lo, hi = VIEWS[name]
        return self.features[:, lo:hi]


@dataclasses.dataclass(frozen=True)
class LabelEntry:
    """One line of a label file, before its feature file is read."""

    id: str
    file: Path                 # resolved feature file
    line: int                  # 1-based line number in the label file
    label_file: Path | None
    genre: str | None = None
    label: int | None = None   # None when the merge drops the genre
    targets: tuple[float, float, float] | None = None


# --- file names ---------------------------------------------------------------

_NAME = re.compile(
    r"^(?P<id>[^/\\]+?)\.(?:fused\.full|full\.fused|beatsync\.fused|fused)\.npy(?:\.gz)?$")
FEATURE_SUFFIXES = (".fused.full.npy.gz", ".fused.full.npy")


def feature_file_name(clip_id: str, gz: bool = True) -> str:
    return f"{clip_id}.fused.full.npy" + (".gz" if gz else "")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def resolve_feature_file(folder: Path, name: str, *, label_file: Path | None = None,
                         line: int | None = None) -> tuple[str, Path]:
    """Map a name as written in a label file to ``(clip id, file on disk)``.

    Accepts the bare id, the name as written, the name with or without ``.gz``,
    and the ``beatsync.fused`` / ``full.fused`` spellings of ``fused.full``.
    """
    where = {"file": label_file, "line": line}
    name = name.strip()
    if not name:
        raise DatasetError("empty file name", **where)
    if os.path.isabs(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise DatasetError(f"file name {name!r} escapes the dataset folder {folder}", **where)
    m = _NAME.match(name)
    clip_id = m.group("id") if m else name
    candidates = [name]
    if name.endswith(".gz"):
        candidates.append(name[:-3])
    else:
        candidates.append(name + ".gz")
    candidates += [clip_id + s for s in FEATURE_SUFFIXES]
    for cand in candidates:
        path = folder / cand
        if not _inside(path, folder):
            raise DatasetError(f"file name {name!r} escapes the dataset folder {folder}", **where)
        if path.is_file():
            return clip_id, path
    tried = ", ".join(dict.fromkeys(candidates))
    raise DatasetError(f"no feature file for {name!r} in {folder} (tried: {tried})", **where)


# --- feature files --------------------------------------------------------------

def load_features(path: str | os.PathLike) -> np.ndarray:
    """Read one feature file; returns the (T, 140) float32 fused array (or the musicnn
    recipe's (T, 96) log-mel array)."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError("feature file is missing", file=path) from None
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"corrupt or truncated gzip ({e})", file=path) from None
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/EOFError/UnpicklingError
        raise DatasetError(f"not a readable .npy array ({type(e).__name__}: {e})",
                           file=path) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DatasetError(f"expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}",
                           file=path)
    if arr.ndim != 2:
        raise DatasetError(f"expected a 2-D array (140, T), got shape {arr.shape}", file=path)
    if arr.shape[0] not in FEATURE_ROWS:
        raise DatasetError(f"expected {N_FEATURES} feature rows (128 mel + 12 chroma; or "
                           f"{recipe.MUSICNN_BANDS} of the musicnn recipe), got shape {arr.shape}", file=path)
    if arr.shape[1] < 1:
        raise DatasetError("array has no time frames", file=path)
    arr = np.ascontiguousarray(arr.T, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        t, fi = np.argwhere(bad)[0]
        raise DatasetError(f"{int(bad.sum())} non-finite values (first at frame {t}, "
                           f"feature {fi}: {arr[t, fi]})", file=path)
    return arr


def save_features(path: str | os.PathLike, features_tf: np.ndarray, *, gz: bool = True,
                  compresslevel: int = 6) -> Path:
    """Write a (T, 140) array in the lab's format: ``np.save`` of the (140, T)
    float32 transpose, gzipped when the name ends in ``.gz``."""
    path = Path(path)
    arr = np.ascontiguousarray(np.asarray(features_tf, dtype=np.float32).T)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if gz:
        # mtime=0 keeps the bytes deterministic.
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                  compresslevel=compresslevel, mtime=0) as f:
            f.write(buf.getvalue())
    else:
        tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


# --- label files ------------------------------------------------------------------

def read_table_lines(path: Path, what: str = "label file") -> list[str]:
    """The lines of a text table with a header line, or a clear error naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{what} is missing", file=path) from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} is not UTF-8 text ({e})", file=path) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DatasetError(f"{what} is empty (expected a header line)", file=path)
    return lines


def _read_lines(path: Path) -> list[str]:
    lines = read_table_lines(path)
    if not any(l.strip() for l in lines[1:]):
        raise DatasetError("label file has a header but no entries", file=path)
    return lines


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """Genre strings as written -> class indices."""

    merge: dict[str, str | None]
    classes: tuple[str, ...]

    def index(self, genre: str) -> int | None:
        merged = self.merge[genre]
        return None if merged is None else self.classes.index(merged)


LAB_CLASS_MAP = ClassMap(GENRE_MERGE, CLASSES)


def class_map(set_dir: str | os.PathLike) -> ClassMap:
    """The lab's 20 -> 10 merge, or, for a collection converted from audio with
    classes of its own (GTZAN's ``country``, ``disco`` ...), the identity map over
    the names listed one per line in ``classes.txt`` beside the label files."""
    path = Path(set_dir) / "classes.txt"
    if not path.exists():
        return LAB_CLASS_MAP
    names = [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    if not names:
        raise DatasetError("classes.txt lists no classes", file=path)
    if len(set(names)) != len(names):
        raise DatasetError("classes.txt lists a class twice", file=path)
    return ClassMap({n: n for n in names}, tuple(sorted(names)))


def _parse_genre_line(text: str, folder: Path, path: Path, lineno: int,
                      classes: ClassMap) -> LabelEntry:
    parts = text.split("\t")
    if len(parts) != 2:
        parts = text.split()
    if len(parts) != 2:
        raise DatasetError(f"expected '<file name><TAB><genre>', got {text!r}",
                           file=path, line=lineno)
    name, genre = parts[0].strip(), parts[1].strip()
    if genre not in classes.merge:
        raise DatasetError(f"unknown genre {genre!r} (known: {', '.join(classes.merge)})",
                           file=path, line=lineno)
    clip_id, file = resolve_feature_file(folder, name, label_file=path, line=lineno)
    return LabelEntry(clip_id, file, lineno, path, genre=genre, label=classes.index(genre))


def unit_interval(text: str, name: str, path: Path, line: int) -> float:
    """A table cell that must be a number in [0, 1] (an emotion target)."""
    try:
        v = float(text)
    except ValueError:
        raise DatasetError(f"{name} {text!r} is not a number", file=path, line=line) from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise DatasetError(f"{name} {text} is outside [0, 1]", file=path, line=line)
    return v


def _parse_multitask_line(text: str, folder: Path, path: Path, lineno: int,
                          classes: ClassMap) -> LabelEntry:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 1 + len(TARGETS):
        raise DatasetError(f"expected '{MULTITASK_HEADER}' columns, got {text!r}",
                           file=path, line=lineno)
    values = [unit_interval(raw, name, path, lineno) for name, raw in zip(TARGETS, parts[1:])]
    clip_id, file = resolve_feature_file(folder, parts[0], label_file=path, line=lineno)
    return LabelEntry(clip_id, file, lineno, path, targets=tuple(values))


def read_labels(set_dir: str | os.PathLike, split: str, *,
                skipped: SkipLog | None = None) -> list[LabelEntry]:
    """Parse ``<split>_labels.txt`` of a set and resolve every feature file.

    For a multitask test split without a label file, lists the feature files
    (targets unknown). Raises :class:`DatasetError` on the first problem, or,
    when ``skipped`` is given, records each bad line there and goes on.
    """
    set_dir = Path(set_dir)
    info = set_info(set_dir)
    folder = set_dir / split
    if not folder.is_dir():
        raise DatasetError(f"split folder {split}/ is missing", file=set_dir)
    path = set_dir / f"{split}_labels.txt"
    if info.kind == "multitask" and split == "test" and not path.exists():
        return _list_unlabelled(folder, skipped)
    lines = _read_lines(path)
    header = lines[0].strip().lstrip("\ufeff")
    if info.kind == "multitask" and header.replace(" ", "").lower() != MULTITASK_HEADER.lower():
        raise DatasetError(f"expected header {MULTITASK_HEADER!r}, got {header!r}",
                           file=path, line=1)
    parse = _parse_genre_line if info.kind == "genre" else _parse_multitask_line
    classes = class_map(set_dir)
    entries: list[LabelEntry] = []
    seen: dict[str, int] = {}
    for lineno, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        try:
            entry = parse(text, folder, path, lineno, classes)
            if entry.id in seen:
                raise DatasetError(f"duplicate id {entry.id!r} (first on line {seen[entry.id]})",
                                   file=path, line=lineno)
        except DatasetError as e:
            if skipped is None:
                raise
            skipped.add(e, split=split)
            continue
        seen[entry.id] = lineno
        entries.append(entry)
    return entries


def _list_unlabelled(folder: Path, skipped: SkipLog | None) -> list[LabelEntry]:
    by_id: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        m = _NAME.match(path.name)
        if not m or not path.is_file():
            continue
        clip_id = m.group("id")
        if clip_id in by_id:
            err = DatasetError(f"duplicate id {clip_id!r} (also {by_id[clip_id].name})", file=path)
            if skipped is None:
                raise err
            skipped.add(err, split="test", clip_id=clip_id)
            continue
        by_id[clip_id] = path
    if not by_id:
        raise DatasetError("no feature files (*.fused.full.npy[.gz]) found", file=folder)
    return [LabelEntry(i, p, 0, None) for i, p in by_id.items()]


def load_record(entry: LabelEntry) -> Record:
    """Read the feature file of one label entry."""
    try:
        feats = load_features(entry.file)
    except DatasetError as e:
        if entry.label_file is not None:
            e.args = (f"{e.args[0]} (listed in {entry.label_file}:{entry.line})",)
        raise
    targets = None if entry.targets is None else np.asarray(entry.targets, np.float32)
    return Record(entry.id, feats, feats.shape[0], label=entry.label, genre=entry.genre,
                  targets=targets, source=str(entry.file))


def iter_records(set_dir: str | os.PathLike, split: str, *, keep_dropped: bool = False,
                 skipped: SkipLog | None = None,
                 entries: Sequence[LabelEntry] | None = None) -> Iterator[Record]:
    """Stream the clean records of one split, one feature file at a time.

    Genre clips whose genre the merge drops are left out unless
    ``keep_dropped``; count them with :func:`merge_counts`.
    """
    if entries is None:
        entries = read_labels(set_dir, split, skipped=skipped)
    for entry in entries:
        if entry.genre is not None and entry.label is None and not keep_dropped:
            continue
        try:
            yield load_record(entry)
        except DatasetError as e:
            if skipped is None:
                raise
            skipped.add(e, split=split, clip_id=entry.id)


def merge_counts(entries: Sequence[LabelEntry],
                 classes: ClassMap = LAB_CLASS_MAP) -> dict[str, dict[str, int]]:
    """Clips per genre string before the merge, and per class after it."""
    before: dict[str, int] = {}
    after: dict[str, int] = {c: 0 for c in classes.classes}
    dropped = 0
    for e in entries:
        if e.genre is None:
            continue
        before[e.genre] = before.get(e.genre, 0) + 1
        if e.label is None:
            dropped += 1
        else:
            after[classes.classes[e.label]] += 1
    return {"before": dict(sorted(before.items())), "after": after,
            "dropped_by_merge": {"count": dropped}}


def write_genre_labels(path: str | os.PathLike, rows: Sequence[tuple[str, str]]) -> None:
    """Write a genre label file: header, then ``<file name>\\t<genre>`` rows."""
    lines = [GENRE_HEADER] + [f"{name}\t{genre}" for name, genre in rows]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_multitask_labels(path: str | os.PathLike,
                           rows: Sequence[tuple[str, Sequence[float]]]) -> None:
    """Write a multitask label (or prediction) file: ``Id,valence,energy,danceability``."""
    lines = [MULTITASK_HEADER] + [
        f"{clip_id}," + ",".join(f"{float(v):.6f}" for v in values) for clip_id, values in rows]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
