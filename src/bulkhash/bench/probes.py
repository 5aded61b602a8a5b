"""Cache lines a CPU lookup reads: what ties a table's throughput to the machine's ceiling.

A lookup of a key reads the buckets of its probe sequence (``bulkhash.probing``), one 64-byte
line each: from its home bucket to the bucket holding it (a hit), or to the first bucket with an
empty slot (a miss). The random-gather ceiling (``bulkhash._cpu.ceiling``) is the rate of reads
of *one* random line each, so a table whose lookups read ``L`` lines on average does at most the
ceiling's rate if every line past the first came free, and ``1 / L`` of it if each cost a random
access. Lines past the first are the *next* lines in memory, which the hardware prefetcher is
often already fetching, so the truth lies between. Both figures are exact counts over the table
as it is, not samples: every stored key's hit, and a miss from every bucket (hash values are
uniform over buckets, so a miss starts at each bucket equally often).

>>> import numpy as np, bulkhash
>>> m = bulkhash.HashMap("uint64", "uint64", capacity=1000, growable=False)
>>> _ = m.insert(np.arange(1, 801, dtype=np.uint64), 0)
>>> lines = probe_lines(m)
>>> 1.0 <= lines["hit"] <= lines["miss"] < 3.0
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._cpu.kernels import REACH_UNBOUNDED, bucket_of, build_reach

#: Probe lengths (lines) past this are counted in the last bin of the histograms.
MAX_LINES = 64


@njit(cache=True, nogil=True)
def _hit_histogram(slots, n_buckets, bsize, seed, tomb, out):
    """``out[d]`` += 1 for each stored key ``d + 1`` lines into its probe (capped); returns the
    lines of all hits (uncapped)."""
    total = 0
    for row in range(n_buckets * bsize):
        home = bucket_of(slots[row, 0], n_buckets, seed, tomb)
        if home >= 0:  # (empty slots and tombstones are -1: reserved words)
            d = (row // bsize - home) % n_buckets
            out[min(d, out.size - 1)] += 1
            total += d + 1
    return total


@njit(cache=True, nogil=True)
def _miss_histogram(slots, n_buckets, bsize, reach, out):
    """``out[d]`` += 1 for each bucket from which a miss reads ``d + 1`` lines (capped): up to and
    including the first bucket with an empty slot (tombstones do not stop a probe), or with a
    reach map (``reach``, non-empty) at most ``1 + reach[b]``; returns the lines of all misses
    (uncapped)."""
    open_bucket = np.zeros(n_buckets, np.bool_)
    for row in range(n_buckets * bsize):
        if slots[row, 0] == 0:
            open_bucket[row // bsize] = True
    last = -1
    for b in range(n_buckets - 1, -1, -1):
        if open_bucket[b]:
            last = b
            break
    if last < 0:
        return -1  # a full table: a miss reads every line (no such table is built)
    run = 0
    total = 0
    for step in range(n_buckets):  # backwards from the last open bucket, wrapping
        b = (last - step) % n_buckets
        run = 1 if open_bucket[b] else run + 1
        lines = run
        if reach.size > 0 and reach[b] != REACH_UNBOUNDED:
            lines = min(run, 1 + np.int64(reach[b]))
        out[min(lines - 1, out.size - 1)] += 1
        total += lines
    return total


def probe_lines(table) -> dict:
    """Mean (and histogram of) cache lines read by a hit and by a miss of a CPU ``HashMap``,
    ``HashSet`` or ``Counter`` as it stands (see module docs). ``miss`` stops where a reach map
    of the table says (``kernels.build_reach``), as bulk lookups do once the backend builds one
    (a table at least ``_cpu.backend.REACH_FROM_LOAD`` full, after enough lookups) in blocks
    that follow a block with many keys absent; ``miss_unbounded`` walks to an empty slot, as
    every other lookup does."""
    t = table._table
    if not isinstance(t.slots, np.ndarray):
        raise ValueError("probe_lines counts the CPU layout's lines; this table is on a GPU")
    slots = t.slots.reshape(t.slots.shape[0], -1)
    hits = np.zeros(MAX_LINES, np.int64)
    misses = np.zeros(MAX_LINES, np.int64)
    seed, tomb = np.uint64(t.seed), slots.dtype.type(t.tomb)
    hit_lines = _hit_histogram(slots, t.n_buckets, t.bucket_size, seed, tomb, hits)
    reach = np.empty(t.n_buckets, np.uint8)
    build_reach(slots, t.n_buckets, t.bucket_size, seed, tomb, reach, 1)
    miss_lines = _miss_histogram(slots, t.n_buckets, t.bucket_size, reach, misses)
    unbounded = _miss_histogram(slots, t.n_buckets, t.bucket_size, reach[:0], misses.copy())

    def per_miss(total):
        return total / t.n_buckets if total >= 0 else float(t.n_buckets)

    return dict(hit=hit_lines / max(1, hits.sum()), miss=per_miss(miss_lines),
                miss_unbounded=per_miss(unbounded), hit_histogram=hits.tolist(),
                miss_histogram=misses.tolist())


# ------------------------------------------------------------------ lines -> the best rate
#: Probe lengths (lines) at which the cost of a span read is measured; between them it is
#: interpolated linearly, past the last extrapolated from the last two.
SPANS = (1, 2, 4, 8, 16, 32)


def span_cases(footprint_bytes: int, n: int, rng: np.random.Generator, nthreads: int):
    """Bench cases (``bulkhash.bench.Case``) reading ``L`` consecutive lines at each of
    ``n // L`` (at least ``n // 8``) random line-aligned positions of an array of
    ``footprint_bytes``, for every ``L`` in ``SPANS``; the faster of no prefetch and a prefetch
    16 positions ahead counts (``span_costs``)."""
    from .._cpu import ceiling as C
    from . import Case

    words = max(C.LINE_WORDS * SPANS[-1], footprint_bytes // 8)
    arr = np.ones(words, np.uint64)  # touched: every page is resident before timing
    cases = []
    for lines in SPANS:
        count = max(n // lines, n // 8)
        starts = rng.integers(0, words // C.LINE_WORDS - lines, count) * C.LINE_WORDS
        for distance in (0, 16):
            cases.append(Case(f"{lines}-line span", f"prefetch {distance}", count,
                              lambda s=starts, d=distance, k=lines: C.gather(arr, s, d, nthreads,
                                                                              k),
                              unit="accesses"))
    return cases


def span_costs(timings) -> np.ndarray:
    """Seconds per span read, indexed by lines - 1 up to ``MAX_LINES``, from the timings of
    ``span_cases`` (the faster variant of each span)."""
    best = {}
    for t in timings:
        lines = int(t.op.split("-")[0])
        best[lines] = min(best.get(lines, np.inf), t.median / t.n)
    xs = np.array(sorted(best))
    ys = np.array([best[x] for x in xs])
    every = np.arange(1, MAX_LINES + 1)
    costs = np.interp(every, xs, ys)
    beyond = every > xs[-1]
    costs[beyond] = ys[-1] + (every[beyond] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return costs


def best_fraction(histogram, costs: np.ndarray) -> float:
    """The fastest a lookup with this probe-length ``histogram`` can run, as a fraction of the
    one-line gather: each probe of ``d`` lines costing a ``d``-line span read and nothing else."""
    hist = np.asarray(histogram, np.float64)
    return float(costs[0] / (hist @ costs[: hist.size] / hist.sum()))
