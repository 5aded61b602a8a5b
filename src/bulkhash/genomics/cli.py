"""``bulkhash kmers ...`` and ``bulkhash classify ...``: the command line of genomics."""

from __future__ import annotations

import argparse
import sys
import time

from .kmers import check_k, count_kmers, default_output_names

#: inputs smaller than this (estimated decompressed bytes) count too fast to want a bar
_PROGRESS_FROM_BYTES = 64 << 20


def add_parsers(sub) -> None:
    """Add ``kmers`` (``count``) and ``classify`` (``build``, ``query``) to the ``bulkhash``
    subparsers ``sub``."""
    add_classify_parsers(sub)
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
    # only outputs are left to write: free the table first, so that they reuse its memory
    counts.freeze()
    written = []
    if not args.no_tsv:
        counts.write_tsv(outputs["tsv"], args.min_count)
        written.append(outputs["tsv"])
    kept = counts.filtered(args.min_count) if args.min_count > 1 else counts
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


def add_classify_parsers(sub) -> None:
    classify = sub.add_parser(
        "classify", help="classify reads by taxon, MetaCache's method (needs bulkhash[bio])",
        description="Read classification on bulkhash's MultiMap: reference windows (127 bases, "
        "a new one every 112) are sketched by their 16 smallest canonical 16-mer hashes; a "
        "read's sketch gathers their locations, and the best target over adjacent windows wins "
        "(or the lowest common ancestor of the best two when they are close).")
    commands = classify.add_subparsers(dest="classify_command", required=True)
    build = commands.add_parser("build", help="index reference genomes",
                                description="Index the reference files a taxonomy TSV lists "
                                "(columns file, species_taxid, species, strain; files relative "
                                "to the TSV); each file is one strain.")
    build.add_argument("--taxonomy", required=True, metavar="TSV",
                       help="the taxonomy TSV (like the shared data's taxonomy.tsv)")
    build.add_argument("files", nargs="*", metavar="FILE",
                       help="index only these reference files of the TSV (default: all)")
    build.add_argument("-o", "--output", required=True, metavar="INDEX",
                       help="where to write the index (bulkhash's file format)")
    from .classify import SAMPLINGS, SketchParams

    defaults = SketchParams()
    build.add_argument("--sketch-size", type=int, default=defaults.sketch_size, metavar="S",
                       help=f"features per window (default {defaults.sketch_size}, MetaCache's): "
                       "more find more reads of strains that differ from the references, in a "
                       "larger index")
    build.add_argument("--window", type=int, default=defaults.window, metavar="W",
                       help=f"bases per window (default {defaults.window})")
    build.add_argument("--stride", type=int, default=defaults.stride, metavar="N",
                       help=f"bases from one window's start to the next (default "
                       f"{defaults.stride}; at most W - 15, so that no 16-mer is lost)")
    build.add_argument("--sampling", choices=SAMPLINGS, default=defaults.sampling,
                       help="how a window's features are chosen: 'window' keeps its S smallest "
                       "hashes (MetaCache's, the default); 'fraction' keeps every hash below a "
                       "bound that a full window's hashes are under S times on average, which "
                       "picks the same features in every genome that shares a stretch of "
                       "sequence and so tells close genomes apart better")
    query = commands.add_parser("query", help="classify reads against an index",
                                description="Classify the reads of FASTA/FASTQ files. Writes "
                                "PREFIX.tsv (read id, taxid, rank, hits, name per read) and "
                                "PREFIX.report (per-taxon read counts in the layout of "
                                "`kraken2 --report`).")
    query.add_argument("index", metavar="INDEX", help="an index from `classify build`")
    query.add_argument("files", nargs="+", metavar="READS", help="FASTA or FASTQ files")
    query.add_argument("-o", "--output", default="classified", metavar="PREFIX",
                       help="output file prefix (default classified)")
    query.add_argument("--hits-min", type=int, default=None, metavar="N",
                       help="fewer hits than N leaves a read unclassified (default: the "
                       "index's, 5)")
    query.add_argument("--diff-fraction", type=float, default=None, metavar="F",
                       help="report the lowest common ancestor of the best target and the "
                       "other candidates with more than (best - hits-min) * F hits (default: "
                       "the index's, 1.0)")
    query.add_argument("--candidates", type=int, default=None, metavar="C",
                       help="targets with the most hits that may join the lowest common "
                       "ancestor (default: the index's, 2)")


def run_build(args: argparse.Namespace, error) -> int:
    from .classify import ReadClassifier, SketchParams
    from .taxonomy import Taxonomy

    started = time.perf_counter()
    try:
        params = SketchParams(sketch_size=args.sketch_size, window=args.window,
                              stride=args.stride, sampling=args.sampling).check()
        taxonomy = Taxonomy.from_tsv(args.taxonomy)
        index = ReadClassifier.build(taxonomy, args.files or None, params=params)
    except (ValueError, ImportError) as err:
        error(str(err))
    index.save(args.output)
    print(f"indexed {len(index.target_names)} sequences of "
          f"{len(set(index.target_taxa))} strains ({sum(index.target_lengths):,} bases): "
          f"{len(index.index):,} feature locations, {index.locations_refused:,} past the "
          f"limit per feature; wrote {args.output} in {time.perf_counter() - started:.2f} s")
    return 0


def run_query(args: argparse.Namespace, error) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from ..io import FormatError, load, verify
    from .classify import ReadClassifier, check_thresholds

    started = time.perf_counter()
    try:
        # mapped, not read: the index is used once, for lookups that touch a fraction of its
        # lines, and copying it costs more than the whole query (0.42 s against 0.06 s for a
        # 196 MB index on the 2-core VM: a copy is fresh memory, mapped pages are the page cache)
        index = load(args.index, mmap=True, verify=False)
        if not isinstance(index, ReadClassifier):
            error(f"{args.index} holds a {type(index).__name__}, not a classifier index: build "
                  "one with `bulkhash classify build`")
        index.hits_min, index.diff_fraction, index.candidates = check_thresholds(*(
            getattr(index, name) if getattr(args, name) is None else getattr(args, name)
            for name in ("hits_min", "diff_fraction", "candidates")))
        with ThreadPoolExecutor(1) as pool:
            # the checksum (0.06 s, without the GIL) runs while numba loads the query kernel
            # (0.12 s, holding it), and both are done before the index's data is read
            checked = pool.submit(verify, args.index)
            index.prepare()
            checked.result()
        loaded = time.perf_counter()
        result = index.classify_files(args.files)
    except (ValueError, ImportError, FormatError, OSError) as err:
        error(str(err))
    classified = time.perf_counter()
    result.write_tsv(f"{args.output}.tsv")
    result.write_report(f"{args.output}.report")
    print(f"{len(result):,} reads, {result.fraction_classified():.1%} classified; index loaded "
          f"and checked, kernel ready in {loaded - started:.2f} s, reads classified in "
          f"{classified - loaded:.2f} s; wrote {args.output}.tsv, {args.output}.report")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Dispatch ``bulkhash kmers <command>`` and ``bulkhash classify <command>``."""
    command = args.kmers_command if args.command == "kmers" else args.classify_command

    def error(message: str):
        parser.exit(2, f"bulkhash {args.command} {command}: error: {message}\n")

    handlers = {"count": run_count, "build": run_build, "query": run_query}
    return handlers[command](args, error)
