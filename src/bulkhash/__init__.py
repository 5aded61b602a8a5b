"""bulkhash: hash tables for whole arrays, compiled and parallel (WarpCore for Python).

Public names:

* ``HashMap``  -- key -> one value
* ``HashSet``  -- a set of keys
* ``Counter``  -- key -> count, saturating
* ``load``     -- open a table written by ``save``
* ``Status``, ``InsertResult``, ``TableFullError``, ``FormatError`` -- what calls report
"""

from .counter import Counter
from .hashmap import HashMap
from .hashset import HashSet
from .io import FormatError, load
from .status import InsertResult, Status, TableFullError

__all__ = ["Counter", "FormatError", "HashMap", "HashSet", "InsertResult", "Status",
           "TableFullError", "load"]
__version__ = "0.1.0"
