"""GPU memory-system ceilings: what this card can do at best for a table of a given size.

The GPU counterpart of ``bulkhash._cpu.ceiling``, for ``bulkhash bench --device cuda``. A bulk
lookup of a key that is not in cache costs at least one random read of device memory, an insert
at least one random read-modify-write (an atomic compare-and-swap on the key word). These kernels
measure those primitives with nothing else around them, over a uint64 array as large as the table
(``HashMap.nbytes``), so that the bench can say what fraction of the card a table operation
reaches:

* ``gather[blocks(n * width), BLOCK](arr, idx, width, out)``: thread ``t`` reads word
  ``t % width`` of line ``idx[t // width]`` (lines of ``width`` words), and each block writes the
  sum of its threads' words to ``out[block]``. ``width=1`` is the ceiling: **one random 8-byte word
  per lookup**. ``width=8`` is a companion figure: ``width`` neighbouring lanes read one 64-byte
  line together, as a group of 4 lanes reads a 4-slot window of a uint64/uint64 table (16-byte
  slots: 64 bytes).
* ``scatter_add[blocks(n), BLOCK](arr, idx, atomic)``: ``arr[idx[i]] += 1``, with
  ``cuda.atomic.add`` (``atomic=True``, an L2 atomic like the insert's compare-and-swap) or as a
  plain load and store (racy where two indices meet: harmless, only the time counts).
* ``sequential_sum[grid, BLOCK](arr, out)``: every word once, grid-stride, in order: streaming read
  bandwidth (bytes/s), beside the datasheet figure ``datasheet_bandwidth()`` (bytes/s; divided by
  the 32-byte sector it is the card's random-sector rate).

Why an 8-byte word, not a 64-byte line, is the ceiling: a GPU reads device memory in 32-byte
sectors, so a random 8-byte read costs one sector, the least that any lookup of a key not in
cache can cost -- whatever its group size, a table cannot beat it, which is what a ceiling must
say (and what the protocol, ``shared/BENCHMARKS.md``, asks for: the CPU's measurement, in a CUDA
kernel). A 64-byte line is two sectors, what a G=4 window of the benchmarked table costs; it
changes with the group size and the slot width, so it is reported beside the ceiling to show
how much of the gap a wider window explains, not used as the yardstick.

The positions are a precomputed ``int64`` array read in order (coalesced), as a table kernel
reads its keys. The gather's per-block sums (a shared-memory tree, one word written per block)
are what keeps the compiler from dropping the reads, and cost ``BLOCK`` times less traffic than
the reads. One thread per access and ``BLOCK`` threads per block, as the table kernels launch.

``event_seconds(launch)`` times one launch with CUDA events (``cuda.event()``, ``record``,
``synchronize``, ``elapsed_time``); ``gather_rate`` and friends are the ceiling as one call, for
use outside the bench: a warm-up launch, then the median of ``reps`` event-timed launches, e.g.
``arr = footprint_array(m.nbytes); gather_rate(arr, random_positions(arr, n, rng))`` (lookups/s).
The bench times the same launches with the same clock inside its interleaved rounds.

``sorted_lookup`` is not a ceiling but lives here because it is the bench's other hand-written
kernel: the last step of the CuPy peer's lookup (``cupy.searchsorted`` gives each query the
position of the first sorted key not below it; this kernel checks the key there and gathers its
value, in one pass instead of three CuPy element-wise calls).
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np
from numba import config, cuda, uint64

from .kernels import BLOCK, blocks

#: Words per line of the companion gather: 64 bytes, a G=4 window of 16-byte slots.
LINE_WORDS = 8
#: The smallest unit of device-memory traffic on NVIDIA GPUs since Maxwell.
SECTOR_BYTES = 32


@cuda.jit(device=True)
def _block_sum(acc, out):
    """``out[block]`` = the sum of every thread's ``acc`` (a tree in shared memory): what keeps
    the compiler from dropping the reads being timed."""
    partial = cuda.shared.array(BLOCK, uint64)
    tid = cuda.threadIdx.x
    partial[tid] = acc
    cuda.syncthreads()
    step = BLOCK // 2
    while step > 0:
        if tid < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        out[cuda.blockIdx.x] = partial[0]


@cuda.jit
def gather(arr, idx, width, out):
    """``out[b]`` = sum of ``arr[idx[t // width] * width + t % width]`` over block b's threads."""
    t = cuda.grid(1)
    acc = uint64(0)
    if t < idx.size * width:
        acc = arr[idx[t // width] * width + t % width]
    _block_sum(acc, out)


@cuda.jit
def scatter_add(arr, idx, atomic):
    """``arr[idx[i]] += 1``: an atomic add, or a plain load and store (module docstring)."""
    i = cuda.grid(1)
    if i < idx.size:
        if atomic:
            cuda.atomic.add(arr, idx[i], uint64(1))
        else:
            arr[idx[i]] += uint64(1)


@cuda.jit
def sequential_sum(arr, out):
    """``out[b]`` = sum of the words block b's threads visit, grid-stride, in order."""
    acc = uint64(0)
    for i in range(cuda.grid(1), arr.size, cuda.gridsize(1)):
        acc += arr[i]
    _block_sum(acc, out)


@cuda.jit
def sorted_lookup(sorted_keys, sorted_values, queries, pos, default, out):
    """``out[i]`` = the value of ``queries[i]`` in the sorted arrays, or ``default``, given
    ``pos[i]`` = the first position whose key is not below it (``searchsorted``, side left)."""
    i = cuda.grid(1)
    if i < queries.size:
        p = pos[i]
        value = default
        if p < sorted_keys.size and sorted_keys[p] == queries[i]:
            value = sorted_values[p]
        out[i] = value


# ================================================================================================
# launches
# ================================================================================================


def sm_count() -> int:
    """Streaming multiprocessors of the current device (1 under the simulator)."""
    return int(getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1))


def gather_out(n: int, width: int = 1):
    """The per-block sums array a ``gather`` of ``n`` accesses of ``width`` words writes."""
    return cuda.device_array(blocks(n, width), np.uint64)


def launch_gather(arr, idx, width: int, out) -> None:
    gather[blocks(idx.size, width), BLOCK](arr, idx, width, out)


def launch_scatter_add(arr, idx, atomic: bool) -> None:
    scatter_add[blocks(idx.size), BLOCK](arr, idx, atomic)


def sequential_grid(n: int) -> int:
    """Blocks of a ``sequential_sum`` over ``n`` words: enough to fill the card (16 blocks of
    ``BLOCK`` threads per multiprocessor: 2048 threads, the most one holds), no more; one block
    under the simulator, where every thread is a Python thread."""
    if config.ENABLE_CUDASIM:
        return 1
    return max(1, min(blocks(n), 16 * sm_count()))


def launch_sequential_sum(arr, out) -> None:
    sequential_sum[out.size, BLOCK](arr, out)


def launch_sorted_lookup(sorted_keys, sorted_values, queries, pos, default, out) -> None:
    if queries.size:
        sorted_lookup[blocks(queries.size), BLOCK](sorted_keys, sorted_values, queries, pos,
                                                   default, out)


# ================================================================================================
# timing
# ================================================================================================


def event_seconds(launch: Callable[[], object]) -> tuple[float, object]:
    """(seconds between CUDA events recorded around ``launch()`` on the default stream, its
    result). Meaningless under the simulator, whose events record no time."""
    start, stop = cuda.event(), cuda.event()
    start.record()
    result = launch()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1e3, result


def _median_seconds(launch: Callable[[], object], reps: int) -> float:
    event_seconds(launch)  # warm-up: compiles the kernel, and is not counted
    return statistics.median(event_seconds(launch)[0] for _ in range(reps))


def footprint_array(footprint_bytes: int):
    """A device uint64 array of ``footprint_bytes`` (at least one line), holding 0, 1, 2, ..."""
    words = max(LINE_WORDS, footprint_bytes // 8)
    return cuda.to_device(np.arange(words, dtype=np.uint64))


def random_positions(arr, n: int, rng: np.random.Generator, width: int = 1):
    """A device int64 array of ``n`` uniformly random line indices into ``arr`` (lines of
    ``width`` words), made on the host."""
    return cuda.to_device(rng.integers(0, arr.size // width, size=n, dtype=np.int64))


def gather_rate(arr, idx, width: int = 1, reps: int = 5) -> float:
    """Random-gather ceiling: lookups/s (``idx.size`` accesses of ``width`` words each)."""
    out = gather_out(idx.size, width)
    return idx.size / _median_seconds(lambda: launch_gather(arr, idx, width, out), reps)


def scatter_rate(arr, idx, atomic: bool = True, reps: int = 5) -> float:
    """Random scatter-update ceiling: updates/s (``arr`` is modified)."""
    return idx.size / _median_seconds(lambda: launch_scatter_add(arr, idx, atomic), reps)


def sequential_rate(arr, reps: int = 5) -> float:
    """Streaming read bandwidth: bytes/s."""
    out = cuda.device_array(sequential_grid(arr.size), np.uint64)
    return arr.nbytes / _median_seconds(lambda: launch_sequential_sum(arr, out), reps)


def datasheet_bandwidth() -> float | None:
    """Peak device-memory bandwidth from the driver's attributes, bytes/s: 2 (double data rate)
    x memory clock x bus width; None where the driver does not say (the simulator, or drivers
    that no longer report the memory clock)."""
    dev = cuda.get_current_device()
    try:
        clock_khz = int(dev.MEMORY_CLOCK_RATE)
        bus_bits = int(dev.GLOBAL_MEMORY_BUS_WIDTH)
    except Exception:  # noqa: BLE001 - attribute missing or refused: not reported
        return None
    if clock_khz <= 0 or bus_bits <= 0:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8
