"""save / load: round trips (copied and memory-mapped), loaded tables stay mutable without
touching the file, and damaged or foreign files raise FormatError."""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
import struct

import numpy as np
import pytest

import bulkhash
from bulkhash.io import verify
from _support import (DEVICES, assert_counter_equals, assert_map_equals, assert_set_equals,
                      edge_keys, host, random_keys, random_values, sized)

# Round trips and loaded tables run on each backend; the file-format checks need one.
on_each_device = pytest.mark.usefixtures("each_device")

HEADER_PREFIX = 24  # magic(8) version(4) header length(4) header crc(4) reserved(4)


def digest(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def data_offset(path) -> int:
    raw = pathlib.Path(path).read_bytes()
    (header_len,) = struct.unpack_from("<I", raw, 12)
    return HEADER_PREFIX + header_len


def flip(path, pos):
    raw = bytearray(pathlib.Path(path).read_bytes())
    raw[pos] ^= 0x5A
    pathlib.Path(path).write_bytes(bytes(raw))


def sample_map(kd="int64", vd="float32", n=3000, **kwargs):
    n = sized(n, min(n, 200))
    rng = np.random.default_rng(n)
    keys = np.unique(random_keys(rng, kd, n))
    values = random_values(rng, vd, keys.size)
    m = bulkhash.HashMap(kd, vd, **kwargs)
    m.insert(keys, values)
    m.erase(keys[::7])  # leave tombstones behind
    ref = {k: v for i, (k, v) in enumerate(zip(keys.tolist(), values)) if i % 7}
    return m, ref


# ------------------------------------------------------------------------------- round trips
@on_each_device
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("kd,vd", [("uint64", "uint64"), ("int64", "float32"),
                                   ("uint32", "int8"), ("int32", "bool"), ("uint32", "float64")])
def test_map_round_trip(tmp_path, kd, vd, mmap):
    m, ref = sample_map(kd, vd, max_load_factor=0.6, seed=77)
    path = tmp_path / "m.bh"
    m.save(path)
    loaded = bulkhash.load(path, mmap=mmap)
    assert type(loaded) is bulkhash.HashMap
    assert (loaded.key_dtype, loaded.value_dtype, loaded.capacity, loaded.growable,
            loaded.max_load_factor, loaded.seed) == (m.key_dtype, m.value_dtype, m.capacity,
                                                     m.growable, 0.6, 77)
    assert_map_equals(loaded, ref)


@on_each_device
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("kd", ["uint64", "int32"])
def test_set_and_counter_round_trip(tmp_path, kd, mmap):
    keys = np.array(edge_keys(kd) * 3 + list(range(3, sized(500, 60))), kd)
    s = bulkhash.HashSet(kd, capacity=600, growable=False)
    s.add(keys)
    c = bulkhash.Counter(kd, "uint16")
    c.add(keys)
    s.save(tmp_path / "s.bh")
    c.save(str(tmp_path / "c.bh"))  # str paths work too
    s2 = bulkhash.load(str(tmp_path / "s.bh"), mmap=mmap)
    c2 = bulkhash.load(tmp_path / "c.bh", mmap=mmap)
    assert type(s2) is bulkhash.HashSet and type(c2) is bulkhash.Counter
    assert not s2.growable and s2.capacity == 600
    assert c2.count_dtype == np.uint16
    assert_set_equals(s2, set(keys.tolist()))
    assert_counter_equals(c2, collections.Counter(keys.tolist()))


@on_each_device
def test_empty_table_round_trip(tmp_path):
    for t in (bulkhash.HashMap(), bulkhash.HashSet("int32"), bulkhash.Counter("uint32", "uint8")):
        t.save(tmp_path / "e.bh")
        for mmap in (False, True):
            loaded = bulkhash.load(tmp_path / "e.bh", mmap=mmap)
            assert type(loaded) is type(t) and len(loaded) == 0
            assert host(loaded.keys()).size == 0


# ------------------------------------------------------------------------------- loaded tables
@on_each_device
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_loaded_table_is_mutable_and_file_unchanged(tmp_path, mmap):
    m, ref = sample_map("uint64", "uint64", capacity=sized(8000, 400))
    path = tmp_path / "m.bh"
    m.save(path)
    before = digest(path)
    loaded = bulkhash.load(path, mmap=mmap)
    # in-place changes (no growth): insert, update, erase
    present = np.array(sorted(ref), np.uint64)
    third = present.size // 3
    loaded.insert(present[:third], 5, on_duplicate="add")
    loaded.insert([0, 2**64 - 1, 12345], [1, 2, 3])
    loaded.erase(present[third:2 * third])
    for k in present[:third].tolist():
        ref[k] = ref[k] + np.uint64(5)
    for k in present[third:2 * third].tolist():
        del ref[k]
    ref.update({0: 1, 2**64 - 1: 2, 12345: 3})
    assert_map_equals(loaded, ref)
    assert digest(path) == before, "changing a loaded table changed its file"
    # growth replaces the arrays; the file still does not change
    more = np.arange(10**6, 10**6 + sized(20_000, 300), dtype=np.uint64)
    loaded.insert(more, more)
    ref.update(zip(more.tolist(), more))
    assert_map_equals(loaded, ref)
    loaded.clear()
    assert digest(path) == before
    # and the file still loads as it was saved
    assert_map_equals(bulkhash.load(path), dict(zip(*[host(a).tolist() for a in m.items()])))


@on_each_device
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_loaded_fixed_table_still_refuses_keys_beyond_capacity(tmp_path, mmap):
    m = bulkhash.HashMap("int32", "int32", 10, growable=False)
    m.insert(np.arange(10, dtype=np.int32), 1)
    m.save(tmp_path / "f.bh")
    loaded = bulkhash.load(tmp_path / "f.bh", mmap=mmap)
    with pytest.raises(bulkhash.TableFullError):
        loaded.insert([-1], [1])
    assert len(loaded) == 10 and -1 not in loaded
    loaded.erase([0])
    loaded.insert([-1], [1])
    assert loaded[-1] == 1


@on_each_device
def test_save_over_own_mmapped_file(tmp_path):
    m, ref = sample_map("int64", "int64")
    path = tmp_path / "m.bh"
    m.save(path)
    loaded = bulkhash.load(path, mmap=True)
    loaded.insert([42], [42])
    ref[42] = np.int64(42)
    loaded.save(path)
    assert_map_equals(loaded, ref)
    assert_map_equals(bulkhash.load(path), ref)
    assert_map_equals(bulkhash.load(path, mmap=True), ref)


@on_each_device
def test_copy_of_mmapped_table_is_independent(tmp_path):
    m, ref = sample_map("uint32", "uint32")
    m.save(tmp_path / "m.bh")
    loaded = bulkhash.load(tmp_path / "m.bh", mmap=True)
    c = loaded.copy()
    c.insert([7], [7])
    c.erase(np.array(sorted(ref)[:10], np.uint32))
    assert_map_equals(loaded, ref)


# ------------------------------------------------------------------------------- across backends
@pytest.mark.skipif("cuda" not in DEVICES, reason="the CUDA backend is not under test")
@pytest.mark.parametrize("saved_on,loaded_on", [("cpu", "cuda"), ("cuda", "cpu")])
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_a_table_saved_on_one_backend_loads_on_the_other(tmp_path, saved_on, loaded_on, mmap):
    """The two backends lay slots out differently, so loading re-inserts every entry: the
    reserved-key rows, tombstones and every kind of table must come through."""
    keys = np.array(edge_keys("int64") + list(range(3, 120)), np.int64)
    m = bulkhash.HashMap("int64", "float32", max_load_factor=0.7, seed=5, device=saved_on)
    m.insert(keys, keys.astype(np.float32) / 4)
    m.erase(keys[::5])  # tombstones, and the reserved keys' rows emptied again for some
    ref = {k: np.float32(k / 4) for i, k in enumerate(keys.tolist()) if i % 5}
    s = bulkhash.HashSet("uint32", capacity=300, growable=False, device=saved_on)
    s.add(np.array([0, 2**32 - 1, 7, 7, 9], np.uint32))
    c = bulkhash.Counter("uint64", "uint8", device=saved_on)
    c.add(np.array([0, 2**64 - 1, 2**64 - 1, 5] + [6] * 300, np.uint64))
    for name, table in (("m", m), ("s", s), ("c", c)):
        table.save(tmp_path / f"{name}.bh")
    m2, s2, c2 = (bulkhash.load(tmp_path / f"{name}.bh", mmap=mmap, device=loaded_on)
                  for name in "msc")
    assert {m2.device, s2.device, c2.device} == {loaded_on}
    assert (m2.seed, m2.max_load_factor, m2.capacity) == (5, 0.7, m.capacity)
    assert_map_equals(m2, ref)
    assert not s2.growable and s2.capacity == 300
    assert_set_equals(s2, {0, 2**32 - 1, 7, 9})
    assert_counter_equals(c2, collections.Counter({0: 1, 2**64 - 1: 2, 5: 1, 6: 255}))
    m2.insert([10**12], [1.5])  # and each stays a working table
    ref[10**12] = np.float32(1.5)
    assert_map_equals(m2, ref)


# ------------------------------------------------------------------------------- atomic save
def test_save_replaces_and_leaves_no_temporary_files(tmp_path):
    m, ref = sample_map()
    path = tmp_path / "m.bh"
    m.save(path)
    m.insert([5], [5])
    m.save(path)
    assert sorted(os.listdir(tmp_path)) == ["m.bh"]
    ref[5] = np.float32(5)
    assert_map_equals(bulkhash.load(path), ref)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    m, ref = sample_map()
    path = tmp_path / "m.bh"
    m.save(path)
    before = digest(path)
    m.insert([5], [5])

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        m.save(path)
    monkeypatch.undo()
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == ["m.bh"]
    assert_map_equals(bulkhash.load(path), ref)


# ------------------------------------------------------------------------------- bad files
@pytest.fixture
def saved(tmp_path):
    m, _ = sample_map("uint64", "uint64", n=2000)
    path = tmp_path / "m.bh"
    m.save(path)
    return path


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("cut", ["empty", "in prefix", "in header", "at data start",
                                 "in data", "one byte short"])
def test_truncated_file(saved, cut, mmap):
    size = saved.stat().st_size
    start = data_offset(saved)
    keep = {"empty": 0, "in prefix": 10, "in header": HEADER_PREFIX + 5, "at data start": start,
            "in data": (start + size) // 2, "one byte short": size - 1}[cut]
    with open(saved, "r+b") as f:
        f.truncate(keep)
    with pytest.raises(bulkhash.FormatError):
        bulkhash.load(saved, mmap=mmap)
    with pytest.raises(bulkhash.FormatError):
        verify(saved)


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_data(saved, where, mmap):
    verify(saved)  # whole: nothing raised
    start, size = data_offset(saved), saved.stat().st_size
    flip(saved, {"first": start, "middle": (start + size) // 2, "last": size - 1}[where])
    with pytest.raises(bulkhash.FormatError, match="corrupt"):
        bulkhash.load(saved, mmap=mmap)
    with pytest.raises(bulkhash.FormatError, match="fails its checksum"):
        verify(saved)
    bulkhash.load(saved, mmap=mmap, verify=False)  # documented: verify=False skips the check


@pytest.mark.parametrize("pos", [0, 7, 8, 12, 16, 19, HEADER_PREFIX, HEADER_PREFIX + 10,
                                 "header end"],
                         ids=["magic", "magic end", "version", "header length", "header crc",
                              "header crc end", "json start", "json", "header end"])
def test_flipped_byte_in_header(saved, pos):
    if pos == "header end":
        pos = data_offset(saved) - 1
    flip(saved, pos)
    for mmap in (False, True):
        with pytest.raises(bulkhash.FormatError):
            bulkhash.load(saved, mmap=mmap)
    with pytest.raises(bulkhash.FormatError):
        verify(saved)


@pytest.mark.parametrize("content", [
    b"", b"hello, world\n", b"BULKHASH", b"BULKHASH" + b"\0" * 100,
    bytes(range(256)) * 10, b"\x93NUMPY" + b"\0" * 200,
], ids=["empty", "text", "magic only", "magic and zeros", "binary", "npy"])
def test_not_a_table(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    with pytest.raises(bulkhash.FormatError):
        bulkhash.load(path)
    assert issubclass(bulkhash.FormatError, ValueError)


def test_npy_file_is_not_a_table(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(100))
    with pytest.raises(bulkhash.FormatError):
        bulkhash.load(tmp_path / "a.npy", mmap=True)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        bulkhash.load(tmp_path / "nope.bh")
    with pytest.raises(FileNotFoundError):
        bulkhash.load(tmp_path / "nope.bh", mmap=True)


def test_save_into_missing_directory(tmp_path):
    m = bulkhash.HashMap()
    with pytest.raises(FileNotFoundError):
        m.save(tmp_path / "no" / "such" / "dir" / "m.bh")
