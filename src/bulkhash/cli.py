"""The ``bulkhash`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bulkhash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure bulkhash against its peers on this machine")
    bench.add_argument("--quick", action="store_true", help="the two-minute headline benchmark")
    bench.add_argument("--json", metavar="PATH", help="also write every measurement to PATH as JSON")
    bench.add_argument("--keys", type=int, metavar="N", help="keys in the large table "
                       "(default 20,000,000)")
    bench.add_argument("--reps", type=int, metavar="N", help="timed rounds after the warm-up "
                       "(default 7 with --quick, else 11)")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="cpu (default), or cuda: the same workloads on the GPU, with the "
                       "GPU's ceiling, a sweep of group sizes and CuPy sort + searchsorted as the "
                       "peer (under NUMBA_ENABLE_CUDASIM=1 only a smoke pass, no timings)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick, keys=args.keys, reps=args.reps, json_path=args.json,
                   device=args.device)
    return 2


if __name__ == "__main__":
    sys.exit(main())
