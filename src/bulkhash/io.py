"""Saving and loading tables.

File layout (all integers little-endian)::

    0   8 bytes   magic b"BULKHASH"
    8   uint32    format version (FORMAT_VERSION)
    12  uint32    header length H
    16  uint32    CRC-32 of the header
    20  uint32    0 (reserved)
    24  H bytes   header: UTF-8 JSON (class, constructor parameters, geometry, state, data CRC-32)
    ... padding to a multiple of 64
    D   the slot array, exactly as in memory

The slot array is stored verbatim at a 64-byte aligned offset, so ``load(path, mmap=True)`` maps
it straight into a table (copy-on-write: the table is fully usable and the file never changes).
``save`` writes a temporary file beside the target, flushes it to disk and renames it over the
target, so a reader never sees a half-written table.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ._cpu.backend import aligned_zeros

MAGIC = b"BULKHASH"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIII")
_ALIGN = 64
_CHUNK = 1 << 26


class FormatError(ValueError):
    """A file is not a bulkhash table, or is truncated, corrupted or from a newer version."""


def _crc32(arr: np.ndarray, crc: int = 0) -> int:
    """The CRC-32 of ``arr``'s bytes, continuing from ``crc``."""
    flat = arr.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _CHUNK):
        crc = zlib.crc32(flat[start:start + _CHUNK], crc)
    return crc


def save(table, path: str | os.PathLike) -> None:
    """Write ``table`` (any bulkhash structure) to ``path`` atomically."""
    if hasattr(table, "_save_state"):
        # A structure that is not an open-addressing table (a filter, a value pool) describes
        # itself: constructor parameters, a little metadata, and one array stored verbatim.
        # ``data`` may also be a tuple of arrays, stored back to back as one byte array (so a
        # structure need not concatenate its parts into a copy first).
        params, meta, data = table._save_state()
        if isinstance(data, tuple):
            parts = [np.ascontiguousarray(part).reshape(-1).view(np.uint8) for part in data]
            dtype, shape = "uint8", [sum(part.size for part in parts)]
        else:
            parts = [np.ascontiguousarray(data)]
            dtype, shape = str(parts[0].dtype), list(parts[0].shape)
        header = dict(cls=type(table).__name__, params=params, meta=meta, dtype=dtype,
                      shape=shape)
        _write(path, header, parts)
        return
    inner = table._table
    with inner.lock.reading():
        slots = inner.backend.to_host(inner.slots)  # (a GPU table is written from a host copy)
        header = dict(
            cls=type(table).__name__, params=table._params(), capacity=inner.capacity,
            n_buckets=inner.n_buckets, bucket_size=inner.bucket_size,
            layout=inner.backend.layout(), word=str(inner.word),
            words_per_slot=inner.words_per_slot,
            state=[int(x) for x in inner.backend.to_host(inner.state)])
        _write(path, header, [slots])


def _write(path: str | os.PathLike, header: dict, parts: list[np.ndarray]) -> None:
    """The prefix, the JSON header and the arrays ``parts``, back to back from a 64-byte
    aligned offset, written to a temporary file that is renamed over ``path`` once it is on
    disk."""
    path = Path(path)
    crc = 0
    for part in parts:
        crc = _crc32(part, crc)
    header = dict(header, data_nbytes=sum(int(part.nbytes) for part in parts), data_crc32=crc)
    # the data offset depends on the header's length, which contains the offset: fix a width
    header["data_offset"] = 0
    blob = json.dumps(header).encode()
    data_offset = -(-(_PREFIX.size + len(blob) + 32) // _ALIGN) * _ALIGN
    header["data_offset"] = data_offset
    blob = json.dumps(header).encode().ljust(data_offset - _PREFIX.size)
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob), zlib.crc32(blob), 0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(prefix)
            f.write(blob)
            for part in parts:
                flat = part.reshape(-1).view(np.uint8)
                for start in range(0, flat.size, _CHUNK):
                    f.write(flat[start:start + _CHUNK])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_header(path: Path) -> dict:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    with f:
        raw = f.read(_PREFIX.size)
        if len(raw) < _PREFIX.size or raw[:8] != MAGIC:
            raise FormatError(f"{path} is not a bulkhash table file (bad magic number)")
        _, version, length, crc, _ = _PREFIX.unpack(raw)
        if version > FORMAT_VERSION:
            raise FormatError(f"{path} was written in format version {version}; this bulkhash "
                              f"reads up to {FORMAT_VERSION}: upgrade bulkhash")
        blob = f.read(length)
    if len(blob) < length:
        raise FormatError(f"{path} is truncated: its header is cut short")
    if zlib.crc32(blob) != crc:
        raise FormatError(f"{path} is corrupted: its header checksum does not match")
    try:
        return json.loads(blob)
    except ValueError as err:
        raise FormatError(f"{path} is corrupted: unreadable header ({err})") from None


def _stored_words(slots: np.ndarray, state: np.ndarray, n_slots: int):
    """(key words, value words) of every entry of a saved slot array, special rows last."""
    from ._cpu import kernels as K

    tomb = np.iinfo(slots.dtype).max
    live = slots[:n_slots, 0]
    rows = np.flatnonzero((live != 0) & (live != tomb))
    for row, flag in ((n_slots, K.HAS_EMPTY_KEY), (n_slots + 1, K.HAS_TOMB_KEY)):
        if state[flag]:
            rows = np.append(rows, row)
    values = slots[rows, 1] if slots.shape[1] > 1 else np.empty(0, slots.dtype)
    return np.ascontiguousarray(slots[rows, 0]), np.ascontiguousarray(values)


# The structures a file can hold: class name -> module (imported only when a file needs it).
_STRUCTURES = {"HashMap": "hashmap", "HashSet": "hashset", "Counter": "counter",
               "MultiMap": "multimap", "BucketListMap": "bucketlist",
               "BloomFilter": "bloom", "CuckooFilter": "cuckoo",
               "KmerCounts": "genomics.kmers", "ReadClassifier": "genomics.classify"}


def _structure_class(name: str, path: Path):
    if name not in _STRUCTURES:
        raise FormatError(f"{path} holds a {name!r}, which this bulkhash does not know: "
                          "upgrade bulkhash")
    module = importlib.import_module(f"bulkhash.{_STRUCTURES[name]}")
    return getattr(module, name)


def _read_data(path: Path, header: dict, dtype: np.dtype, shape: tuple, mmap: bool,
               verify: bool) -> np.ndarray:
    """The array stored after the header: mapped copy-on-write, or read into aligned memory."""
    try:
        offset, nbytes = header["data_offset"], header["data_nbytes"]
    except KeyError as err:
        raise FormatError(f"{path} is corrupted: header lacks {err}") from None
    size = path.stat().st_size
    if size < offset + nbytes or int(np.prod(shape)) * dtype.itemsize != nbytes:
        raise FormatError(f"{path} is truncated: expected {offset + nbytes} bytes, found {size}")
    if mmap and nbytes:
        data = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)
    else:
        data = aligned_zeros(shape, dtype)
        with open(path, "rb") as f:
            f.seek(offset)
            f.readinto(data.reshape(-1).view(np.uint8))
    if verify and _crc32(data) != header["data_crc32"]:
        raise FormatError(f"{path} is corrupted: the table data fails its checksum")
    return data


def verify(path: str | os.PathLike) -> None:
    """Check a file that ``save`` wrote, without opening the table in it: its header, its length
    and its data's checksum, all that ``load(path, verify=True)`` checks.

    For a caller that loads with ``verify=False`` and checks alongside other work: the checksum
    runs without holding the GIL. Raises ``FormatError`` (``FileNotFoundError`` for no file).

    >>> import bulkhash, tempfile, os
    >>> from bulkhash.io import verify
    >>> path = os.path.join(tempfile.mkdtemp(), "s.bh")
    >>> bulkhash.HashSet("uint32").save(path)
    >>> verify(path)  # nothing to say: the file is whole
    """
    path = Path(path)
    header = _read_header(path)
    nbytes = header.get("data_nbytes")
    if not isinstance(nbytes, int):
        raise FormatError(f"{path} is corrupted: header lacks 'data_nbytes'")
    _read_data(path, header, np.dtype(np.uint8), (nbytes,), mmap=True, verify=True)


def load(path: str | os.PathLike, mmap: bool = False, *, verify: bool = True,
         device: str | None = None, group_size: int | None = None):
    """Open a table written by ``save``.

    Parameters
    ----------
    path : str or path-like
    mmap : bool
        Map the file instead of reading it: opening costs no copy and pages load on first use.
        The table is copy-on-write: changing it never changes the file.
    verify : bool
        Check the data checksum (reads the whole file once). Turn off only for trusted files.
    device, group_size : optional
        Where the loaded table lives, as for the constructors (default: the default device).
        A table saved on one backend loads on the other: the GPU probes its slots in another
        order, so the entries are inserted again there (``mmap`` then saves no copy).

    Raises ``FormatError`` for a file that is not a table, truncated, or corrupted.

    >>> import bulkhash, tempfile, os
    >>> m = bulkhash.HashMap("int64", "int32")
    >>> _ = m.insert([1, -2], [10, 20])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.bh")
    >>> m.save(path)
    >>> bulkhash.load(path).get([-2, 1, 5])
    array([20, 10,  0], dtype=int32)
    """
    path = Path(path)
    header = _read_header(path)
    try:
        cls = _structure_class(header["cls"], path)
        if "shape" in header:  # a structure that saved itself (see ``save``)
            data = _read_data(path, header, np.dtype(header["dtype"]), tuple(header["shape"]),
                              mmap, verify)
            return cls._load_state(header["params"], header["meta"], data, device=device)
        word = np.dtype(header["word"])
        bucket_size = header.get("bucket_size", 64 // (word.itemsize * header["words_per_slot"]))
        n_slots = header["n_buckets"] * bucket_size
        shape = (n_slots + 2, header["words_per_slot"])
    except (KeyError, TypeError) as err:
        raise FormatError(f"{path} is corrupted: header lacks {err}") from None
    slots = _read_data(path, header, word, shape, mmap, verify)
    state = np.asarray(header["state"], np.int64)
    table = cls(**header["params"], capacity=0, device=device, group_size=group_size)
    inner = table._table
    if header.get("layout", "cpu-linear-64b") == inner.backend.layout():
        inner.adopt(slots, state, header["n_buckets"], header["capacity"])
        return table
    from ._cpu import kernels as K

    keys, values = _stored_words(slots, state, n_slots)
    inner.resize(max(header["capacity"], keys.size))
    inner._mutate(inner.backend.from_host(keys), inner.backend.from_host(values),
                  K.ACTION_UPSERT, K.OP_OVERWRITE, K.KIND_UINT, 8, inner.capacity)
    return table
