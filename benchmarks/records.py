"""Decoding a prepared split without TensorFlow (jaxmusic.data.records) vs with it, on one core.

    python -m jaxmusic sample-data /tmp/rdata --size small
    python -m jaxmusic prepare --source /tmp/rdata --set fma_genre_spectrograms_beat --out /tmp/rprep
    python -m benchmarks.records --prepared /tmp/rprep/fma_genre_spectrograms_beat --repeats 7 \
        --out benchmarks/records_results.md

Each way turns every record of the set's shards into a ``(length, num_features)``
float array (``np.frombuffer`` of the ``features`` bytes), in ``--repeats`` rounds in
which the ways take turns; the table gives the median clips/s:

* ``parse``: :func:`records.parse_example` of payloads already in memory (the work per
  clip once a split's bytes are read);
* ``read_examples``: :func:`records.read_examples` from the files (framing and both
  CRCs included);
* ``tf.train.Example``: TensorFlow's own message class parsing the same in-memory payloads
  and reading only the three fields the array needs (``parse`` converts all seven);
* ``tf.data``: ``TFRecordDataset -> parse_single_example -> decode_raw`` as a numpy
  iterator (the pipeline's streaming decode), TensorFlow held to one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import machine
from jaxmusic.data import records, tfrecords


def _rates(ways: dict, count: int, repeats: int) -> dict[str, float]:
    """Median clips/s of each way; the ways take turns in every round, so that a busy
    machine slows them alike."""
    times: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(repeats):
        for w, fn in ways.items():
            t0 = time.perf_counter()
            assert fn() == count
            times[w].append(time.perf_counter() - t0)
    return {w: count / statistics.median(t) for w, t in times.items()}


def _decode(examples, dtype) -> int:
    n = 0
    for ex in examples:
        np.frombuffer(ex["features"], dtype).reshape(ex["length"], ex["num_features"])
        n += 1
    return n


def measure(set_dir: Path, repeats: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    manifest = tfrecords.read_manifest(set_dir)
    dtype = np.dtype(tfrecords.STORE_DTYPES[manifest["dtype"]]).newbyteorder("<")
    paths = [set_dir / sh["file"] for s in manifest["splits"].values() for sh in s["shards"]]
    payloads = [p for path in paths for p in records.iter_records(path)]
    n = len(payloads)

    def tf_message():
        out = 0
        for p in payloads:
            f = tf.train.Example.FromString(p).features.feature
            np.frombuffer(f["features"].bytes_list.value[0], dtype).reshape(
                f["length"].int64_list.value[0], f["num_features"].int64_list.value[0])
            out += 1
        return out

    spec = {k: tf.io.FixedLenFeature([], t) for k, t in
            (("features", tf.string), ("length", tf.int64), ("num_features", tf.int64))}
    tf_dtype = tf.float16 if manifest["dtype"] == "float16" else tf.float32

    def tf_data():
        def one(x):
            ex = tf.io.parse_single_example(x, spec)
            return tf.reshape(tf.io.decode_raw(ex["features"], tf_dtype, little_endian=True),
                              tf.stack([ex["length"], ex["num_features"]]))
        ds = tf.data.TFRecordDataset([str(p) for p in paths]).map(one)
        opts = tf.data.Options()
        opts.threading.private_threadpool_size = 1
        return sum(1 for _ in ds.with_options(opts).as_numpy_iterator())

    rates = _rates({"parse": lambda: _decode(map(records.parse_example, payloads), dtype),
                    "read_examples": lambda: _decode(records.read_examples(paths), dtype),
                    "tf.train.Example": tf_message, "tf.data": tf_data}, n, repeats)
    return {"set": manifest["set"], "clips": n, "dtype": manifest["dtype"],
            "mean_payload_bytes": round(sum(map(len, payloads)) / n), **rates}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepared", type=Path, required=True, help="a prepared set folder (OUT/<set>)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    r = measure(args.prepared, args.repeats)
    ways = ("parse", "read_examples", "tf.train.Example", "tf.data")
    text = "\n".join([
        "# Decoding prepared records: jaxmusic.data.records vs TensorFlow (one core)", "",
        f"`python -m benchmarks.records --prepared {args.prepared} --repeats {args.repeats}` on "
        f"{machine.cpu_model()} (load average {machine.load_average()}); {r['clips']} clips of {r['set']} ({r['dtype']}, "
        f"{r['mean_payload_bytes']} bytes per record on average). Median of {args.repeats} passes.", "",
        "| way | clips/s | vs tf.data |", "|---|---:|---:|",
        *(f"| {w} | {r[w]:.0f} | {r[w] / r['tf.data']:.1f}x |" for w in ways), ""])
    print(text)
    if args.out:
        args.out.write_text(text)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
