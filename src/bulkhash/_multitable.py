"""The engine under ``MultiMap``: storage, budgets, growth and the ordered dump that growth, save
and ``items()`` use. It works on table *words* only (``MultiMap`` checks user input and converts
dtypes) and calls a backend for the kernels: ``_cpu.multi.CpuMultiBackend`` or
``_cuda.multi.CudaMultiBackend``. The layout is in ``bulkhash._cpu.multi``'s docstring.
"""

from __future__ import annotations

import math

import numpy as np

from ._cpu import multi as M
from ._locks import ReadWriteLock
from ._table import DEFAULT_CAPACITY


class MultiTable:
    """Rows of (key, values) + a side pool for the two reserved key words + state + policy."""

    def __init__(self, word: np.dtype, values_per_slot: int, capacity: int, *, growable: bool,
                 max_load_factor: float, seed: int, backend=None):
        self.backend = M.CpuMultiBackend() if backend is None else backend
        self.word = np.dtype(word)
        self.values_per_slot = values_per_slot
        self.words_per_row = 2 if values_per_slot == 1 else values_per_slot + 2
        self.growable = growable
        self.max_load_factor = max_load_factor
        self.seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self.bucket_size = self.backend.bucket_size(self.word, self.words_per_row)
        self.tomb = np.uint64(np.iinfo(self.word).max)
        self.lock = ReadWriteLock()
        self.state = self.backend.new_multi_state()
        self._allocate(capacity, side_capacity=0)

    # ---------------------------------------------------------------- storage
    def _buckets_for(self, rows: int) -> int:
        n_buckets = self.backend.n_buckets_for(math.ceil(max(rows, 1) / self.max_load_factor),
                                               self.bucket_size)
        if n_buckets >= 1 << 32:
            raise ValueError(f"capacity={self.capacity} is beyond what one table addresses "
                             "(2**32 buckets)")
        return n_buckets

    def _allocate(self, capacity: int, side_capacity: int) -> None:
        self.capacity = capacity
        self.row_capacity = max(1, math.ceil(capacity / self.values_per_slot))
        self.n_buckets = self._buckets_for(self.row_capacity)
        self.slots = self.backend.zeros((self.n_rows, self.words_per_row), self.word)
        self.side = self.backend.zeros((2, max(side_capacity, 1)), self.word)
        self._reset_state()

    def _reset_state(self) -> None:
        """An empty table's state (its generation too: callers that keep refs bump it)."""
        self.state[:] = 0
        self.state[M.CAPACITY] = self.capacity
        self.state[M.ROW_CAPACITY] = self.row_capacity

    def _read(self, index: int) -> int:
        return int(self.state[index])

    @property
    def n_rows(self) -> int:
        return self.n_buckets * self.bucket_size

    def __len__(self) -> int:
        return self._read(M.PAIRS)

    @property
    def num_keys(self) -> int:
        self._settle_num_keys()
        return self._read(M.KEYS)

    def _settle_num_keys(self) -> None:
        """Refs that add a key mark the key count unknown (-1: two threads may be adding the
        same key); count the distinct keys again then."""
        if self._read(M.KEYS) < 0:
            reserved = (self._read(M.SIDE) > 0) + (self._read(M.SIDE + 1) > 0)
            self.state[M.KEYS] = int(self.backend.head_keys(self).size) + reserved

    @property
    def nbytes(self) -> int:
        return int(self.slots.nbytes + self.side.nbytes + self.state.nbytes)

    @property
    def load_factor(self) -> float:
        """Pairs stored in the rows / the values the rows can hold."""
        in_rows = len(self) - self._read(M.SIDE) - self._read(M.SIDE + 1)
        return in_rows / (self.n_rows * self.values_per_slot)

    # ---------------------------------------------------------------- operations
    def insert(self, keys, values, max_per_key: int):
        """Append pairs (key words, value words); (outcome bytes, tally of outcome codes). A
        growable table grows and never reports FULL; a fixed table reports the pairs that did not
        fit as FULL after storing every other."""
        n = keys.size
        self._settle_num_keys()
        if self.growable and len(self) + n > self.capacity:
            self.resize(self._grown_capacity(len(self) + n))
        self._sweep_tombstones_if_crowded(n)
        self._make_side_room(keys)
        outcome, tally = self._insert(keys, values, max_per_key)
        backend = self.backend
        if self.growable and tally[M.FULL]:
            full = backend.indices_of(outcome, M.FULL)
            while full.size:  # out of rows (values_per_slot > 1): grow, redo those, in order
                tally[M.FULL] -= full.size
                self.resize(self._grown_capacity(len(self) + full.size), more_rows=True)
                retry, retry_tally = self._insert(backend.take(keys, full),
                                                  backend.take_values(values, full), max_per_key)
                tally += retry_tally
                backend.put(outcome, full, retry)
                full = full[backend.indices_of(retry, M.FULL)]
        return outcome, tally

    def _insert(self, keys, values, max_per_key: int):
        return self.backend.insert(self, keys, values, max_per_key,
                                   self.capacity - len(self),
                                   self.row_capacity - self._read(M.ROWS))

    def _make_side_room(self, keys) -> None:
        """Grow the side pool so that every reserved key word of ``keys`` fits."""
        zeros, ones = self.backend.count_reserved(keys, self.tomb)
        if zeros or ones:
            self.make_side_room(max(self._read(M.SIDE) + zeros, self._read(M.SIDE + 1) + ones))

    def make_side_room(self, need: int) -> None:
        """Grow the side pool to hold ``need`` values of each reserved key word."""
        if need > self.side.shape[1]:
            host = self.backend.to_host(self.side)
            grown = np.zeros((2, max(need, 2 * host.shape[1])), self.word)
            grown[:, :host.shape[1]] = host
            self.side = self.backend.from_host(grown)
            self.state[M.GENERATION] = self._read(M.GENERATION) + 1  # refs of the old pool

    def erase(self, keys):
        """Remove every value of each key word; values removed per occurrence (int64)."""
        self._settle_num_keys()
        return self.backend.erase(self, keys)

    def count(self, keys):
        return self.backend.count(self, keys)

    def positive(self, counts):
        """``counts > 0``, where the counts live."""
        return self.backend.positive(counts)

    def get(self, keys):
        """(offsets int64 [n + 1], value words) in CSR form, each key's values in order."""
        return self.backend.get(self, keys)

    def unique_keys(self):
        """Every distinct key word: the rows' in row order, then the side pool's."""
        parts = [self.backend.head_keys(self)]
        reserved = [w for s, w in ((0, 0), (1, self.tomb)) if self._read(M.SIDE + s)]
        if reserved:
            parts.append(self.backend.from_host(np.array(reserved, self.word)))
        return parts[0] if len(parts) == 1 else self.backend.concat(parts, self.word)

    def dump(self):
        """(key word per pair, value words): every pair, grouped by key, each key's values in
        insertion order; inserting them again in this order rebuilds the same table."""
        keys = self.unique_keys()
        offsets, values = self.get(keys)
        return self.backend.repeat(keys, offsets), values

    # ---------------------------------------------------------------- size policy
    def _grown_capacity(self, need: int) -> int:
        return max(need, 2 * self.capacity, DEFAULT_CAPACITY)

    def resize(self, capacity: int, more_rows: bool = False) -> None:
        """Rebuild with room for ``capacity`` pairs (never fewer than stored); drops tombstones.
        ``more_rows``: the rows ran out before the pairs did (keys with fewer values than
        ``values_per_slot``): reserve twice the rows used."""
        capacity = max(capacity, len(self))
        # (an empty table, as when reserving before filling: nothing to gather and re-insert)
        keys, values = self.dump() if len(self) else (None, None)
        side_capacity = self.side.shape[1]
        rows_needed = 2 * self._read(M.ROWS) if more_rows else 0
        generation = self._read(M.GENERATION)
        self._allocate(max(capacity, rows_needed * self.values_per_slot), side_capacity)
        self.state[M.GENERATION] = generation + 1
        if keys is not None and keys.size:
            _, tally = self._insert(keys, values, -1)
            assert tally[M.FULL] == 0, "a rebuilt table could not take its own pairs"

    def reserve(self, extra: int) -> None:
        if len(self) + extra > self.capacity:
            self.resize(self._grown_capacity(len(self) + extra))

    def _sweep_tombstones_if_crowded(self, incoming: int) -> None:
        tombs = self._read(M.TOMBSTONES)
        if tombs and (self._read(M.ROWS) + tombs + incoming
                      > self.n_rows * (1 + self.max_load_factor) / 2):
            self.resize(self.capacity)

    def clear(self) -> None:
        generation = self._read(M.GENERATION)
        self._allocate(self.capacity, side_capacity=0)
        self.state[M.GENERATION] = generation + 1

    # ---------------------------------------------------------------- verbatim persistence
    def snapshot(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """``(geometry, slots, side)`` as host arrays: with ``adopt`` on the same backend, a
        table restored without inserting anything again (and so memory-mapped, if the caller
        maps the file). The layout is the backend's: a GPU table cannot adopt a CPU snapshot."""
        geometry = dict(layout=type(self.backend).__name__, n_buckets=self.n_buckets,
                        capacity=self.capacity, row_capacity=self.row_capacity,
                        state=[int(x) for x in self.backend.to_host(self.state)],
                        slots_shape=list(self.slots.shape), side_shape=list(self.side.shape),
                        word=str(self.word))
        return geometry, self.backend.to_host(self.slots), self.backend.to_host(self.side)

    def adopt(self, geometry: dict, slots: np.ndarray, side: np.ndarray) -> None:
        """Take over a ``snapshot`` (host arrays, possibly memory-mapped)."""
        if (geometry["layout"] != type(self.backend).__name__ or geometry["word"] != str(self.word)
                or geometry["slots_shape"][1] != self.words_per_row):
            raise ValueError(f"a {geometry['layout']} snapshot of {geometry['word']} rows does "
                             f"not fit this {type(self.backend).__name__} table")
        self.n_buckets, self.capacity = geometry["n_buckets"], geometry["capacity"]
        self.row_capacity = geometry["row_capacity"]
        self.slots = self.backend.from_host(slots)
        self.side = self.backend.from_host(side)
        self.state[:] = np.asarray(geometry["state"], np.int64)

    def copy(self) -> "MultiTable":
        new = object.__new__(MultiTable)
        new.__dict__.update(self.__dict__)
        new.lock = ReadWriteLock()
        new.slots = self.backend.copy(self.slots)
        new.side = self.backend.copy(self.side)
        new.state = self.backend.from_host(self.backend.to_host(self.state).copy())
        return new
