"""Read classification (bulkhash.genomics.ReadClassifier, ``bulkhash classify``).

The sketch and the scoring kernels are checked against plain-Python versions written here from
their definitions; the classifier as a whole on reads simulated in the test from genomes of
known origin (random genomes, a mutated strain of one, and phage lambda).
"""

from __future__ import annotations

import collections
import gzip

import numpy as np
import pytest

import bulkhash
from bulkhash.cli import main
from bulkhash.genomics import (ReadClassifier, SketchParams, Taxonomy, example_path,
                               read_records)
from bulkhash.genomics import _sketch_kernels as SK
from bulkhash.genomics._kmer_kernels import BASE_CODES
from bulkhash.genomics.classify import sketch_sequences, windows_of

pytest.importorskip("dnaio")

MASK64 = (1 << 64) - 1
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def fmix64(x: int) -> int:
    """MurmurHash3's 64-bit finaliser, from its published constants."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    x ^= x >> 33
    return x


def feature_hashes(text: str, k: int) -> set[int]:
    """The feature hash of every canonical k-mer of ``text`` without a non-ACGT letter."""
    hashes = set()
    for i in range(len(text) - k + 1):
        window = text[i:i + k].upper()
        if set(window) <= set("ACGT"):
            canonical = min(window, window.translate(COMPLEMENT)[::-1])
            hashes.add(fmix64(int(canonical.translate(str.maketrans("ACGT", "0123")), 4)) >> 32)
    return hashes


def reference_sketch(text: str, k: int, size: int, bound: int = 2**32 - 1) -> list[int]:
    return sorted(h for h in feature_hashes(text, k) if h <= bound)[:size]


def random_genome(rng, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), n))


def mutate(rng, genome: str, rate: float) -> str:
    letters = np.array(list(genome))
    hit = rng.random(letters.size) < rate
    letters[hit] = rng.choice(list("ACGT"), hit.sum())
    return "".join(letters)


def reads_from(rng, genome: str, n: int, length: int = 100, error: float = 0.005):
    starts = rng.integers(0, len(genome) - length, n)
    reads = [mutate(rng, genome[s:s + length], error) for s in starts]
    flip = rng.random(n) < 0.5  # half from the reverse strand
    return [r.translate(COMPLEMENT)[::-1] if f else r for r, f in zip(reads, flip)]


# ------------------------------------------------------------------ kernels


@pytest.mark.parametrize("k,size,bound", [(16, 16, 2**32 - 1), (5, 4, 2**32 - 1),
                                          (12, 40, 2**32 - 1), (16, 112, 2**30), (9, 8, 2**31)])
def test_sketches_match_the_reference(k, size, bound):
    rng = np.random.default_rng(k)
    texts = [random_genome(rng, n) for n in (k - 1, k, 60, 127, 300)]
    texts.append("ACGT" * 40)          # few distinct k-mers: a short sketch
    texts.append("ACGTN" * 20 + "acgtacgtacgtacgtacgtt")
    joined = "\n".join(texts)
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    stops = starts + np.array([len(t) for t in texts])
    features, counts = SK.sketch_windows(np.frombuffer(joined.encode(), np.uint8), starts,
                                         stops, k, BASE_CODES, size, np.uint32(bound), 2)
    for row, text in enumerate(texts):
        expected = reference_sketch(text, k, size, bound)
        assert features[row, :counts[row]].tolist() == expected


def reference_best_hits(locations, span) -> dict[int, int]:
    """Per target: the most hits in ``span`` consecutive windows, counted window by window."""
    by_target = collections.defaultdict(list)
    for loc in locations:
        by_target[loc >> 32].append(loc & 0xFFFFFFFF)
    return {target: max(sum(1 for w in windows if start <= w < start + span)
                        for start in windows)
            for target, windows in by_target.items()}


def test_best_targets_match_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        targets = rng.integers(0, 5, n).astype(np.uint64)
        windows = rng.integers(0, 12, n).astype(np.uint64)
        locations = np.sort((targets << np.uint64(32)) | windows)
        span = int(rng.integers(1, 5))
        candidates = int(rng.integers(1, 5))
        got_targets, got_hits = np.empty(candidates, np.int64), np.empty(candidates, np.int64)
        SK._best_targets(locations, span, got_targets, got_hits)
        best = reference_best_hits(locations.tolist(), span)
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:candidates]
        ranked += [(-1, 0)] * (candidates - len(ranked))
        assert list(zip(got_targets.tolist(), got_hits.tolist())) == ranked


@pytest.mark.parametrize("phase", [0, 37, 100])
def test_fraction_sampling_picks_kmers_whatever_the_window_phase(phase):
    """A sequence's features under ``fraction`` sampling are exactly its k-mers' hashes below
    the bound, however it is cut into windows: a stretch that two genomes share gives both the
    same features. (``window`` sampling keeps a number per window, so the phase matters.)"""
    rng = np.random.default_rng(phase)
    text = random_genome(rng, phase) + random_genome(np.random.default_rng(9), 3000)
    for sampling in ("window", "fraction"):
        p = SketchParams(sampling=sampling)
        _, _, _, features, _, valid = sketch_sequences([text], p)
        kept = set(features[valid].tolist())
        shared = {h for h in feature_hashes(text[phase:], p.k) if h <= p.hash_bound}
        if sampling == "fraction":
            assert shared <= kept and features[valid].size == len(kept)  # each k-mer once
            assert kept == {h for h in feature_hashes(text, p.k) if h <= p.hash_bound}
            assert len(kept) == pytest.approx(p.sketch_size * len(text) / p.stride, rel=0.2)
        else:
            assert not shared <= kept  # most of the stretch's hashes are in no sketch


def test_windows_cover_every_kmer_once_per_stride():
    p = SketchParams(k=16, window=127, stride=112)
    lengths = np.array([15, 16, 127, 128, 239, 240, 1000])
    offsets = np.cumsum(lengths + 1) - lengths - 1
    starts, stops, owner, index = windows_of(lengths, offsets, p)
    for seq, (length, offset) in enumerate(zip(lengths, offsets)):
        mine = [(s - offset, e - offset) for s, e, o in zip(starts, stops, owner) if o == seq]
        if length < p.k:
            assert mine == []
            continue
        assert mine[0][0] == 0 and mine[-1][1] == length
        covered = set()
        for s, e in mine:
            assert e - s <= p.window
            covered |= set(range(s, e - p.k + 1))
        assert covered == set(range(length - p.k + 1))  # every k-mer is in some window
    assert index.tolist() == [i for o in range(lengths.size)
                              for i in range((owner == o).sum())]


@pytest.mark.parametrize("bad,message", [
    (dict(k=17), "k=17 must be from 1 to 16"),
    (dict(k=0), "k=0 must be a positive integer"),
    (dict(window=10), "window=10 must be at least k=16"),
    (dict(stride=113), "stride=113 must be at most window - k \\+ 1 = 112"),
    (dict(sketch_size=True), "sketch_size=True must be a positive integer"),
    (dict(sampling="minimizer"), "sampling='minimizer' must be one of \\('window', 'fraction'\\)"),
    (dict(max_locations=2**24), "max_locations=16777216 must be at most 16777215"),
])
def test_bad_sketch_params(bad, message):
    with pytest.raises(ValueError, match=message):
        SketchParams(**bad).check()


# ------------------------------------------------------------------ taxonomy


def test_taxonomy_tree_lca_and_dmp(tmp_path):
    tsv = tmp_path / "taxonomy.tsv"
    tsv.write_text("file\tspecies_taxid\tspecies\tstrain\textra\n"
                   "a.fa\t100\tAlpha\ta1\tx\nb.fa\t200\tBeta\tb1\tx\nc.fa\t100\tAlpha\ta2\tx\n")
    t = Taxonomy.from_tsv(tsv)
    assert t.taxids.tolist() == [1, 100, 100001, 200, 200001, 100002]
    assert [r.path for r in t.references] == [tmp_path / f for f in ("a.fa", "b.fa", "c.fa")]
    a1, b1, a2 = (r.taxon for r in t.references)
    assert t.name_of(t.lca(a1, a2)) == "Alpha" and t.lca(a1, b1) == 0 and t.lca(a1, a1) == a1
    assert t.ancestor_at([a1, b1, 1, 0], "species").tolist() == [1, 3, 1, -1]
    t.to_dmp(tmp_path / "dmp")
    nodes = [line.split("\t|\t") for line in (tmp_path / "dmp/nodes.dmp").read_text().splitlines()]
    assert [(n[0], n[1], n[2]) for n in nodes][:3] == [("1", "1", "no rank"),
                                                       ("100", "1", "species"),
                                                       ("100001", "100", "strain")]
    back = Taxonomy.from_json(t.to_json())
    assert back.taxids.tolist() == t.taxids.tolist() and back.names == t.names


@pytest.mark.parametrize("body,message", [
    ("file\tspecies\tstrain\na.fa\tAlpha\ta1\n", "lacks the column\\(s\\) species_taxid"),
    ("file\tspecies_taxid\tspecies\tstrain\na.fa\tten\tAlpha\ta1\n", "is not an integer"),
    ("file\tspecies_taxid\tspecies\tstrain\na.fa\t100\tAlpha\ta1\nb.fa\t100\tBeta\tb1\n",
     "species_taxid 100 is 'Alpha' above, 'Beta' here"),
    ("file\tspecies_taxid\tspecies\tstrain\n", "lists no reference file"),
])
def test_bad_taxonomies(tmp_path, body, message):
    (tmp_path / "t.tsv").write_text(body)
    with pytest.raises(ValueError, match=message):
        Taxonomy.from_tsv(tmp_path / "t.tsv")


# ------------------------------------------------------------------ the classifier


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Four strains of three species: alpha (two strains, 3% apart), beta, and lambda."""
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(42)
    alpha = random_genome(rng, 60_000)
    genomes = {"alpha1.fa.gz": [alpha[:35_000], alpha[35_000:]],  # two records
               "alpha2.fa.gz": [mutate(rng, alpha, 0.03)],
               "beta.fa.gz": [random_genome(rng, 50_000)]}
    for name, records in genomes.items():
        with gzip.open(folder / name, "wt") as f:
            for i, seq in enumerate(records):
                f.write(f">{name}.{i} test\n" + "\n".join(
                    seq[j:j + 70] for j in range(0, len(seq), 70)) + "\n")
    lam = folder / "lambda.fa.gz"
    lam.write_bytes(example_path("lambda_virus.fa.gz").read_bytes())
    (folder / "taxonomy.tsv").write_text(
        "file\tspecies_taxid\tspecies\tstrain\n"
        "alpha1.fa.gz\t100\tAlpha\talpha one\nalpha2.fa.gz\t100\tAlpha\talpha two\n"
        "beta.fa.gz\t200\tBeta\tbeta\nlambda.fa.gz\t700\tLambda\tlambda\n")
    lambda_genome = "".join(s for _, s, _ in read_records(lam))
    genomes = {k: "".join(v) for k, v in genomes.items()} | {"lambda.fa.gz": lambda_genome}
    return folder, genomes


def species_of(result: bulkhash.genomics.Classification) -> list[int]:
    t = result.taxonomy
    rows = t.ancestor_at(np.maximum(result.taxa, 0), "species")
    return [int(t.taxids[r]) if taxon >= 0 and r >= 0 else 0
            for r, taxon in zip(rows, result.taxa)]


def test_reads_of_known_origin_are_classified_to_their_species(references):
    folder, genomes = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    held_out = folder / "alpha2.fa.gz"
    rc = ReadClassifier.build(taxonomy, [r.path for r in taxonomy.references
                                         if r.path != held_out])
    assert len(rc.target_names) == 4  # alpha1's two records, beta, lambda
    rng = np.random.default_rng(1)
    # (the held-out strain differs from the indexed one at ~2.3% of bases: a 16-mer survives
    # with probability ~0.69, so fewer of its reads reach 5 hits)
    cases = [("alpha1.fa.gz", 100, 0.9), ("alpha2.fa.gz", 100, 0.8), ("beta.fa.gz", 200, 0.9),
             ("lambda.fa.gz", 700, 0.9)]
    for name, species, share in cases:
        reads = reads_from(rng, genomes[name], 300)
        result = rc.classify([f"{name}.{i}" for i in range(len(reads))], reads)
        got = collections.Counter(species_of(result))
        assert got[species] >= share * len(reads), (name, got)
        assert sum(n for s, n in got.items() if s not in (0, species)) <= 3, (name, got)
    noise = [random_genome(rng, 100) for _ in range(300)]
    assert rc.classify([str(i) for i in range(300)], noise).fraction_classified() <= 0.01


def test_strains_resolve_and_close_calls_go_to_the_lca(references):
    folder, genomes = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    rc = ReadClassifier.build(taxonomy)
    rng = np.random.default_rng(2)
    reads = reads_from(rng, genomes["alpha1.fa.gz"], 300, error=0.0)
    result = rc.classify([str(i) for i in range(300)], reads)
    alpha1_row = taxonomy.references[0].taxon
    ranks = collections.Counter(taxonomy.rank_of(r) for r in result.taxa if r >= 0)
    assert set(result.taxa.tolist()) <= {alpha1_row, taxonomy.row_of(100)}
    assert ranks["strain"] >= 100 and ranks["species"] >= 1  # 3% apart: some reads tie
    strict = ReadClassifier.build(taxonomy, diff_fraction=0.0)  # every runner-up counts
    assert (strict.classify([str(i) for i in range(300)], reads).taxa ==
            taxonomy.row_of(100)).mean() > (result.taxa == taxonomy.row_of(100)).mean()


def reference_classification(rc: ReadClassifier, read: str) -> tuple[int, int]:
    """(taxon row or -1, best hits) of one read, from MetaCache's rule written out in Python:
    the read's window sketches (``reference_sketch``), their locations from the public
    ``MultiMap.get``, the best range of each target counted window by window, and the lowest
    common ancestor of the close ones among the best ``rc.candidates``."""
    p = rc.params
    features = []
    starts, stops, _, _ = windows_of(np.array([len(read)]), np.array([0]), p)
    for start, stop in zip(starts.tolist(), stops.tolist()):
        features += reference_sketch(read[start:stop], p.k, p.features_per_window,
                                     p.hash_bound)
    if not features:
        return -1, 0
    _, locations = rc.index.get(np.array(features, np.uint32))
    best = reference_best_hits(locations.tolist(), 2 + len(read) // p.stride)
    if not best:
        return -1, 0
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:rc.candidates]
    t1, h1 = ranked[0]
    if h1 < rc.hits_min:
        return -1, h1
    taxon = rc.target_taxa[t1]
    threshold = (h1 - rc.hits_min) * rc.diff_fraction if h1 > rc.hits_min else 0.0
    for t, h in ranked[1:]:
        if h > threshold:
            taxon = rc.taxonomy.lca(taxon, rc.target_taxa[t])
    return taxon, h1


@pytest.mark.parametrize("sampling,candidates", [("window", 2), ("fraction", 3)])
def test_queries_match_a_python_scoring_of_the_same_index(references, sampling, candidates):
    folder, genomes = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    rc = ReadClassifier.build(taxonomy, params=SketchParams(sampling=sampling),
                              candidates=candidates)
    rng = np.random.default_rng(4)
    reads = (reads_from(rng, genomes["alpha1.fa.gz"], 40) + reads_from(rng, genomes[
        "alpha2.fa.gz"], 40, length=300) + reads_from(rng, genomes["lambda.fa.gz"], 40, 150)
        + [random_genome(rng, 90) for _ in range(10)] + ["ACGTN" * 30, "ACG"])
    result = rc.classify([str(i) for i in range(len(reads))], reads)
    expected = [reference_classification(rc, read) for read in reads]
    assert result.hits.tolist() == [h for _, h in expected]
    assert result.taxa.tolist() == [t for t, _ in expected]
    assert (result.taxa >= 0).sum() >= 100


def test_report_and_tsv_agree_with_the_per_read_results(references, tmp_path):
    folder, genomes = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    rc = ReadClassifier.build(taxonomy)
    rng = np.random.default_rng(3)
    reads = (reads_from(rng, genomes["beta.fa.gz"], 50) + reads_from(rng, genomes[
        "lambda.fa.gz"], 30) + [random_genome(rng, 100) for _ in range(20)])
    ids = [f"r{i}" for i in range(len(reads))]
    result = rc.classify(ids, reads)
    result.write_tsv(tmp_path / "out.tsv")
    rows = [line.split("\t") for line in (tmp_path / "out.tsv").read_text().splitlines()[1:]]
    expected = [[read_id, "0", "unclassified", str(hits), "-"] if row < 0 else
                [read_id, str(taxonomy.taxids[row]), taxonomy.rank_of(row), str(hits),
                 taxonomy.names[row]]
                for read_id, row, hits in zip(ids, result.taxa.tolist(), result.hits.tolist())]
    assert rows == expected
    assert [int(r[1]) for r in rows] == result.taxids().tolist()
    direct = collections.Counter(int(r[1]) for r in rows)
    result.write_report(tmp_path / "out.report")
    report = [line.split("\t") for line in (tmp_path / "out.report").read_text().splitlines()]
    by_taxid = {int(r[4]): r for r in report}
    assert int(by_taxid[0][1]) == direct[0]  # unclassified
    for taxid, fields in by_taxid.items():
        if taxid:
            assert int(fields[2]) == direct[taxid]
            clade = sum(n for t, n in direct.items() if t and (
                t == taxid or taxid == 1 or t // 1000 == taxid))
            assert int(fields[1]) == clade
            assert float(fields[0]) == pytest.approx(100 * clade / len(reads), abs=0.006)
    assert by_taxid[200][3] == "S" and by_taxid[1][3] == "R" and by_taxid[200001][3] == "S1"
    assert by_taxid[200001][5] == "    beta"  # indented two spaces a level


def same_locations(a: ReadClassifier, b: ReadClassifier) -> None:
    """Both indexes give every feature the same locations, in the same order."""
    features = np.unique(np.concatenate([a.index.items()[0], b.index.items()[0]]))
    for got, want in zip(a.index.get(features), b.index.get(features)):
        np.testing.assert_array_equal(got, want)


def test_references_added_after_a_load_and_indexes_saved_as_a_multimap(references, tmp_path):
    folder, genomes = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    refs = taxonomy.references
    whole = ReadClassifier.build(taxonomy)
    ReadClassifier.build(taxonomy, [r.path for r in refs[:2]]).save(tmp_path / "part.bhc")
    grown = bulkhash.load(tmp_path / "part.bhc", mmap=True)
    for ref in refs[2:]:  # the MultiMap is rebuilt from the loaded index, then condensed again
        grown.add_reference(ref.path, ref.taxon)
    same_locations(grown, whole)
    assert grown.target_names == whole.target_names
    reads = reads_from(np.random.default_rng(6), genomes["beta.fa.gz"], 30)
    ids = [str(i) for i in range(len(reads))]
    np.testing.assert_array_equal(grown.classify(ids, reads).taxa, whole.classify(ids, reads).taxa)

    # a file as bulkhash wrote it before the LocationIndex: the MultiMap's arrays verbatim
    multimap = whole.index.to_multimap(whole.params.max_locations)
    geometry, slots, side = multimap._table.snapshot()
    params, meta, _ = whole._save_state()
    del meta["location_index"]
    meta.update(index_params=multimap._params(), geometry=geometry)
    parts = [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in (slots, side)]
    bulkhash.io._write(tmp_path / "old.bhc", dict(
        cls="ReadClassifier", params=params, meta=meta, dtype="uint8",
        shape=[sum(p.size for p in parts)]), parts)
    old = bulkhash.load(tmp_path / "old.bhc")
    same_locations(old, whole)
    np.testing.assert_array_equal(old.classify(ids, reads).taxa, whole.classify(ids, reads).taxa)


def test_save_load_and_the_commands(references, tmp_path, capsys):
    folder, genomes = references
    index = tmp_path / "index.bhc"
    assert main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"),
                 "-o", str(index)]) == 0
    assert "indexed 5 sequences of 4 strains" in capsys.readouterr().out
    rc = bulkhash.load(index)
    assert isinstance(rc, ReadClassifier) and len(rc.target_names) == 5
    fresh = ReadClassifier.build(Taxonomy.from_tsv(folder / "taxonomy.tsv"))
    features = np.unique(fresh.index.items()[0])
    for got, want in zip(rc.index.get(features), fresh.index.get(features)):
        np.testing.assert_array_equal(got, want)  # the same locations, in the same order
    mapped = bulkhash.load(index, mmap=True)  # the index's arrays mapped, not read
    assert len(mapped.index) == len(fresh.index) and mapped.index.num_keys == features.size
    rng = np.random.default_rng(4)
    reads = reads_from(rng, genomes["beta.fa.gz"], 40)
    fastq = tmp_path / "reads.fq"
    fastq.write_text("".join(f"@q{i} x\n{r}\n+\n{'I' * len(r)}\n" for i, r in enumerate(reads)))
    expected = fresh.classify_files([fastq])
    np.testing.assert_array_equal(rc.classify_files([fastq]).taxa, expected.taxa)
    np.testing.assert_array_equal(mapped.classify_files([fastq]).taxa, expected.taxa)
    assert main(["classify", "query", str(index), str(fastq), "-o", str(tmp_path / "q")]) == 0
    assert "40 reads" in capsys.readouterr().out
    lines = (tmp_path / "q.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[1]) for line in lines] == expected.taxids().tolist()
    assert (tmp_path / "q.report").read_text().startswith("100.00\t40\t0\tR\t1\troot")

    denser = tmp_path / "denser.bhc"
    assert main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "-o",
                 str(denser), "--sketch-size", "32", "--window", "100", "--stride", "80"]) == 0
    rc32 = bulkhash.load(denser)
    assert rc32.params == SketchParams(sketch_size=32, window=100, stride=80)
    assert len(rc32.index) > 2 * len(rc.index)  # twice the features a window, more windows
    want = ReadClassifier.build(Taxonomy.from_tsv(folder / "taxonomy.tsv"), params=rc32.params)
    np.testing.assert_array_equal(rc32.classify_files([fastq]).taxa,
                                  want.classify_files([fastq]).taxa)

    sampled = tmp_path / "fraction.bhc"
    assert main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "-o",
                 str(sampled), "--sampling", "fraction"]) == 0
    fraction = bulkhash.load(sampled)
    assert fraction.params == SketchParams(sampling="fraction")
    want = ReadClassifier.build(Taxonomy.from_tsv(folder / "taxonomy.tsv"),
                                params=fraction.params, hits_min=3, candidates=3)
    assert main(["classify", "query", str(sampled), str(fastq), "-o", str(tmp_path / "f"),
                 "--hits-min", "3", "--candidates", "3"]) == 0
    lines = (tmp_path / "f.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[1]) for line in lines] == \
        want.classify_files([fastq]).taxids().tolist()
    want.save(tmp_path / "kept.bhc")
    kept = bulkhash.load(tmp_path / "kept.bhc")
    assert (kept.hits_min, kept.candidates, kept.params) == (3, 3, fraction.params)


def test_query_refuses_a_corrupted_index_before_reading_it(references, tmp_path, capsys):
    folder, _ = references
    index = tmp_path / "i.bhc"
    main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "-o", str(index)])
    raw = bytearray(index.read_bytes())
    raw[-100] ^= 0x5A  # a byte of the locations: only the data checksum can tell
    index.write_bytes(bytes(raw))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "query", str(index), str(example_path()), "-o", str(tmp_path / "q")])
    assert exit_info.value.code == 2
    assert "is corrupted: the table data fails its checksum" in capsys.readouterr().err
    assert not list(tmp_path.glob("q.*"))


def test_the_commands_refuse_bad_input(references, tmp_path, capsys):
    folder, _ = references
    kmers = tmp_path / "k.bhk"
    bulkhash.genomics.count_kmers(example_path(), 5).save(kmers)
    cases = [
        (["classify", "query", str(kmers), str(example_path())], "holds a KmerCounts, not a "
         "classifier index"),
        (["classify", "query", str(tmp_path / "none.bhc"), str(example_path())], "none.bhc"),
        (["classify", "build", "--taxonomy", str(tmp_path / "no.tsv"), "-o", "x"],
         "no.tsv: no such file"),
        (["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), str(kmers), "-o",
          str(tmp_path / "x")], "are not in the taxonomy"),
        (["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "--stride", "120",
          "-o", str(tmp_path / "x")], "stride=120 must be at most window - k + 1 = 112"),
        (["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "--sketch-size",
          "0", "-o", str(tmp_path / "x")], "sketch_size=0 must be a positive integer"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    index = tmp_path / "i.bhc"
    main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "-o", str(index)])
    with pytest.raises(SystemExit):
        main(["classify", "query", str(index), str(example_path()), "--hits-min", "0"])
    assert "hits_min=0 must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", "query", str(index), str(example_path()), "--candidates", "1"])
    assert "candidates=1 must be an integer from 2 to 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", "build", "--taxonomy", str(folder / "taxonomy.tsv"), "--sampling",
              "all", "-o", str(tmp_path / "x")])
    assert "invalid choice: 'all'" in capsys.readouterr().err


def test_classify_checks_its_arguments(references):
    folder, _ = references
    taxonomy = Taxonomy.from_tsv(folder / "taxonomy.tsv")
    with pytest.raises(TypeError, match="taxonomy must be a Taxonomy"):
        ReadClassifier("taxonomy.tsv")
    with pytest.raises(ValueError, match="diff_fraction=2 must be a number from 0 to 1"):
        ReadClassifier(taxonomy, diff_fraction=2)
    with pytest.raises(ValueError, match="candidates=17 must be an integer from 2 to 16"):
        ReadClassifier(taxonomy, candidates=17)
    rc = ReadClassifier(taxonomy)
    with pytest.raises(ValueError, match="give one id per read"):
        rc.classify(["a"], [])
    empty = rc.classify([], [])
    assert len(empty) == 0 and empty.fraction_classified() == 0.0
    short = rc.classify(["s"], ["ACGT"])  # shorter than k: no window, unclassified
    assert short.taxa.tolist() == [-1]
    for bad in (["a\tb"], ["a", "b\nc"], [7]):
        with pytest.raises(ValueError, match="is not a string without tabs and newlines"):
            rc.classify(bad, ["ACGT"] * len(bad))


def test_the_tsv_holds_any_id_and_no_read(references, tmp_path):
    folder, _ = references
    rc = ReadClassifier(Taxonomy.from_tsv(folder / "taxonomy.tsv"))
    ids = ["", "read \u00e9 1", "x" * 300]  # empty, non-ASCII (two bytes in UTF-8), long
    rc.classify(ids, ["ACGT", "ACGT", "ACGT"]).write_tsv(tmp_path / "odd.tsv")
    lines = (tmp_path / "odd.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[1:] == [f"{i}\t0\tunclassified\t0\t-" for i in ids] + [""]
    rc.classify([], []).write_tsv(tmp_path / "none.tsv")
    assert (tmp_path / "none.tsv").read_text() == "#read_id\ttaxid\trank\thits\tname\n"
