"""``bulkhash.bench.probes``: the cache lines a CPU lookup reads, against a walk of the probe
sequence written out in Python, slot by slot, on small tables."""

from __future__ import annotations

import numpy as np
import pytest

import bulkhash
from bulkhash.bench.probes import probe_lines
from bulkhash.hashing import hash_key, home_bucket


def _walked_lines(table):
    """(mean lines per hit, mean lines per miss, mean lines per miss without a reach map) by
    walking each probe bucket by bucket; the reach of a home bucket is the furthest any of its
    keys' walks went."""
    t = table._table
    slots = t.slots.reshape(t.slots.shape[0], -1)
    nb, bs = t.n_buckets, t.bucket_size
    keys = slots[: nb * bs, 0].astype(np.uint64)
    tomb = int(np.iinfo(slots.dtype).max)

    def bucket_keys(b):
        return [int(k) for k in keys[b * bs:(b + 1) * bs]]

    hit_lines = []
    reach = {}
    for k in keys:
        if int(k) in (0, tomb):
            continue
        b = int(home_bucket(np.uint64(hash_key(np.uint64(k), np.uint64(t.seed))), nb))
        home, lines = b, 1
        while int(k) not in bucket_keys(b):
            b, lines = (b + 1) % nb, lines + 1
        hit_lines.append(lines)
        reach[home] = max(reach.get(home, 0), lines - 1)
    miss_lines, unbounded = [], []
    for start in range(nb):
        b, lines = start, 1
        while 0 not in bucket_keys(b):
            b, lines = (b + 1) % nb, lines + 1
        unbounded.append(lines)
        bound = reach.get(start, 0)
        miss_lines.append(lines if bound >= 255 else min(lines, 1 + bound))
    return np.mean(hit_lines), np.mean(miss_lines), np.mean(unbounded)


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
    hit, miss, unbounded = _walked_lines(m)
    assert lines["hit"] == pytest.approx(hit) and lines["miss"] == pytest.approx(miss)
    assert lines["miss_unbounded"] == pytest.approx(unbounded)
    assert sum(lines["hit_histogram"]) == len(m)
    assert 1.0 <= lines["hit"] and 1.0 <= lines["miss"] <= lines["miss_unbounded"]
    if load > 0.9:  # where the reach map earns its keep: runs of full buckets are long
        assert lines["miss"] < lines["miss_unbounded"] / 2


def test_span_gather_reads_the_first_word_of_each_line():
    from bulkhash._cpu import ceiling as C

    arr = np.arange(64 * C.LINE_WORDS, dtype=np.uint64)
    starts = np.array([0, 3 * C.LINE_WORDS, 10 * C.LINE_WORDS + 5])
    for lines in (1, 2, 5):
        expected = sum(int(arr[s + j * C.LINE_WORDS]) for s in starts for j in range(lines))
        for distance in (0, 1, 16):
            assert int(C.gather(arr, starts, distance, 2, lines)) == expected


def _timing(lines, seconds_per_read, n=1000):
    from bulkhash.bench import Timing

    return Timing(f"{lines}-line span", "prefetch 0", n, "accesses",
                  seconds=[seconds_per_read * n])


def test_span_costs_interpolate_between_and_extrapolate_past_the_measured_spans():
    from bulkhash.bench import probes

    costs = probes.span_costs([_timing(1, 1.0), _timing(2, 1.5), _timing(4, 2.5),
                               _timing(4, 9.0)])  # (the slower variant of a span is ignored)
    assert costs.size == probes.MAX_LINES
    assert costs[:4] == pytest.approx([1.0, 1.5, 2.0, 2.5])
    assert costs[5] == pytest.approx(3.5)  # 6 lines: on past 4 at 0.5 per line


def test_best_fraction_weighs_each_probe_length_by_its_cost():
    from bulkhash.bench import probes

    costs = 1.0 + 0.5 * np.arange(probes.MAX_LINES)  # d lines cost 1 + (d - 1) / 2
    assert probes.best_fraction([10], costs) == pytest.approx(1.0)
    assert probes.best_fraction([5, 5], costs) == pytest.approx(1 / 1.25)
    assert probes.best_fraction([0, 0, 0, 4], costs) == pytest.approx(1 / 2.5)


def test_probe_cost_script_runs_end_to_end(capsys):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_cost.py"
    argv = sys.argv
    sys.argv = [str(script), "--keys", "20000", "--reps", "1", "--loads", "0.9"]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| uint")]
    assert [row.split("|")[1].strip() for row in rows] == ["uint64", "uint32"]
    for row in rows:  # fractions of the ceiling: best and measured, for hits and misses
        cells = [c.strip() for c in row.split("|")[1:-1]]
        for pair in (cells[9], cells[11]):
            best, measured = map(float, pair.split(","))
            assert 0 < best <= 1.0 and measured > 0
