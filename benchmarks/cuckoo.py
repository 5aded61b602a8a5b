"""CuckooFilter against pyprobables' CuckooFilter: ``bulkhash bench --structure cuckoo``, as a
script.

The benchmark (what is compared, how, and the Markdown table it prints) lives in
``bulkhash.bench.cuckoo``; this script takes that module's own options (``--help``).
"""

import sys

from bulkhash.bench.cuckoo import main

if __name__ == "__main__":
    sys.exit(main())
