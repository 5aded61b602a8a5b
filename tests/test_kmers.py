"""k-mer counting (bulkhash.genomics, ``bulkhash kmers count``) against plain-Python references.

The reference counts every window of every record with ``str`` slicing and ``int(..., 4)``, from
files read with ``gzip`` and a few lines of parsing here: nothing of bulkhash's encoding, dnaio's
parser or the Counter is shared with what it checks.
"""

from __future__ import annotations

import collections
import gzip
import itertools

import numpy as np
import pytest

import bulkhash
from bulkhash.cli import main
from bulkhash.genomics import (KmerCounts, SequenceFileError, count_kmers, decode_kmers,
                               encode_kmers, example_path, read_kmer_tsv, reverse_complement)
from bulkhash.genomics import _kmer_kernels as KK

pytest.importorskip("dnaio")

TO_DIGITS = str.maketrans("ACGT", "0123")
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def reference_kmers(sequence: str, k: int, canonical: bool) -> list[int]:
    """Every window of ``sequence`` made only of ACGT/acgt, as an int, in order."""
    sequence = sequence.upper()
    out = []
    for i in range(len(sequence) - k + 1):
        window = sequence[i:i + k]
        if set(window) <= set("ACGT"):
            if canonical:
                window = min(window, window.translate(COMPLEMENT)[::-1])
            out.append(int(window.translate(TO_DIGITS), 4))
    return out


def reference_records(path) -> list[str]:
    """The sequences of a FASTA or FASTQ file (gzip'd), parsed here line by line."""
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    if lines[0].startswith("@"):  # FASTQ: four lines a record
        return lines[1::4]
    records, current = [], []
    for line in lines:
        if line.startswith(">"):
            if current:
                records.append("".join(current))
            current = []
        else:
            current.append(line.strip())
    records.append("".join(current))
    return records


def reference_counts(paths, k: int, canonical: bool) -> collections.Counter:
    counts = collections.Counter()
    for path in paths:
        for record in reference_records(path):
            counts.update(reference_kmers(record, k, canonical))
    return counts


def random_text(rng, n: int, invalid_share: float = 0.01) -> str:
    letters = rng.choice(list("ACGTacgt"), n)
    bad = rng.random(n) < invalid_share
    letters[bad] = rng.choice(list("NnRY-*"), bad.sum())
    return "".join(letters)


# ------------------------------------------------------------------ encoding


@pytest.mark.parametrize("canonical", [False, True])
@pytest.mark.parametrize("k", [1, 2, 7, 16, 21, 31, 32])
def test_encode_kmers_matches_the_reference(k, canonical):
    rng = np.random.default_rng(k)
    text = random_text(rng, 3000, invalid_share=0.02)
    got = encode_kmers(text, k, canonical)
    assert got.dtype == np.uint64
    assert got.tolist() == reference_kmers(text, k, canonical)


@pytest.mark.parametrize("canonical", [False, True])
def test_encode_kmers_across_parallel_blocks(canonical):
    """A text of several kernel blocks (64 Ki bases each), with invalid letters and a run of
    N's straddling block edges: no window is lost or doubled at a seam."""
    rng = np.random.default_rng(7)
    text = list(random_text(rng, 3 * KK._BLOCK_BASES + 123, invalid_share=0.001))
    text[KK._BLOCK_BASES - 5:KK._BLOCK_BASES + 3] = "N" * 8
    text[2 * KK._BLOCK_BASES - 1] = "N"
    text = "".join(text)
    got = encode_kmers(text, 31, canonical)
    assert got.tolist() == reference_kmers(text, 31, canonical)


def test_encode_kmers_short_and_empty_texts():
    assert encode_kmers("", 5).size == 0
    assert encode_kmers("ACG", 5).size == 0
    assert encode_kmers(np.frombuffer(b"ACGTA", np.uint8), 5).tolist() == [
        int("01230", 4)]
    assert encode_kmers(b"NNNN", 1).size == 0


def test_decode_and_reverse_complement_round_trip():
    rng = np.random.default_rng(3)
    for k in (1, 5, 31, 32):
        words = ["".join(rng.choice(list("ACGT"), k)) for _ in range(50)]
        codes = np.array([int(w.translate(TO_DIGITS), 4) for w in words], np.uint64)
        assert decode_kmers(codes, k).tolist() == words
        flipped = decode_kmers(reverse_complement(codes, k), k).tolist()
        assert flipped == [w.translate(COMPLEMENT)[::-1] for w in words]


@pytest.mark.parametrize("k", [0, 33, -1, 2.0, True, "21", None])
def test_k_out_of_range_is_refused(k):
    with pytest.raises(ValueError, match="must be an integer from 1 to 32"):
        encode_kmers("ACGT", k)
    with pytest.raises(ValueError, match="must be an integer from 1 to 32"):
        KmerCounts(k)


def test_encode_kmers_refuses_other_inputs():
    with pytest.raises(TypeError, match="sequence must be a str, bytes or a 1-D uint8 array"):
        encode_kmers([1, 2, 3], 2)
    with pytest.raises(TypeError, match="sequence must be"):
        encode_kmers(np.zeros(4, np.int64), 2)


# ------------------------------------------------------------------ KmerCounts


@pytest.mark.parametrize("canonical", [False, True])
def test_counts_of_text_match_collections_counter(canonical):
    rng = np.random.default_rng(11)
    texts = [random_text(rng, n) for n in (500, 5000, 50_000)]
    texts.append("ACGT" * 3000)  # a repeat: high counts
    kc = KmerCounts(11, canonical)
    ref = collections.Counter()
    for text in texts:
        kc.add(text)
        ref.update(reference_kmers(text, 11, canonical))
    codes, counts = kc.items()
    assert dict(zip(codes.tolist(), counts.tolist())) == ref
    assert len(kc) == len(ref) and kc.total() == sum(ref.values())
    values, num = kc.histogram()
    assert dict(zip(values.tolist(), num.tolist())) == collections.Counter(ref.values())


def test_get_by_strings_and_codes():
    kc = KmerCounts(3, canonical=True)
    kc.add("ACGTTGCA")
    assert kc.get(["ACG", "CGT", "acg", "GGG"]).tolist() == [2, 2, 2, 0]
    assert kc.get("GCA").tolist() == [2]
    assert kc.get(np.array([int("012", 4)], np.uint64)).tolist() == [2]  # ACG
    assert kc.get([int("123", 4)]).tolist() == [2]  # CGT: canonicalised first
    with pytest.raises(ValueError, match="is not a string of k=3 letters"):
        kc.get(["ACGT"])
    with pytest.raises(ValueError, match="A, C, G, T only"):
        kc.get(["ANG"])
    with pytest.raises(ValueError, match=r"lie in \[0, 4\*\*3\)"):
        kc.get([64])
    with pytest.raises(TypeError, match="strings or integer codes"):
        kc.get([1.5])


def test_min_count_and_saturation():
    kc = KmerCounts(2, count_dtype="uint8")
    kc.add("AC" * 10)  # AC x10, CA x9
    codes, counts = kc.items(min_count=10)
    assert decode_kmers(codes, 2).tolist() == ["AC"] and counts.tolist() == [10]
    with pytest.warns(RuntimeWarning, match="reached the maximum of uint8"):
        kc.add("A" * 300)
    assert kc.get("AA").tolist() == [255]


def test_from_items_adds_equal_codes_and_checks_shapes():
    kc = KmerCounts.from_items(2, True, [int("AC".translate(TO_DIGITS), 4),
                                         int("GT".translate(TO_DIGITS), 4)], [3, 4])
    assert kc.get("AC").tolist() == [7]  # GT is AC's reverse complement
    with pytest.raises(ValueError, match="one count per code"):
        KmerCounts.from_items(2, False, [1, 2], [1])


def test_freeze_keeps_every_output_and_refuses_the_table_operations(tmp_path):
    rng = np.random.default_rng(5)
    text = random_text(rng, 20_000) + "ACGT" * 500
    ref = collections.Counter(reference_kmers(text, 7, True))
    kc = KmerCounts(7, canonical=True)
    kc.add(text)
    before = kc.histogram()
    kc.freeze()
    assert kc.frozen and kc.counter is None
    assert dict(zip(*(a.tolist() for a in kc.items()))) == ref
    assert len(kc) == len(ref) and kc.total() == sum(ref.values())
    assert all(np.array_equal(x, y) for x, y in zip(kc.histogram(), before))
    kc.save(tmp_path / "frozen.bhk")
    assert dict(zip(*(a.tolist() for a in bulkhash.load(tmp_path / "frozen.bhk").items()))) == ref
    for refused in (lambda: kc.add("ACGTACGT"), lambda: kc.get(["ACGTACG"]),
                    lambda: kc.add_files([example_path()])):
        with pytest.raises(ValueError, match="frozen"):
            refused()
    kc.freeze()  # a second freeze changes nothing
    assert len(kc) == len(ref)


def test_filtered_keeps_the_frequent_kmers_without_a_table(tmp_path):
    path = example_path("SRR059298_2000.fastq.gz")
    kc = count_kmers(path, 9)
    ref = reference_counts([path], 9, False)
    for min_count in (1, 2, 5):
        kept = kc.filtered(min_count)
        want = {code: n for code, n in ref.items() if n >= min_count}
        assert kept.frozen and not kc.frozen and (kept.k, kept.canonical) == (9, False)
        assert dict(zip(*(a.tolist() for a in kept.items()))) == want
        assert len(kept) == len(want) and kept.total() == sum(want.values())
    kept.save(tmp_path / "kept.bhk")
    back = bulkhash.load(tmp_path / "kept.bhk")
    assert dict(zip(*(a.tolist() for a in back.items()))) == want
    assert back.counter.count_dtype == np.uint32
    with pytest.raises(TypeError, match="min_count=2.5 must be an integer"):
        kc.filtered(2.5)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_tally_matches_bincount(dtype):
    values = np.random.default_rng(3).integers(0, 200, 10_000).astype(dtype)
    assert np.array_equal(KK.tally(values, 250), np.bincount(values, minlength=251))


def test_canonical_must_be_a_bool():
    with pytest.raises(TypeError, match="canonical='yes' must be True or False"):
        KmerCounts(3, canonical="yes")


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("k,canonical", [(21, True), (31, False), (5, True)])
def test_count_files_matches_the_reference(k, canonical):
    paths = [example_path("lambda_virus.fa.gz"), example_path("SRR059298_2000.fastq.gz")]
    kc = count_kmers(paths, k, canonical)
    ref = reference_counts(paths, k, canonical)
    codes, counts = kc.items()
    assert dict(zip(codes.tolist(), counts.tolist())) == ref
    assert (kc.k, kc.canonical) == (k, canonical)


def test_records_are_not_joined_and_plain_files_read(tmp_path):
    """k-mers never span two records: ACG|TAC has no CGT or GTA."""
    path = tmp_path / "two.fa"
    path.write_text(">a\nAC\nG\n>b\nTAC\n")
    kc = count_kmers(path, 3)
    assert sorted(decode_kmers(kc.items()[0], 3).tolist()) == ["ACG", "TAC"]


def test_a_small_block_size_splits_the_input_without_changing_counts(tmp_path, monkeypatch):
    from bulkhash.genomics import kmers

    monkeypatch.setattr(kmers, "BLOCK_BASES", 1000)
    path = example_path("lambda_virus.fa.gz")
    seen = []
    kc = count_kmers(path, 15, True, progress=lambda done, total: seen.append((done, total)))
    assert dict(zip(*(a.tolist() for a in kc.items()))) == reference_counts([path], 15, True)
    assert len(seen) >= 2 and seen[-1][0] == seen[-1][1]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))


def _truncated_gzip(tmp_path):
    data = example_path("lambda_virus.fa.gz").read_bytes()
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _file(name: str, data: bytes):
    def make(tmp_path):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name
    return make


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.fa", "no such file"),
    (lambda p: p, "is a directory"),
    (_file("empty.fa", b""), "is empty"),
    (_file("e.fa.gz", gzip.compress(b"")), "holds no FASTA or FASTQ record"),
    (_file("x.txt", b"hello\nworld\n"), "is not FASTA or FASTQ"),
    (_file("bad.fq", b"@r1\nACGT\n+\nII\n"), "is not valid FASTA/FASTQ"),
    (_truncated_gzip, "is truncated or corrupt"),
])
def test_bad_files_give_clear_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SequenceFileError, match=message):
        count_kmers(path, 5)
    with pytest.raises(ValueError, match="names no file"):
        count_kmers([], 5)
    with pytest.raises(TypeError, match="files must be a path or a list of paths"):
        count_kmers(5, 5)


# ------------------------------------------------------------------ outputs


def test_tsv_histo_and_binary_round_trip(tmp_path):
    kc = count_kmers(example_path("SRR059298_2000.fastq.gz"), 9, canonical=True)
    ref = reference_counts([example_path("SRR059298_2000.fastq.gz")], 9, True)
    assert kc.write_tsv(tmp_path / "k.tsv") == len(ref)
    lines = (tmp_path / "k.tsv").read_text().splitlines()
    parsed = {int(w.translate(TO_DIGITS), 4): int(c) for w, c in (x.split("\t") for x in lines)}
    assert parsed == ref
    codes, counts = read_kmer_tsv(tmp_path / "k.tsv", 9)
    assert dict(zip(codes.tolist(), counts.tolist())) == ref

    kc.write_histo(tmp_path / "k.histo")
    histo = dict(tuple(map(int, line.split())) for line in
                 (tmp_path / "k.histo").read_text().splitlines())
    assert histo == collections.Counter(ref.values())

    kc.save(tmp_path / "k.bhk")
    back = bulkhash.load(tmp_path / "k.bhk")
    assert isinstance(back, KmerCounts) and (back.k, back.canonical) == (9, True)
    assert dict(zip(*(a.tolist() for a in back.items()))) == ref


def test_read_kmer_tsv_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ACG\t3\nACG 4\nAXG\t1\n")
    with pytest.raises(ValueError, match="line 3: expected a 3-mer"):
        read_kmer_tsv(path, 3)
    path.write_text("ACG\t\n")
    with pytest.raises(ValueError, match="line 1"):
        read_kmer_tsv(path, 3)


def test_the_command_writes_every_output(tmp_path, capsys):
    prefix = tmp_path / "lambda"
    path = example_path("lambda_virus.fa.gz")
    assert main(["kmers", "count", "-k", "21", "-C", str(path), "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    ref = reference_counts([path], 21, True)
    assert f"{len(ref):,} distinct" in out and f"{sum(ref.values()):,} total" in out
    codes, counts = read_kmer_tsv(f"{prefix}.tsv", 21)
    assert dict(zip(codes.tolist(), counts.tolist())) == ref
    assert (tmp_path / "lambda.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(bulkhash.load(f"{prefix}.bhk")) == len(ref)
    assert (tmp_path / "lambda.histo").read_text().split() == ["1", str(len(ref))]


def test_the_command_min_count_filters_the_dump_not_the_histogram(tmp_path):
    prefix = tmp_path / "reads"
    path = example_path("SRR059298_2000.fastq.gz")
    assert main(["kmers", "count", "-k", "11", str(path), "-o", str(prefix), "-L", "3",
                 "--no-png"]) == 0
    ref = reference_counts([path], 11, False)
    kept = {code: n for code, n in ref.items() if n >= 3}
    codes, counts = read_kmer_tsv(f"{prefix}.tsv", 11)
    assert dict(zip(codes.tolist(), counts.tolist())) == kept
    assert len(bulkhash.load(f"{prefix}.bhk")) == len(kept)
    histo = (tmp_path / "reads.histo").read_text().split()
    assert sum(map(int, histo[1::2])) == len(ref)
    assert not (tmp_path / "reads.png").exists()


@pytest.mark.parametrize("args,message", [
    (["-k", "0"], "-k: k=0 must be an integer from 1 to 32"),
    (["-k", "33"], "k=33 must be an integer from 1 to 32"),
    (["-k", "5", "-L", "0"], "--min-count 0: give a count of at least 1"),
])
def test_the_command_refuses_bad_options(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["kmers", "count", str(example_path()), "-o", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_names_a_bad_file_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a sequence\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["kmers", "count", "-k", "5", str(example_path()), str(bad),
              "-o", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert f"{bad} is not FASTA or FASTQ" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
