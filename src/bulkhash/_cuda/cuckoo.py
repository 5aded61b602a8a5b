"""numba-cuda kernels of the cuckoo filter.

The table, the hashing and the per-key operations are those of ``bulkhash._cpu.cuckoo`` (its
module docs give the layout and why an add can race other adds without losing a fingerprint);
this module builds the operations with CUDA's ``atomicCAS`` and launches them over a batch.

* One thread per key, no cooperative group: a bucket is one 4- or 8-byte word (two for 32-bit
  fingerprints), which a single load brings in whole, so the lanes a group would add have nothing
  to load. Claims and clears are a CAS on that word; a thread whose buckets are full searches
  for room with its queue in local memory (``SEARCH_BUCKETS`` entries of 16 bytes: 1 KiB) and
  moves fingerprints copy-first, as on the CPU.
* Grid-stride loops over the batch, so a launch needs no more blocks than the GPU runs at once
  (and Numba's CUDA simulator, which runs each thread as a Python thread, a handful).
* ``state[SIZE]`` is kept with one atomic per block: threads sum their successes into shared
  memory first.
* Plain loads may come from a stale L1 line while other blocks write the table. That only makes
  a claim's CAS fail (it retries with the word the CAS returned) or a search plan a move that
  then fails and is abandoned; the one retry loop that must see other threads' writes
  (``drop_copy``) reads with atomics.
"""

from __future__ import annotations

import numpy as np
from numba import config, cuda

from .._cpu.cuckoo import (ACTION_ADD, ACTION_CONTAINS, ACTION_ERASE, SEARCH_BUCKETS, SIZE,
                           build_operations, locate)

#: Threads per block (the simulator runs one warp per block: each thread is a Python thread).
BLOCK = 32 if config.ENABLE_CUDASIM else 128
#: Most blocks a launch uses; each thread then walks the batch with a stride of the grid.
MAX_BLOCKS = 2 if config.ENABLE_CUDASIM else 8192


if config.ENABLE_CUDASIM:
    # The simulator runs a kernel as Python, and each call of a simulated device function swaps
    # its module's ``cuda`` for a fake one under a lock: the per-key operations are plain Python
    # there instead, with the simulator's own CAS (the same lock its kernels' CAS takes).
    from numba.cuda.simulator.kernelapi import FakeCUDAAtomic

    _cas = FakeCUDAAtomic().cas
    GPU = build_operations(lambda fn: fn, _cas, lambda table, index: None)
else:
    @cuda.jit(device=True)
    def _cas(table, index, expected, new):
        """The CAS the shared operations are built on: ``atomicCAS`` on one table word."""
        return cuda.atomic.cas(table, index, expected, new)

    @cuda.jit(device=True)
    def _no_prefetch(table, index):
        """A search's level-ahead hint: nothing on a GPU, whose many threads in flight hide
        memory latency (and whose loads of one level are independent anyway)."""

    GPU = build_operations(cuda.jit(device=True), _cas, _no_prefetch)
_contains_one, _erase_one, _add_one = GPU.contains_one, GPU.erase_one, GPU.add_one


@cuda.jit
def bulk(table, n_buckets, fp_bits, seed, keys, action, max_kicks, out, state):
    """``contains``, ``add`` or ``erase`` (``action``) of a batch of key words (uint64):
    ``out[i]`` is True where key ``i`` was found, added or removed; ``state[SIZE]`` follows adds
    and erases."""
    node = cuda.local.array(SEARCH_BUCKETS, np.int64)
    node_fp = cuda.local.array(SEARCH_BUCKETS, np.uint64)
    done = 0
    for i in range(cuda.grid(1), keys.size, cuda.gridsize(1)):
        # np.int64 / np.uint64 around the shared arithmetic: under the CUDA simulator it runs as
        # CPU functions that hand back Python ints (no-ops on a GPU)
        bucket, fp, h = locate(keys[i], seed, n_buckets, fp_bits)
        bucket = np.int64(bucket)
        fp = np.uint64(fp)
        if action == ACTION_CONTAINS:
            ok = _contains_one(table, n_buckets, fp_bits, seed, bucket, fp)
        elif action == ACTION_ERASE:
            ok = _erase_one(table, n_buckets, fp_bits, seed, bucket, fp)
        else:
            ok = _add_one(table, n_buckets, fp_bits, seed, bucket, fp, np.uint64(h), max_kicks,
                          node, node_fp)
        out[i] = ok
        if ok:
            done += 1
    if action == ACTION_CONTAINS:
        return
    block_done = cuda.shared.array(1, np.int64)
    if cuda.threadIdx.x == 0:
        block_done[0] = 0
    cuda.syncthreads()
    if done:
        cuda.atomic.add(block_done, 0, done)
    cuda.syncthreads()
    if cuda.threadIdx.x == 0 and block_done[0]:
        cuda.atomic.add(state, SIZE, block_done[0] if action == ACTION_ADD else -block_done[0])


def launch(table, n_buckets: int, fp_bits: int, seed: int, keys, action: int, max_kicks: int,
           out, state) -> None:
    """Run ``bulk`` over a batch (a grid of at most ``MAX_BLOCKS`` blocks)."""
    if keys.size == 0:
        return
    blocks = min(MAX_BLOCKS, -(-keys.size // BLOCK))
    bulk[blocks, BLOCK](table, np.int64(n_buckets), np.int64(fp_bits), np.uint64(seed), keys,
                        np.int64(action), np.int64(max_kicks), out, state)


@cuda.jit
def fill_zero(arr):
    for i in range(cuda.grid(1), arr.size, cuda.gridsize(1)):
        arr[i] = 0


def zero(arr) -> None:
    """``arr[:] = 0`` on the device."""
    if arr.size:
        fill_zero[min(MAX_BLOCKS, -(-arr.size // BLOCK)), BLOCK](arr)

