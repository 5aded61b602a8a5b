"""k-mer counting: bulkhash against jellyfish and KMC, for exactness and for speed.

Two commands (jellyfish and kmc on the PATH: ``apt-get install jellyfish kmc``)::

    python benchmarks/kmers.py check [--data ../shared/data] [-k 21 31]
    python benchmarks/kmers.py bench [--data ../shared/data] [--rounds 3] [--out FILE.md]

``check`` counts the canonical k-mers of every genome under ``DATA`` (``references/*.fa.gz`` and
``genomes/*.fa.gz``) with ``bulkhash.genomics.count_kmers`` and with ``jellyfish count -C``, and
compares the distinct and total counts, the whole histogram (``jellyfish histo`` up to the
largest count, so no count is lumped into its overflow bin) and every k-mer's count (jellyfish's
dump, parsed by ``read_kmer_tsv``, against ``KmerCounts.get``), then freezes the counts (the
pairs taken in the table's own memory, as ``bulkhash kmers count`` does before writing) and
compares every pair again. It exits 1 on any difference.

``bench`` times whole commands, each in its own process, as a user runs them, in interleaved
rounds: ``bulkhash kmers count -C --no-tsv --no-png`` (writes its binary counts and histogram),
``jellyfish count -C -t 2`` on ``zcat``'s output (jellyfish reads no gzip) with a hash sized to
the genome, and ``kmc -t2 -ci1`` (its database). Wall time is the median of the rounds; peak
memory (the largest resident set of the command's processes) is the largest. The histograms of
the three must agree, or the row says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bulkhash.genomics import count_kmers, read_kmer_tsv

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def genomes(data: Path) -> list[Path]:
    found = sorted((data / "references").glob("*.fa.gz")) + sorted(
        (data / "genomes").glob("*.fa.gz"))
    if not found:
        sys.exit(f"no genomes under {data}: pass --data DIR (a folder with references/ and "
                 "genomes/ of .fa.gz files)")
    return found


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"{', '.join(missing)} not found: apt-get install {' '.join(missing)}")


def plain_bases(path: Path) -> int:
    """An upper bound on the bases (the decompressed size), to size jellyfish's hash."""
    out = subprocess.run(f"zcat {path} | wc -c", shell=True, check=True, capture_output=True,
                         text=True)
    return int(out.stdout)


def run_timed(command: str) -> tuple[float, int]:
    """``(seconds, peak resident KiB)`` of a shell command (its largest process)."""
    start = time.perf_counter()
    process = subprocess.Popen(["bash", "-c", command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {command}\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss


def jellyfish_count(path: Path, k: int, out: Path, size: int) -> str:
    return (f"jellyfish count -C -m {k} -s {size} -t 2 -o {out} <(zcat {path})")


def jellyfish_histogram(db: Path) -> tuple[np.ndarray, np.ndarray]:
    stats = subprocess.run(["jellyfish", "stats", str(db)], check=True, capture_output=True,
                           text=True).stdout
    top = int(next(line.split()[1] for line in stats.splitlines()
                   if line.startswith("Max_count")))
    text = subprocess.run(["jellyfish", "histo", "-h", str(top), str(db)], check=True,
                          capture_output=True, text=True).stdout
    table = np.array([line.split() for line in text.splitlines()], np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def check(paths: list[Path], ks: list[int]) -> int:
    require("jellyfish")
    failures = 0
    print("| genome | k | distinct | total | histogram bins | every k-mer's count | frozen pairs |")
    print("|---|---:|---:|---:|---:|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            size = plain_bases(path)
            for k in ks:
                db, dump = Path(tmp) / "j.jf", Path(tmp) / "j.tsv"
                subprocess.run(["bash", "-c", jellyfish_count(path, k, db, size)], check=True)
                subprocess.run(["jellyfish", "dump", "-c", "-t", "-o", str(dump), str(db)],
                               check=True)
                j_values, j_num = jellyfish_histogram(db)
                j_codes, j_counts = read_kmer_tsv(dump, k)
                ours = count_kmers(path, k, canonical=True)
                values, num = ours.histogram()
                same = dict(
                    distinct=len(ours) == j_codes.size,
                    total=ours.total() == int(j_counts.sum()),
                    histogram=np.array_equal(values, j_values) and np.array_equal(num, j_num),
                    kmers=bool(np.all(ours.get(j_codes) == j_counts)),
                )
                distinct, total = len(ours), ours.total()
                ours.freeze()  # what `bulkhash kmers count` writes out: the pairs taken in place
                codes, counts = ours.items()
                mine, theirs = np.argsort(codes), np.argsort(j_codes)
                same["frozen"] = (np.array_equal(codes[mine], j_codes[theirs])
                                  and np.array_equal(counts[mine], j_counts[theirs]))
                failures += not all(same.values())
                mark = {True: "", False: " **differs**"}
                print(f"| {path.name} | {k} | {distinct:,}{mark[same['distinct']]} | "
                      f"{total:,}{mark[same['total']]} | "
                      f"{values.size}{mark[same['histogram']]} | "
                      f"{'identical' if same['kmers'] else '**differs**'} | "
                      f"{'identical' if same['frozen'] else '**differ**'} |", flush=True)
    version = subprocess.run(["jellyfish", "--version"], capture_output=True, text=True).stdout
    print(f"\n{'all identical' if not failures else f'{failures} differ'} "
          f"({version.strip()})")
    return 1 if failures else 0


def bench(data: Path, inputs: list[str], k: int, rounds: int, out: Path | None) -> int:
    require("jellyfish", "kmc", "bulkhash")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in inputs:
            path = data / name
            size = plain_bases(path)
            (tmp / "kmc").mkdir(exist_ok=True)
            commands = {
                "bulkhash": (f"bulkhash kmers count -k {k} -C --no-tsv --no-png "
                             f"-o {tmp}/b {path}"),
                "jellyfish": jellyfish_count(path, k, tmp / "j.jf", size),
                "kmc": f"kmc -k{k} -t2 -ci1 -cs4294967295 -fm {path} {tmp}/kmc {tmp}/kmc",
            }
            times = {tool: [] for tool in commands}
            peaks = {tool: 0 for tool in commands}
            run_timed(commands["bulkhash"])  # once first: Numba's on-disk cache, page cache
            for _ in range(rounds):
                for tool, command in commands.items():
                    seconds, peak = run_timed(command)
                    times[tool].append(seconds)
                    peaks[tool] = max(peaks[tool], peak)
            agree = histograms_agree(tmp, k)
            for tool in commands:
                rows.append((name, tool, statistics.median(times[tool]),
                             statistics.median(times[tool]) / statistics.median(times["bulkhash"]),
                             peaks[tool] / 1024, agree))
    lines = [f"canonical {k}-mers, {rounds} interleaved rounds, median wall time, 2 threads",
             "", "| input | tool | wall s | time / bulkhash's | peak MiB | same histogram |",
             "|---|---|---:|---:|---:|---|"]
    lines += [f"| {n} | {t} | {s:.2f} | {r:.2f} | {m:.0f} | {'yes' if a else '**no**'} |"
              for n, t, s, r, m, a in rows]
    text = "\n".join(lines)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0 if all(row[-1] for row in rows) else 1


def histograms_agree(tmp: Path, k: int) -> bool:
    """Whether the last round's outputs of the three tools have the same histogram."""
    ours = np.loadtxt(tmp / "b.histo", np.int64, ndmin=2)
    j_values, j_num = jellyfish_histogram(tmp / "j.jf")
    kmc_histo = tmp / "kmc.histo"
    subprocess.run(["kmc_tools", "transform", str(tmp / "kmc"), "histogram", str(kmc_histo),
                    f"-cx{j_values.max()}"], check=True, capture_output=True)
    kmc = np.loadtxt(kmc_histo, np.int64, ndmin=2)
    kmc = kmc[kmc[:, 1] > 0]
    return (np.array_equal(ours[:, 0], j_values) and np.array_equal(ours[:, 1], j_num)
            and np.array_equal(ours, kmc))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("check", "bench"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"the data folder (default {DEFAULT_DATA})")
    parser.add_argument("-k", type=int, nargs="+", default=None,
                        help="check: the k's (default 21 31); bench: one k (default 31)")
    parser.add_argument("--inputs", nargs="+", help="files under DATA (check: default every "
                        "genome; bench: default the P. falciparum genome and the largest "
                        "reference)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="bench: also write the table here")
    args = parser.parse_args()
    if args.command == "check":
        paths = [args.data / name for name in args.inputs] if args.inputs else genomes(args.data)
        return check(paths, args.k or [21, 31])
    inputs = args.inputs or ["genomes/smalt_genome_1.fa.gz", "references/Kpn_MGH78578.fa.gz"]
    return bench(args.data, inputs, (args.k or [31])[0], args.rounds, args.out)


if __name__ == "__main__":
    sys.exit(main())
