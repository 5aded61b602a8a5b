"""The open-addressing table that HashMap, HashSet and Counter share.

``OpenTable`` owns the slot array and the state vector (layout: ``bulkhash._cpu.kernels``), and
holds the policy the kernels leave to their caller: how big to make the table, when to grow it,
when to sweep out tombstones, and what a full fixed table reports. It works on table *words*
only; the public classes above it check user input and convert dtypes.
"""

from __future__ import annotations

import math

import numpy as np

from ._cpu import kernels as K
from ._cpu.backend import CpuBackend
from ._locks import ReadWriteLock

DEFAULT_CAPACITY = 1024
DEFAULT_MAX_LOAD_FACTOR = 0.8
#: Keys of a batch looked up to estimate how many of them are new (``OpenTable._estimate_new``).
PRESENCE_SAMPLE = 1024


def check_max_load_factor(max_load_factor: float) -> float:
    if not isinstance(max_load_factor, (int, float)) or not 0.05 <= max_load_factor <= 0.99:
        raise ValueError(f"max_load_factor={max_load_factor!r} must be a number between 0.05 and "
                         "0.99 (0.8 is a good default; higher saves memory, costs probe length)")
    return float(max_load_factor)


def check_capacity(capacity, growable: bool) -> int:
    if capacity is None:
        if not growable:
            raise ValueError("a fixed table (growable=False) needs capacity=<number of keys>")
        return DEFAULT_CAPACITY
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
        raise ValueError(f"capacity={capacity!r} must be a non-negative integer number of keys")
    return int(capacity)


class OpenTable:
    """Slots + state + policy. Not public: see HashMap, HashSet, Counter.

    ``backend`` does the work where the arrays live (``_cpu.backend.CpuBackend``,
    ``_cuda.backend.CudaBackend``); everything here is the same for both.
    """

    def __init__(self, word: np.dtype, words_per_slot: int, capacity: int, *, growable: bool,
                 max_load_factor: float, seed: int, backend=None):
        self.backend = CpuBackend() if backend is None else backend
        self.word = np.dtype(word)
        self.words_per_slot = words_per_slot
        self.growable = growable
        self.max_load_factor = max_load_factor
        self.seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self.bucket_size = self.backend.bucket_size(self.word, words_per_slot)
        self.tomb = np.uint64(np.iinfo(self.word).max)
        self.lock = ReadWriteLock()
        self.state = self.backend.new_state()
        #: what the backend derives from the slots and keeps while no key is placed (the CPU's
        #: reach map, ``_cpu.backend.CpuBackend._reach_map``); None until it builds one
        self.derived = None
        self._allocate(capacity)

    # ---------------------------------------------------------------- storage
    def _buckets_for(self, capacity: int) -> int:
        slots = math.ceil(max(capacity, 1) / self.max_load_factor)
        n_buckets = self.backend.n_buckets_for(slots, self.bucket_size)
        if n_buckets >= 1 << 32:
            raise ValueError(f"capacity={capacity} is beyond what one table addresses (2**32 buckets)")
        return n_buckets

    def _allocate(self, capacity: int) -> None:
        self.n_buckets = self._buckets_for(capacity)
        self.capacity = capacity
        self.slots = self.backend.zeros((self.n_slots + 2, self.words_per_slot), self.word)
        self._reset_state()

    def _reset_state(self) -> None:
        """An empty table's state (its generation too: callers that keep refs bump it)."""
        self.state[:] = 0
        self.state[K.CAPACITY] = self.capacity

    def adopt(self, slots: np.ndarray, state: np.ndarray, n_buckets: int, capacity: int) -> None:
        """Take over arrays restored by ``load`` (host arrays, possibly memory-mapped)."""
        self.slots = self.backend.from_host(slots)
        self.n_buckets, self.capacity = n_buckets, capacity
        self.derived = None
        self.state[:] = state
        self.state[K.CAPACITY] = capacity

    @property
    def n_slots(self) -> int:
        return self.n_buckets * self.bucket_size

    def __len__(self) -> int:
        return int(self.state[K.SIZE])

    @property
    def nbytes(self) -> int:
        return int(self.slots.nbytes + self.state.nbytes)

    @property
    def load_factor(self) -> float:
        return len(self) / self.n_slots

    # ---------------------------------------------------------------- kernels
    def _mutate(self, keys, values, action: int, op: int, kind: int, nbytes: int, budget: int,
                tally: np.ndarray | None = None):
        """Run the mutation kernel; outcome bytes per key, counts added into ``tally``."""
        outcome, counts = self.backend.mutate(self, keys, values, action, op, kind, nbytes,
                                              budget)
        if tally is not None:
            tally += counts
        return outcome

    def upsert(self, keys: np.ndarray, values: np.ndarray, op: int, kind: int,
               nbytes: int) -> tuple[np.ndarray, np.ndarray]:
        """Insert/combine a batch of key words (and value words; empty for a set).

        Returns one outcome byte per key (``K.NEW``, ``K.UPDATED`` [| ``K.SATURATED``], or
        ``K.FULL`` -- only for a fixed table; a growable table never reports FULL) and the tally
        of outcomes (index = code, index 0 = saturated).
        """
        if self.growable and len(self) + keys.size > self.capacity:
            new = self._estimate_new(keys)
            if new > self.capacity - len(self):
                self.resize(self._grown_capacity(len(self) + new + new // 32))
        self._sweep_tombstones_if_crowded(keys.size)
        tally = np.zeros(8, np.int64)
        outcome = self._mutate(keys, values, K.ACTION_UPSERT, op, kind, nbytes,
                               self.capacity - len(self), tally)
        backend = self.backend
        if self.growable and tally[K.FULL]:
            full = backend.indices_of(outcome, K.FULL)
            while full.size:  # the estimate was low: grow and redo just those keys, in order
                tally[K.FULL] -= full.size
                retry_keys = backend.take(keys, full)
                need = len(self) + self._estimate_distinct(retry_keys)
                self.resize(self._grown_capacity(need))
                retry_outcome = self._mutate(retry_keys, backend.take_values(values, full),
                                             K.ACTION_UPSERT, op, kind, nbytes,
                                             self.capacity - len(self), tally)
                backend.put(outcome, full, retry_outcome)
                full = full[backend.indices_of(retry_outcome, K.FULL)]
        return outcome, tally

    def assign(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Overwrite the value words of keys already stored (never grows; a key that is not
        stored is left out and reported ``K.FULL``). Returns outcome bytes."""
        return self._mutate(keys, values, K.ACTION_UPSERT, K.OP_OVERWRITE, K.KIND_UINT, 8, 0)

    def erase(self, keys: np.ndarray) -> np.ndarray:
        """Remove key words; returns outcome bytes (``K.REMOVED`` / ``K.NOT_FOUND``)."""
        empty = self.backend.empty(0, self.word)
        return self._mutate(keys, empty, K.ACTION_ERASE, K.OP_OVERWRITE, K.KIND_UINT, 8, 0)

    def lookup(self, keys, default_word: int = 0, want_values: bool = True,
               want_found: bool = True):
        """(value words, found flags) for each key word; either is an empty array if not wanted
        (a lookup of 20M keys spends a tenth of its time faulting in fresh output pages)."""
        return self.backend.lookup(self, keys, default_word, want_values, want_found)

    def items(self, want_values: bool = True, value_bytes: int | None = None):
        """Every stored key word (and value word), slot order, reserved keys last.

        ``value_bytes``: the CPU may return just the low ``value_bytes`` of each value word
        (unsigned), for a caller that narrows them anyway: a uint32 count in a uint64 word
        then costs 4 bytes an entry instead of 8 + 4 and a conversion pass."""
        return self.backend.collect(self, want_values, value_bytes)

    def take_items(self, narrow_values: bool = False):
        """``items()`` that empties the table and, on the CPU, puts the key words in the table's
        own memory instead of new arrays (``CpuBackend.take_items``). Afterwards the table is
        empty, at its smallest capacity. ``narrow_values``: values in the smallest unsigned
        type that holds the largest (CPU; a GPU returns whole words)."""
        generation = self.state[K.GENERATION]
        keys, values = self.backend.take_items(self, narrow_values)
        self._allocate(0)
        self.state[K.GENERATION] = generation + 1
        return keys, values

    def _estimate_new(self, keys) -> int:
        """About how many distinct keys of ``keys`` are not stored yet: the batch's distinct
        count (HyperLogLog) times the share of a sample of the batch that is absent (rounded
        up). Without the second factor a batch that updates stored keys would double the table
        each time it is more than the free room. A low estimate is safe: keys that find no room
        are retried after growing (``upsert``)."""
        distinct = self._estimate_distinct(keys)
        if distinct == 0 or len(self) == 0:
            return distinct
        positions = np.linspace(0, keys.size - 1, min(keys.size, PRESENCE_SAMPLE))
        sample = self.backend.take(keys, positions.astype(np.int64))
        _, found = self.lookup(sample, want_values=False, want_found=True)
        absent = 1.0 - float(np.mean(self.backend.to_host(found)))
        # upper end of a 2-sigma interval on the sampled share, so a batch of new keys that the
        # sample makes look smaller still grows the table up front (no retry pass)
        spread = 2.0 * math.sqrt(absent * (1.0 - absent) / positions.size) + 1.0 / positions.size
        return min(distinct, math.ceil(distinct * min(1.0, absent + spread)))

    def _estimate_distinct(self, keys) -> int:
        if keys.size == 0:
            return 0
        regs = self.backend.hll_registers(keys, self.seed ^ K.HLL_SEED_XOR)
        return K.estimate_from_registers(regs, keys.size)

    # ---------------------------------------------------------------- size policy
    def _grown_capacity(self, need: int) -> int:
        return max(need, 2 * self.capacity, DEFAULT_CAPACITY)

    def resize(self, capacity: int) -> None:
        """Rebuild with room for ``capacity`` keys (never fewer than stored); drops tombstones."""
        capacity = max(capacity, len(self))
        generation = self.state[K.GENERATION]
        if len(self) == 0:  # (the common reserve-before-filling: nothing to gather and re-insert)
            self._allocate(capacity)
            self.state[K.GENERATION] = generation + 1
            return
        keys, values = self.items()
        self._allocate(capacity)
        self.state[K.GENERATION] = generation + 1
        self._mutate(keys, values, K.ACTION_UPSERT, K.OP_OVERWRITE, K.KIND_UINT, 8, capacity)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys without growing during the next calls."""
        if len(self) + extra > self.capacity:
            self.resize(self._grown_capacity(len(self) + extra))

    def _sweep_tombstones_if_crowded(self, incoming: int) -> None:
        """Rebuild in place when live keys + tombstones + a batch would crowd the slots past
        halfway between the load limit and full: long probes cost more than one sweep."""
        tombs = int(self.state[K.TOMBSTONES])
        if tombs and len(self) + tombs + incoming > self.n_slots * (1 + self.max_load_factor) / 2:
            self.resize(self.capacity)

    def clear(self) -> None:
        """Empty the table. Its own slot array is zeroed in place, on every thread: the memory
        stays mapped, so the next fill does not fault 2 MiB pages back in one by one (about a
        sixth of a 20M-key insert). A memory-mapped or read-only array is replaced instead."""
        generation = self.state[K.GENERATION]
        own = (not isinstance(self.slots, np.ndarray)  # device memory is always the table's own
               or (type(self.slots) is np.ndarray and self.slots.flags.writeable))
        if own and self.n_buckets == self._buckets_for(self.capacity):
            self.backend.zero_fill(self.slots)
            self._reset_state()
        else:
            self._allocate(self.capacity)
        self.state[K.GENERATION] = generation + 1

    def copy(self) -> "OpenTable":
        new = object.__new__(OpenTable)
        new.__dict__.update(self.__dict__)
        new.lock = ReadWriteLock()
        new.slots = self.backend.copy(self.slots)
        new.state = self.backend.from_host(self.backend.to_host(self.state).copy())
        return new
