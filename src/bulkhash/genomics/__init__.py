"""Genomics on bulkhash: k-mer counting and read classification.

Public names:

* ``count_kmers`` -- count the k-mers of FASTA/FASTQ files into a ``KmerCounts``
* ``KmerCounts`` -- k-mer counts on a ``bulkhash.Counter``: query, dump, histogram, save/load
* ``encode_kmers``, ``decode_kmers``, ``reverse_complement`` -- k-mers <-> 64-bit codes
* ``read_kmer_tsv`` -- read a k-mer count dump (``write_tsv``'s or ``jellyfish dump -c``)
* ``ReadClassifier`` -- MetaCache's read classifier on a ``MultiMap``: build, classify, save
* ``LocationIndex`` -- its query index: feature -> a run of locations in one array
* ``Classification`` -- its per-read results, TSV and ``kraken2 --report``-style report
* ``SketchParams`` -- k, window, stride, sketch size, locations per feature
* ``Taxonomy`` -- root -> species -> strain from a TSV of reference files
* ``read_records`` -- the records of a FASTA/FASTQ file (dnaio), with clear errors
* ``SequenceFileError`` -- a sequence file is missing, empty, truncated or not FASTA/FASTQ
* ``example_path`` -- the bundled example files (phage lambda's genome, 2,000 Illumina reads)

Reading files needs the optional extra: ``pip install "bulkhash[bio]"`` (dnaio, matplotlib,
tqdm). The command line: ``bulkhash kmers count --help``, ``bulkhash classify --help``.
"""

from .classify import Classification, ReadClassifier, SketchParams
from .kmers import (KmerCounts, count_kmers, decode_kmers, encode_kmers, read_kmer_tsv,
                    reverse_complement)
from .locations import LocationIndex
from .sequences import SequenceFileError, example_path, read_records
from .taxonomy import Taxonomy

__all__ = ["Classification", "KmerCounts", "LocationIndex", "ReadClassifier", "SequenceFileError",
           "SketchParams", "Taxonomy", "count_kmers", "decode_kmers", "encode_kmers",
           "example_path", "read_kmer_tsv", "read_records", "reverse_complement"]
