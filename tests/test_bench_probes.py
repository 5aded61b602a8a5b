"""``bulkhash.bench.probes``: the cache lines a CPU lookup reads, against a walk of the probe
sequence written out in Python, slot by slot, on small tables."""

from __future__ import annotations

import numpy as np
import pytest

import bulkhash
from bulkhash.bench.probes import probe_lines
from bulkhash.hashing import hash_key, home_bucket


def _walked_lines(table):
    """(mean lines per hit, mean lines per miss) by walking each probe bucket by bucket."""
    t = table._table
    slots = t.slots.reshape(t.slots.shape[0], -1)
    nb, bs = t.n_buckets, t.bucket_size
    keys = slots[: nb * bs, 0].astype(np.uint64)
    tomb = int(np.iinfo(slots.dtype).max)

    def bucket_keys(b):
        return [int(k) for k in keys[b * bs:(b + 1) * bs]]

    hit_lines = []
    for k in keys:
        if int(k) in (0, tomb):
            continue
        b = int(home_bucket(np.uint64(hash_key(np.uint64(k), np.uint64(t.seed))), nb))
        lines = 1
        while int(k) not in bucket_keys(b):
            b, lines = (b + 1) % nb, lines + 1
        hit_lines.append(lines)
    miss_lines = []
    for start in range(nb):
        b, lines = start, 1
        while 0 not in bucket_keys(b):
            b, lines = (b + 1) % nb, lines + 1
        miss_lines.append(lines)
    return np.mean(hit_lines), np.mean(miss_lines)


@pytest.mark.parametrize("key_dtype", ["uint64", "uint32"])
@pytest.mark.parametrize("load", [0.5, 0.95])
def test_probe_lines_match_a_walk_of_every_probe(key_dtype, load):
    rng = np.random.default_rng(3)
    m = bulkhash.HashMap(key_dtype, key_dtype, capacity=2000, growable=False,
                         max_load_factor=load)
    keys = np.unique(rng.integers(1, 2**32 - 1, 3 * 2000, dtype=np.uint64).astype(key_dtype))
    m.insert(rng.permutation(keys)[: m.capacity], 7)
    m.erase(keys[:50])  # tombstones: a miss walks past them
    lines = probe_lines(m)
    hit, miss = _walked_lines(m)
    assert lines["hit"] == pytest.approx(hit) and lines["miss"] == pytest.approx(miss)
    assert sum(lines["hit_histogram"]) == len(m)
    assert 1.0 <= lines["hit"] <= lines["miss"]
