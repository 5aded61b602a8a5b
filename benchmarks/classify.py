"""Read classification: bulkhash (MetaCache's method on MultiMap) against kraken2.

    python benchmarks/classify.py [--data ../shared/data] [--reads 20000] [--out FILE.md]
                                 [--hits-min 5 4 3] [--sketch-size 16] [--sampling window]
                                 [--candidates 2] [--rounds 1]

(kraken2 and wgsim on the PATH: ``apt-get install kraken2 samtools``.)

1. Hold back one strain of every species that has several (``HELD_OUT``); both tools index the
   other references: ``bulkhash classify build`` and a custom kraken2 database, built offline
   from the same sequences (headers tagged ``kraken:taxid``) and the taxonomy written as
   ``nodes.dmp``/``names.dmp`` by ``Taxonomy.to_dmp``.
2. Simulate ``--reads`` single-end 100 bp reads with ``wgsim`` from every held-back strain and
   from an indexed strain of each species (0.5% base errors, ``-e 0.005``), classify them with
   both tools, and score each read at the species level: correct when the reported taxon is the
   read's species or one of its strains. Sensitivity is correct / reads; precision is
   correct / reads reported at species level or below.
3. Classify the real reads ``reads/SRR059298_subset.fastq.gz`` with both: fraction classified
   and both per-taxon reports.

Build and query are timed as whole commands, each in its own process; peak memory is the largest
resident set of the command's processes. With ``--rounds N`` each query runs N times, the two
tools in turn, and the table gives each one's median time (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bulkhash.genomics import Taxonomy, read_records

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = ("E.Coli_DH1", "H.Pylori_G27", "Kpn_Klebs_Kp1084", "S.Aureus_N315",
            "V.Cholerae_H1", "bee_vdv1dwv9")
INDEXED_SAMPLES = ("E.Coli_MG1655-K12", "H.Pylori_ELS37", "Kpn_MGH78578", "S.Aureus_COL",
                   "V.Cholerae_O1_Inaba", "Ssuis_SC84", "lambda_virus", "bee_dwv", "bee_vdv1")


def run_timed(command: list[str], **kwargs) -> tuple[float, int]:
    """``(seconds, peak resident MiB)`` of a command."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               **kwargs)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss // 1024


def median_of_runs(commands: list[list[str]], rounds: int) -> list[tuple[float, int]]:
    """``(median seconds, largest peak MiB)`` of each command, run ``rounds`` times in turn."""
    runs = [[run_timed(command) for command in commands] for _ in range(rounds)]
    return [(float(np.median([r[i][0] for r in runs])), max(r[i][1] for r in runs))
            for i in range(len(commands))]


def simulate(taxonomy: Taxonomy, reads_per_strain: int, tmp: Path) -> tuple[Path, dict]:
    """One FASTQ of reads from the held-back and sampled strains; read name -> (species taxid,
    held back?)."""
    truth = {}
    out = tmp / "simulated.fq"
    with open(out, "w") as merged:
        for seed, ref in enumerate(taxonomy.references, start=1):
            stem = ref.path.name.removesuffix(".fa.gz")
            if stem not in HELD_OUT + INDEXED_SAMPLES:
                continue
            part = tmp / f"{stem}.fq"
            subprocess.run(["wgsim", "-N", str(reads_per_strain), "-1", "100", "-2", "100",
                            "-e", "0.005", "-r", "0.001", "-S", str(seed), str(ref.path),
                            str(part), "/dev/null"], check=True, capture_output=True)
            species = int(taxonomy.taxids[taxonomy.parents[ref.taxon]])
            for i, (name, sequence, _) in enumerate(read_records(part)):
                read_id = f"{stem}.{i}"
                truth[read_id] = (species, stem in HELD_OUT)
                merged.write(f"@{read_id}\n{sequence}\n+\n{'I' * len(sequence)}\n")
    return out, truth


def kraken2_database(taxonomy: Taxonomy, indexed, tmp: Path) -> tuple[Path, float, int]:
    """A kraken2 database of the ``indexed`` references: ``(folder, seconds, peak MiB)`` of
    ``kraken2-build --add-to-library`` and ``--build`` (low-complexity masking off: dustmasker
    is not a dependency, and bulkhash masks nothing either)."""
    db = tmp / "kraken2-db"
    taxonomy.to_dmp(db / "taxonomy")
    library = tmp / "library.fa"
    with open(library, "w") as out:  # plain ids: kraken2 misreads ids such as "gi|...|ref|..."
        number = 0
        for ref in indexed:
            taxid = int(taxonomy.taxids[ref.taxon])
            for name, sequence, _ in read_records(ref.path):
                number += 1
                out.write(f">ref{number}|kraken:taxid|{taxid} {name}\n{sequence}\n")
    add = run_timed(["kraken2-build", "--db", str(db), "--add-to-library", str(library),
                     "--no-masking"])
    build = run_timed(["kraken2-build", "--db", str(db), "--build", "--threads", "2"])
    return db, add[0] + build[0], max(add[1], build[1])


def score(assigned: dict[str, int], truth: dict, taxonomy: Taxonomy, held: bool) -> dict:
    """Species-level sensitivity and precision over the reads of held-back (or indexed)
    strains. ``assigned``: read id -> taxid (0 unclassified)."""
    species_of = {}
    for row, taxid in enumerate(taxonomy.taxids.tolist()):
        rank = taxonomy.rank_of(row)
        species_of[taxid] = (taxid if rank == "species" else
                             int(taxonomy.taxids[taxonomy.parents[row]]) if rank == "strain"
                             else None)
    reads = [r for r, (_, h) in truth.items() if h == held]
    at_species = correct = 0
    for read in reads:
        species = species_of.get(assigned.get(read, 0))
        if species is not None:
            at_species += 1
            correct += species == truth[read][0]
    return dict(reads=len(reads), sensitivity=correct / len(reads), wrong=at_species - correct,
                precision=correct / at_species if at_species else float("nan"))


def bulkhash_assignments(path: Path) -> dict[str, int]:
    with open(path) as f:
        next(f)  # the header
        return {fields[0]: int(fields[1]) for fields in (line.split("\t") for line in f)}


def kraken2_assignments(path: Path) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            fields = line.split("\t")
            out[fields[1]] = int(fields[2])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reads", type=int, default=20000, help="reads per simulated strain")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    parser.add_argument("--hits-min", type=int, nargs="+", default=[5],
                        help="bulkhash's --hits-min, one query (and table row) per value "
                        "(default 5)")
    parser.add_argument("--sketch-size", type=int, default=16,
                        help="bulkhash's classify build --sketch-size (default 16, MetaCache's)")
    parser.add_argument("--sampling", default="window",
                        help="bulkhash's classify build --sampling (default window, MetaCache's)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each timed query, the tools in turn (median reported)")
    parser.add_argument("--candidates", type=int, default=2,
                        help="bulkhash's classify query --candidates (default 2)")
    args = parser.parse_args()
    taxonomy = Taxonomy.from_tsv(args.data / "taxonomy.tsv")
    indexed = [r for r in taxonomy.references if r.path.name.removesuffix(".fa.gz")
               not in HELD_OUT]
    real = args.data / "reads" / "SRR059298_subset.fastq.gz"
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reads, truth = simulate(taxonomy, args.reads, tmp)
        index = tmp / "index.bhc"
        b_build = run_timed(["bulkhash", "classify", "build", "--taxonomy",
                             str(args.data / "taxonomy.tsv"), "-o", str(index),
                             "--sketch-size", str(args.sketch_size), "--sampling", args.sampling,
                             *map(str, (r.path for r in indexed))])
        db, k_seconds, k_peak = kraken2_database(taxonomy, indexed, tmp)
        k_build = (k_seconds, k_peak)
        results = {}
        for hits_min in args.hits_min[1:]:  # the extra settings: accuracy only
            run_timed(["bulkhash", "classify", "query", str(index), str(reads), "-o",
                       str(tmp / f"b-{hits_min}"), "--hits-min", str(hits_min),
                       "--candidates", str(args.candidates)])
            results[hits_min] = bulkhash_assignments(tmp / f"b-{hits_min}.tsv")
        for name, source in (("simulated", reads), ("real", real)):
            b_query, k_query = median_of_runs([
                ["bulkhash", "classify", "query", str(index), str(source), "-o",
                 str(tmp / f"b-{name}"), "--hits-min", str(args.hits_min[0]), "--candidates",
                 str(args.candidates)],
                ["kraken2", "--db", str(db), "--threads", "2", "--output",
                 str(tmp / f"k-{name}.out"), "--report", str(tmp / f"k-{name}.report"),
                 str(source)]], args.rounds)
            results[name] = (b_query, k_query, bulkhash_assignments(tmp / f"b-{name}.tsv"),
                             kraken2_assignments(tmp / f"k-{name}.out"))
        lines += [f"{len(truth):,} simulated reads; queries timed as the median of {args.rounds} "
                  f"run(s) each; bulkhash's index: sketch size "
                  f"{args.sketch_size}, {args.sampling} sampling, "
                  f"{index.stat().st_size / 1e6:.0f} MB; queries with {args.candidates} "
                  f"candidates; kraken2's: "
                  f"{sum(f.stat().st_size for f in db.glob('*.k2d')) / 1e6:.0f} MB", "",
                  "| tool | build s | build MiB | query s (simulated) | query MiB |",
                  "|---|---:|---:|---:|---:|",
                  f"| bulkhash | {b_build[0]:.1f} | {b_build[1]} | "
                  f"{results['simulated'][0][0]:.2f} | {results['simulated'][0][1]} |",
                  f"| kraken2 | {k_build[0]:.1f} | {k_build[1]} | "
                  f"{results['simulated'][1][0]:.2f} | {results['simulated'][1][1]} |", ""]
        lines += ["| reads from | tool | reads | species sensitivity | species precision | "
                  "wrong species |", "|---|---|---:|---:|---:|---:|"]
        for held in (True, False):
            tools = [(f"bulkhash, hits-min {args.hits_min[0]}", results["simulated"][2])]
            tools += [(f"bulkhash, hits-min {h}", results[h]) for h in args.hits_min[1:]]
            for tool, assigned in tools + [("kraken2", results["simulated"][3])]:
                s = score(assigned, truth, taxonomy, held)
                lines.append(f"| {'held-back' if held else 'indexed'} strains | {tool} | "
                             f"{s['reads']:,} | {s['sensitivity']:.4f} | {s['precision']:.5f} | "
                             f"{s['wrong']:,} |")
        b_real, k_real = results["real"][2], results["real"][3]
        lines += ["", f"Real reads ({real.name}): bulkhash classifies "
                  f"{np.mean([t != 0 for t in b_real.values()]):.1%} "
                  f"in {results['real'][0][0]:.2f} s, kraken2 "
                  f"{np.mean([t != 0 for t in k_real.values()]):.1%} "
                  f"in {results['real'][1][0]:.2f} s.", "", "bulkhash's report:", "```"]
        lines += (tmp / "b-real.report").read_text().splitlines() + ["```", "",
                                                                    "kraken2's report:", "```"]
        lines += [line for line in (tmp / "k-real.report").read_text().splitlines()
                  if not line.split("\t")[1].strip() == "0"] + ["```"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
