"""The run of ``jaxmusic features``: plan, skip what is done, compute, write the set.

Stages of :func:`convert`: :func:`jaxmusic.features.plan.make_plan` (which clips),
:func:`_open_set` (settings, what an earlier run already wrote), :func:`_pending`
(the clips left to make), a compute loop (:func:`_compute_librosa`: one clip per
worker process, the librosa recipe; :func:`_compute_jax`: audio decoded by the
workers, mel and chroma batched in JAX, beats on the host), then
:func:`_write_set_files` (label, group and class files, ``features_report.json``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from jaxmusic import recipe, workers
from jaxmusic.features import handcrafted
from jaxmusic.data import lab
from jaxmusic.data.lab import DatasetError
from jaxmusic.features import jax_recipe
from jaxmusic.features.audio import RES_TYPE, SAMPLE_RATE, load_audio
from jaxmusic.features.librosa_recipe import FALLBACK_BPM, RECIPES, extract, extract_musicnn
from jaxmusic.features.plan import LAYOUTS, ClipSpec, Plan, clean_id, make_plan, split_groups

FRONTENDS = ("librosa", "jax")
REPORT_NAME = "features_report.json"
JOURNAL_NAME = ".features_journal.jsonl"
CLASSES_NAME = "classes.txt"
GROUPS_HEADER = "Id\tGroup"
REPORT_VERSION = 1
AUDIO_DIR = "audio_features"          # --audio-features: <set>/audio_features/<id>.npy
# What the workers import once (their forkserver preloads it).
PRELOAD = ("jaxmusic.features.convert", "librosa", "librosa.beat", "librosa.effects",
           "librosa.feature", "soundfile")


@dataclasses.dataclass
class Result:
    set_dir: Path
    beat_dir: Path
    report: Path
    written: int
    skipped: int
    failed: int
    problems: list[dict]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How each clip is computed (all of it recorded in the report's settings)."""

    sample_rate: int = SAMPLE_RATE
    name: str = "lab"                  # lab (the course's) | musicnn (the pretrained taggers')
    frontend: str = "librosa"
    fmax: float | None = None          # mel cut-off; None: sample_rate / 2
    audio_features: bool = False       # also keep MFCC/ZCR/RMS/tempo per clip

    def settings(self, layout: str, test_fraction: float, seed: int,
                 duration: float | None, window: float | None) -> dict:
        import librosa
        common = {"beat": "beat_track(hpss percussive) -> util.sync(aggregate=np.median)",
                  "beat_fallback_bpm": FALLBACK_BPM, "resampler": RES_TYPE,
                  "librosa": librosa.__version__, "layout": layout,
                  "test_fraction": test_fraction, "seed": seed,
                  "duration": duration, "window": window}
        if self.name == "musicnn":
            return {"recipe": "musicnn", "sample_rate": self.sample_rate,
                    "n_fft": recipe.MUSICNN_N_FFT, "hop_length": recipe.MUSICNN_HOP_LENGTH,
                    "n_mels": recipe.MUSICNN_BANDS,
                    "mel": "log10(10000 * melspectrogram(power=2.0) + 1)", **common}
        out = {"sample_rate": self.sample_rate, "n_fft": recipe.N_FFT,
               "hop_length": recipe.HOP_LENGTH, "n_mels": recipe.N_MELS,
               "mel": "power_to_db(melspectrogram(power=2.0), ref=np.max)",
               "chroma": "chroma_cqt(hop_length=512)", **common}
        # Keys only where they differ from the recipe: sets made before stay resumable.
        if self.frontend == "jax":
            out.update(frontend="jax", chroma="chroma_stft(tuning=0) (jaxmusic.frontend)",
                       mel=out["mel"] + " (jaxmusic.frontend)",
                       beat="beat_track(onset_strength(mel dB)) -> util.sync(aggregate=np.median)")
        if self.fmax is not None:
            out["fmax"] = self.fmax
        if self.audio_features:
            out["audio_features"] = list(handcrafted.audio_feature_names())
        return out


def _problem(spec: dict, e: Exception) -> dict:
    if isinstance(e, DatasetError):
        return {"problem": {"id": spec["id"], "file": e.file or spec["path"], "reason": e.reason}}
    return {"problem": {"id": spec["id"], "file": spec["path"],
                        "reason": f"feature extraction failed ({type(e).__name__}: {e})"}}


def _save_audio_features(path: str | None, y: np.ndarray, sr: int) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = path + ".tmp.npy"
        np.save(tmp, handcrafted.audio_features(y, sr), allow_pickle=False)
        os.replace(tmp, path)


def make_clip(spec: dict, rec: Recipe, full_path: str, beat_path: str,
              audio_path: str | None = None) -> dict:
    """Load, extract and write one clip with the librosa recipe (runs in a worker).
    Returns its report entry, or ``{"problem": ...}`` for a refused file."""
    try:
        y, load_flags = load_audio(spec["path"], sr=rec.sample_rate, offset=spec["start"],
                                   duration=spec["duration"])
        if rec.name == "musicnn":
            full, beat, flags = extract_musicnn(y, rec.sample_rate)
        else:
            full, beat, flags = extract(y, rec.sample_rate, rec.fmax)
        _save_audio_features(audio_path, y, rec.sample_rate)
    except Exception as e:  # librosa failing on one clip must not stop the run
        return _problem(spec, e)
    lab.save_features(full_path, full)
    lab.save_features(beat_path, beat)
    return {"id": spec["id"], "frames": int(full.shape[0]), "beats": int(beat.shape[0]),
            "flags": sorted(set(load_flags) | set(flags))}


def load_clip(spec: dict, rec: Recipe, audio_path: str | None = None) -> dict:
    """The JAX path's worker half: decode (and check) one clip's audio."""
    try:
        y, flags = load_audio(spec["path"], sr=rec.sample_rate, offset=spec["start"],
                              duration=spec["duration"])
        _save_audio_features(audio_path, y, rec.sample_rate)
    except Exception as e:
        return _problem(spec, e)
    return {"id": spec["id"], "y": y, "flags": flags}


def _worker_init() -> None:
    workers.limit_blas_in_worker()
    warnings.simplefilter("ignore", UserWarning)


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



def _check(layout: str, name: str, duration, window, rec: Recipe) -> None:
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    if clean_id(name) != name:
        raise DatasetError(f"set name {name!r} must be letters, digits, '.', '_' or '-'")
    if duration is not None and window is not None:
        raise DatasetError("give --duration or --window, not both")
    for what, v in (("duration", duration), ("window", window)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise DatasetError(f"--{what} must be a positive number of seconds, got {v}")
    if rec.name not in RECIPES:
        raise DatasetError(f"unknown recipe {rec.name!r} (one of {', '.join(RECIPES)})")
    if rec.name == "musicnn":
        if rec.sample_rate != recipe.MUSICNN_SAMPLE_RATE:
            raise DatasetError(f"the musicnn recipe is defined at {recipe.MUSICNN_SAMPLE_RATE} Hz, "
                               f"got --sample-rate {rec.sample_rate}")
        if rec.frontend != "librosa" or rec.fmax is not None:
            raise DatasetError("the musicnn recipe runs on librosa at its own mel range "
                               "(no --frontend jax, no --fmax)")
    if rec.frontend not in FRONTENDS:
        raise DatasetError(f"unknown frontend {rec.frontend!r} (one of {', '.join(FRONTENDS)})")
    if rec.fmax is not None and not (math.isfinite(rec.fmax)
                                     and 0 < rec.fmax <= rec.sample_rate / 2):
        raise DatasetError(f"--fmax must be in (0, {rec.sample_rate / 2:g}] Hz (half the "
                           f"sample rate), got {rec.fmax:g}")


def _open_set(set_dir: Path, beat_dir: Path, settings: dict, overwrite: bool) -> dict[str, dict]:
    """Make the folders; what earlier runs with the same settings wrote (refuses others)."""
    old_settings, known = (None, {}) if overwrite else _load_known(set_dir)
    if old_settings is not None and old_settings != settings:
        changed = sorted(k for k in set(settings) | set(old_settings)
                         if old_settings.get(k) != settings.get(k))
        raise DatasetError(f"this set was made with other settings ({', '.join(changed)}); "
                           "use --overwrite or another --name", file=set_dir / REPORT_NAME)
    for d in (set_dir, beat_dir):
        for split in lab.SPLITS:
            (d / split).mkdir(parents=True, exist_ok=True)
    return known


@dataclasses.dataclass
class _Clip:
    spec: ClipSpec
    full: Path
    beat: Path
    audio: Path | None


def _pending(plan: Plan, sides: dict[str, str], known: dict[str, dict], set_dir: Path,
             beat_dir: Path, rec: Recipe) -> tuple[dict[str, dict], list[_Clip]]:
    """(entries of clips already made, the clips left to make)."""
    entries: dict[str, dict] = {}
    todo: list[_Clip] = []
    for c in plan.clips:
        fname = lab.feature_file_name(c.id)
        clip = _Clip(c, set_dir / sides[c.id] / fname, beat_dir / sides[c.id] / fname,
                     set_dir / AUDIO_DIR / f"{c.id}.npy" if rec.audio_features else None)
        for d in (set_dir, beat_dir):       # a clip whose side changed: drop the old copy
            other = d / ("test" if sides[c.id] == "train" else "train") / fname
            if other.exists():
                other.unlink()
        old = known.get(c.id)
        if (old is not None and clip.full.exists() and clip.beat.exists()
                and (clip.audio is None or clip.audio.exists())
                and old.get("source") == c.source and old.get("start") == c.start
                and old.get("duration") == c.duration and "frames" in old):
            entries[c.id] = old
        else:
            todo.append(clip)
    return entries, todo


def _spec(c: ClipSpec) -> dict:
    return {"id": c.id, "path": c.path, "start": c.start, "duration": c.duration}


def _pool(jobs: int, n: int):
    return workers.process_pool(min(jobs, n), PRELOAD, initializer=_worker_init)


def _compute_librosa(todo: list[_Clip], rec: Recipe, jobs: int, record) -> None:
    args = [(_spec(t.spec), rec, str(t.full), str(t.beat),
             None if t.audio is None else str(t.audio)) for t in todo]
    if jobs <= 1 or len(todo) <= 1:
        with workers.one_blas_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for a in args:
                record(make_clip(*a))
        return
    with _pool(jobs, len(todo)) as pool:
        futures = [pool.submit(make_clip, *a) for a in args]
        try:
            for fut in cf.as_completed(futures):
                record(fut.result())
        except cf.BrokenExecutor as e:
            raise workers.worker_died("extracting features") from e
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _compute_jax(todo: list[_Clip], rec: Recipe, jobs: int, record,
                 batch: int = jax_recipe.BATCH) -> None:
    """Workers decode ahead (a bounded window: memory stays flat); the frontend runs
    on batches here; beats are tracked and pooled here, clip by clip."""
    by_id = {t.spec.id: t for t in todo}
    args = [(_spec(t.spec), rec, None if t.audio is None else str(t.audio)) for t in todo]

    def finish(loaded: list[dict]) -> None:
        fulls = jax_recipe.frontend_batch([r["y"] for r in loaded], rec.sample_rate, rec.fmax,
                                          batch)
        for r, full in zip(loaded, fulls):
            t = by_id[r["id"]]
            try:
                beat, flags = jax_recipe.beat_synchronise(full, float(np.max(np.abs(r["y"]))),
                                                          rec.sample_rate)
            except Exception as e:
                record(_problem(_spec(t.spec), e))
                continue
            lab.save_features(t.full, full, compresslevel=jax_recipe.GZIP_LEVEL)
            lab.save_features(t.beat, beat, compresslevel=jax_recipe.GZIP_LEVEL)
            record({"id": r["id"], "frames": int(full.shape[0]), "beats": int(beat.shape[0]),
                    "flags": sorted(set(r["flags"]) | set(flags))})

    def consume(results) -> None:
        loaded: list[dict] = []
        for r in results:
            if "problem" in r:
                record(r)
                continue
            loaded.append(r)
            if len(loaded) == batch:
                finish(loaded)
                loaded = []
        if loaded:
            finish(loaded)

    with workers.one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if jobs <= 1 or len(todo) <= 1:
            consume(load_clip(*a) for a in args)
            return
        with _pool(jobs, len(todo)) as pool:
            window = 4 * batch
            futures = [pool.submit(load_clip, *a) for a in args[:window]]

            def ordered():
                nxt = len(futures)
                for i in range(len(args)):
                    r = futures[i].result()
                    futures[i] = None
                    if nxt < len(args):
                        futures.append(pool.submit(load_clip, *args[nxt]))
                        nxt += 1
                    yield r
            try:
                consume(ordered())
            except cf.BrokenExecutor as e:
                raise workers.worker_died("decoding audio") from e
            except BaseException:
                for f in futures:
                    if f is not None:
                        f.cancel()
                raise


def convert(input_path: str | os.PathLike, layout: str, out: str | os.PathLike, name: str, *,
            labels: str | os.PathLike | None = None, test_fraction: float = 0.2, seed: int = 0,
            jobs: int = 1, strict: bool = False, duration: float | None = None,
            window: float | None = None, sample_rate: int | None = None,
            progress: bool = True, overwrite: bool = False, frontend: str = "librosa",
            fmax: float | None = None, audio_features: bool = False,
            recipe_name: str = "lab") -> Result:
    """Turn an audio collection into a lab set ``<out>/<name>`` and ``<out>/<name>_beat``.

    ``duration``: seconds taken from the start of each whole file (shorter files
    are zero-padded and flagged). ``window``: whole files cut into consecutive
    clips of that many seconds (``<id>_000``, ``<id>_001`` ...; a tail of at least
    half a window is kept, zero-padded and flagged; all clips of a file share its
    group). Rows of a clip table keep their own start/end. The split is
    group-aware (:func:`split_groups`). Clips written by an earlier run with the
    same settings are skipped; a bad file is recorded in the report and the run
    goes on, unless ``strict`` (then :class:`DatasetError`). ``frontend``:
    ``librosa`` (the recipe) or ``jax`` (:mod:`jaxmusic.features.jax_recipe`);
    ``fmax``: the mel cut-off in Hz (default half the sample rate); ``audio_features``:
    also keep the audio-domain baseline features of each clip
    (``<set>/audio_features/<id>.npy``); ``recipe_name``: ``lab`` or ``musicnn`` (the
    pretrained taggers' 96-band input at 16 kHz; ``sample_rate`` defaults to the recipe's). Returns counts and the problems;
    ``features_report.json`` has every clip and problem.
    """
    input_path = Path(input_path)
    if sample_rate is None:
        sample_rate = recipe.MUSICNN_SAMPLE_RATE if recipe_name == "musicnn" else SAMPLE_RATE
    rec = Recipe(sample_rate, recipe_name, frontend, None if fmax is None else float(fmax),
                 audio_features)
    _check(layout, name, duration, window, rec)
    plan, input_path, labels = make_plan(input_path, layout, labels, window, duration)
    sides = split_groups(plan.clips, test_fraction, seed)
    set_dir, beat_dir = Path(out) / name, Path(out) / f"{name}_beat"
    settings = rec.settings(layout, test_fraction, seed, duration, window)
    known = _open_set(set_dir, beat_dir, settings, overwrite)

    problems: list[dict] = list(plan.problems)
    if strict and problems:
        raise DatasetError(problems[0]["reason"], file=problems[0].get("file"))
    entries, todo = _pending(plan, sides, known, set_dir, beat_dir, rec)
    skipped = len(entries)
    journal_path = set_dir / JOURNAL_NAME
    spec_of = {c.id: c for c in plan.clips}
    counts = {"failed": 0, "written": 0}
    bar = None
    if todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="clip", desc=f"features {name}", disable=not progress,
                   dynamic_ncols=True)
        bar.set_postfix(skipped=skipped, failed=0)

    def record(result: dict) -> None:
        if "problem" in result:
            counts["failed"] += 1
            problems.append(result["problem"])
            if strict:
                raise DatasetError(result["problem"]["reason"], file=result["problem"]["file"])
        else:
            c = spec_of[result["id"]]
            entry = {"id": c.id, "source": c.source, "start": c.start, "duration": c.duration,
                     "frames": result["frames"], "beats": result["beats"],
                     "flags": result["flags"]}
            entries[c.id] = entry
            counts["written"] += 1
            with open(journal_path, "a", encoding="utf-8") as j:
                j.write(json.dumps(entry, sort_keys=True) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(skipped=skipped, failed=counts["failed"], refresh=False)

    try:
        if todo:
            compute = _compute_jax if rec.frontend == "jax" else _compute_librosa
            compute(todo, rec, jobs, record)
    finally:
        if bar is not None:
            bar.close()
    _write_set_files(plan, sides, entries, problems, set_dir, beat_dir, settings,
                     input_path, labels)
    if rec.audio_features:
        _write_if_changed(set_dir / AUDIO_DIR / "names.txt",
                          ("\n".join(handcrafted.audio_feature_names()) + "\n").encode())
    if journal_path.exists():
        journal_path.unlink()
    return Result(set_dir, beat_dir, set_dir / REPORT_NAME, counts["written"], skipped,
                  counts["failed"], problems)


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
