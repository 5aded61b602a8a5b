"""BloomFilter against rbloom: ``bulkhash bench --structure bloom``, as a script.

The benchmark (what is compared, how, and the Markdown table it prints) lives in
``bulkhash.bench.bloom``; this script takes that module's own options (``--help``).
"""

import sys

from bulkhash.bench.bloom import main

if __name__ == "__main__":
    sys.exit(main())
