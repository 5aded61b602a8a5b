"""A small taxonomy: root -> species -> strain, read from a TSV of reference files.

The TSV (the layout of the project's ``taxonomy.tsv``) has a header and one row per reference
file, with at least the columns ``file`` (relative to the TSV's folder), ``species_taxid``,
``species`` and ``strain``. Each file is one strain. Strains get taxids of their own,
``species_taxid * 1000 + i`` for the i-th strain of a species in the file's order, so the tree
can be written as NCBI-style ``nodes.dmp``/``names.dmp`` (what ``kraken2-build`` reads) and read
back unchanged.

Taxa live in arrays (``taxids``, ``parents`` as row numbers, ``ranks``, ``names``), so the lowest
common ancestor of two taxa is a short walk up ``parents`` that compiled code can do per read.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

#: ranks, highest first; a row's rank is an index into this tuple
RANKS = ("root", "species", "strain")
#: rank codes of ``kraken2 --report`` (S1: one level below species)
REPORT_CODES = {"root": "R", "species": "S", "strain": "S1"}
ROOT_TAXID = 1
_REQUIRED = ("file", "species_taxid", "species", "strain")


@dataclass(frozen=True)
class Reference:
    """A reference file of the taxonomy: its path and its strain's row."""

    path: Path
    taxon: int  # row of the strain in the taxonomy arrays


class Taxonomy:
    """Taxa as arrays: ``taxids``, ``parents`` (row of the parent; the root is its own),
    ``ranks`` (index into ``RANKS``), ``names``; and the reference files, one strain each.

    >>> t = Taxonomy.from_rows([("a.fa", 100, "E. coli", "K-12"), ("b.fa", 100, "E. coli", "DH1"),
    ...                         ("c.fa", 200, "K. pneumoniae", "1084")])
    >>> [int(t.taxids[r.taxon]) for r in t.references]
    [100001, 100002, 200001]
    >>> t.name_of(t.lca(t.row_of(100001), t.row_of(100002))), t.lca(1, 5) == 0
    ('E. coli', True)
    """

    def __init__(self, taxids, parents, ranks, names, references=()):
        self.taxids = np.asarray(taxids, np.int64)
        self.parents = np.asarray(parents, np.int64)
        self.ranks = np.asarray(ranks, np.int64)
        self.names = list(names)
        self.references = list(references)
        self._rows = {int(t): i for i, t in enumerate(self.taxids)}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_rows(cls, rows, folder: Path = Path(".")) -> "Taxonomy":
        """From ``(file, species_taxid, species, strain)`` tuples (file relative to ``folder``)."""
        taxids, parents, ranks, names = [ROOT_TAXID], [0], [0], ["root"]
        species_row: dict[int, int] = {}
        strains_of: dict[int, int] = {}
        references = []
        for line, (file, species_taxid, species, strain) in enumerate(rows, start=2):
            try:
                species_taxid = int(species_taxid)
            except ValueError:
                raise ValueError(f"taxonomy line {line}: species_taxid {species_taxid!r} is not "
                                 "an integer") from None
            if not 1 < species_taxid < 2**31 // 1000:
                raise ValueError(f"taxonomy line {line}: species_taxid {species_taxid} must lie "
                                 f"between 2 and {2**31 // 1000 - 1}")
            if species_taxid not in species_row:
                species_row[species_taxid] = len(taxids)
                taxids.append(species_taxid)
                parents.append(0)
                ranks.append(RANKS.index("species"))
                names.append(species)
            elif names[species_row[species_taxid]] != species:
                raise ValueError(f"taxonomy line {line}: species_taxid {species_taxid} is "
                                 f"{names[species_row[species_taxid]]!r} above, {species!r} here")
            strains_of[species_taxid] = strains_of.get(species_taxid, 0) + 1
            if strains_of[species_taxid] >= 1000:
                raise ValueError(f"species {species_taxid} has more than 999 strains")
            references.append(Reference(Path(folder) / file, len(taxids)))
            taxids.append(species_taxid * 1000 + strains_of[species_taxid])
            parents.append(species_row[species_taxid])
            ranks.append(RANKS.index("strain"))
            names.append(strain)
        if not references:
            raise ValueError("the taxonomy lists no reference file")
        return cls(taxids, parents, ranks, names, references)

    @classmethod
    def from_tsv(cls, path: str | os.PathLike) -> "Taxonomy":
        """Read a ``taxonomy.tsv``: header, then a row per reference file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"taxonomy {path}: no such file")
        with open(path, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"taxonomy {path} lacks the column(s) {', '.join(missing)}: "
                                 f"its header must name {', '.join(_REQUIRED)} (tab-separated)")
            rows = [tuple(row[c] for c in _REQUIRED) for row in reader]
        return cls.from_rows(rows, path.parent)

    # ------------------------------------------------------------------ queries
    def row_of(self, taxid: int) -> int:
        try:
            return self._rows[int(taxid)]
        except KeyError:
            raise ValueError(f"taxid {taxid} is not in the taxonomy") from None

    def name_of(self, row: int) -> str:
        return self.names[row]

    def rank_of(self, row: int) -> str:
        return RANKS[self.ranks[row]]

    def lca(self, a: int, b: int) -> int:
        """The row of the lowest common ancestor of rows ``a`` and ``b``."""
        return int(lowest_common_ancestor(a, b, self.parents, self.ranks))

    def ancestor_at(self, rows: np.ndarray, rank: str) -> np.ndarray:
        """For each row, its ancestor (or itself) at ``rank``, or -1 where it sits higher."""
        rows = np.asarray(rows, np.int64)
        level = RANKS.index(rank)
        out = np.where(self.ranks[rows] >= level, rows, -1)
        for _ in range(len(RANKS)):
            deeper = (out >= 0) & (self.ranks[np.maximum(out, 0)] > level)
            out = np.where(deeper, self.parents[np.maximum(out, 0)], out)
        return out

    def to_dmp(self, folder: str | os.PathLike) -> None:
        """Write ``nodes.dmp`` and ``names.dmp`` (NCBI's layout, as ``kraken2-build`` reads)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "nodes.dmp", "w") as nodes, open(folder / "names.dmp", "w") as names:
            for row, taxid in enumerate(self.taxids.tolist()):
                rank = {"root": "no rank", "strain": "strain"}.get(self.rank_of(row), "species")
                # (readers split on "\t|\t", so the rank needs a field after it)
                nodes.write(f"{taxid}\t|\t{self.taxids[self.parents[row]]}\t|\t{rank}\t|\t\t|\n")
                names.write(f"{taxid}\t|\t{self.names[row]}\t|\t\t|\tscientific name\t|\n")

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        return dict(taxids=self.taxids.tolist(), parents=self.parents.tolist(),
                    ranks=self.ranks.tolist(), names=self.names,
                    references=[[str(r.path), r.taxon] for r in self.references])

    @classmethod
    def from_json(cls, state: dict) -> "Taxonomy":
        refs = [Reference(Path(p), t) for p, t in state["references"]]
        return cls(state["taxids"], state["parents"], state["ranks"], state["names"], refs)


@njit(cache=True, nogil=True)
def lowest_common_ancestor(a, b, parents, ranks):
    """Row of the lowest common ancestor of rows ``a`` and ``b``: step the deeper one (either,
    at equal depth) up until they meet. Compiled, so the classifier's kernel calls it per
    read."""
    while a != b:
        if ranks[a] >= ranks[b] and a != 0:
            a = parents[a]
        else:
            b = parents[b]
    return a
