"""What a table operation reports: per-key ``Status`` flags, result summaries, exceptions."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Status(enum.IntFlag):
    """Per-key outcome flags, mirroring WarpCore's ``Status``.

    A per-key status array (``status=True``) holds these as ``uint16``; test them with ``&``::

        >>> import bulkhash
        >>> m = bulkhash.HashMap()
        >>> r = m.insert([1, 2, 1], [10, 20, 30], status=True)
        >>> [bulkhash.Status(s).name or "NONE" for s in r.status]
        ['NONE', 'NONE', 'DUPLICATE_KEY']
    """

    NONE = 0
    #: the key was already present (insert combined its value; ``HashSet.add``: not new)
    DUPLICATE_KEY = 1
    #: the key was not in the table (lookup, erase)
    KEY_NOT_FOUND = 2
    #: a probe walked the whole table without finding room
    PROBING_LENGTH_EXCEEDED = 4
    #: the key was not inserted: a fixed table was at capacity
    OUT_OF_CAPACITY = 8
    #: a count or sum hit its dtype's maximum and was clipped there
    COUNT_SATURATED = 16
    #: the value was not stored: its key already holds ``max_values_per_key`` values (MultiMap)
    MAX_VALUES_REACHED = 32


class TableFullError(RuntimeError):
    """A fixed-capacity table (``growable=False``) could not take every key of a call.

    Every other key of the call *was* inserted, and the table is consistent.

    Attributes
    ----------
    failed_indices : numpy.ndarray of int64
        Positions, in the call's ``keys``, of every key that did not go in.
    result : InsertResult
        The counts of the call that raised.
    """

    def __init__(self, failed_indices: np.ndarray, result: "InsertResult", capacity: int):
        self.failed_indices = failed_indices
        self.result = result
        n = failed_indices.size
        super().__init__(
            f"{n} key(s) did not fit: the table is fixed at capacity={capacity} "
            f"(first failed index: {int(failed_indices[0]) if n else None}). Every other key of "
            "the call was inserted. Create the table with a larger capacity, or growable=True.")


@dataclass(frozen=True)
class InsertResult:
    """Summary of an insert/add call.

    ``inserted``: keys that were new; ``updated``: occurrences that met a key already present
    (including earlier occurrences in the same call); ``failed``: keys that did not go in;
    ``saturated``: additions clipped at the dtype maximum; ``status``: per-key ``Status`` flags
    (only when asked for with ``status=True``).
    """

    inserted: int
    updated: int
    failed: int = 0
    saturated: int = 0
    status: np.ndarray | None = None

    def __repr__(self) -> str:
        extra = "" if self.status is None else f", status=<{self.status.size} flags>"
        return (f"InsertResult(inserted={self.inserted}, updated={self.updated}, "
                f"failed={self.failed}, saturated={self.saturated}{extra})")
