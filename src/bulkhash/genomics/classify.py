"""Read classification, MetaCache's way, on bulkhash's ``MultiMap``.

Build: every reference sequence is cut into windows (127 bases, a new one every 112, so
neighbours share k - 1 bases and no k-mer is lost); each window's sketch (its 16 smallest
distinct canonical 16-mer hashes, or with ``sampling="fraction"`` every one up to a bound that
keeps 16 a window on average: ``_sketch_kernels``) is stored as ``feature -> location``
pairs, a location being ``target << 32 | window``. The MultiMap keeps at most 254 locations per
feature: a feature found in more windows than that says little about where a read comes from.
Once the references are in, the MultiMap's pairs are condensed into a ``LocationIndex`` (a
HashMap from each feature to its run of locations in one array), as MetaCache-GPU condenses its
build table into a query table: a lookup is then one probe and one run (``locations``).

Query: ``_sketch_kernels.classify_reads`` takes a batch of reads and the LocationIndex: each
read is sketched the same way, its features' locations are gathered from the index, and the
target with the most hits in a few adjacent windows wins if it has ``hits_min`` hits; the lowest
common ancestor of it and the other close ones among the best ``candidates`` (two by default) is
reported when there are any.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ..multimap import MultiMap
from ..refs import make_ref
from . import _sketch_kernels as SK
from . import _text_kernels as TK
from ._kmer_kernels import BASE_CODES
from .locations import MAX_RUN, LocationIndex
from .sequences import check_paths, dnaio_records, joined
from .taxonomy import REPORT_CODES, Taxonomy

#: reads classified per batch (one call of the query kernel each)
READ_BATCH = 1 << 16


#: the ways a window's features are chosen (``SketchParams.sampling``)
SAMPLINGS = ("window", "fraction")


@dataclass(frozen=True)
class SketchParams:
    """How sequences become features (MetaCache's defaults).

    ``sampling="window"`` keeps each window's ``sketch_size`` smallest feature hashes
    (MetaCache's); ``"fraction"`` keeps every hash up to ``hash_bound``, which a full window's
    hashes are under ``sketch_size`` times on average. The second chooses a k-mer by the k-mer
    alone, not by its window's other k-mers, so genomes that share a stretch share its
    features whatever their windows' phase (``_sketch_kernels``).

    >>> SketchParams(sampling="fraction").hash_bound / 2**32
    0.142857...
    """

    k: int = 16
    window: int = 127
    stride: int = 112
    sketch_size: int = 16
    max_locations: int = 254
    sampling: str = "window"

    @property
    def features_per_window(self) -> int:
        """The most features a window keeps: ``sketch_size``, or every k-mer of a full window
        for ``fraction`` sampling."""
        if self.sampling == "window":
            return self.sketch_size
        return self.window - self.k + 1

    @property
    def hash_bound(self) -> int:
        """The largest feature hash kept: all of them for ``window`` sampling, else the one
        that ``sketch_size`` of a full window's ``window - k + 1`` hashes are under."""
        top = 2**32 - 1
        if self.sampling == "window":
            return top
        return min(top, (self.sketch_size << 32) // (self.window - self.k + 1))

    def check(self) -> "SketchParams":
        for name in ("k", "window", "stride", "sketch_size", "max_locations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not 1 <= self.k <= 16:
            raise ValueError(f"k={self.k} must be from 1 to 16 (a feature hashes a 32-bit k-mer)")
        if not self.k <= self.window:
            raise ValueError(f"window={self.window} must be at least k={self.k}")
        if self.stride > self.window - self.k + 1:
            raise ValueError(f"stride={self.stride} must be at most window - k + 1 = "
                             f"{self.window - self.k + 1}, or k-mers between windows are lost")
        if self.max_locations > MAX_RUN:
            raise ValueError(f"max_locations={self.max_locations} must be at most {MAX_RUN}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling={self.sampling!r} must be one of {SAMPLINGS}")
        return self


def windows_of(lengths: np.ndarray, offsets: np.ndarray, params: SketchParams):
    """``(starts, stops, owner, index)`` of the windows of sequences with these ``lengths`` at
    ``offsets`` in one text: a sequence of L >= k bases has ``1 + ceil((L - window) / stride)``
    windows (one if shorter than a window), the last ending at the sequence's end."""
    lengths = np.asarray(lengths, np.int64)
    extra = np.maximum(lengths - params.window, 0)
    count = np.where(lengths >= params.k, 1 + -(-extra // params.stride), 0)
    owner = np.repeat(np.arange(lengths.size), count)
    first = np.cumsum(count) - count
    index = np.arange(owner.size) - first[owner]
    starts = offsets[owner] + index * params.stride
    stops = np.minimum(starts + params.window, offsets[owner] + lengths[owner])
    return starts, stops, owner, index


def _joined_text(sequences: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(text, offsets, lengths)``: the sequences joined a newline apart (``joined``), and each
    one's offset in the text and length."""
    lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
    offsets = np.cumsum(lengths + 1) - lengths - 1
    return joined(sequences), offsets, lengths


def sketch_sequences(sequences: list[str], params: SketchParams):
    """The windows of ``sequences`` and their sketches, the same for references and reads:
    ``(lengths, owner, window, features, counts, valid)`` -- each sequence's length, each
    window's sequence and index in it, its features (``features[w, :counts[w]]``) and the mask
    of those valid entries."""
    text, offsets, lengths = _joined_text(sequences)
    starts, stops, owner, window = windows_of(lengths, offsets, params)
    features, counts = SK.sketch_windows(text, starts, stops, params.k, BASE_CODES,
                                         params.features_per_window,
                                         np.uint32(params.hash_bound), numba.get_num_threads())
    valid = np.arange(features.shape[1]) < counts[:, None]
    return lengths, owner, window, features, counts, valid


def named_batches(paths, size: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
    """``(ids, sequences)`` of the records of the FASTA/FASTQ files ``paths``, ``size`` records
    at a time (all of them in one batch when ``size`` is None); an id is the first word of the
    record's name."""
    ids: list[str] = []
    sequences: list[str] = []
    for path in paths:
        for record in dnaio_records(Path(path)):  # (a loop per record, but 0.3 us a record)
            ids.append(record.id)
            sequences.append(record.sequence)
            if len(ids) == size:
                yield ids, sequences
                ids, sequences = [], []
    if ids:
        yield ids, sequences


class Classification:
    """Per-read results of ``ReadClassifier.classify``: ``read_ids``, ``taxa`` (rows of the
    taxonomy, -1 unclassified) and ``hits`` (of the best target)."""

    def __init__(self, taxonomy: Taxonomy, read_ids: list[str], taxa: np.ndarray,
                 hits: np.ndarray):
        self.taxonomy = taxonomy
        self.read_ids = read_ids
        self.taxa = taxa
        self.hits = hits

    def __len__(self) -> int:
        return len(self.read_ids)

    def taxids(self) -> np.ndarray:
        """Each read's taxid, 0 where unclassified."""
        return np.where(self.taxa >= 0, self.taxonomy.taxids[np.maximum(self.taxa, 0)], 0)

    def fraction_classified(self) -> float:
        return float(np.mean(self.taxa >= 0)) if len(self) else 0.0

    def write_tsv(self, path) -> None:
        """``read_id, taxid, rank, hits, name`` per read (taxid 0 and rank ``unclassified``
        where the read is not classified).

        Written by a kernel (``_text_kernels.format_labelled_numbers``): a line per read from
        Python took 0.3 s for 300k reads, as long as classifying them."""
        t = self.taxonomy
        heads = [b"\t0\tunclassified\t"] + [f"\t{taxid}\t{t.rank_of(row)}\t".encode()
                                            for row, taxid in enumerate(t.taxids.tolist())]
        tails = [b"\t-\n"] + [f"\t{name}\n".encode() for name in t.names]
        names = TK.split_lines("\n".join(self.read_ids).encode(), len(self.read_ids))
        lines = TK.format_labelled_numbers(*names, (self.taxa + 1).astype(np.int64),
                                           *TK.packed(heads), self.hits.astype(np.uint64),
                                           *TK.packed(tails))
        with open(path, "wb") as out:
            out.write(b"#read_id\ttaxid\trank\thits\tname\n")
            out.write(lines.data)

    def report_lines(self) -> list[str]:
        """The per-taxon abundance report, in the layout of ``kraken2 --report``: percent of
        reads in the clade, reads in the clade, reads assigned to the taxon itself, rank code,
        taxid, and the name indented two spaces per level."""
        t = self.taxonomy
        n = len(self)
        direct = np.bincount(self.taxa[self.taxa >= 0], minlength=t.taxids.size)
        clade = direct.copy()
        for row in np.argsort(-t.ranks, kind="stable"):  # deepest first: add into the parent
            if row != 0:
                clade[t.parents[row]] += clade[row]
        unclassified = n - int(direct.sum())
        lines = []

        def line(count, own, code, taxid, name, depth):
            percent = 100.0 * count / n if n else 0.0
            lines.append(f"{percent:6.2f}\t{count}\t{own}\t{code}\t{taxid}\t{'  ' * depth}{name}")

        if unclassified:
            line(unclassified, unclassified, "U", 0, "unclassified", 0)

        def visit(row, depth):
            line(int(clade[row]), int(direct[row]), REPORT_CODES[t.rank_of(row)],
                 int(t.taxids[row]), t.names[row], depth)
            children = [c for c in np.flatnonzero(t.parents == row) if c != row and clade[c]]
            for child in sorted(children, key=lambda c: (-clade[c], t.taxids[c])):
                visit(child, depth + 1)

        if clade[0]:
            visit(0, 0)
        return lines

    def write_report(self, path) -> None:
        with open(path, "w") as out:
            out.writelines(line + "\n" for line in self.report_lines())


class ReadClassifier:
    """A MetaCache-style classifier: reference windows' sketches in a ``MultiMap``, queried
    through the ``LocationIndex`` it condenses into (``index``).

    Parameters
    ----------
    taxonomy : Taxonomy
        The strains and species; ``build`` indexes its reference files.
    params : SketchParams
        How windows become features (MetaCache's defaults; ``sampling="fraction"`` tells close
        genomes apart better).
    hits_min : int
        A read with fewer hits in its best target is left unclassified (default 5).
    diff_fraction : float
        A candidate joins the lowest common ancestor when it has more than
        ``(best - hits_min) * diff_fraction`` hits (default 1.0, MetaCache's).
    candidates : int
        How many of the best targets may join it (2-16, default 2: the best two).

    The three thresholds apply to queries only; ``bulkhash classify query`` can set them per run.

    >>> from bulkhash.genomics import ReadClassifier, Taxonomy, example_path, read_records
    >>> tax = Taxonomy.from_rows([(example_path().name, 700, "Escherichia virus Lambda",
    ...                            "lambda")], example_path().parent)
    >>> rc = ReadClassifier.build(tax)
    >>> genome = "".join(s for _, s, _ in read_records(example_path()))
    >>> result = rc.classify(["r1", "r2"], [genome[1000:1100], "ACGT" * 25])
    >>> result.taxids().tolist(), bool(result.hits[0] > 5)
    ([700001, 0], True)
    """

    def __init__(self, taxonomy: Taxonomy, params: SketchParams = SketchParams(), *,
                 hits_min: int = 5, diff_fraction: float = 1.0, candidates: int = 2):
        if not isinstance(taxonomy, Taxonomy):
            raise TypeError(f"taxonomy must be a Taxonomy (Taxonomy.from_tsv(path)), not "
                            f"{type(taxonomy).__name__}")
        self.taxonomy = taxonomy
        self.params = params.check()
        self.hits_min, self.diff_fraction, self.candidates = check_thresholds(
            hits_min, diff_fraction, candidates)
        # exactly one of the two holds the index: the MultiMap while references come in, the
        # LocationIndex once a query (or ``compact``, or saving) needs it
        self._building: MultiMap | None = MultiMap(
            "uint32", "uint64", max_values_per_key=params.max_locations, device="cpu")
        self._index: LocationIndex | None = None
        self.target_names: list[str] = []
        self.target_taxa: list[int] = []
        self.target_lengths: list[int] = []
        self.locations_refused = 0  # (feature, location) pairs past max_locations

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, taxonomy: Taxonomy, files: Iterable[str | os.PathLike] | None = None,
              params: SketchParams = SketchParams(),
              progress: Callable[[int, int], None] | None = None, **thresholds
              ) -> "ReadClassifier":
        """Index the references of ``taxonomy`` (only those in ``files`` when given: leave
        strains out to test on them). ``progress(done, total)`` after each file."""
        rc = cls(taxonomy, params, **thresholds)
        refs = taxonomy.references
        if files is not None:
            wanted = {Path(f).resolve() for f in files}
            refs = [r for r in refs if r.path.resolve() in wanted]
            unknown = wanted - {r.path.resolve() for r in taxonomy.references}
            if unknown:
                raise ValueError(f"files {sorted(map(str, unknown))} are not in the taxonomy: "
                                 "list each reference file in its TSV")
        check_paths([r.path for r in refs])
        for done, ref in enumerate(refs, start=1):
            rc.add_reference(ref.path, ref.taxon)
            if progress is not None:
                progress(done, len(refs))
        rc.compact()
        return rc

    def compact(self) -> None:
        """Condense the references added so far into the query index (``build`` does it once
        the references are in; queries and ``save`` do it when references were added since).
        The MultiMap is then dropped: ``add_reference`` rebuilds it from the index."""
        if self._index is None:
            pairs = self._building.items()
            self._building = None  # (freed before the index is made: a lower peak of memory)
            self._index = LocationIndex.from_pairs(*pairs)

    @property
    def index(self) -> LocationIndex:
        """The query index: each feature's locations (``target << 32 | window``)."""
        self.compact()
        return self._index

    def _multimap(self) -> MultiMap:
        """The MultiMap references go into (rebuilt from the query index after ``compact``)."""
        if self._building is None:
            self._building = self._index.to_multimap(self.params.max_locations)
            self._index = None
        return self._building

    def add_reference(self, path: str | os.PathLike, taxon: int) -> None:
        """Index every sequence of the FASTA/FASTQ file ``path`` as a target of taxon row
        ``taxon`` (a strain of the taxonomy)."""
        names, sequences = next(named_batches([path]))  # (a file without records raises)
        lengths, owner, window, features, counts, valid = sketch_sequences(sequences,
                                                                           self.params)
        first_target = len(self.target_names)
        if first_target + len(names) >= 2**31:
            raise ValueError("an index holds at most 2**31 target sequences")
        locations = ((owner + first_target).astype(np.uint64) << np.uint64(32)) | window.astype(
            np.uint64)
        keys = features[valid]
        values = np.broadcast_to(locations[:, None], features.shape)[valid]
        result = self._multimap().insert(keys, values)
        self.locations_refused += result.max_values_reached
        self.target_names += names
        self.target_taxa += [int(taxon)] * len(names)
        self.target_lengths += lengths.tolist()

    # ------------------------------------------------------------------ querying
    def classify(self, read_ids: list[str], sequences: list[str]) -> Classification:
        """Classify reads given as strings."""
        if len(read_ids) != len(sequences):
            raise ValueError(f"read_ids has {len(read_ids)} entries, sequences "
                             f"{len(sequences)}: give one id per read")
        check_read_ids(read_ids)
        batches = (sequences[start:start + READ_BATCH]
                   for start in range(0, len(sequences), READ_BATCH))
        return self._classify_batches(list(read_ids), batches)

    def classify_files(self, files) -> Classification:
        """Classify the reads of FASTA/FASTQ files (plain or compressed).

        The reads are read and classified ``READ_BATCH`` at a time: only their ids are kept,
        never every sequence at once (1.5M reads as Python strings are some 300 MB)."""
        ids: list[str] = []  # (from dnaio: no whitespace in them, no check_read_ids)

        def batches():
            for batch_ids, sequences in named_batches(check_paths(files), READ_BATCH):
                ids.extend(batch_ids)
                yield sequences

        return self._classify_batches(ids, batches())

    def prepare(self) -> None:
        """Have the query kernel ready now: the first classification in a process waits for
        numba to load its machine code from the cache (0.12 s on the 2-core VM), and a caller
        may have other work to do meanwhile. ``classify`` and ``classify_files`` need not wait
        for it: they load the kernel themselves."""
        self._classify_batch([])

    def _classify_batches(self, ids: list[str], batches) -> Classification:
        """Classify each list of sequences ``batches`` yields; ``ids`` are the reads' ids (all
        of them once the batches are done)."""
        taxa, hits = [], []
        for sequences in batches:
            t, h = self._classify_batch(sequences)
            taxa.append(t)
            hits.append(h)
        empty = np.zeros(0, np.int64)
        return Classification(self.taxonomy, ids, np.concatenate(taxa) if taxa else empty,
                              np.concatenate(hits) if hits else empty)

    def _classify_batch(self, sequences: list[str]):
        p = self.params
        text, offsets, lengths = _joined_text(sequences)
        t = self.taxonomy
        index = self.index
        return SK.classify_reads(text, offsets, lengths, p.k, BASE_CODES,
                                 p.features_per_window, np.uint32(p.hash_bound), p.window,
                                 p.stride, make_ref(index.features), index.locations,
                                 np.asarray(self.target_taxa, np.int64),
                                 t.parents, t.ranks, self.hits_min, float(self.diff_fraction),
                                 self.candidates, numba.get_num_threads())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the index (``bulkhash.load`` opens it again)."""
        from ..io import save

        save(self, path)

    def _save_state(self):
        # the query index's arrays verbatim, not its pairs: loading then inserts nothing, and
        # ``bulkhash.load(path, mmap=True)`` maps the index without reading it
        geometry, arrays = self.index.snapshot()
        meta = dict(location_index=geometry, taxonomy=self.taxonomy.to_json(),
                    target_names=self.target_names, target_taxa=self.target_taxa,
                    target_lengths=self.target_lengths, locations_refused=self.locations_refused)
        params = dict(params=self.params.__dict__, hits_min=self.hits_min,
                      diff_fraction=self.diff_fraction, candidates=self.candidates)
        return params, meta, arrays

    @classmethod
    def _load_state(cls, params: dict, meta: dict, data: np.ndarray, *, device=None):
        rc = cls(Taxonomy.from_json(meta["taxonomy"]), SketchParams(**params["params"]),
                 hits_min=params["hits_min"], diff_fraction=params["diff_fraction"],
                 candidates=params.get("candidates", 2))  # (indexes saved before it: 2)
        raw = data.reshape(-1).view(np.uint8)
        if "location_index" in meta:
            rc._index = LocationIndex.adopt(meta["location_index"], raw)
            rc._building = None
        else:  # saved before the LocationIndex: the MultiMap's arrays
            geometry = meta["geometry"]
            rc._building = MultiMap(**dict(meta["index_params"], capacity=0), device="cpu")
            word = np.dtype(geometry["word"])
            split = int(np.prod(geometry["slots_shape"])) * word.itemsize
            rc._building._table.adopt(
                geometry, raw[:split].view(word).reshape(geometry["slots_shape"]),
                raw[split:].view(word).reshape(geometry["side_shape"]))
        rc.target_names = meta["target_names"]
        rc.target_taxa = meta["target_taxa"]
        rc.target_lengths = meta["target_lengths"]
        rc.locations_refused = meta["locations_refused"]
        return rc


def check_read_ids(read_ids) -> None:
    """Every id a string without tabs or newlines (a line of the per-read TSV each); checked on
    the joined text, with the offending id found only when there is one."""
    ids = list(read_ids)
    try:
        text = "\n".join(ids)
    except TypeError:  # an id that is not a string: found below
        text = "\t"
    if "\t" in text or text.count("\n") != max(len(ids) - 1, 0):
        bad = next(i for i in ids if not isinstance(i, str) or "\n" in i or "\t" in i)
        raise ValueError(f"read_ids: {bad!r} is not a string without tabs and newlines (each "
                         "id is a field of the per-read TSV)")


#: the most candidate targets a read's classification considers
MAX_CANDIDATES = 16


def check_thresholds(hits_min, diff_fraction, candidates=2) -> tuple[int, float, int]:
    """``(hits_min, diff_fraction, candidates)`` checked: a positive integer, a number from 0
    to 1, and an integer from 2 to ``MAX_CANDIDATES``."""
    if isinstance(hits_min, bool) or not isinstance(hits_min, (int, np.integer)) or hits_min < 1:
        raise ValueError(f"hits_min={hits_min!r} must be a positive integer")
    if not isinstance(diff_fraction, (int, float)) or not 0.0 <= diff_fraction <= 1.0:
        raise ValueError(f"diff_fraction={diff_fraction!r} must be a number from 0 to 1")
    if (isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer))
            or not 2 <= candidates <= MAX_CANDIDATES):
        raise ValueError(f"candidates={candidates!r} must be an integer from 2 to "
                         f"{MAX_CANDIDATES}")
    return int(hits_min), float(diff_fraction), int(candidates)
