"""The lab layout reader: values, file-name quirks, class merge and every bad input."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from jaxmusic.data import lab
from tests.conftest import random_clip, write_genre_set, write_multitask_set


def test_records_match_written_values(genre_root):
    root, written = genre_root
    recs = {r.id: r for r in lab.iter_records(root / "fma_genre_spectrograms", "train",
                                              keep_dropped=True)}
    assert set(recs) == set(written["train"])
    for clip_id, feats in written["train"].items():
        r = recs[clip_id]
        np.testing.assert_array_equal(r.features, feats)
        assert r.length == feats.shape[0]
        np.testing.assert_array_equal(r.view("mel"), feats[:, :128])
        np.testing.assert_array_equal(r.view("chroma"), feats[:, 128:140])
        assert r.source.endswith(lab.feature_file_name(clip_id))


def test_class_merge_indices_and_drops(genre_root):
    root, written = genre_root
    entries = lab.read_labels(root / "fma_genre_spectrograms", "train")
    assert lab.CLASSES == ("Blues", "Classical", "Electronic", "Folk", "Hip-Hop", "Jazz",
                           "Metal", "Pop", "Rock", "Trip-Hop")
    by_genre = {e.genre: e.label for e in entries}
    assert by_genre == {"Rock": 8, "Jazz": 5, "Pop": 7, "Indie-Rock": None, "Classical": 1,
                        "Punk": 6}
    kept = list(lab.iter_records(root / "fma_genre_spectrograms", "train"))
    assert len(kept) == 25  # 30 clips, every 6th is Indie-Rock (dropped)
    counts = lab.merge_counts(entries)
    assert counts["before"]["Indie-Rock"] == 5
    assert counts["after"]["Metal"] == 5 and counts["after"]["Blues"] == 0
    assert counts["dropped_by_merge"]["count"] == 5


@pytest.mark.parametrize("written_name,on_disk", [
    ("{id}.fused.full.npy.gz", "{id}.fused.full.npy"),       # names .gz, folder unpacked
    ("{id}.fused.full.npy", "{id}.fused.full.npy.gz"),       # the other way round
    ("{id}.beatsync.fused.npy", "{id}.fused.full.npy.gz"),   # beat set spelling
    ("{id}.full.fused.npy.gz", "{id}.fused.full.npy.gz"),    # test set spelling
    ("{id}", "{id}.fused.full.npy.gz"),                      # bare id
])
def test_file_name_quirks_resolve(tmp_path, written_name, on_disk):
    folder = tmp_path / "train"
    feats = random_clip(np.random.default_rng(0), 7)
    target = folder / on_disk.format(id="123")
    lab.save_features(target, feats, gz=on_disk.endswith(".gz"))
    clip_id, path = lab.resolve_feature_file(folder, written_name.format(id="123"))
    assert clip_id == "123" and path == target
    np.testing.assert_array_equal(lab.load_features(path), feats)


def test_gz_file_is_numpy_save_of_transpose(tmp_path):
    feats = random_clip(np.random.default_rng(1), 9)
    path = lab.save_features(tmp_path / "a.fused.full.npy.gz", feats)
    with gzip.open(path) as f:
        arr = np.load(io.BytesIO(f.read()), allow_pickle=False)
    assert arr.shape == (140, 9) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, feats.T)


def test_multitask_targets_and_unlabelled_test(tmp_path):
    written, targets = write_multitask_set(tmp_path)
    set_dir = tmp_path / "multitask_dataset"
    recs = list(lab.iter_records(set_dir, "train"))
    assert len(recs) == 24
    for r in recs:
        np.testing.assert_allclose(r.targets, targets[r.id], atol=1e-6)
    test = list(lab.iter_records(set_dir, "test"))
    assert sorted(r.id for r in test) == sorted(written["test"])
    assert all(r.targets is None for r in test)


# --- bad input: a clear error naming the file (and line) ---------------------------

def _genre_set(tmp_path):
    write_genre_set(tmp_path, n_train=6, n_test=2)
    return tmp_path / "fma_genre_spectrograms"


def _append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")


def test_missing_feature_file_names_label_line(tmp_path):
    set_dir = _genre_set(tmp_path)
    _append_line(set_dir / "train_labels.txt", "999.fused.full.npy.gz\tRock")
    with pytest.raises(lab.DatasetError, match=r"train_labels.txt:8: no feature file for '999"):
        lab.read_labels(set_dir, "train")


def test_unknown_genre(tmp_path):
    set_dir = _genre_set(tmp_path)
    _append_line(set_dir / "train_labels.txt", "tr0000.fused.full.npy.gz\tPolka")
    with pytest.raises(lab.DatasetError, match=r"train_labels.txt:8: unknown genre 'Polka'"):
        lab.read_labels(set_dir, "train")


def test_duplicate_id(tmp_path):
    set_dir = _genre_set(tmp_path)
    _append_line(set_dir / "train_labels.txt", "tr0001.fused.full.npy\tRock")
    with pytest.raises(lab.DatasetError, match=r":8: duplicate id 'tr0001' \(first on line 3\)"):
        lab.read_labels(set_dir, "train")


def test_path_escape_is_refused(tmp_path):
    set_dir = _genre_set(tmp_path)
    lab.save_features(tmp_path / "secret.fused.full.npy.gz", random_clip(np.random.default_rng(0), 3))
    _append_line(set_dir / "train_labels.txt", "../../secret.fused.full.npy.gz\tRock")
    with pytest.raises(lab.DatasetError, match="escapes the dataset folder"):
        lab.read_labels(set_dir, "train")


@pytest.mark.parametrize("content,match", [
    ("", "label file is empty"),
    ("Id\tGenre\n", "header but no entries"),
])
def test_empty_label_files(tmp_path, content, match):
    set_dir = _genre_set(tmp_path)
    (set_dir / "train_labels.txt").write_text(content)
    with pytest.raises(lab.DatasetError, match=match) as e:
        lab.read_labels(set_dir, "train")
    assert "train_labels.txt" in str(e.value)


@pytest.mark.parametrize("row,match", [
    ("x1,0.5,1.5,0.2", r":3: energy 1.5 is outside \[0, 1\]"),
    ("x1,0.5,abc,0.2", r":3: energy 'abc' is not a number"),
    ("x1,nan,0.1,0.2", r":3: valence nan is outside"),
    ("x1,0.5,0.2", r":3: expected 'Id,valence,energy,danceability' columns"),
])
def test_bad_regression_values(tmp_path, row, match):
    set_dir = tmp_path / "multitask_dataset"
    lab.save_features(set_dir / "train" / lab.feature_file_name("x0"),
                      random_clip(np.random.default_rng(0), 4))
    lab.save_features(set_dir / "train" / lab.feature_file_name("x1"),
                      random_clip(np.random.default_rng(1), 4))
    (set_dir / "train_labels.txt").write_text(f"Id,valence,energy,danceability\nx0,0.1,0.2,0.3\n{row}\n")
    with pytest.raises(lab.DatasetError, match=match):
        lab.read_labels(set_dir, "train")


def _write_bad_file(path, kind):
    buf = io.BytesIO()
    if kind == "truncated_gzip":
        lab.save_features(path, random_clip(np.random.default_rng(0), 50))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "corrupt or truncated gzip"
    if kind == "not_gzip":
        path.write_bytes(b"this is not gzip at all")
        return "corrupt or truncated gzip"
    if kind == "rank":
        np.save(buf, np.zeros((140,), np.float32))
        match = r"expected a 2-D array \(140, T\), got shape \(140,\)"
    elif kind == "features":
        np.save(buf, np.zeros((128, 20), np.float32))
        match = r"expected 140 feature rows .* got shape \(128, 20\)"
    elif kind == "nan":
        a = np.zeros((140, 20), np.float32)
        a[130, 5] = np.nan
        a[3, 7] = np.inf
        np.save(buf, a)
        match = r"2 non-finite values \(first at frame 5, feature 130"
    with gzip.open(path, "wb") as f:
        f.write(buf.getvalue())
    return match


@pytest.mark.parametrize("kind", ["truncated_gzip", "not_gzip", "rank", "features", "nan"])
def test_bad_feature_files(tmp_path, kind):
    set_dir = _genre_set(tmp_path)
    bad = set_dir / "train" / lab.feature_file_name("tr0002")
    match = _write_bad_file(bad, kind)
    with pytest.raises(lab.DatasetError, match=match) as e:
        list(lab.iter_records(set_dir, "train", keep_dropped=True))
    msg = str(e.value)
    assert str(bad) in msg and "train_labels.txt:4" in msg


def test_skip_bad_records_every_item_and_keeps_the_rest(tmp_path):
    set_dir = _genre_set(tmp_path)
    _write_bad_file(set_dir / "train" / lab.feature_file_name("tr0002"), "nan")
    _append_line(set_dir / "train_labels.txt", "tr0003.fused.full.npy\tPolka")
    _append_line(set_dir / "train_labels.txt", "777\tRock")
    skipped = lab.SkipLog()
    recs = list(lab.iter_records(set_dir, "train", keep_dropped=True, skipped=skipped))
    assert sorted(r.id for r in recs) == ["tr0000", "tr0001", "tr0003", "tr0004", "tr0005"]
    assert len(skipped) == 3
    by_line = {item["line"]: item for item in skipped.items}
    assert by_line[8]["reason"].startswith("unknown genre 'Polka'")
    assert by_line[9]["reason"].startswith("no feature file for '777'")
    assert "non-finite" in by_line[None]["reason"]
    assert by_line[None]["file"].endswith("tr0002.fused.full.npy.gz")
    assert by_line[None]["id"] == "tr0002"


def test_collection_classes_file(tmp_path):
    set_dir = tmp_path / "gtzan"
    for i, g in enumerate(["disco", "country", "disco"]):
        lab.save_features(set_dir / "train" / lab.feature_file_name(f"c{i}"),
                          random_clip(np.random.default_rng(i), 5))
    lab.write_genre_labels(set_dir / "train_labels.txt",
                           [(lab.feature_file_name(f"c{i}"), g)
                            for i, g in enumerate(["disco", "country", "disco"])])
    (set_dir / "classes.txt").write_text("disco\ncountry\n")
    entries = lab.read_labels(set_dir, "train")
    assert [e.label for e in entries] == [1, 0, 1]  # sorted: country, disco
