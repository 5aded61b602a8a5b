"""Numba kernels for k-mers: sequence text -> 2-bit codes, and codes -> text.

Encoding
--------
A k-mer of k <= 32 bases is one ``uint64``: two bits per base, ``A=0 C=1 G=2 T=3``, the first
base in the highest bits used. That order makes numeric order equal lexicographic order, which
is what lets the canonical form of a k-mer be simply ``min(kmer, reverse_complement(kmer))``, the
convention of jellyfish ``-C`` and KMC. Lower-case ``acgt`` are the same bases (soft-masked
genomes); every other byte (``N``, IUPAC codes, the separators between records) breaks the
sequence: a window holding one is skipped, as jellyfish and KMC skip it.

Rolling
-------
Each window's code is the previous one shifted by one base, so a scan costs a shift, an or and a
mask per base; the reverse complement rolls the other way (shift right, complement enters at the
top). A scan carries ``run``, the number of valid bases just read, and emits a k-mer when
``run >= k``.

Parallel split
--------------
The text is cut into blocks of window *end* positions; a block's scan starts ``k - 1`` bases
before its first end so it needs nothing from its neighbour. Each block is scanned twice: once to
count its k-mers, then, after a prefix sum gives every block its place in the output, to write
them. Scanning is a few instructions per base, far cheaper than the table insert that follows,
so counting twice costs less than compacting a sparse output would.
Blocks are fixed-size (64 Ki bases), many more than threads, so Numba's scheduler balances them
and the kernels need no thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._text_kernels import decimal_digits, write_decimal

#: byte -> base code (0-3), or INVALID for anything that is not A, C, G, T in either case.
INVALID = np.uint8(4)
BASE_CODES = np.full(256, INVALID, np.uint8)
for _code, _letters in enumerate(("Aa", "Cc", "Gg", "Tt")):
    for _letter in _letters:
        BASE_CODES[ord(_letter)] = _code
#: base code -> upper-case letter
LETTERS = np.frombuffer(b"ACGT", np.uint8).copy()

MAX_K = 32
_BLOCK_BASES = 1 << 16  # window ends per parallel block


def kmer_mask(k: int) -> np.uint64:
    """The low ``2k`` bits set (all 64 for k = 32, where a shift by 64 would be undefined)."""
    return np.uint64((1 << (2 * k)) - 1)


@njit(cache=True, nogil=True)
def _scan_block(seq, first_end, stop, k, mask, canonical, codes, out, at, write):
    """Count (``write`` False) or write to ``out[at:]`` the k-mers whose last base lies in
    ``[first_end, stop)``; returns how many there are."""
    top = np.uint64(2 * (k - 1))
    three = np.uint64(3)
    two = np.uint64(2)
    fwd = np.uint64(0)
    rev = np.uint64(0)
    run = 0
    n = 0
    for i in range(max(0, first_end - k + 1), stop):
        c = codes[seq[i]]
        if c == INVALID:
            run = 0
            continue
        base = np.uint64(c)
        fwd = ((fwd << two) | base) & mask
        rev = (rev >> two) | ((three - base) << top)
        run += 1
        if run >= k and i >= first_end:
            if write:
                out[at + n] = min(fwd, rev) if canonical else fwd
            n += 1
    return n


@njit(parallel=True, cache=True, nogil=True)
def extract_kmers(seq, k, mask, canonical, codes):
    """Every valid k-mer of the text ``seq`` (uint8), in order, as uint64 codes."""
    n_blocks = max(1, (seq.size + _BLOCK_BASES - 1) // _BLOCK_BASES)
    counts = np.zeros(n_blocks + 1, np.int64)
    unused = np.empty(0, np.uint64)
    for b in prange(n_blocks):
        stop = min(seq.size, (b + 1) * _BLOCK_BASES)
        counts[b + 1] = _scan_block(seq, b * _BLOCK_BASES, stop, k, mask, canonical, codes,
                                    unused, 0, False)
    offsets = np.cumsum(counts)
    out = np.empty(offsets[-1], np.uint64)
    for b in prange(n_blocks):
        stop = min(seq.size, (b + 1) * _BLOCK_BASES)
        _scan_block(seq, b * _BLOCK_BASES, stop, k, mask, canonical, codes, out, offsets[b],
                    True)
    return out


@njit(inline="always", cache=True, nogil=True)
def _spell(code, k, letters, text, at):
    """Write the k letters of ``code`` to ``text[at:at + k]``."""
    for j in range(k - 1, -1, -1):  # the last base sits in the lowest bits
        text[at + j] = letters[code & np.uint64(3)]
        code >>= np.uint64(2)


@njit(parallel=True, cache=True, nogil=True)
def spell_kmers(kmers, k, letters):
    """The letters of every k-mer, as a ``(n, k)`` uint8 array (one row per k-mer)."""
    text = np.empty((kmers.size, k), np.uint8)
    flat = text.reshape(-1)
    for i in prange(kmers.size):
        _spell(kmers[i], k, letters, flat, i * k)
    return text


@njit(cache=True, nogil=True)
def tally(values, top):
    """``out[v]`` = how many of ``values`` (non-negative integers, none above ``top``) equal
    ``v``: ``np.bincount`` without its conversion of the input to int64."""
    out = np.zeros(top + 1, np.int64)
    for v in values:
        out[v] += 1
    return out


@njit(parallel=True, cache=True, nogil=True)
def format_lines(kmers, counts, k, letters, separator):
    """The text ``"<k-mer><separator><count>\\n"`` of every pair, as one uint8 array."""
    n = kmers.size
    ends = np.empty(n + 1, np.int64)
    ends[0] = 0
    for i in prange(n):
        ends[i + 1] = k + 2 + decimal_digits(counts[i])
    ends = np.cumsum(ends)
    text = np.empty(ends[-1], np.uint8)
    for i in prange(n):
        at = ends[i]
        _spell(kmers[i], k, letters, text, at)
        text[at + k] = separator
        write_decimal(counts[i], text, ends[i + 1] - 1)
        text[ends[i + 1] - 1] = np.uint8(ord("\n"))
    return text


@njit(cache=True, nogil=True)
def parse_lines(text, k, codes, out_kmers, out_counts):
    """Parse ``"<k-mer><tab or space><count>\\n"`` lines (a ``jellyfish dump -c`` file) into
    ``out_kmers``/``out_counts``; returns ``(pairs, -1)``, or ``(line, 0)`` for the first bad
    line (0-based). The outputs must have room for one pair per newline."""
    n = 0
    at = 0
    size = text.size
    while at < size:
        if text[at] == np.uint8(10) and at + 1 == size:  # nothing after a final newline
            break
        code = np.uint64(0)
        for j in range(k):
            c = codes[text[at + j]] if at + j < size else INVALID
            if c == INVALID:
                return n, 0
            code = (code << np.uint64(2)) | np.uint64(c)
        at += k
        if at >= size or (text[at] != np.uint8(9) and text[at] != np.uint8(32)):
            return n, 0
        at += 1
        count = np.uint64(0)
        digits = 0
        while at < size and np.uint8(48) <= text[at] <= np.uint8(57):
            count = count * np.uint64(10) + np.uint64(text[at] - np.uint8(48))
            digits += 1
            at += 1
        if digits == 0 or digits > 19 or (at < size and text[at] != np.uint8(10)):
            return n, 0
        at += 1
        out_kmers[n] = code
        out_counts[n] = count
        n += 1
    return n, -1
