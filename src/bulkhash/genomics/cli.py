"""``bulkhash kmers ...``: the command line of ``bulkhash.genomics``."""

from __future__ import annotations

import argparse
import sys
import time

from .kmers import check_k, count_kmers, default_output_names

#: inputs smaller than this (estimated decompressed bytes) count too fast to want a bar
_PROGRESS_FROM_BYTES = 64 << 20


def add_parsers(sub) -> None:
    """Add ``kmers`` (with its ``count`` command) to the ``bulkhash`` subparsers ``sub``."""
    kmers = sub.add_parser("kmers", help="count k-mers of FASTA/FASTQ files (needs "
                           "bulkhash[bio])", description="k-mer counting on bulkhash's Counter.")
    commands = kmers.add_subparsers(dest="kmers_command", required=True)
    count = commands.add_parser(
        "count", help="count the k-mers of FASTA/FASTQ files",
        description="Count the k-mers of FASTA/FASTQ files (plain or gzip/bzip2/xz/zstd). "
        "Windows holding a letter other than A, C, G, T (either case) are skipped, as jellyfish "
        "and KMC skip them. Writes PREFIX.tsv (k-mer<TAB>count, like `jellyfish dump -c -t`), "
        "PREFIX.bhk (the counts in bulkhash's binary format: bulkhash.load opens it), "
        "PREFIX.histo (`count number-of-k-mers` lines, like `jellyfish histo`, every count "
        "exact) and PREFIX.png (the histogram, log-log).")
    count.add_argument("files", nargs="+", metavar="FILE", help="FASTA or FASTQ files")
    count.add_argument("-k", type=int, required=True, help="k-mer length, 1 to 32")
    count.add_argument("-C", "--canonical", action="store_true",
                       help="count a k-mer and its reverse complement as one (jellyfish -C)")
    count.add_argument("-L", "--min-count", type=int, default=1, metavar="N",
                       help="write only k-mers counted at least N times to PREFIX.tsv and "
                       "PREFIX.bhk (default 1: all); the histogram covers all k-mers")
    count.add_argument("-o", "--output", default="kmer_counts", metavar="PREFIX",
                       help="output file prefix (default kmer_counts)")
    count.add_argument("--count-dtype", default="uint32",
                       choices=("uint8", "uint16", "uint32", "uint64"),
                       help="the counter's type (default uint32); counts saturate at its maximum")
    count.add_argument("--no-tsv", action="store_true",
                       help="skip PREFIX.tsv (the largest output: ~k+3 bytes a k-mer)")
    count.add_argument("--no-png", action="store_true", help="skip PREFIX.png")
    count.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                       help="a progress bar on stderr: auto (default) shows one for inputs over "
                       "64 MiB when stderr is a terminal")


def _progress_bar(mode: str):
    """``(callback, close)`` for ``count_kmers``, or ``(None, no-op)`` when no bar is wanted."""
    if mode == "never":
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        return None, lambda: None
    state = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            if mode == "auto" and (total < _PROGRESS_FROM_BYTES or not sys.stderr.isatty()):
                return
            bar = state["bar"] = tqdm(total=total, unit="B", unit_scale=True,
                                      desc="reading", file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def run_count(args: argparse.Namespace, error) -> int:
    try:
        k = check_k(args.k)
    except ValueError as err:
        error(f"-k: {err}")
    if args.min_count < 1:
        error(f"--min-count {args.min_count}: give a count of at least 1")
    outputs = default_output_names(args.output)
    started = time.perf_counter()
    update, close = _progress_bar(args.progress)
    try:
        counts = count_kmers(args.files, k, args.canonical, count_dtype=args.count_dtype,
                             progress=update)
    except (ValueError, ImportError) as err:  # (SequenceFileError is a ValueError)
        close()
        error(str(err))
    close()
    counted = time.perf_counter() - started
    written = []
    if not args.no_tsv:
        counts.write_tsv(outputs["tsv"], args.min_count)
        written.append(outputs["tsv"])
    kept = counts
    if args.min_count > 1:
        kept = type(counts).from_items(k, args.canonical, *counts.items(args.min_count),
                                       count_dtype=args.count_dtype)
    kept.save(outputs["binary"])
    counts.write_histo(outputs["histo"])
    written += [outputs["binary"], outputs["histo"]]
    if not args.no_png:
        counts.plot_histogram(outputs["png"])
        written.append(outputs["png"])
    print(f"{'canonical ' if args.canonical else ''}{k}-mers: {len(counts):,} distinct, "
          f"{counts.total():,} total, counted in {counted:.2f} s; wrote "
          f"{', '.join(map(str, written))} ({time.perf_counter() - started:.2f} s in all)")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Dispatch ``bulkhash kmers <command>``."""
    def error(message: str):
        parser.exit(2, f"bulkhash kmers {args.kmers_command}: error: {message}\n")

    if args.kmers_command == "count":
        return run_count(args, error)
    return 2
