"""Genomics on bulkhash: k-mer counting (and, next, read classification).

Public names:

* ``count_kmers`` -- count the k-mers of FASTA/FASTQ files into a ``KmerCounts``
* ``KmerCounts`` -- k-mer counts on a ``bulkhash.Counter``: query, dump, histogram, save/load
* ``encode_kmers``, ``decode_kmers``, ``reverse_complement`` -- k-mers <-> 64-bit codes
* ``read_kmer_tsv`` -- read a k-mer count dump (``write_tsv``'s or ``jellyfish dump -c``)
* ``SequenceFileError`` -- a sequence file is missing, empty, truncated or not FASTA/FASTQ
* ``example_path`` -- the bundled example files (phage lambda's genome, 2,000 Illumina reads)

Reading files needs the optional extra: ``pip install "bulkhash[bio]"`` (dnaio, matplotlib,
tqdm). The command line: ``bulkhash kmers count --help``.
"""

from .kmers import (KmerCounts, count_kmers, decode_kmers, encode_kmers, read_kmer_tsv,
                    reverse_complement)
from .sequences import SequenceFileError, example_path

__all__ = ["KmerCounts", "SequenceFileError", "count_kmers", "decode_kmers", "encode_kmers",
           "example_path", "read_kmer_tsv", "reverse_complement"]
