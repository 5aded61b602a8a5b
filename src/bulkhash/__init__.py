"""bulkhash: hash tables for whole arrays, compiled and parallel (WarpCore for Python).

Public names:

* ``HashMap``  -- key -> one value
* ``HashSet``  -- a set of keys
* ``Counter``  -- key -> count, saturating
* ``MultiMap`` -- key -> many values, a slot per pair (CSR results)
* ``BucketListMap`` -- key -> many values, in linked buckets of a value pool
* ``BloomFilter`` -- approximate membership (pattern-blocked, no deletes)
* ``CuckooFilter`` -- approximate membership with deletes
* ``load``     -- open a table written by ``save``
* ``set_default_device``, ``get_default_device`` -- where tables live when not told ("cpu")
* ``Status``, ``InsertResult``, ``TableFullError`` (``FilterFullError``), ``FormatError`` --
  what calls report
"""

from ._base import get_default_device, set_default_device
from .bloom import BloomFilter
from .bucketlist import BucketListMap
from .counter import Counter
from .cuckoo import CuckooFilter, FilterFullError
from .hashmap import HashMap
from .hashset import HashSet
from .io import FormatError, load
from .multimap import MultiInsertResult, MultiMap
from .status import InsertResult, Status, TableFullError

__all__ = ["BloomFilter", "BucketListMap", "Counter", "CuckooFilter", "FilterFullError",
           "FormatError", "HashMap", "HashSet", "InsertResult", "MultiInsertResult", "MultiMap",
           "Status", "TableFullError", "get_default_device", "load", "set_default_device"]
__version__ = "0.1.0"
