"""k-mer counting on a ``Counter``: ``count_kmers`` and the ``KmerCounts`` it returns.

A k-mer (k <= 32) is a ``uint64`` code (``bulkhash.genomics._kmer_kernels``: 2 bits a base,
``A < C < G < T``), so counting the k-mers of a genome is one ``Counter.add`` per block of
sequence: the kernels turn a block of text into codes, the counter counts them, and no Python
code runs per base or per k-mer. Counts match jellyfish's and KMC's: the same windows are
skipped (any letter but ACGT/acgt) and the canonical form is the smaller of a k-mer and its
reverse complement in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._dtypes import narrowest_unsigned
from ..counter import Counter
from . import _kmer_kernels as KK
from .sequences import BLOCK_BASES, check_paths, estimated_text_bytes, read_blocks

#: k-mers per chunk of text when writing a dump (bounds the text buffer to ~50 MiB for k = 31)
_DUMP_CHUNK = 1 << 20


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= KK.MAX_K:
        raise ValueError(f"k={k!r} must be an integer from 1 to {KK.MAX_K} (a k-mer is stored "
                         "in 64 bits, 2 per base)")
    return int(k)


def _as_text(sequence, argname: str = "sequence") -> np.ndarray:
    """``sequence`` (str, bytes or a uint8 array of letters) as a contiguous uint8 array."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    if isinstance(sequence, (bytes, bytearray, memoryview)):
        return np.frombuffer(sequence, np.uint8)
    if isinstance(sequence, np.ndarray) and sequence.dtype == np.uint8 and sequence.ndim == 1:
        return np.ascontiguousarray(sequence)
    raise TypeError(f"{argname} must be a str, bytes or a 1-D uint8 array of letters, not "
                    f"{type(sequence).__name__}")


def encode_kmers(sequence, k: int, canonical: bool = False) -> np.ndarray:
    """The code of every k-mer of ``sequence`` in order, skipping windows that hold a letter
    other than A, C, G, T (either case).

    >>> from bulkhash.genomics import encode_kmers
    >>> encode_kmers("ACGTnAC", 2)        # AC CG GT, then the N breaks the text, then AC
    array([ 1,  6, 11,  1], dtype=uint64)
    >>> encode_kmers("TTG", 3, canonical=True)  # TTG's reverse complement CAA is smaller
    array([16], dtype=uint64)
    """
    k = check_k(k)
    return KK.extract_kmers(_as_text(sequence), k, KK.kmer_mask(k), bool(canonical),
                            KK.BASE_CODES)


def decode_kmers(codes, k: int) -> np.ndarray:
    """The letters of k-mer codes, as a NumPy array of strings.

    >>> from bulkhash.genomics import decode_kmers
    >>> decode_kmers([1, 6, 11], 2)
    array(['AC', 'CG', 'GT'], dtype='<U2')
    """
    k = check_k(k)
    codes = np.ascontiguousarray(codes, dtype=np.uint64).reshape(-1)
    letters = KK.spell_kmers(codes, k, KK.LETTERS)
    return letters.view(f"S{k}").reshape(-1).astype(f"U{k}")


class KmerCounts:
    """The k-mer counts of sequences: a ``bulkhash.Counter`` of k-mer codes, with ``k``.

    Build one with ``count_kmers`` (files) or ``add`` (text); query it with k-mer strings or
    codes; write jellyfish-style outputs; ``save`` it and open it again with ``bulkhash.load``.

    >>> from bulkhash.genomics import KmerCounts
    >>> kc = KmerCounts(3, canonical=True)
    >>> kc.add("ACGTTGCA")                 # ACG CGT GTT TTG TGC GCA, canonical
    >>> len(kc), kc.total()
    (4, 6)
    >>> kc.get(["ACG", "CGT", "AAC", "GGG"])  # ACG and CGT are one canonical k-mer
    array([2, 2, 1, 0], dtype=uint32)
    >>> kc.histogram()
    (array([1, 2], dtype=uint32), array([2, 2]))

    ``freeze()`` keeps the pairs and gives up the table when only outputs are left to write
    (``bulkhash kmers count`` does); ``filtered(min_count)`` keeps the frequent k-mers:

    >>> frequent = kc.filtered(2)          # ACG and GCA, twice each
    >>> len(frequent), frequent.total(), frequent.frozen
    (2, 4, True)
    """

    def __init__(self, k: int, canonical: bool = False, *, count_dtype="uint32",
                 capacity: int | None = None):
        self._k = check_k(k)
        if not isinstance(canonical, (bool, np.bool_)):
            raise TypeError(f"canonical={canonical!r} must be True or False")
        self._canonical = bool(canonical)
        self._mask = KK.kmer_mask(self._k)
        # on the CPU: the k-mer kernels are Numba CPU kernels (a GPU path is future work)
        self.counter: Counter | None = Counter("uint64", count_dtype, capacity=capacity,
                                               device="cpu")
        self._count_dtype = self.counter.count_dtype
        self._items = None  # (codes, counts) of every k-mer, until the next add

    @classmethod
    def _frozen(cls, k: int, canonical: bool, count_dtype, codes, counts) -> "KmerCounts":
        """A frozen KmerCounts (no table) holding these pairs as they are."""
        frozen = cls(k, canonical, count_dtype=count_dtype, capacity=0)
        frozen.counter = None
        frozen._items = (codes, counts)
        return frozen

    @property
    def k(self) -> int:
        return self._k

    @property
    def canonical(self) -> bool:
        """Whether a k-mer and its reverse complement are counted as one (jellyfish ``-C``)."""
        return self._canonical

    @property
    def frozen(self) -> bool:
        """Whether the table is gone (``freeze``): outputs only, no ``add`` or ``get``."""
        return self.counter is None

    def __len__(self) -> int:
        """The number of distinct k-mers."""
        return len(self.counter) if self.counter is not None else int(self._items[0].size)

    def __repr__(self) -> str:
        return (f"KmerCounts(k={self._k}, canonical={self._canonical}, distinct={len(self)}, "
                f"total={self.total()})")

    # ------------------------------------------------------------------ counting
    def add(self, sequence) -> None:
        """Count the k-mers of ``sequence`` (str, bytes or uint8 letters)."""
        self._add_codes(self._encode(_as_text(sequence)))

    def _encode(self, text: np.ndarray) -> np.ndarray:
        """The codes (canonical when ``canonical``) of the k-mers of ``text`` (uint8 letters)."""
        return KK.extract_kmers(text, self._k, self._mask, self._canonical, KK.BASE_CODES)

    def _add_codes(self, codes: np.ndarray) -> None:
        self._table_needed("add k-mers")
        self._items = None
        result = self.counter.add(codes)
        if result.saturated:  # the one loss a Counter reports rather than avoids
            import warnings

            warnings.warn(f"{result.saturated} counts reached the maximum of "
                          f"{self.counter.count_dtype} and stay there; use "
                          "count_dtype='uint64'", RuntimeWarning, stacklevel=3)

    def add_files(self, files, progress: Callable[[int, int], None] | None = None) -> None:
        """Count the k-mers of FASTA/FASTQ files (plain or compressed; needs dnaio).

        ``progress(done, total)``, if given, is called after each block of sequence, in
        (estimated) bytes of decompressed text."""
        self._table_needed("add k-mers")
        paths = check_paths(files)
        sizes = [estimated_text_bytes(p) for p in paths]
        expected = sum(sizes)
        done = 0
        for path, size in zip(paths, sizes):
            for block, read in read_blocks(path, BLOCK_BASES):
                codes = self._encode(block)
                if done == 0 and read < expected:
                    self._reserve_for_input(codes, read / expected)
                self._add_codes(codes)
                if progress is not None:
                    progress(done + min(read, size), expected)
            done += size
            if progress is not None:
                progress(done, expected)

    def _reserve_for_input(self, first_codes: np.ndarray, fraction_read: float) -> None:
        """Size the table once, from the first block: the distinct k-mers it adds (a HyperLogLog
        estimate), scaled up to the whole input. Without this the counter grows by doubling,
        rehashing what it holds each time (measured on a 23 Mbp genome: 0.74 s of counting
        against 0.44 s when sized up front). A high guess costs memory only; a low one, the
        growth it would have done anyway."""
        new = self.counter._table._estimate_new(first_codes)
        self.counter.reserve(int(new / fraction_read * 1.02))

    # ------------------------------------------------------------------ queries
    def codes(self, kmers) -> np.ndarray:
        """k-mer strings (one, or a sequence of them, each of k letters ACGT) or codes as the
        codes this table stores: canonical when ``canonical``."""
        if isinstance(kmers, str) or (isinstance(kmers, (list, tuple)) and kmers
                                      and isinstance(kmers[0], str)):
            words = [kmers] if isinstance(kmers, str) else list(kmers)
            bad = next((w for w in words if not isinstance(w, str) or len(w) != self._k), None)
            if bad is not None:
                raise ValueError(f"kmers: {bad!r} is not a string of k={self._k} letters")
            codes = self._encode(_as_text("\n".join(words)))
            if codes.size != len(words):
                raise ValueError("kmers: every k-mer must be made of A, C, G, T only")
            return codes
        codes = np.asarray(kmers)
        if codes.dtype.kind not in "ui":
            raise TypeError(f"kmers must be strings or integer codes, not {codes.dtype}")
        if codes.size and (codes.min() < 0 or (self._k < 32 and codes.max() > self._mask)):
            raise ValueError(f"kmers: codes of {self._k}-mers lie in [0, 4**{self._k})")
        codes = codes.astype(np.uint64).reshape(-1)
        if self._canonical:
            codes = np.minimum(codes, reverse_complement(codes, self._k))
        return codes

    def get(self, kmers) -> np.ndarray:
        """The count of each k-mer (strings or codes), 0 where absent."""
        self._table_needed("look k-mers up")
        return self.counter.get(self.codes(kmers))

    def _table_needed(self, action: str) -> None:
        if self.counter is None:
            raise ValueError(f"cannot {action}: these counts are frozen (freeze() or filtered() "
                             "gave up the hash table); bulkhash.load a saved copy, or use "
                             "KmerCounts.from_items(k, canonical, *counts.items())")

    def freeze(self) -> None:
        """Keep every ``(k-mer, count)`` pair and give up the hash table.

        Afterwards the counts still give ``items``, ``total``, ``histogram``, every output and
        ``save``, but can neither ``add`` nor ``get`` k-mers. For a pipeline that only writes
        results: the pairs are taken in the table's own memory (``Counter.take_items``: the
        k-mers stay where they are, the counts come in the narrowest type), so on a 23 Mbp
        genome no new 255 MB is touched for them and the 280 MB the table no longer needs go
        to the outputs (the file's page cache above all). On a machine where fresh memory is
        slow to touch that is most of the time spent writing them."""
        if self.counter is None:
            return
        if self._items is None:
            self._items = self.counter.take_items(narrow_counts=True)
        self.counter = None

    def items(self, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, counts)`` of the k-mers counted at least ``min_count`` times, in table
        order (as ``jellyfish dump`` lists them: by hash, not sorted).

        The full arrays are kept until the next ``add``: the outputs (dump, histogram, file)
        each need them, and gathering 21M k-mers from the table costs as much as 40% of
        counting them."""
        codes, counts = self._pairs(min_count)
        return codes, counts.astype(self._count_dtype, copy=False)

    def _pairs(self, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``items``, with the counts in whatever unsigned type they are kept (the narrowest
        that holds them once frozen): what the outputs use."""
        if self._items is None:
            self._items = self.counter.items()
        codes, counts = self._items
        if min_count > 1:
            keep = counts >= min_count
            codes, counts = codes[keep], counts[keep]
        return codes, counts

    def filtered(self, min_count: int) -> "KmerCounts":
        """The k-mers counted at least ``min_count`` times, as frozen counts (see ``freeze``):
        what ``bulkhash kmers count -L`` saves, without building a second table."""
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)):
            raise TypeError(f"min_count={min_count!r} must be an integer")
        return self._frozen(self._k, self._canonical, self._count_dtype,
                            *self._pairs(int(min_count)))

    def total(self) -> int:
        """The number of k-mers counted (the sum of the counts)."""
        return int(self._pairs()[1].sum(dtype=np.uint64))

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, num_kmers)``: for each count that occurs, how many k-mers have it."""
        counts = self._pairs()[1]
        top = int(counts.max()) if counts.size else 0
        if top > max(1 << 20, counts.size):  # a tally would be mostly empty: sort instead
            values, num = np.unique(counts, return_counts=True)
            return values.astype(self._count_dtype), num.astype(np.int64)
        # one counting pass over the counts as they are: np.unique sorts a copy (0.24 s for 21M
        # counts, cold) and np.bincount converts them to int64 first (a fresh 170 MB)
        num = KK.tally(counts, top)
        values = np.flatnonzero(num)
        return values.astype(self._count_dtype), num[values].astype(np.int64)

    # ------------------------------------------------------------------ outputs
    def write_tsv(self, path, min_count: int = 1, separator: str = "\t") -> int:
        """Write ``<k-mer><TAB><count>`` lines (``jellyfish dump -c -t``); returns how many."""
        codes, counts = self._pairs(min_count)
        sep = np.uint8(ord(separator))
        with open(path, "wb") as out:
            for start in range(0, codes.size, _DUMP_CHUNK):
                stop = start + _DUMP_CHUNK
                out.write(KK.format_lines(codes[start:stop], counts[start:stop], self._k,
                                          KK.LETTERS, sep).data)
        return int(codes.size)

    def write_histo(self, path) -> None:
        """Write ``<count> <number of k-mers>`` lines, the format of ``jellyfish histo``."""
        values, num = self.histogram()
        with open(path, "w") as out:
            out.writelines(f"{v} {n}\n" for v, n in zip(values.tolist(), num.tolist()))

    def plot_histogram(self, path, title: str | None = None) -> None:
        """A log-log PNG of the histogram (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("plotting needs matplotlib: pip install \"bulkhash[bio]\"") from None
        values, num = self.histogram()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.loglog(values, num, ".-", lw=0.8, ms=3)
        ax.set_xlabel("count (times a k-mer occurs)")
        ax.set_ylabel("number of distinct k-mers")
        kind = "canonical " if self._canonical else ""
        ax.set_title(title or f"{kind}{self._k}-mers: {len(self):,} distinct, "
                     f"{self.total():,} total")
        ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the counts to ``path`` (bulkhash's file format; ``bulkhash.load`` opens it).

        The file holds the distinct k-mers and their counts in the narrowest unsigned type that
        holds the largest count: 8 + 1, 2 or 4 bytes a k-mer."""
        from ..io import save

        save(self, path)

    def _save_state(self):
        codes, counts = self._pairs()
        top = int(counts.max()) if counts.size else 0
        narrow = narrowest_unsigned(top)
        data = (codes, counts.astype(narrow, copy=False))
        params = dict(k=self._k, canonical=self._canonical, count_dtype=str(self._count_dtype))
        return params, dict(distinct=int(codes.size), stored_count_dtype=str(narrow)), data

    @classmethod
    def _load_state(cls, params: dict, meta: dict, data: np.ndarray, *, device=None):
        n = meta["distinct"]
        raw = data.view(np.uint8)
        return cls.from_items(params["k"], params["canonical"], raw[:8 * n].view(np.uint64),
                              raw[8 * n:].view(meta["stored_count_dtype"]),
                              count_dtype=params["count_dtype"])

    @classmethod
    def from_items(cls, k: int, canonical: bool, codes, counts, *,
                   count_dtype="uint32") -> "KmerCounts":
        """Counts from ``(codes, counts)`` pairs (as ``items`` or ``read_kmer_tsv`` give them);
        codes are canonicalised when ``canonical``, and equal codes add up.

        >>> from bulkhash.genomics import KmerCounts
        >>> KmerCounts.from_items(2, False, [1, 6, 1], [5, 1, 2]).get(["AC", "CG"])
        array([7, 1], dtype=uint32)
        """
        table = cls(k, canonical, count_dtype=count_dtype, capacity=len(codes))
        codes = table.codes(codes)
        counts = np.asarray(counts)
        if counts.shape != codes.shape:
            raise ValueError(f"counts has shape {counts.shape}, codes {codes.shape}: give one "
                             "count per code")
        if codes.size:
            table.counter.add(codes, counts.astype(table.counter.count_dtype))
        return table


def reverse_complement(codes: np.ndarray, k: int) -> np.ndarray:
    """The codes of the reverse complements of k-mer codes.

    >>> from bulkhash.genomics import decode_kmers, reverse_complement
    >>> decode_kmers(reverse_complement([16], 3), 3)   # CAA -> TTG
    array(['TTG'], dtype='<U3')
    """
    codes = np.asarray(codes, np.uint64)
    out = np.zeros_like(codes)
    rest = ~codes  # complement: A<->T, C<->G is 3 - x, the bitwise not of two bits
    for _ in range(k):
        out = (out << np.uint64(2)) | (rest & np.uint64(3))
        rest = rest >> np.uint64(2)
    return out


def read_kmer_tsv(path, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, counts)`` from a ``<k-mer><TAB or space><count>`` file: what ``write_tsv``
    writes, or ``jellyfish dump -c [-t]``. k-mers are taken as written (not canonicalised).

    Raises ``ValueError`` naming the first line that is not a k-mer of k letters ACGT, one
    separator and a count."""
    k = check_k(k)
    text = np.fromfile(path, np.uint8)
    lines = int(np.count_nonzero(text == ord("\n"))) + 1
    codes = np.empty(lines, np.uint64)
    counts = np.empty(lines, np.uint64)
    n, ok = KK.parse_lines(text, k, KK.BASE_CODES, codes, counts)
    if ok != -1:
        raise ValueError(f"{path}, line {n + 1}: expected a {k}-mer of A, C, G, T, a tab or "
                         "space, and a count")
    return codes[:n], counts[:n]


def count_kmers(files, k: int, canonical: bool = False, *, count_dtype="uint32",
                progress: Callable[[int, int], None] | None = None) -> KmerCounts:
    """Count the k-mers of FASTA/FASTQ files (plain or gzip/bzip2/xz/zstd; needs dnaio).

    Parameters
    ----------
    files : path or list of paths
    k : int, 1 to 32
    canonical : bool
        Count a k-mer and its reverse complement as one (``jellyfish count -C``).
    count_dtype : unsigned dtype
        The counts' type; a count that would pass its maximum stays there, with a warning.
    progress : callable ``(bytes_done, bytes_total)``, optional

    Returns a ``KmerCounts``. Windows holding a letter other than ACGT (either case) are
    skipped, and no k-mer spans two records.
    """
    counts = KmerCounts(k, canonical, count_dtype=count_dtype)
    counts.add_files(files, progress)
    return counts


def default_output_names(prefix: str | os.PathLike) -> dict[str, Path]:
    """The files ``bulkhash kmers count -o PREFIX`` writes."""
    prefix = str(prefix)
    return dict(tsv=Path(prefix + ".tsv"), binary=Path(prefix + ".bhk"),
                histo=Path(prefix + ".histo"), png=Path(prefix + ".png"))
