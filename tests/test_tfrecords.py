"""`jaxmusic prepare` and the input pipeline: round trips, splits, shards, batches
(the epoch order and the placements: tests/test_input.py)."""

from __future__ import annotations

import collections
import hashlib
import json
import os

import numpy as np
import pytest

from jaxmusic.data import lab, pipeline, tfrecords
from tests.conftest import write_genre_set, write_multitask_set


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    written = write_genre_set(root / "data", n_train=60, n_test=23, lengths=(30, 70))
    mt_written, mt_targets = write_multitask_set(root / "data")
    opts = tfrecords.PrepareOptions(shards=3, dtype="float32", progress=False)
    manifest = tfrecords.prepare(root / "data", "fma_genre_spectrograms", root / "out", opts)
    tfrecords.prepare(root / "data", "multitask_dataset", root / "out",
                      tfrecords.PrepareOptions(shards=2, dtype="float16", progress=False))
    return root, written, manifest, mt_written, mt_targets


def _eval_all(pset, split, cfg, **kw):
    out = collections.defaultdict(list)
    for b in pipeline.eval_batches(pset, split, cfg, **kw):
        for k, v in b.items():
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def test_manifest_counts_and_merge(prepared):
    root, written, m, *_ = prepared
    kept_train = sum(1 for i in range(60) if i % 6 != 3)  # Indie-Rock (index 3) dropped
    assert m["splits"]["train"]["count"] + m["splits"]["validation"]["count"] == kept_train
    assert m["splits"]["test"]["count"] == sum(1 for i in range(23) if i % 6 != 3)
    assert m["class_merge"]["train"]["dropped_by_merge"]["count"] == 10
    assert m["max_length"] == max(f.shape[0] for s in written.values() for f in s.values())
    for split in m["splits"].values():
        assert sum(s["count"] for s in split["shards"]) == split["count"]
        assert len(split["shards"]) == 3


def test_round_trip_bit_exact_float32(prepared):
    root, written, m, *_ = prepared
    pset = pipeline.PreparedSet.open(root / "out" / "fma_genre_spectrograms")
    cfg = pipeline.PipelineConfig(batch_size=7, max_length=m["max_length"], view="fused")
    got = _eval_all(pset, "test", cfg)
    mask = got["mask"]
    assert mask.sum() == m["splits"]["test"]["count"]
    ids = [i.decode() for i in got["id"][mask]]
    assert len(set(ids)) == len(ids)  # every clip exactly once
    labels = {e.id: e.label for e in lab.read_labels(root / "data" / "fma_genre_spectrograms", "test")}
    for row, clip_id in zip(np.flatnonzero(mask), ids):
        feats = written["test"][clip_id]
        n = feats.shape[0]
        assert got["lengths"][row] == n
        np.testing.assert_array_equal(got["features"][row, :n], feats)  # bit-exact
        assert not got["features"][row, n:].any()  # zero padding at the end
        assert got["label"][row] == labels[clip_id]
    assert not got["features"][~mask].any() and not got["lengths"][~mask].any()


def test_float16_view_and_crop(prepared):
    root, _, _, mt_written, mt_targets = prepared
    pset = pipeline.PreparedSet.open(root / "out" / "multitask_dataset")
    cfg = pipeline.PipelineConfig(batch_size=4, max_length=35, view="chroma")
    got = _eval_all(pset, "validation", cfg)
    for row in np.flatnonzero(got["mask"]):
        clip_id = got["id"][row].decode()
        feats = mt_written["train"][clip_id][:35, 128:140]  # lab policy: truncate the end
        np.testing.assert_array_equal(got["features"][row, : len(feats)],
                                      feats.astype(np.float16).astype(np.float32))
        assert got["lengths"][row] == len(feats)
        np.testing.assert_allclose(got["targets"][row], mt_targets[clip_id], atol=1e-6)
    test = _eval_all(pset, "test", cfg)
    assert test["mask"].sum() == 6 and np.isnan(test["targets"][test["mask"]]).all()


def test_prepare_is_byte_deterministic(prepared, tmp_path):
    root, _, m, *_ = prepared
    opts = tfrecords.PrepareOptions(shards=3, dtype="float32", progress=False)
    m2 = tfrecords.prepare(root / "data", "fma_genre_spectrograms", tmp_path, opts)
    for split in ("train", "validation", "test"):
        assert ([s["sha256"] for s in m2["splits"][split]["shards"]]
                == [s["sha256"] for s in m["splits"][split]["shards"]])


def test_split_is_seeded_and_stratified(tmp_path):
    entries = [lab.LabelEntry(f"c{i:03d}", tmp_path, i + 2, None, genre="x", label=i % 4)
               for i in range(200)]
    train, val = tfrecords.split_train_validation(entries, 0.2, seed=3)
    train2, val2 = tfrecords.split_train_validation(list(reversed(entries)), 0.2, seed=3)
    assert sorted(e.id for e in val) == sorted(e.id for e in val2)
    assert collections.Counter(e.label for e in val) == {0: 10, 1: 10, 2: 10, 3: 10}
    assert not {e.id for e in train} & {e.id for e in val}
    assert len(train) + len(val) == 200
    _, val3 = tfrecords.split_train_validation(entries, 0.2, seed=4)
    assert {e.id for e in val3} != {e.id for e in val}


def test_group_split_keeps_groups_together(tmp_path):
    entries = [lab.LabelEntry(f"c{i:03d}", tmp_path, i + 2, None, genre="x", label=i % 3)
               for i in range(120)]
    groups = {e.id: f"song{int(e.id[1:]) // 4}" for e in entries}
    train, val = tfrecords.split_train_validation(entries, 0.25, seed=0, groups=groups)
    assert {groups[e.id] for e in train}.isdisjoint({groups[e.id] for e in val})
    assert 20 <= len(val) <= 40


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_process_sharding_covers_every_clip_once(prepared, processes):
    root, _, m, *_ = prepared
    pset = pipeline.PreparedSet.open(root / "out" / "fma_genre_spectrograms")
    cfg = pipeline.PipelineConfig(batch_size=5, max_length=70, view="mel")
    seen, steps = [], set()
    for p in range(processes):
        got = _eval_all(pset, "train", cfg, process_index=p, process_count=processes)
        steps.add(len(got["mask"]) // 5)
        seen += [i.decode() for i in got["id"][got["mask"]]]
    assert len(steps) == 1  # every process steps together
    assert len(seen) == len(set(seen)) == m["splits"]["train"]["count"]
    shard_files = [s["file"] for p in range(processes)
                   for s in pset.shards("train", p, processes)]
    assert sorted(shard_files) == sorted(s["file"] for s in m["splits"]["train"]["shards"])


def test_train_batches_fixed_shape_and_seeded(prepared):
    root, *_ = prepared
    pset = pipeline.PreparedSet.open(root / "out" / "fma_genre_spectrograms")
    cfg = pipeline.PipelineConfig(batch_size=8, max_length=50, view="fused", seed=1)
    a = list(pipeline.train_batches(pset, "train", cfg, epoch=0))
    b = list(pipeline.train_batches(pset, "train", cfg, epoch=0))
    c = list(pipeline.train_batches(pset, "train", cfg, epoch=1))
    assert len(a) == pset.count("train") // 8
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["features"], y["features"])
    assert any((x["label"] != z["label"]).any() for x, z in zip(a, c))
    for x in a:
        assert x["features"].shape == (8, 50, 140) and x["mask"].all()
        assert (x["lengths"] <= 50).all()
        for row, n in enumerate(x["lengths"]):
            assert not x["features"][row, n:].any()


def test_tfds_can_load_the_shards(prepared):
    import tensorflow_datasets as tfds

    root, *_ = prepared
    builder = tfds.builder_from_directory(str(root / "out" / "fma_genre_spectrograms"))
    assert builder.info.splits["test"].num_examples == 19
    assert builder.info.features["label"].names == list(lab.CLASSES)
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))
    feats = np.frombuffer(ex["features"], "<f4").reshape(ex["length"], ex["num_features"])
    assert feats.shape[1] == 140


def test_skip_bad_lands_in_manifest(tmp_path):
    write_genre_set(tmp_path / "data", n_train=12, n_test=4)
    bad = tmp_path / "data" / "fma_genre_spectrograms" / "train" / lab.feature_file_name("tr0001")
    bad.write_bytes(b"garbage")
    with pytest.raises(lab.DatasetError, match="tr0001"):
        tfrecords.prepare(tmp_path / "data", "fma_genre_spectrograms", tmp_path / "o",
                          tfrecords.PrepareOptions(progress=False))
    m = tfrecords.prepare(tmp_path / "data", "fma_genre_spectrograms", tmp_path / "o",
                          tfrecords.PrepareOptions(progress=False, skip_bad=True))
    assert [s["id"] for s in m["skipped"]] == ["tr0001"]
    assert m["splits"]["train"]["count"] + m["splits"]["validation"]["count"] == 9


def test_k_folds_partition_train_and_stratify(tmp_path):
    entries = [lab.LabelEntry(f"c{i:03d}", tmp_path, i + 2, None, genre="x", label=i % 3)
               for i in range(150)]
    vals = []
    for fold in range(5):
        train, val = tfrecords.split_train_validation(entries, 0.2, 7, folds=5, fold=fold)
        assert len(train) + len(val) == 150
        assert collections.Counter(e.label for e in val) == {0: 10, 1: 10, 2: 10}
        vals.append({e.id for e in val})
    assert set().union(*vals) == {e.id for e in entries}
    assert sum(len(v) for v in vals) == 150  # the folds are disjoint


def test_standardisation_uses_train_statistics(prepared):
    root, written, m, *_ = prepared
    pset = pipeline.PreparedSet.open(root / "out" / "fma_genre_spectrograms")
    train_ids = set()
    for b in pipeline.eval_batches(pset, "train", pipeline.PipelineConfig(8, 70)):
        train_ids |= {i.decode() for i in b["id"][b["mask"]]}
    frames = np.concatenate([written["train"][i] for i in sorted(train_ids)]).astype(np.float64)
    mean, std = frames.mean(0), frames.std(0)
    np.testing.assert_allclose(m["splits"]["train"]["feature_mean"], mean, atol=1e-5)
    np.testing.assert_allclose(m["splits"]["train"]["feature_std"], std, rtol=1e-5)
    stats_mean, stats_std = pset.train_statistics("mel")   # what a new run records and uses
    got = _eval_all(pset, "test", pipeline.PipelineConfig(8, 70, view="mel", mean=stats_mean,
                                                          std=stats_std))
    row = int(np.flatnonzero(got["mask"])[0])
    raw = written["test"][got["id"][row].decode()][:70, :128]
    n = len(raw)
    np.testing.assert_allclose(got["features"][row, :n], (raw - mean[:128]) / std[:128], rtol=1e-4,
                               atol=1e-4)
    assert not got["features"][row, n:].any()  # padding stays zero after standardising


# --- defect 5: shard checks when a prepared set is opened ---------------------------------


@pytest.fixture
def small_set(tmp_path):
    """A freshly prepared genre set (2 shards per split) that a test may damage."""
    write_genre_set(tmp_path / "data", n_train=12, n_test=4, lengths=(20, 30))
    tfrecords.prepare(tmp_path / "data", "fma_genre_spectrograms", tmp_path / "out",
                      tfrecords.PrepareOptions(shards=2, progress=False))
    return tmp_path / "out" / "fma_genre_spectrograms"


def _shards(set_dir):
    m = tfrecords.read_manifest(set_dir)
    return [sh for split in m["splits"].values() for sh in split["shards"]]


def _count_hashing(monkeypatch) -> list:
    """Shard files hashed from now on (by name)."""
    hashed = []
    real = tfrecords.file_sha256

    def counting(path, *args, **kwargs):
        if ".tfrecord-" in os.path.basename(path):
            hashed.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tfrecords, "file_sha256", counting)
    return hashed


def _flip_a_byte(path, keep_mtime: bool) -> None:
    st = os.stat(path)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_intact_set_opens_and_the_stamp_spares_later_hashing(small_set, monkeypatch):
    shards = _shards(small_set)
    names = sorted(sh["file"] for sh in shards)
    for sh in shards:   # the manifest records what is on disk (independent hashlib reference)
        path = small_set / sh["file"]
        assert sh["bytes"] == os.path.getsize(path)
        assert sh["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    hashed = _count_hashing(monkeypatch)
    pipeline.PreparedSet.open(small_set)                 # prepare stamped what it wrote
    assert hashed == []
    (small_set / tfrecords.STAMP_FILE).unlink()
    pipeline.PreparedSet.open(small_set)                 # first open: every shard hashed once
    assert sorted(hashed) == names and (small_set / tfrecords.STAMP_FILE).exists()
    hashed.clear()
    pipeline.PreparedSet.open(small_set)                 # stamp current: sizes only
    assert hashed == []
    pipeline.PreparedSet.open(small_set, verify="sha256")  # asked for: hashed again
    assert sorted(hashed) == names
    hashed.clear()
    os.utime(small_set / names[0])                       # touched: the stamp is stale
    pipeline.PreparedSet.open(small_set)
    assert sorted(hashed) == names
    with pytest.raises(ValueError, match="data.verify"):
        pipeline.PreparedSet.open(small_set, verify="md5")


def test_truncated_shard_is_named_with_both_sizes(small_set, capsys):
    sh = _shards(small_set)[1]
    path = small_set / sh["file"]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(lab.DatasetError) as err:
        pipeline.PreparedSet.open(small_set)
    msg = str(err.value)
    assert err.value.file == str(path) and sh["file"] in msg
    assert f"{os.path.getsize(path)} bytes" in msg and f"says {sh['bytes']}" in msg
    # the command line: one line naming the shard, no traceback
    from jaxmusic import cli
    assert cli.main(["inspect", str(small_set), "--quiet"]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and sh["file"] in out[0] and "Traceback" not in out[0]


def test_same_size_corruption_fails_sha256_on_first_open_and_with_verify(small_set, capsys):
    sh = _shards(small_set)[0]
    path = small_set / sh["file"]
    _flip_a_byte(path, keep_mtime=False)          # a changed file: the stamp is stale
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    assert os.path.getsize(path) == sh["bytes"] and found != sh["sha256"]
    with pytest.raises(lab.DatasetError) as err:
        pipeline.PreparedSet.open(small_set)
    assert err.value.file == str(path)
    assert f"sha256 is {found}" in str(err.value) and f"says {sh['sha256']}" in str(err.value)
    # the same damage behind an unchanged modification time passes the cheap check,
    # and fails an explicit one (as `--verify` / data.verify="sha256" asks)
    _flip_a_byte(path, keep_mtime=False)
    pipeline.PreparedSet.open(small_set)          # intact again: stamped
    _flip_a_byte(path, keep_mtime=True)
    pipeline.PreparedSet.open(small_set)
    with pytest.raises(lab.DatasetError, match=f"{sh['file']}: shard sha256 is {found}"):
        pipeline.PreparedSet.open(small_set, verify="sha256")
    from jaxmusic import cli
    assert cli.main(["inspect", str(small_set), "--verify", "--quiet", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and sh["file"] in err[0] and f"sha256 is {found}" in err[0]


def test_old_manifest_without_sizes_is_hashed_once(small_set, monkeypatch):
    m = json.loads((small_set / "manifest.json").read_text())
    for split in m["splits"].values():
        for sh in split["shards"]:
            del sh["bytes"]
    (small_set / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    hashed = _count_hashing(monkeypatch)
    pipeline.PreparedSet.open(small_set)
    assert len(hashed) == len(_shards(small_set))
    hashed.clear()
    pipeline.PreparedSet.open(small_set)
    assert hashed == []
    path = small_set / _shards(small_set)[0]["file"]
    path.write_bytes(path.read_bytes()[:-1])      # no size to compare: caught by the hash
    with pytest.raises(lab.DatasetError, match="shard sha256 is"):
        pipeline.PreparedSet.open(small_set)


def test_build_run_verifies_as_data_verify_says(small_set):
    from jaxmusic import runs
    from jaxmusic.config import base_config

    config = base_config()
    config.data.prepared, config.data.set = str(small_set.parent), small_set.name
    _flip_a_byte(small_set / _shards(small_set)[0]["file"], keep_mtime=True)
    assert runs.build_run(config).pset.count("train") > 0      # "auto": sizes + current stamp
    config.data.verify = "sha256"
    with pytest.raises(lab.DatasetError, match="shard sha256 is"):
        runs.build_run(config)


def test_verify_flags_of_train_and_evaluate(small_set, tmp_path, capsys):
    """`--verify` makes train and evaluate hash the shards: same-size damage behind an
    unchanged modification time, which the default check lets through, stops both with
    one line naming the shard (before any training or checkpoint reading)."""
    from jaxmusic import cli, runs
    from jaxmusic.config import base_config, save_config

    shard = _shards(small_set)[0]["file"]
    _flip_a_byte(small_set / shard, keep_mtime=True)
    where = [f"--config.data.prepared={small_set.parent}", f"--config.data.set={small_set.name}"]
    assert cli.main(["train", "--config", "configs/tiny/lstm.py", "--workdir", str(tmp_path / "run"),
                     "--verify", "--quiet", "--no-evaluate"] + where) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shard in err[0] and "shard sha256 is" in err[0]
    assert not (tmp_path / "run" / runs.CONFIG_FILE).exists()
    # a run directory whose set was damaged after training
    config = base_config()
    config.data.prepared, config.data.set = str(small_set.parent), small_set.name
    workdir = tmp_path / "trained"
    workdir.mkdir()
    save_config(config, workdir / runs.CONFIG_FILE)
    runs.write_record(workdir, runs.build_run(config).record)
    assert cli.main(["evaluate", "--workdir", str(workdir), "--verify", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shard in err[0] and "shard sha256 is" in err[0]
