"""TFRecord files and tf.train.Example records without TensorFlow (jaxmusic.data.records),
checked against TensorFlow's own writer, reader and Example messages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxmusic.data import lab, records, tfrecords
from tests.conftest import write_genre_set, write_multitask_set

tf = pytest.importorskip("tensorflow")

PAYLOADS = [b"", b"x", bytes(range(256)) * 3, np.random.default_rng(0).bytes(70_000), b"\x00" * 13]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A float32 genre set and a float16 multitask set (its test split unlabelled: NaN targets)."""
    root = tmp_path_factory.mktemp("records")
    write_genre_set(root / "data", n_train=20, n_test=9)
    write_multitask_set(root / "data", n_train=12, n_test=5)
    tfrecords.prepare(root / "data", "fma_genre_spectrograms", root / "out",
                      tfrecords.PrepareOptions(shards=2, dtype="float32", progress=False))
    tfrecords.prepare(root / "data", "multitask_dataset", root / "out",
                      tfrecords.PrepareOptions(shards=2, dtype="float16", progress=False))
    return root


def _shards(set_dir, split=None) -> list:
    m = json.loads((set_dir / "manifest.json").read_text())
    return [set_dir / sh["file"] for name, s in m["splits"].items() if split in (None, name)
            for sh in s["shards"]]


def _write_ours(path, payloads):
    with records.RecordWriter(path) as w:
        for p in payloads:
            w.write(p)


def _crc32c_bitwise(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# --- framing -------------------------------------------------------------------------

def test_masked_crc32c_known_vector_and_mask():
    assert _crc32c_bitwise(b"123456789") == 0xE3069283       # the standard check value
    # ((c >> 15 | c << 17) + 0xa282ead8) mod 2**32, worked by hand for c = 0xE3069283:
    # c >> 15 = 0x0001C60D, (c << 17) mod 2**32 = 0x25060000, or = 0x2507C60D, + delta = 0xC78AB0E5
    assert records.masked_crc32c(b"123456789") == 0xC78AB0E5
    for data in (b"", b"a", bytes(range(200))):
        c = _crc32c_bitwise(data)
        assert records.masked_crc32c(data) == ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % 2**32


def test_writer_bytes_equal_tensorflows(tmp_path):
    _write_ours(tmp_path / "ours", PAYLOADS)
    with tf.io.TFRecordWriter(str(tmp_path / "tf")) as w:
        for p in PAYLOADS:
            w.write(p)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "tf").read_bytes()
    assert [x.numpy() for x in tf.data.TFRecordDataset(str(tmp_path / "ours"))] == PAYLOADS


def test_tensorflow_files_read_back(tmp_path):
    path = tmp_path / "tf"
    with tf.io.TFRecordWriter(str(path)) as w:
        for p in PAYLOADS:
            w.write(p)
    assert list(records.iter_records(path)) == PAYLOADS
    index = records.record_index(path)
    assert index.dtype == np.int64 and index.shape == (len(PAYLOADS), 2)
    offsets = np.cumsum([0] + [16 + len(p) for p in PAYLOADS[:-1]]) + 12   # framing by hand
    np.testing.assert_array_equal(index, np.stack([offsets, [len(p) for p in PAYLOADS]], 1))
    with open(path, "rb") as f:                    # random access: the last record first
        got = {i: records.read_record(f, *index[i], path=path, index=i) for i in reversed(range(len(index)))}
    assert [got[i] for i in range(len(PAYLOADS))] == PAYLOADS
    (tmp_path / "empty").write_bytes(b"")
    assert records.record_index(tmp_path / "empty").shape == (0, 2)
    assert list(records.iter_records(tmp_path / "empty")) == []


def _damaged(tmp_path, position, how):
    """PAYLOADS written by us, then one byte changed (how="flip") or the file cut (how="cut")
    at ``position(offsets)``; offsets: each record's start."""
    path = tmp_path / "shard.tfrecord"
    _write_ours(path, PAYLOADS)
    data = bytearray(path.read_bytes())
    starts = np.cumsum([0] + [16 + len(p) for p in PAYLOADS])
    at = position(starts)
    if how == "flip":
        data[at] ^= 0x40
    else:
        del data[at:]
    path.write_bytes(bytes(data))
    return path


def test_flipped_payload_byte_names_the_file_and_record(tmp_path):
    path = _damaged(tmp_path, lambda s: s[3] + 12 + 500, "flip")     # inside record 3's payload
    with pytest.raises(records.RecordError, match="payload CRC mismatch") as e:
        list(records.iter_records(path))
    assert e.value.index == 3 and e.value.file == str(path)
    assert str(e.value).startswith(f"{path}: record 3: payload CRC mismatch")
    index = records.record_index(path)             # headers only: the payload is not read
    with open(path, "rb") as f:
        records.read_record(f, *index[2], path=path, index=2)
        with pytest.raises(records.RecordError, match=r"record 3: payload CRC mismatch"):
            records.read_record(f, *index[3], path=path, index=3)
    # The stored CRC itself damaged: the same error.
    path = _damaged(tmp_path, lambda s: s[2] - 1, "flip")            # record 1's payload CRC
    with pytest.raises(records.RecordError, match=r"record 1: payload CRC mismatch"):
        list(records.iter_records(path))


@pytest.mark.parametrize("byte", [0, 8])       # the length itself, its CRC
def test_bad_length_crc_names_the_record(tmp_path, byte):
    path = _damaged(tmp_path, lambda s: s[2] + byte, "flip")
    for read in (lambda: list(records.iter_records(path)), lambda: records.record_index(path)):
        with pytest.raises(records.RecordError, match=r"record 2: length CRC mismatch") as e:
            read()
        assert e.value.index == 2 and e.value.file == str(path)


@pytest.mark.parametrize("cut", [5, 12, 12 + 100, -2])   # mid-header, after it, mid-payload, mid-CRC
def test_truncated_file_names_the_record(tmp_path, cut):
    path = _damaged(tmp_path, lambda s: (s[3] + cut) if cut >= 0 else (s[4] + cut), "cut")
    for read in (lambda: list(records.iter_records(path)), lambda: records.record_index(path)):
        with pytest.raises(records.RecordError, match=r"record 3: truncated") as e:
            read()
        assert e.value.index == 3 and str(path) in str(e.value)
    # Random access with the index of the whole file: record 3 is cut short.
    _write_ours(tmp_path / "whole", PAYLOADS)
    offset, length = records.record_index(tmp_path / "whole")[3]
    with open(path, "rb") as f:
        with pytest.raises(records.RecordError, match=r"record 3: truncated record"):
            records.read_record(f, offset, length, path=path, index=3)


# --- tf.train.Example ------------------------------------------------------------------

def test_example_descriptor_matches_tensorflows():
    ours, theirs = records.Example.DESCRIPTOR, tf.train.Example.DESCRIPTOR
    assert ours.full_name == "jaxmusic.tfexample.Example" and theirs.full_name == "tensorflow.Example"

    def fields(d, seen):
        if d.name in seen:
            return {}
        seen.add(d.name)
        out = {}
        for f in d.fields:
            out[(d.name, f.name)] = (f.number, f.type, f.is_repeated, f.is_packed, f.containing_oneof and f.containing_oneof.name,
                                     f.message_type.name if f.message_type else None)
            if f.message_type:
                out.update(fields(f.message_type, seen))
        return out

    assert fields(ours, set()) == fields(theirs, set())


def _tf_value(feature):
    kind = feature.WhichOneof("kind")
    return kind, list(getattr(feature, kind).value)


def test_encode_example_parses_with_tensorflow():
    features = {"b": b"\x00\xffraw", "s": "Électronique", "i": 7, "neg": [-3, 2**40], "np_int": np.int64(5),
                "f": 0.5, "fl": [1.5, -2.25, float("nan")], "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
                "iarr": np.array([4, 5], np.int32), "bl": [b"a", b"bc"]}
    payload = records.encode_example(features)
    ex = tf.train.Example.FromString(payload)
    got = {k: _tf_value(v) for k, v in ex.features.feature.items()}
    expect = {"b": ("bytes_list", [b"\x00\xffraw"]), "s": ("bytes_list", ["Électronique".encode()]),
              "i": ("int64_list", [7]), "neg": ("int64_list", [-3, 2**40]), "np_int": ("int64_list", [5]),
              "f": ("float_list", [0.5]), "fl": ("float_list", [1.5, -2.25, np.nan]),
              "arr": ("float_list", [0, 1, 2, 3, 4, 5]), "iarr": ("int64_list", [4, 5]),
              "bl": ("bytes_list", [b"a", b"bc"])}
    assert got.keys() == expect.keys()
    for k, (kind, values) in expect.items():
        assert got[k][0] == kind, k
        if kind == "float_list":
            np.testing.assert_array_equal(np.float32(got[k][1]), np.float32(values))
        else:
            assert got[k][1] == values, k
    # TensorFlow's deterministic serialisation (sorted map keys) is byte for byte ours.
    assert ex.SerializeToString(deterministic=True) == payload
    # And back: one value -> a scalar, several -> a list / array, floats -> float32 arrays.
    back = records.parse_example(payload)
    assert back["b"] == b"\x00\xffraw" and back["s"] == "Électronique".encode() and back["i"] == 7
    assert back["np_int"] == 5 and back["bl"] == [b"a", b"bc"]
    assert back["neg"].dtype == np.int64 and back["neg"].tolist() == [-3, 2**40]
    assert back["f"].dtype == np.float32 and back["f"].tolist() == [0.5]
    np.testing.assert_array_equal(back["fl"], np.array([1.5, -2.25, np.nan], np.float32))
    np.testing.assert_array_equal(back["arr"], np.arange(6, dtype=np.float32))


@pytest.mark.parametrize("value", [[], {"a": 1}, [None], True, [1, "a"], np.array([True])])
def test_encode_example_refuses_what_it_cannot_store(value):
    with pytest.raises(TypeError, match="feature 'x'"):
        records.encode_example({"x": value})


def test_parse_example_agrees_with_tensorflow_on_prepared_clips(prepared):
    n = 0
    for name in ("fma_genre_spectrograms", "multitask_dataset"):
        for path in _shards(prepared / "out" / name):
            for payload in records.iter_records(path):
                ours = records.parse_example(payload)
                theirs = tf.train.Example.FromString(payload).features.feature
                assert ours.keys() == theirs.keys()
                for key, value in ours.items():
                    kind, expect = _tf_value(theirs[key])
                    if kind == "float_list":
                        assert value.dtype == np.float32
                        np.testing.assert_array_equal(value, np.array(expect, np.float32))
                    else:
                        assert [value] == expect, key
                n += 1
    assert n == 20 + 9 + 12 + 5 - 4       # Indie-Rock clips (i % 6 == 3) are merged away


def test_prepared_records_equal_tensorflows_serialisation(prepared):
    """Each stored record is the Example TensorFlow builds for the same lab record (the
    old, TensorFlow-based encoder, rebuilt here); same values, and with sorted keys the same bytes."""
    for name, dtype in (("fma_genre_spectrograms", np.float32), ("multitask_dataset", np.float16)):
        set_dir = prepared / "out" / name
        kind = lab.set_info(prepared / "data" / name).kind
        stored = {}
        for path in _shards(set_dir, "test"):
            for payload in records.iter_records(path):
                stored[tf.train.Example.FromString(payload).features.feature["id"].bytes_list.value[0].decode()] \
                    = payload
        recs = [r for r in lab.iter_records(prepared / "data" / name, "test")
                if kind == "multitask" or r.label is not None]
        assert sorted(stored) == sorted(r.id for r in recs)
        for rec in recs:
            def feat(**kw):
                return tf.train.Feature(**kw)
            f = {"id": feat(bytes_list=tf.train.BytesList(value=[rec.id.encode()])),
                 "features": feat(bytes_list=tf.train.BytesList(value=[rec.features.astype(dtype).tobytes()])),
                 "length": feat(int64_list=tf.train.Int64List(value=[rec.length])),
                 "num_features": feat(int64_list=tf.train.Int64List(value=[140])),
                 "source": feat(bytes_list=tf.train.BytesList(value=[rec.source.encode()]))}
            if kind == "genre":
                f["label"] = feat(int64_list=tf.train.Int64List(value=[rec.label]))
                f["genre"] = feat(bytes_list=tf.train.BytesList(value=[rec.genre.encode()]))
            else:
                assert rec.targets is None
                f["targets"] = feat(float_list=tf.train.FloatList(value=[np.nan] * 3))
            expect = tf.train.Example(features=tf.train.Features(feature=f))
            got = tf.train.Example.FromString(stored[rec.id])
            if kind == "genre":
                assert got == expect                       # message equality: map order aside
            else:                                          # NaN != NaN: compare the rest, then the NaNs
                assert np.isnan(got.features.feature["targets"].float_list.value).all()
                for k in expect.features.feature:
                    if k != "targets":
                        assert got.features.feature[k] == expect.features.feature[k], k
            assert stored[rec.id] == expect.SerializeToString(deterministic=True)


def test_read_examples_reads_shards_in_order_and_names_bad_payloads(prepared, tmp_path):
    paths = _shards(prepared / "out" / "fma_genre_spectrograms", "train")
    ids = [ex["id"] for ex in records.read_examples(paths)]
    expect = [tf.train.Example.FromString(x.numpy()).features.feature["id"].bytes_list.value[0]
              for p in paths for x in tf.data.TFRecordDataset(str(p))]
    assert ids == expect and len(ids) > 0
    bad = tmp_path / "bad.tfrecord"
    _write_ours(bad, [records.encode_example({"id": "ok"}), b"\xff\xff\xff not a protocol buffer"])
    with pytest.raises(records.RecordError, match=r"bad.tfrecord: record 1: not a tf.train.Example"):
        list(records.read_examples([paths[0], bad]))


def test_tfds_metadata_is_what_tfds_writes(prepared, tmp_path):
    """write_tfds_metadata (no TensorFlow) against tfds.folder_dataset.write_metadata with the
    features it describes (the former TensorFlow code, rebuilt here), for both kinds of set."""
    tfds = pytest.importorskip("tensorflow_datasets")
    for name in ("fma_genre_spectrograms", "multitask_dataset"):
        set_dir = prepared / "out" / name
        m = tfrecords.read_manifest(set_dir)
        ref = tmp_path / name
        ref.mkdir()
        for path in _shards(set_dir):
            os.symlink(path, ref / path.name)
        feats = {"id": tfds.features.Text(), "features": tfds.features.Tensor(shape=(), dtype=tf.string),
                 "length": tfds.features.Scalar(dtype=tf.int64),
                 "num_features": tfds.features.Scalar(dtype=tf.int64), "source": tfds.features.Text()}
        if m["kind"] == "genre":
            feats["label"] = tfds.features.ClassLabel(names=m["classes"])
            feats["genre"] = tfds.features.Text()
        else:
            feats["targets"] = tfds.features.Tensor(shape=(3,), dtype=tf.float32)
        split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=[s["count"] for s in info["shards"]],
                                           num_bytes=sum(s["bytes"] for s in info["shards"]))
                       for split, info in m["splits"].items()]
        tfds.folder_dataset.write_metadata(
            data_dir=str(ref), features=tfds.features.FeaturesDict(feats), split_infos=split_infos,
            filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", check_data=False,
            description=f"jaxmusic prepared set {name}: features are raw {m['dtype']} bytes of shape "
                        "(length, num_features).")
        written = sorted(p.name for p in ref.iterdir() if not p.is_symlink())
        assert written == sorted(["dataset_info.json", "features.json"]
                                 + (["label.labels.txt"] if m["kind"] == "genre" else []))
        for f in written:
            assert (set_dir / f).read_bytes() == (ref / f).read_bytes(), f
        builder = tfds.builder_from_directory(str(set_dir))
        assert builder.info.splits["test"].num_examples == m["splits"]["test"]["count"]
        ex = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))
        assert set(ex) == set(feats)


def test_prepare_and_read_without_tensorflow(prepared, tmp_path):
    """With tensorflow and tensorflow_datasets unimportable, `prepare` writes the same shards
    and metadata as in the test process, and every record is read back (CRCs checked) and
    parsed: the ids, labels and features equal TensorFlow's reading of the shards."""
    set_dir = prepared / "out" / "fma_genre_spectrograms"
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
        "import hashlib, json, numpy as np\n"
        "from jaxmusic.data import records, tfrecords\n"
        f"m = tfrecords.prepare({str(prepared / 'data')!r}, 'fma_genre_spectrograms', {str(tmp_path)!r},\n"
        "                      tfrecords.PrepareOptions(shards=2, dtype='float32', progress=False))\n"
        f"paths = [{str(tmp_path)!r} + '/fma_genre_spectrograms/' + sh['file']\n"
        "         for s in m['splits'].values() for sh in s['shards']]\n"
        "out = []\n"
        "for ex in records.read_examples(paths):\n"
        "    x = np.frombuffer(ex['features'], '<f4').reshape(ex['length'], ex['num_features'])\n"
        "    out.append([ex['id'].decode(), ex['label'], hashlib.sha256(x.tobytes()).hexdigest()])\n"
        "assert not any(m.startswith('tensorflow') for m in sys.modules if sys.modules[m] is not None)\n"
        "print(json.dumps(out))\n")
    worktree = str(Path(records.__file__).resolve().parents[2])     # this checkout's jaxmusic first
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([worktree, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    paths = _shards(set_dir)
    for f in [p.name for p in paths] + ["dataset_info.json", "features.json", "label.labels.txt"]:
        assert (tmp_path / "fma_genre_spectrograms" / f).read_bytes() == (set_dir / f).read_bytes(), f
    expect = []
    for p in paths:
        for x in tf.data.TFRecordDataset(str(p)):
            f = tf.train.Example.FromString(x.numpy()).features.feature
            feats = np.frombuffer(f["features"].bytes_list.value[0], "<f4")
            expect.append([f["id"].bytes_list.value[0].decode(), f["label"].int64_list.value[0],
                           hashlib.sha256(feats.tobytes()).hexdigest()])
    assert got == expect and len(got) == 25
