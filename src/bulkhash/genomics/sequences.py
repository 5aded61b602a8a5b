"""Reading FASTA/FASTQ files (plain or compressed) into large blocks of bases.

Parsing is dnaio's (the reader behind cutadapt): a maintained C/Cython parser that opens gzip,
bzip2, xz and zstd through xopen. This module only batches its records: the sequences of many
records are joined, one newline between two, into one block of bytes, so the compiled k-mer
kernels run once per block instead of once per read. A newline is not a base, so no k-mer spans
two records.

dnaio is an optional dependency (``pip install "bulkhash[bio]"``); importing this module does not
need it, reading does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: bases per block handed to the kernels: 4 Mi bases is 32 MiB of k-mer codes at most, and
#: millions of keys per Counter.add, enough to keep its threads busy
BLOCK_BASES = 1 << 22


#: the sequence files shipped in ``bulkhash/genomics/data`` (provenance: its README.md)
EXAMPLES = ("lambda_virus.fa.gz", "SRR059298_2000.fastq.gz")


def example_path(name: str = "lambda_virus.fa.gz") -> Path:
    """The installed path of a bundled example file.

    >>> from bulkhash.genomics import example_path
    >>> example_path().name
    'lambda_virus.fa.gz'
    """
    if name not in EXAMPLES:
        raise ValueError(f"name={name!r} is not a bundled example: use one of {EXAMPLES}")
    return Path(__file__).with_name("data") / name


class SequenceFileError(ValueError):
    """A sequence file is missing, empty, truncated, or not FASTA/FASTQ."""


def _dnaio():
    try:
        import dnaio
    except ImportError:
        raise ImportError("reading FASTA/FASTQ needs dnaio: pip install \"bulkhash[bio]\" "
                          "(or pip install dnaio)") from None
    return dnaio


def check_paths(paths) -> list[Path]:
    """``paths`` as a list of existing, non-empty files; raises before anything is read."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        paths = [Path(p) for p in paths]
    except TypeError:
        raise TypeError(f"files must be a path or a list of paths, not {paths!r}") from None
    if not paths:
        raise ValueError("files=[] names no file: give at least one FASTA or FASTQ path")
    for path in paths:
        if not path.exists():
            raise SequenceFileError(f"{path}: no such file")
        if path.is_dir():
            raise SequenceFileError(f"{path} is a directory: give FASTA or FASTQ files")
        if path.stat().st_size == 0:
            raise SequenceFileError(f"{path} is empty: a FASTA or FASTQ file holds at least "
                                    "one record")
    return paths


#: how much larger a compressed file's text is, when its format does not record it (DNA in
#: gzip/bzip2/xz/zstd compresses about 3.5-4.5x)
_TYPICAL_RATIO = 4


def estimated_text_bytes(path: Path) -> int:
    """About how many bytes ``path`` holds once decompressed.

    gzip records its size (mod 2**32) in the last 4 bytes of its last member: exact for files
    under 4 GiB of one member, the common case, and a smaller figure than the file itself flags
    the others. Other formats are taken at a typical ratio. Used for progress and for sizing the
    table once; a wrong guess costs time or memory, never counts."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic[:2] == b"\x1f\x8b" and size >= 18:
            f.seek(-4, os.SEEK_END)
            recorded = int.from_bytes(f.read(4), "little")
            return recorded if recorded >= size else _TYPICAL_RATIO * size
    compressed = magic[:3] == b"BZh" or magic == b"\xfd7zX" or magic == b"\x28\xb5\x2f\xfd"
    return _TYPICAL_RATIO * size if compressed else size


def read_records(path: Path) -> Iterator[tuple[str, str, int]]:
    """``(name, sequence, text_bytes)`` of each record of ``path``, where ``text_bytes`` is
    about how many bytes of the decompressed file have been read so far (compare
    ``estimated_text_bytes``).

    Raises ``SequenceFileError`` naming the file for input that is not FASTA/FASTQ, a truncated
    or corrupt compressed file, or a file without records.
    """
    text_bytes = 0  # a record's name, sequence, qualities and line ends (FASTA line breaks aside)
    for record in dnaio_records(path):
        quality = record.qualities
        text_bytes += (len(record.name) + len(record.sequence) + 3
                       + (len(quality) + 2 if quality is not None else 0))
        yield record.name, record.sequence, text_bytes


def dnaio_records(path: Path) -> Iterator:
    """dnaio's records of ``path`` as they come (``.name``, ``.id``, ``.sequence``,
    ``.qualities``), with the errors of ``read_records``."""
    dnaio = _dnaio()
    records = 0
    try:
        with dnaio.open(path) as reader:
            for record in reader:
                records += 1
                yield record
    except dnaio.UnknownFileFormat:
        raise SequenceFileError(f"{path} is not FASTA or FASTQ: its first character is neither "
                                "'>' nor '@'") from None
    except dnaio.FileFormatError as err:
        raise SequenceFileError(f"{path} is not valid FASTA/FASTQ: {err}") from None
    except (EOFError, OSError, UnicodeDecodeError) as err:
        if isinstance(err, FileNotFoundError):
            raise SequenceFileError(f"{path}: no such file") from None
        raise SequenceFileError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                                "check the download, e.g. with gzip -t") from None
    if records == 0:
        raise SequenceFileError(f"{path} holds no FASTA or FASTQ record")


def read_blocks(path: Path, block_bases: int = BLOCK_BASES) -> Iterator[tuple[np.ndarray, int]]:
    """The sequences of ``path`` as uint8 blocks of about ``block_bases`` bases each (records
    joined by newlines; a record longer than a block is a block of its own), each with the
    ``text_bytes`` of ``read_records`` at its last record."""
    batch: list[str] = []
    size = 0
    text_bytes = 0
    for _, sequence, text_bytes in read_records(path):
        batch.append(sequence)
        size += len(sequence) + 1
        if size >= block_bases:
            yield joined(batch), text_bytes
            batch, size = [], 0
    if batch:
        yield joined(batch), text_bytes


def joined(sequences: list[str]) -> np.ndarray:
    """Sequences as one uint8 array of letters, a newline (not a base) between two."""
    text = "\n".join(sequences).encode("ascii", errors="replace")  # '?' is not a base either
    return np.frombuffer(text, np.uint8)
