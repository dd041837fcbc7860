"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length            little-endian, bytes in the payload
    uint32 masked_crc32c(the 8 length bytes)
    byte   payload[length]
    uint32 masked_crc32c(payload)

with ``masked_crc32c(x) = ((c >> 15 | c << 17) + 0xa282ead8) mod 2**32`` for
``c = crc32c(x)`` (Castagnoli; the mask keeps a CRC of data that holds CRCs from
being trivial). :class:`RecordWriter` writes exactly the bytes of
``tf.io.TFRecordWriter`` (no compression); :func:`iter_records` reads a file in
order, :func:`record_index` + :func:`read_record` read any record of it, and every
read checks both CRCs: a damaged or cut file raises :class:`RecordError` naming the
file and the 0-based record index.

The payloads of a prepared set are ``tf.train.Example`` protocol buffers
(``tensorflow/core/example/{example,feature}.proto``). Their message classes are
built here from a descriptor written in code, in the proto package
``jaxmusic.tfexample`` (so they live beside TensorFlow's own ``tensorflow.Example``
in one process) with the same field numbers and types, hence the same wire format:

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

:func:`encode_example` serialises a plain dict deterministically (map keys sorted)
and :func:`parse_example` turns a payload back into one; :func:`read_examples` reads
whole shards of them.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator, Sequence

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message
from google.protobuf import message_factory

from jaxmusic.data import lab

_HEADER = struct.Struct("<QI")      # length, masked crc32c of the length
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class RecordError(lab.DatasetError):
    """A damaged TFRecord file: the file, the 0-based record index and what is wrong."""

    def __init__(self, message: str, *, file: str | os.PathLike | None, index: int):
        self.index = index
        super().__init__(f"record {index}: {message}", file=file)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C (Castagnoli) that frames TFRecords."""
    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- framing ----------------------------------------------------------------------

class RecordWriter:
    """Writes records to ``path`` (a new file) with TFRecord framing; a context manager."""

    def __init__(self, path: str | os.PathLike):
        self._file = open(path, "wb")

    def write(self, payload: bytes) -> None:
        length = _LENGTH.pack(len(payload))
        self._file.write(length + _CRC.pack(masked_crc32c(length)))
        self._file.write(payload)
        self._file.write(_CRC.pack(masked_crc32c(payload)))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_header(header: bytes, path, index: int) -> int:
    """The payload length of a 12-byte record header whose length CRC matches."""
    length, crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != crc:
        raise RecordError(f"length CRC mismatch (stored {crc:#010x}, computed "
                          f"{masked_crc32c(header[:8]):#010x})", file=path, index=index)
    return length


def _check_payload(payload: bytes, crc: bytes, path, index: int) -> bytes:
    stored, = _CRC.unpack(crc)
    if masked_crc32c(payload) != stored:
        raise RecordError(f"payload CRC mismatch (stored {stored:#010x}, computed "
                          f"{masked_crc32c(payload):#010x})", file=path, index=index)
    return payload


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The payloads of a TFRecord file in order, both CRCs of each checked."""
    with open(path, "rb") as f:
        index = 0
        while header := f.read(_HEADER.size):
            if len(header) < _HEADER.size:
                raise RecordError(f"truncated header ({len(header)} of {_HEADER.size} bytes at the "
                                  "end of the file)", file=path, index=index)
            length = _check_header(header, path, index)
            payload, crc = f.read(length), f.read(_CRC.size)
            if len(payload) < length or len(crc) < _CRC.size:
                raise RecordError(f"truncated record ({len(payload) + len(crc)} of {length + _CRC.size} "
                                  "payload + CRC bytes before the end of the file)", file=path, index=index)
            yield _check_payload(payload, crc, path, index)
            index += 1


def record_index(path: str | os.PathLike) -> np.ndarray:
    """``int64 [n, 2]``: (payload offset, payload length) of every record of a file.

    Reads the 12-byte headers only (their length CRCs checked); a record that runs
    past the end of the file raises :class:`RecordError` with its index. The payloads
    are checked when read (:func:`read_record`).
    """
    size = os.path.getsize(path)
    rows: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            index = len(rows)
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                raise RecordError(f"truncated header ({len(header)} of {_HEADER.size} bytes at the "
                                  "end of the file)", file=path, index=index)
            length = _check_header(header, path, index)
            end = pos + _HEADER.size + length + _CRC.size
            if end > size:
                raise RecordError(f"truncated record (needs bytes up to offset {end}, the file has "
                                  f"{size})", file=path, index=index)
            rows.append((pos + _HEADER.size, length))
            pos = end
            f.seek(pos)
    return np.asarray(rows, np.int64).reshape(-1, 2)


def read_record(f, offset: int, length: int, *, path: str | os.PathLike, index: int) -> bytes:
    """One payload (a row of :func:`record_index`) of the open binary file ``f``, its CRC
    checked; ``path`` and ``index`` name it in errors. Uses ``os.pread`` (no seek), so
    threads may share ``f``."""
    data = os.pread(f.fileno(), length + _CRC.size, offset)
    if len(data) < length + _CRC.size:
        raise RecordError(f"truncated record ({len(data)} of {length + _CRC.size} payload + CRC bytes "
                          f"at offset {offset})", file=path, index=index)
    return _check_payload(data[:length], data[length:], path, index)


# --- tf.train.Example --------------------------------------------------------------

def _example_classes() -> dict[str, type]:
    """Example, Features, Feature, BytesList, FloatList, Int64List: wire-identical to
    TensorFlow's (see the module docstring), in the proto package ``jaxmusic.tfexample``."""
    F = descriptor_pb2.FieldDescriptorProto
    package = "jaxmusic.tfexample"
    fdp = descriptor_pb2.FileDescriptorProto(name="jaxmusic/tfexample.proto", package=package,
                                             syntax="proto3")

    def add(parent, name: str, *fields: tuple[str, int, int | str]):
        """A message; each field (name, number, a repeated scalar type or a message name)."""
        msg = parent.add(name=name)
        for fname, number, ftype in fields:
            if isinstance(ftype, str):
                msg.field.add(name=fname, number=number, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                              type_name=f".{package}.{ftype}")
            else:
                msg.field.add(name=fname, number=number, label=F.LABEL_REPEATED, type=ftype)
        return msg

    add(fdp.message_type, "BytesList", ("value", 1, F.TYPE_BYTES))
    add(fdp.message_type, "FloatList", ("value", 1, F.TYPE_FLOAT))   # proto3: packed
    add(fdp.message_type, "Int64List", ("value", 1, F.TYPE_INT64))   # proto3: packed
    feature = add(fdp.message_type, "Feature", ("bytes_list", 1, "BytesList"), ("float_list", 2, "FloatList"),
                  ("int64_list", 3, "Int64List"))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = add(fdp.message_type, "Features", ("feature", 1, "Features.FeatureEntry"))
    features.field[0].label = F.LABEL_REPEATED
    entry = features.nested_type.add(name="FeatureEntry")        # map<string, Feature>
    entry.field.add(name="key", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                    type_name=f".{package}.Feature")
    entry.options.map_entry = True
    add(fdp.message_type, "Example", ("features", 1, "Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{m.name}"))
            for m in fdp.message_type}


_CLASSES = _example_classes()
Example = _CLASSES["Example"]


def _list_kind(value) -> str | None:
    if isinstance(value, (bytes, str, np.bytes_)):
        return "bytes_list"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return "int64_list"
    if isinstance(value, (float, np.floating)):
        return "float_list"
    return None


_ARRAY_KINDS = {"S": "bytes_list", "i": "int64_list", "u": "int64_list", "f": "float_list"}


def encode_example(features: dict) -> bytes:
    """A serialised ``tf.train.Example`` of ``{name: value}``, map keys sorted.

    ``bytes``/``str`` (UTF-8) and lists of them -> ``bytes_list``; ``int`` and
    lists/arrays of integers -> ``int64_list``; ``float`` and lists/arrays of floats ->
    ``float_list`` (float32); an array is stored flattened (row-major). Anything else,
    a list of mixed kinds and an empty list raise ``TypeError``.
    """
    ex = Example()
    feature_map = ex.features.feature
    for name, value in features.items():
        if isinstance(value, np.ndarray):
            kinds = {_ARRAY_KINDS.get(value.dtype.kind)}
            values = value.ravel().tolist()
        else:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            kinds = {_list_kind(v) for v in values}
        if len(kinds) != 1 or None in kinds:
            raise TypeError(f"feature {name!r}: cannot store {value!r:.60} (one or more values, all bytes/str, "
                            "all int or all float)")
        kind = kinds.pop()
        if kind == "bytes_list":
            values = [v.encode() if isinstance(v, str) else v for v in values]
        getattr(feature_map[name], kind).value.extend(values)
    return ex.SerializeToString(deterministic=True)


def parse_example(payload: bytes) -> dict:
    """A serialised ``tf.train.Example`` as ``{name: value}``.

    ``bytes_list``: one value -> ``bytes``, otherwise ``list[bytes]``; ``int64_list``:
    one value -> ``int``, otherwise an ``np.int64`` array; ``float_list`` -> an
    ``np.float32`` array (whatever its length). A payload that is not an Example, or a
    feature with no list, raises ``ValueError``.
    """
    try:
        ex = Example.FromString(payload)
    except message.DecodeError as e:
        raise ValueError(f"not a tf.train.Example ({e})") from None
    out = {}
    for name, feature in ex.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values = feature.bytes_list.value
            out[name] = values[0] if len(values) == 1 else list(values)
        elif kind == "int64_list":
            values = feature.int64_list.value
            out[name] = values[0] if len(values) == 1 else np.array(values, np.int64)
        elif kind == "float_list":
            out[name] = np.array(feature.float_list.value, np.float32)
        else:
            raise ValueError(f"feature {name!r} holds no value list")
    return out


def read_examples(paths: Sequence[str | os.PathLike]) -> Iterator[dict]:
    """The parsed examples (:func:`parse_example`) of TFRecord files, file after file,
    in order; CRCs checked, a bad payload raises :class:`RecordError`."""
    for path in paths:
        for index, payload in enumerate(iter_records(path)):
            try:
                yield parse_example(payload)
            except ValueError as e:
                raise RecordError(str(e), file=path, index=index) from None
