"""``bulkhash bench --structure multimap``, as a script: MultiMap and BucketListMap against NumPy
sort + searchsorted and pandas factorize + Index.

The benchmark (what is compared, how, and the Markdown table it prints) lives in
``bulkhash.bench.multimap``; this script takes that module's own options (``--help``).
"""

import sys

from bulkhash.bench.multimap import main

if __name__ == "__main__":
    sys.exit(main())
