"""The ``bulkhash`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bulkhash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure bulkhash against its peers on this machine")
    bench.add_argument("--quick", action="store_true", help="the two-minute headline benchmark")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick)
    return 2


if __name__ == "__main__":
    sys.exit(main())
