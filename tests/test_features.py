"""The librosa reference extractor and the collection -> lab layout conversion."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/ helpers, any import mode
import audio_fixtures as af  # noqa: E402
from jaxmusic import features as F  # noqa: E402
from jaxmusic.cli import features as cli_features  # noqa: E402
from jaxmusic.data import lab  # noqa: E402
from jaxmusic.data.lab import DatasetError  # noqa: E402

SR = af.SR
REPO = Path(__file__).resolve().parents[1]


def recipe(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The course recipe written out with librosa, independently of features.py.

    BLAS runs single-threaded, as in the converter (its sums then do not depend
    on the thread count; with more threads float32 results can move by an ulp).
    """
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # librosa on 1 s clips: n_fft too large
        return _recipe(y)


def _recipe(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128,
                                       power=2.0)
    mel = librosa.power_to_db(S, ref=np.max)
    chroma = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=512)
    fused = np.vstack([mel, chroma])
    _, perc = librosa.effects.hpss(y)
    _, beats = librosa.beat.beat_track(y=perc, sr=SR, hop_length=512)
    return fused.T, librosa.util.sync(fused, beats, aggregate=np.median).T


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- loading ---------------------------------------------------------------------------

def test_load_audio_equals_librosa_load(tmp_path):
    y = af.song(1, 1.5)
    stereo = np.stack([y, 0.5 * af.noise(1.5, seed=3)], axis=1)
    many = np.stack([0.3 * np.sin(np.arange(70_000) * k / 50) for k in range(1, 9)], axis=1)
    cases = [af.write_audio(tmp_path / "a.wav", y, 22050, "PCM_16"),
             af.write_audio(tmp_path / "b.flac", stereo, 44100),       # resampled + mixed down
             af.write_audio(tmp_path / "c.ogg", stereo, 32000),
             # 8 channels at 655,350 Hz: more than one decoding block, each mixed down and resampled
             af.write_audio(tmp_path / "d.flac", many.astype(np.float32), 655_350)]
    assert 70_000 * 8 > F.BLOCK_SAMPLES // 2
    for path in cases:
        ours, flags = F.load_audio(path)
        ref, sr = librosa.load(path, sr=SR)
        assert sr == SR and flags == []
        np.testing.assert_array_equal(ours, ref)
    ours, _ = F.load_audio(cases[1], offset=0.25, duration=0.5)
    ref, _ = librosa.load(cases[1], sr=SR, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(ours, ref)


def test_decode_audio_reads_several_rates_in_one_pass(tmp_path):
    stereo = np.stack([af.song(4, 1.2, 44100), af.noise(1.2, 44100, seed=2)], axis=1)
    path = af.write_audio(tmp_path / "s.flac", stereo, 44100)
    audio, flags = F.decode_audio(path, (22050, 16000))
    assert flags == [] and sorted(audio) == [16000, 22050]
    for sr in (22050, 16000):
        np.testing.assert_array_equal(audio[sr], librosa.load(path, sr=sr)[0])
    with pytest.raises(F.AudioTooLong, match="more than 44100 frames") as err:
        F.decode_audio(path, (22050,), max_frames=44100)
    assert str(path) in str(err.value)


def test_load_audio_memory_is_one_block_not_the_file(tmp_path):
    """A 5 s FLAC at 655,350 Hz in 8 channels (a constant: a few KB) holds 26 M samples,
    105 MB as one float32 block. Decoded in blocks, the read's peak RSS (measured in a
    subprocess, the peak reset after warming up) grows by far less; the output is the
    constant, as long as librosa.load's (ceil(frames x 22050 / 655350))."""
    path = tmp_path / "dense.flac"
    sr, channels = 655_350, 8
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(5):
            f.write(np.full((sr, channels), 0.25, np.float32))
    small = af.write_audio(tmp_path / "small.flac", np.full((sr // 10, channels), 0.25, np.float32), sr)
    script = f"""
import resource, numpy as np
from pathlib import Path
from jaxmusic import features as F
def kb(key): return int(next(x for x in Path('/proc/self/status').read_text().splitlines() if x.startswith(key)).split()[1])
F.load_audio({str(small)!r})
Path('/proc/self/clear_refs').write_text('5')
before = kb('VmRSS:')
y, flags = F.load_audio({str(path)!r})
print(kb('VmHWM:') - before, len(y), float(y[1000:-1000].min()), float(y[1000:-1000].max()), flags)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    grew_kb, n, lo, hi, flags = p.stdout.split(maxsplit=4)
    assert int(n) == int(np.ceil(5 * sr * 22050 / sr)) and flags.strip() == "[]"
    assert abs(float(lo) - 0.25) < 1e-3 and abs(float(hi) - 0.25) < 1e-3
    whole = 5 * sr * channels * 4 / 2**20                 # 100 MiB: the old single read's buffer
    assert int(grew_kb) / 1024 < 32 < whole, f"peak RSS grew {int(grew_kb) / 1024:.0f} MB"


def test_load_audio_refusals_name_the_file(tmp_path):
    bad = {"corrupt": af.write_corrupt(tmp_path / "corrupt.wav"),
           "zero-length": af.write_empty_wav(tmp_path / "empty.wav"),
           "non-finite": af.write_nan_wav(tmp_path / "nan.wav")}
    for reason, path in bad.items():
        with pytest.raises(DatasetError, match=reason) as err:
            F.load_audio(path)
        assert str(path) in str(err.value) and err.value.file == str(path)
    ok = af.write_audio(tmp_path / "ok.wav", af.tone(440, 1.0))
    with pytest.raises(DatasetError, match="past the end") as err:
        F.load_audio(ok, offset=5.0)
    assert str(ok) in str(err.value)


def test_short_clip_is_padded_and_silence_flagged(tmp_path):
    path = af.write_audio(tmp_path / "short.wav", af.tone(440, 1.0), 44100)
    y, flags = F.load_audio(path, duration=2.0)
    assert len(y) == 2 * SR and flags == [F.FLAG_PADDED]
    assert not y[SR + 10:].any()
    ref, _ = librosa.load(path, sr=SR)
    np.testing.assert_array_equal(y[:len(ref)], ref)
    quiet = af.write_audio(tmp_path / "quiet.wav", af.silence(1.0))
    y, flags = F.load_audio(quiet)
    assert flags == [F.FLAG_SILENT] and len(y) == SR


# --- the recipe --------------------------------------------------------------------------

def test_extract_equals_the_librosa_recipe():
    y = af.song(2, 3.0)
    with threadpool_limits(1):
        full, beat, flags = F.extract(y)
    ref_full, ref_beat = recipe(y)
    assert flags == []
    assert full.dtype == beat.dtype == np.float32
    assert full.shape == (1 + len(y) // 512, 140) and beat.shape[1] == 140
    np.testing.assert_array_equal(full, ref_full.astype(np.float32))
    np.testing.assert_array_equal(beat, ref_beat.astype(np.float32))


def test_click_track_beats_at_known_tempo():
    full, beat, flags = F.extract(af.click_track(120, 10.0))
    assert flags == []
    assert full.shape[0] == 431
    # 120 BPM over 10 s: about 20 beats; sync adds the segment before the first beat.
    assert 19 <= beat.shape[0] - 1 <= 21


def test_chord_chroma_peaks_at_its_pitch_classes():
    full, _, _ = F.extract(af.chord("C", 2.0))
    chroma = full[:, 128:].mean(axis=0)
    assert set(np.argsort(chroma)[-3:].tolist()) == af.chord_pitch_classes("C")   # C, E, G
    full, _, _ = F.extract(af.chord("Am", 2.0))
    assert set(np.argsort(full[:, 128:].mean(axis=0))[-3:].tolist()) == {9, 0, 4}  # A, C, E


def test_silence_falls_back_to_a_beat_grid():
    full, beat, flags = F.extract(af.silence(2.0))
    assert flags == [F.FLAG_SILENT, F.FLAG_BEAT_FALLBACK]
    assert not full.any()                          # 0 dB everywhere (ref = amin), chroma 0
    grid = F.beat_grid(full.shape[0])
    assert len(grid) == 4                          # 120 BPM over 2 s: beats at 0.5, 1, 1.5, 2 s
    np.testing.assert_array_equal(beat, librosa.util.sync(full.T, grid, aggregate=np.median).T)


# --- collections --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_genre_set(tmp_path_factory):
    """GTZAN-style folders whose genres are lab strings, plus one corrupt file."""
    root = tmp_path_factory.mktemp("gf")
    af.genre_folders(root / "in", ["Rock", "Jazz"], per_genre=3, seconds=2.0)
    af.write_corrupt(root / "in" / "Jazz" / "broken.wav")
    result = F.convert(root / "in", "genre-folders", root / "out", "mini", progress=False)
    return root, result


def test_genre_folders_read_back_with_lab(lab_genre_set):
    root, result = lab_genre_set
    assert (result.written, result.skipped, result.failed) == (6, 0, 1)
    ids = {}
    for set_name, beat in (("mini", False), ("mini_beat", True)):
        set_dir = root / "out" / set_name
        assert lab.set_info(set_dir).kind == "genre" and lab.set_info(set_dir).beat == beat
        assert not (set_dir / F.CLASSES_NAME).exists()     # lab strings: the lab reads them
        for split in lab.SPLITS:
            entries = lab.read_labels(set_dir, split)
            records = list(lab.iter_records(set_dir, split))
            ids[(set_name, split)] = sorted(e.id for e in entries)
            for r in records:
                assert r.genre == r.id.split(".")[0].capitalize()
                assert r.label == lab.CLASS_INDEX[r.genre]
                if not beat:
                    assert r.features.shape == (87, 140)    # 2 s: 1 + 44100 // 512
    assert ids[("mini", "train")] == ids[("mini_beat", "train")]
    assert len(ids[("mini", "test")]) == 2                  # one clip per genre (0.2 of 3 rounds to 1)
    # Features equal the recipe on the same file.
    rec = next(lab.iter_records(root / "out" / "mini", "train"))
    y, _ = librosa.load(root / "in" / rec.genre / f"{rec.id}.wav", sr=SR)
    np.testing.assert_array_equal(rec.features, recipe(y)[0].astype(np.float32))


def test_problem_files_are_reported_and_the_run_goes_on(lab_genre_set, tmp_path):
    root, result = lab_genre_set
    report = json.loads(result.report.read_text())
    assert [p["file"] for p in report["problems"]] == [str(root / "in" / "Jazz" / "broken.wav")]
    assert "corrupt" in report["problems"][0]["reason"]
    assert report["counts"]["clips"] == 6
    # Zero-length and NaN files too; --strict stops at the first.
    coll = tmp_path / "in"
    af.write_audio(coll / "Pop" / "good.wav", af.song(5, 1.0))
    af.write_empty_wav(coll / "Pop" / "empty.wav")
    af.write_nan_wav(coll / "Pop" / "nan.wav")
    res = F.convert(coll, "genre-folders", tmp_path / "out", "p", progress=False,
                    test_fraction=0.0)
    reasons = {Path(p["file"]).name: p["reason"] for p in res.problems}
    assert set(reasons) == {"empty.wav", "nan.wav"}
    assert "zero-length" in reasons["empty.wav"] and "non-finite" in reasons["nan.wav"]
    assert res.written == 1
    with pytest.raises(DatasetError, match="zero-length") as err:
        F.convert(coll, "genre-folders", tmp_path / "out2", "p", progress=False, strict=True)
    assert "empty.wav" in str(err.value)


def test_resume_writes_nothing_and_keeps_bytes(lab_genre_set):
    root, _ = lab_genre_set
    out = root / "out"
    before = all_files(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = F.convert(root / "in", "genre-folders", out, "mini", progress=False)
    assert (again.written, again.skipped, again.failed) == (0, 6, 1)
    assert all_files(out) == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_parallel_run_is_byte_identical(tmp_path):
    af.genre_folders(tmp_path / "in", ["Pop", "Blues"], per_genre=2, seconds=1.0)
    F.convert(tmp_path / "in", "genre-folders", tmp_path / "one", "s", jobs=1, progress=False)
    res = F.convert(tmp_path / "in", "genre-folders", tmp_path / "two", "s", jobs=2,
                    progress=False)
    assert res.written == 4
    assert all_files(tmp_path / "two") == all_files(tmp_path / "one")


def test_gtzan_classes_outside_the_lab(tmp_path):
    genres = ["blues", "country", "disco"]
    af.genre_folders(tmp_path / "genres", genres, per_genre=1, seconds=1.0)
    res = F.convert(tmp_path / "genres", "genre-folders", tmp_path / "data", "gtzan",
                    progress=False, test_fraction=0.0)
    assert json.loads(res.report.read_text())["classes"] == genres
    for set_name in ("gtzan", "gtzan_beat"):
        set_dir = tmp_path / "data" / set_name
        # The files as written: classes.txt, then label lines with GTZAN's names.
        assert (set_dir / F.CLASSES_NAME).read_text().splitlines() == genres
        lines = (set_dir / "train_labels.txt").read_text().splitlines()
        assert lines[0] == lab.GENRE_HEADER
        assert [line.split("\t") for line in lines[1:]] == [
            [lab.feature_file_name(f"{g}.00000"), g] for g in genres]
        # And the lab reader maps them through classes.txt (class = line index).
        records = list(lab.iter_records(set_dir, "train"))
        assert [(r.genre, r.label) for r in records] == [(g, i) for i, g in enumerate(genres)]
        assert all(r.features.shape[1] == 140 for r in records)


def test_clip_table_keeps_groups_on_one_side(tmp_path):
    songs = {f"song{k}": af.song(20 + k, 3.0) for k in range(4)}
    for name, y in songs.items():
        af.write_audio(tmp_path / "audio" / f"{name}.flac", y)
    rows = []
    for k, name in enumerate(songs):
        label = ["Rock", "Jazz"][k % 2]
        for start in (0.0, 1.0):
            rows.append((f"{name}.flac", start, start + 1.0, label, f"album-{name}"))
    rows.append(("song0.flac", 2.5, 3.5, "Rock", "album-song0"))   # runs past the end: padded
    rows.append(("missing.wav", 0, 1, "Rock", "x"))
    table = af.write_table(tmp_path / "tracks.csv", ["file", "start", "end", "label", "group"],
                           rows)
    res = F.convert(tmp_path / "audio", "clip-table", tmp_path / "data", "sub",
                    labels=table, progress=False, test_fraction=0.5, seed=1)
    assert [Path(p["file"]).name for p in res.problems] == ["missing.wav"]
    set_dir = tmp_path / "data" / "sub"
    sides = {}
    for split in lab.SPLITS:
        groups = (set_dir / f"{split}_groups.txt").read_text().splitlines()
        assert groups[0] == F.GROUPS_HEADER
        group_of = dict(line.split("\t") for line in groups[1:])
        records = list(lab.iter_records(set_dir, split))
        assert sorted(r.id for r in records) == sorted(group_of)
        for r in records:
            assert r.features.shape == (44, 140)              # 1 s clips
            sides.setdefault(group_of[r.id], set()).add(split)
    assert all(len(s) == 1 for s in sides.values())            # no group on both sides
    assert {next(iter(s)) for s in sides.values()} == {"train", "test"}
    report = json.loads(res.report.read_text())
    padded = [i for i, c in report["clips"].items() if F.FLAG_PADDED in c["flags"]]
    assert padded == ["song0_2.5-3.5"]
    # The clip is the file's audio from 1 s to 2 s.
    rec = next(r for r in lab.iter_records(set_dir, report["clips"]["song1_1-2"]["split"])
               if r.id == "song1_1-2")
    y, _ = librosa.load(tmp_path / "audio" / "song1.flac", sr=SR, offset=1.0, duration=1.0)
    np.testing.assert_array_equal(rec.features, recipe(y)[0].astype(np.float32))


def test_labelled_folder_multitask(tmp_path):
    targets = {f"track{k}": (0.1 * k, 0.2 + 0.1 * k, 1.0 - 0.2 * k) for k in range(4)}
    for k, name in enumerate(targets):
        af.write_audio(tmp_path / "audio" / f"{name}.wav", af.song(40 + k, 1.0), 44100)
    table = af.write_table(tmp_path / "labels.csv", lab.MULTITASK_HEADER.split(","),
                           [(n, *v) for n, v in targets.items()])
    res = F.convert(tmp_path / "audio", "labelled-folder", tmp_path / "data", "emo",
                    labels=table, progress=False, test_fraction=0.25)
    assert res.written == 4 and not res.problems
    seen = {}
    for set_name in ("emo", "emo_beat"):
        set_dir = tmp_path / "data" / set_name
        assert lab.set_info(set_dir).kind == "multitask"
        for split in lab.SPLITS:
            for r in lab.iter_records(set_dir, split):
                np.testing.assert_allclose(r.targets, targets[r.id], atol=1e-6)
                seen.setdefault(set_name, []).append((split, r.id))
    assert sorted(seen["emo"]) == sorted(seen["emo_beat"])
    assert sum(s == "test" for s, _ in seen["emo"]) == 1


def test_labelled_folder_genre_table_and_window(tmp_path):
    af.write_audio(tmp_path / "audio" / "long.wav", af.song(7, 2.6))
    af.write_audio(tmp_path / "audio" / "other.ogg", af.song(8, 1.2))
    table = af.write_table(tmp_path / "labels.tsv", ["file", "genre"],
                           [("long.wav", "Blues"), ("other", "Pop")], delimiter="\t")
    res = F.convert(tmp_path / "audio", "labelled-folder", tmp_path / "data", "win",
                    labels=table, window=1.0, progress=False, test_fraction=0.0)
    report = json.loads(res.report.read_text())
    # 2.6 s -> 1 s clips at 0, 1 and a padded 0.6 s tail; 1.2 s -> one clip (0.2 s tail dropped).
    assert sorted(report["clips"]) == ["long_000", "long_001", "long_002", "other_000"]
    assert report["clips"]["long_002"]["flags"] == [F.FLAG_PADDED]
    assert {c["group"] for i, c in report["clips"].items() if i.startswith("long")} == {"long.wav"}
    records = {r.id: r for r in lab.iter_records(tmp_path / "data" / "win", "train")}
    assert {i: r.genre for i, r in records.items()} == {
        "long_000": "Blues", "long_001": "Blues", "long_002": "Blues", "other_000": "Pop"}
    assert all(r.features.shape == (44, 140) for r in records.values())


def test_split_groups_never_leaks_and_is_stratified():
    clips = []
    for g in range(60):
        label = ["Rock", "Jazz", "Pop"][g % 3]
        for k in range(1 + g % 4):
            clips.append(F.ClipSpec(f"c{g}_{k}", "", "", group=f"g{g}", label=label))
    for seed in range(5):
        sides = F.split_groups(clips, 0.2, seed)
        assert sides == F.split_groups(clips, 0.2, seed)        # deterministic
        by_group = {}
        for c in clips:
            by_group.setdefault(c.group, set()).add(sides[c.id])
        assert all(len(s) == 1 for s in by_group.values())
        for label in ("Rock", "Jazz", "Pop"):
            n = sum(c.label == label for c in clips)
            t = sum(c.label == label and sides[c.id] == "test" for c in clips)
            assert abs(t - 0.2 * n) <= 2, (label, t, n)
    given = [F.ClipSpec("a", "", "", group="g", split="train"),
             F.ClipSpec("b", "", "", group="g", split="test")]
    with pytest.raises(DatasetError, match="both sides"):
        F.split_groups(given, 0.2, 0)


def test_cli_arguments(tmp_path):
    af.genre_folders(tmp_path / "in", ["Folk"], per_genre=1, seconds=1.0)
    parser = argparse.ArgumentParser()
    cli_features.add_arguments(parser, "features")
    args = parser.parse_args(["--input", str(tmp_path / "in"), "--layout", "genre-folders",
                              "--out", str(tmp_path / "data"), "--name", "cli",
                              "--test-fraction", "0", "--no-progress"])
    assert cli_features.run(args, "features") == 0
    assert [e.genre for e in lab.read_labels(tmp_path / "data" / "cli", "train")] == ["Folk"]
    with pytest.raises(DatasetError, match="needs --labels"):
        cli_features.run(parser.parse_args(["--input", str(tmp_path / "in"), "--layout",
                                            "clip-table", "--out", str(tmp_path / "data"),
                                            "--name", "x"]), "features")
