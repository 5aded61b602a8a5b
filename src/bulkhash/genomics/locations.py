"""The read classifier's query index: each feature's locations in one contiguous run.

MetaCache-GPU builds its database in a multi-value hash table (WarpCore's MultiValueHashTable)
and queries a condensed copy of it: a single-value hash table from each feature to the offset and
length of its locations in one array. ``ReadClassifier`` does the same: references go into a
``MultiMap`` as they come in (it appends, and caps a feature's locations), and queries read a
``LocationIndex`` made from the MultiMap's pairs once they are all in.

Memory layout
-------------
::

    features   HashMap uint32 -> uint64    feature -> start << COUNT_BITS | count
    locations  uint64[n]                   locations[start:start + count]: the feature's
                                           locations, in the order they were inserted

The runs tile ``locations`` without gaps, in the order of their starts.

Why a second form: a MultiMap lookup walks from the feature's home bucket to the first bucket
with an empty row, reading one 16-byte row per location among other keys' rows, and the table
runs at load 0.5 so that such walks stay short. Here a lookup is one probe of a HashMap at load
0.64 (a 16-byte slot; the home line nearly always holds it) and one read of ``count``
consecutive locations: about two cache lines a feature. On the shared references (fraction
sampling, 6.7M features, 12.2M locations) the index is 266 MB instead of the MultiMap's 391 MB,
and the lookups and copies of 300k reads' features take 0.22 s instead of 0.39 s (2-core VM).

The HashMap's load is ``1 / ROOM`` of the most a HashMap takes (0.8): a read's features that the
index lacks (some 15% of them, from sequence no reference shares) walk from their home bucket
to one with an empty slot, and at 0.8 those walks are about four lines long.
"""

from __future__ import annotations

import numpy as np

from ..hashmap import HashMap
from ..multimap import MultiMap

#: low bits of a packed run that hold its count (the rest hold its start)
COUNT_BITS = 24
#: the most locations one run can hold
MAX_RUN = (1 << COUNT_BITS) - 1
#: room in the index's HashMap per feature it holds, above a full HashMap's: 1.25 runs it at
#: load 0.64 instead of 0.8, for 25% more slots (34 MB on the shared references); the query
#: kernel on 300k reads then takes 0.74 s instead of 0.83 s on one thread (2-core VM), most of it
#: in shorter walks for the features the index lacks
ROOM = 1.25


def pack_runs(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Runs ``locations[starts[i]:starts[i] + counts[i]]`` as the index stores them."""
    return (starts.astype(np.uint64) << np.uint64(COUNT_BITS)) | counts.astype(np.uint64)


def unpack_runs(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, counts)`` of packed runs (int64)."""
    packed = np.asarray(packed, np.uint64)
    return ((packed >> np.uint64(COUNT_BITS)).astype(np.int64),
            (packed & np.uint64(MAX_RUN)).astype(np.int64))


class LocationIndex:
    """Read-only ``feature -> locations``: a ``HashMap`` of runs into one array of locations.

    >>> import numpy as np
    >>> index = LocationIndex.from_pairs(np.array([7, 7, 3], np.uint32),
    ...                                  np.array([70, 71, 30], np.uint64))
    >>> offsets, values = index.get(np.array([3, 9, 7], np.uint32))
    >>> offsets.tolist(), values.tolist()
    ([0, 1, 1, 3], [30, 70, 71])
    """

    def __init__(self, features: HashMap, locations: np.ndarray):
        self.features = features
        self.locations = locations

    @classmethod
    def from_pairs(cls, keys: np.ndarray, values: np.ndarray) -> "LocationIndex":
        """The index of ``(keys[i], values[i])`` pairs whose equal keys are adjacent (as
        ``MultiMap.items`` gives them); each key's values keep their order."""
        keys = np.asarray(keys, np.uint32)
        values = np.ascontiguousarray(values, np.uint64)
        if keys.shape != values.shape or keys.ndim != 1:
            raise ValueError(f"keys {keys.shape} and values {values.shape} must be 1-D arrays of "
                             "one length: one (feature, location) pair each")
        starts = np.flatnonzero(np.concatenate([keys[:1] == keys[:1], keys[1:] != keys[:-1]]))
        counts = np.diff(np.append(starts, keys.size))
        if counts.size and counts.max() > MAX_RUN:
            raise ValueError(f"a feature has {counts.max()} locations; an index holds at most "
                             f"{MAX_RUN} a feature")
        features = HashMap("uint32", "uint64", capacity=int(starts.size * ROOM), device="cpu")
        features.insert(keys[starts], pack_runs(starts, counts))
        if len(features) != starts.size:
            raise ValueError(f"keys must be grouped: {starts.size - len(features)} of them "
                             "appear in more than one run (sort the pairs by key first)")
        return cls(features, values)

    @classmethod
    def from_multimap(cls, multimap: MultiMap) -> "LocationIndex":
        """The index of a ``uint32 -> uint64`` MultiMap's pairs."""
        return cls.from_pairs(*multimap.items())

    def to_multimap(self, max_values_per_key: int) -> MultiMap:
        """A MultiMap of the same pairs, each feature's locations in their order (to add
        references to an index that was loaded)."""
        multimap = MultiMap("uint32", "uint64", capacity=len(self),
                            max_values_per_key=max_values_per_key, device="cpu")
        multimap.insert(*self.items())
        return multimap

    def get(self, features) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, locations)`` as ``MultiMap.get``: feature ``i``'s locations are
        ``locations[offsets[i]:offsets[i + 1]]``."""
        starts, counts = unpack_runs(self.features.get(np.asarray(features, np.uint32)))
        offsets = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        where = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return offsets, self.locations[where]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)``, one entry per pair, each key's values together and in order."""
        keys, packed = self.features.items()
        starts, counts = unpack_runs(packed)
        order = np.argsort(starts, kind="stable")
        return np.repeat(keys[order], counts[order]), self.locations.copy()

    def __len__(self) -> int:
        """How many locations the index holds."""
        return int(self.locations.size)

    @property
    def num_keys(self) -> int:
        """How many distinct features the index holds."""
        return len(self.features)

    @property
    def nbytes(self) -> int:
        """Bytes of the HashMap and the locations."""
        return self.features.nbytes + self.locations.nbytes

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
        """``(geometry, (slots, locations))``: the arrays verbatim, for ``adopt``."""
        inner = self.features._table
        geometry = dict(n_buckets=inner.n_buckets, capacity=inner.capacity,
                        state=[int(x) for x in inner.state], slots_shape=list(inner.slots.shape),
                        locations=int(self.locations.size))
        return geometry, (inner.slots, self.locations)

    @classmethod
    def adopt(cls, geometry: dict, raw: np.ndarray) -> "LocationIndex":
        """The index a ``snapshot``'s arrays, stored back to back in ``raw`` (bytes, possibly
        memory-mapped), make: nothing is copied or inserted."""
        features = HashMap("uint32", "uint64", capacity=0, device="cpu")
        inner = features._table
        split = int(np.prod(geometry["slots_shape"])) * inner.word.itemsize
        slots = raw[:split].view(inner.word).reshape(geometry["slots_shape"])
        inner.adopt(slots, np.asarray(geometry["state"], np.int64), geometry["n_buckets"],
                    geometry["capacity"])
        locations = raw[split:split + 8 * geometry["locations"]].view(np.uint64)
        return cls(features, locations)
