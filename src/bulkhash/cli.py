"""The ``bulkhash`` command."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

STRUCTURES = ("hashmap", "multimap", "bloom", "cuckoo")
#: The structures whose benchmark runs on a GPU with ``--device cuda``.
CUDA_STRUCTURES = ("hashmap", "cuckoo")

STRUCTURE_HELP = (
    "what to benchmark: hashmap (default: HashMap against pandas' khash, dict and the machine's "
    "ceiling); multimap (MultiMap and BucketListMap get/insert against NumPy sort + "
    "searchsorted and pandas factorize + Index, with bytes per pair and per key); bloom "
    "(BloomFilter against rbloom: add, contains, measured fpr, bits per key); cuckoo "
    "(CuckooFilter against pyprobables: add, contains, erase, measured fpr, bits per key); all "
    "(the four in turn; with --json each writes its own file, PATH with the structure's name "
    "added: out.json -> out-hashmap.json, out-multimap.json, out-bloom.json, out-cuckoo.json)")


def json_path_for(path: str | None, structure: str, suffix: bool) -> str | None:
    """``path`` itself, or with ``-structure`` before its extension when ``suffix``."""
    if not path or not suffix:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{structure}{ext}"


#: ``bulkhash bench`` options that belong to ``--protocol`` only, and those it does not take.
PROTOCOL_ONLY = ("out", "max_keys", "only", "restart")
NOT_WITH_PROTOCOL = ("structure", "keys", "json")


def option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_bench_options(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of ``bulkhash bench`` options, or None."""
    given = [d for d in PROTOCOL_ONLY if getattr(args, d) not in (None, False)]
    if not args.protocol and given:
        return (f"{', '.join(map(option_name, given))} {'goes' if len(given) == 1 else 'go'} "
                "with --protocol (the full benchmark sweep): leave it out, or add --protocol")
    if args.protocol:
        clash = [d for d in NOT_WITH_PROTOCOL if getattr(args, d) is not None]
        if clash:
            return (f"--protocol runs every structure and writes its own files: leave out "
                    f"{', '.join(map(option_name, clash))} (use --only SUBSTRING to pick case "
                    "families, --max-keys N to cap the sizes, --out DIR for the files)")
        if args.device != "cpu":
            return "--protocol runs on the CPU only; leave out --device"
    return None  # (the values themselves: bulkhash.bench.protocol.configure)


def run_protocol(args: argparse.Namespace) -> int:
    """``bulkhash bench --protocol``: the sweep of BENCHMARKS.md (``bulkhash.bench.protocol``)."""
    from .bench import protocol

    return protocol.run(out_dir=args.out or protocol.DEFAULT_OUT, quick=args.quick,
                        max_keys=args.max_keys, only=args.only, restart=args.restart,
                        reps=args.reps)


def run_bench(args: argparse.Namespace) -> int:
    """``bulkhash bench``: the structure(s) ``args.structure`` names, one after the other."""
    structure = args.structure or "hashmap"
    names = STRUCTURES if structure == "all" else (structure,)
    if args.device == "cuda" and any(s not in CUDA_STRUCTURES for s in names):
        print(f"bulkhash bench --structure {structure} --device cuda: only "
              f"{' and '.join(CUDA_STRUCTURES)} have a GPU benchmark; the multimap and bloom "
              "benchmarks run on the CPU (leave out --device, or use --structure hashmap or "
              "cuckoo)", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        json_path = json_path_for(args.json, name, suffix=len(names) > 1)
        if name == "hashmap":
            from .bench import run

            code = run(quick=args.quick, keys=args.keys, reps=args.reps, json_path=json_path,
                       device=args.device)
        else:
            module = importlib.import_module(f".bench.{name}", __package__)
            sizes = [args.keys] if args.keys is not None else None
            extra = dict(device=args.device) if name in CUDA_STRUCTURES else {}
            code = module.run(quick=args.quick, reps=args.reps, json_path=json_path,
                              sizes=sizes, **extra)
        status = status or code
        if len(names) > 1:
            print(flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bulkhash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure bulkhash against its peers on this machine")
    bench.add_argument("--structure", choices=(*STRUCTURES, "all"), default=None,
                       help=STRUCTURE_HELP)
    bench.add_argument("--quick", action="store_true", help="the two-minute headline benchmark "
                       "(multimap, bloom, cuckoo: 1M keys or pairs, 3 rounds, well under a "
                       "minute each)")
    bench.add_argument("--json", metavar="PATH",
                       help="also write every measurement to PATH as JSON")
    bench.add_argument("--keys", type=int, metavar="N", help="keys in the large table "
                       "(default 20,000,000); for multimap, bloom and cuckoo the one size "
                       "measured (pairs for multimap) in place of their 1M and 10M")
    bench.add_argument("--reps", type=int, metavar="N", help="timed rounds after the warm-up "
                       "(hashmap: default 7 with --quick, else 11; multimap and bloom: 3 with "
                       "--quick, else 5; cuckoo: 3; --protocol: 3 with --quick, else 5)")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="cpu (default), or cuda: the same workloads on the GPU, with the "
                       "GPU's ceiling, a sweep of group sizes and CuPy sort + searchsorted as the "
                       "peer (under NUMBA_ENABLE_CUDASIM=1 only a smoke pass, no timings); with "
                       "--structure cuckoo, bulkhash's filter on the GPU beside pyprobables on "
                       "the CPU (a real GPU only); not for multimap or bloom")
    bench.add_argument("--protocol", action="store_true",
                       help="the full benchmark protocol of BENCHMARKS.md: every structure "
                       "and peer over key types, sizes (2^16 to 50M keys), loads, hit rates and "
                       "workloads, each beside the memory ceiling; resumable; writes "
                       "results.json, results.md and PNG plots to --out (with --quick: under "
                       "two minutes)")
    bench.add_argument("--out", metavar="DIR", help="--protocol: the output folder (default "
                       "bench-results/); a rerun into the same folder skips what it holds")
    bench.add_argument("--max-keys", type=int, metavar="N",
                       help="--protocol: cap every size at N keys (small machines, tests)")
    bench.add_argument("--only", metavar="SUBSTRING", help="--protocol: only the case families "
                       "whose name contains SUBSTRING (hashmap, hashmap-max-load, hashset, "
                       "counter, multimap, bucketlist, bloom, cuckoo, hashmap-mixed, "
                       "hashmap-ageing)")
    bench.add_argument("--restart", action="store_true",
                       help="--protocol: measure everything again, ignoring results.json")
    from .genomics import cli as genomics_cli

    genomics_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in ("kmers", "classify"):
        return genomics_cli.run(args, parser)
    if args.command == "bench":
        problem = check_bench_options(args)
        if problem:
            bench.error(problem)  # exits with status 2 and the usage line
        return run_protocol(args) if args.protocol else run_bench(args)
    return 2


def console_main() -> int:
    """The ``bulkhash`` command's entry point: ``main`` on the command line's arguments.

    The process exits right after, and exit's last garbage collection would walk every object
    the run left (numba's typing registries, a query's read ids) to free nothing that exit does
    not free anyway: 0.15 s of a 1.3 s, 300k-read ``classify query`` on the 2-core VM.
    ``gc.freeze`` takes them out of its reach (``main`` itself leaves the collector alone: tests
    and other callers go on living)."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console_main())
