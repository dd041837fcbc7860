"""Training sets larger than memory: the same batches, read record by record through Grain.

The ``stream`` placement of :mod:`jaxmusic.data.pipeline`. Each shard's record
offsets are indexed once (:func:`jaxmusic.data.records.record_index`: the framing's
headers only, length CRCs checked), so any clip of this process's input streams
can be read on its own (its payload CRC checked) and decoded exactly as
:func:`jaxmusic.data.pipeline.load_split` decodes it. A batch is the clips at the
rows of :func:`jaxmusic.data.pipeline.epoch_indices`, the rows the other placements
gather from memory, so the order contract is the same: a function of
``(seed, epoch, stream)``; a run resumed at step ``s`` of an epoch reads from that
epoch's batch ``s`` on (the loop's checkpoint records the epoch and the step, which
is all the iterator's state).

Grain (``pip install 'jaxmusic[stream]'``) reads the clips with ``threads`` threads and
keeps ``prefetch`` clips ahead of the step; memory is bounded by that window, not by
the set.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from jaxmusic.data import lab, records
from jaxmusic.data.pipeline import Layout, PipelineConfig, PreparedSet, decode_into


@dataclasses.dataclass
class StreamSource:
    """This process's streams of a split, readable clip by clip (random access)."""

    pset: PreparedSet
    split: str
    cfg: PipelineConfig
    streams: tuple[int, ...]
    stream_count: int
    threads: int = 8
    prefetch: int = 64

    def __post_init__(self):
        if self.cfg.bucket_boundaries:
            raise ValueError("data.bucket_boundaries needs the training split in memory "
                             "(data.placement=host): streamed clips are not bucketed")
        self.streams = tuple(self.streams)
        self.layout = Layout.of(self.pset, self.cfg)
        self.paths: list[Path] = []
        where = []                                  # (shard number, payload offset, length)
        counts = []
        for r in self.streams:
            n = 0
            for shard in self.pset.shards(self.split, r, self.stream_count):
                path = self.pset.dir / shard["file"]
                index = records.record_index(path)
                if len(index) != shard["count"]:
                    raise lab.DatasetError(f"shard holds {len(index)} records, its manifest lists "
                                           f"{shard['count']}: prepare the set again", file=path)
                where += [(len(self.paths), int(o), int(size)) for o, size in index]
                self.paths.append(path)
                n += len(index)
            counts.append(n)
        self.where = np.asarray(where, np.int64).reshape(-1, 3)
        self.counts = tuple(counts)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self.where)

    def _file(self, shard: int):
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = {}
        if shard not in files:
            files[shard] = open(self.paths[shard], "rb")
        return files[shard]

    def clip(self, row: int) -> dict:
        """Clip ``row`` (of this process's streams, stream after stream) decoded."""
        shard, offset, size = (int(v) for v in self.where[row])
        path = self.paths[shard]
        payload = records.read_record(self._file(shard), offset, size, path=path,
                                      index=self._record_number(row))
        out = self.layout.empty(1)
        decode_into(records.parse_example(payload), self.layout, out, 0)
        return {k: v[0] for k, v in out.items() if k != "id"}

    def _record_number(self, row: int) -> int:
        """The record's index inside its shard (for error messages)."""
        shard = self.where[row, 0]
        return int(row - np.searchsorted(self.where[:, 0], shard, side="left"))

    def batches(self, epoch_rows: Sequence[np.ndarray]) -> Iterator[dict]:
        """Batches of ``epoch_rows`` in order, read ahead by Grain's threads."""
        import grain  # the stream extra: only sets larger than memory need it

        flat = np.concatenate([np.asarray(r, np.int64) for r in epoch_rows]) if len(epoch_rows) else []
        size = len(epoch_rows[0]) if len(epoch_rows) else 1
        ds = (grain.MapDataset.source(list(map(int, flat))).map(self.clip)
              .batch(size, drop_remainder=True))
        options = grain.ReadOptions(num_threads=self.threads, prefetch_buffer_size=self.prefetch)
        for b in ds.to_iter_dataset(options):
            b["mask"] = np.ones(size, bool)
            yield b
