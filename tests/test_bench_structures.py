"""``bulkhash bench --structure multimap|bloom|cuckoo`` at tiny sizes: rows, columns, memory.

What runs here is the benchmarks' code on a few thousand keys, one round: that every row the
report needs is there, with positive rates and a plausible memory per key, that a missing peer
is a note and not a crash, and that the command runs end to end. Speed is never asserted.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from bulkhash import cli
from bulkhash.bench import bloom as bench_bloom
from bulkhash.bench import cuckoo as bench_cuckoo
from bulkhash.bench import multimap as bench_multimap

N = 20_000
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


# ------------------------------------------------------------------------------- multimap
MULTIMAP_COLUMNS = {"op", "impl", "pairs", "values_per_key", "keys", "median_s", "min_s", "max_s",
                    "m_keys_per_s", "m_pairs_per_s", "x_numpy", "nbytes", "bytes_per_pair",
                    "bytes_per_key"}


@pytest.fixture(scope="module")
def multimap_info():
    return bench_multimap.measure(pairs=[N], values_per_key=[1, 4], reps=1)


def test_multimap_rows(multimap_info):
    rows = multimap_info["rows"]
    impls = {r["impl"] for r in rows}
    assert {"bulkhash MultiMap (B=1, load 0.5)", "bulkhash MultiMap (B=1, load 0.8)",
            "bulkhash MultiMap (B=6, load 0.5)", "bulkhash BucketListMap",
            "NumPy sort + searchsorted"} <= impls
    for per_key in (1, 4):
        for op in ("insert", "get"):
            assert any(r["op"] == op and r["values_per_key"] == per_key for r in rows)
    for r in rows:
        assert MULTIMAP_COLUMNS <= set(r), r["impl"]
        assert r["pairs"] == N and r["keys"] == N // r["values_per_key"]
        assert r["m_keys_per_s"] > 0 and r["m_pairs_per_s"] > 0 and r["x_numpy"] > 0
        # at least the 16 bytes of the pair, and not absurd (a 64-byte row per 4 pairs is 16+)
        assert 16 <= r["bytes_per_pair"] < 200, (r["impl"], r["bytes_per_pair"])
        assert r["bytes_per_key"] == pytest.approx(r["bytes_per_pair"] * r["values_per_key"])
        if r["impl"].startswith("NumPy"):
            assert r["bytes_per_pair"] == 16 and r["x_numpy"] == 1
        if r["impl"] == "bulkhash MultiMap (B=1, load 0.5)":  # 16-byte slots at load <= 0.5
            assert 32 <= r["bytes_per_pair"] <= 64


def test_multimap_pandas_rows(multimap_info):
    pytest.importorskip("pandas")
    pandas_rows = [r for r in multimap_info["rows"] if r["impl"].startswith("pandas")]
    assert len(pandas_rows) == 4  # insert and get at 1 and 4 values per key
    assert all(r["bytes_per_key"] > 0 for r in pandas_rows)
    assert multimap_info["notes"] == []


def test_multimap_report(multimap_info):
    text = bench_multimap.report(multimap_info)
    assert text.startswith("# bulkhash bench --structure multimap")
    for column in ("bytes/pair", "bytes/key", "x NumPy", "M keys/s"):
        assert column in text
    assert "get:" in text and "insert:" in text


def test_multimap_without_pandas(monkeypatch):
    monkeypatch.setattr(bench_multimap, "pd", None)
    info = bench_multimap.measure(pairs=[2_000], values_per_key=[2], reps=1)
    assert not any(r["impl"].startswith("pandas") for r in info["rows"])
    assert info["notes"] == [bench_multimap.PANDAS_NOTE]
    assert bench_multimap.PANDAS_NOTE in bench_multimap.report(info)


# ------------------------------------------------------------------------------- bloom
BLOOM_OPS = ("add", "contains_present", "contains_absent")


@pytest.fixture(scope="module")
def bloom_info():
    return bench_bloom.measure(sizes=[N], fprs=[0.01], reps=1)


def _check_bloom_row(r):
    assert {"n", "fpr_target", "impl", "measured_fpr", "bits_per_key", *BLOOM_OPS} <= set(r)
    assert r["n"] == N
    for op in BLOOM_OPS:
        assert r[op]["per_s"] > 0 and r[op]["n"] == N
    # the optimum at fpr 0.01 is 9.6 bits per key; blocked filters take a little more
    assert 8 <= r["bits_per_key"] <= 12, (r["impl"], r["bits_per_key"])
    assert r["measured_fpr"] < 0.03


def test_bloom_bulkhash_row(bloom_info):
    rows = [r for r in bloom_info["rows"] if r["impl"].startswith("bulkhash BloomFilter")]
    assert len(rows) == 1
    _check_bloom_row(rows[0])


def test_bloom_rbloom_row(bloom_info):
    pytest.importorskip("rbloom")
    rows = [r for r in bloom_info["rows"] if r["impl"].startswith("rbloom")]
    assert len(rows) == 1
    _check_bloom_row(rows[0])
    text = bench_bloom.report(bloom_info)
    assert text.startswith("# bulkhash bench --structure bloom")
    assert "bits/key" in text and "(1.0x)" in text  # rbloom's own ratio


def test_bloom_without_rbloom(monkeypatch):
    monkeypatch.setattr(bench_bloom, "_rbloom", lambda: None)
    info = bench_bloom.measure(sizes=[2_000], fprs=[0.01], reps=1)
    assert [r["impl"].split(" (")[0] for r in info["rows"]] == ["bulkhash BloomFilter"]
    assert info["notes"] == [bench_bloom.RBLOOM_NOTE]
    text = bench_bloom.report(info)
    assert "(-)" in text and bench_bloom.RBLOOM_NOTE in text


# ------------------------------------------------------------------------------- cuckoo
CUCKOO_RATES = ("add", "hits", "misses", "erase")


@pytest.fixture(scope="module")
def cuckoo_info():
    return bench_cuckoo.measure(sizes=[N], reps=1, peer_keys=5_000)


def test_cuckoo_bulkhash_rows(cuckoo_info):
    rows = [r for r in cuckoo_info["rows"] if r["library"] == "bulkhash"]
    assert [r["bits"] for r in rows] == [16, 32]  # fpr 0.001's width, and pyprobables' 32
    for r in rows:
        assert {"keys", "bits", "measured", "expected", "load", "bits_per_key",
                *CUCKOO_RATES} <= set(r)
        assert r["keys"] == N and all(r[op] > 0 for op in CUCKOO_RATES)
        assert 0.8 < r["load"] <= 0.98
        # the fingerprint over the load reached, plus a little slack
        assert r["bits"] <= r["bits_per_key"] <= 1.3 * r["bits"], r["bits_per_key"]
        assert r["measured"] < 0.01


def test_cuckoo_pyprobables_row(cuckoo_info):
    pytest.importorskip("probables")
    rows = [r for r in cuckoo_info["rows"] if r["library"].startswith("pyprobables")]
    assert len(rows) == 1
    r = rows[0]
    assert r["keys"] == 5_000 and all(r[op] > 0 for op in CUCKOO_RATES)
    assert r["bits_per_key"] > r["bits"]  # 32-bit fingerprints in Python objects
    text = bench_cuckoo.report(cuckoo_info)
    assert text.startswith("# bulkhash bench --structure cuckoo")
    assert "bits/key" in text and "pyprobables is pure Python" in text


def test_cuckoo_without_pyprobables(monkeypatch):
    monkeypatch.setitem(sys.modules, "probables", None)  # import probables: ImportError
    info = bench_cuckoo.measure(sizes=[2_000], reps=1, peer_keys=1_000)
    assert {r["library"] for r in info["rows"]} == {"bulkhash"}
    assert "pyprobables is not installed" in bench_cuckoo.report(info)


# ------------------------------------------------------------------------------- the command
def test_cli_bloom_end_to_end(tmp_path, capsys):
    out = tmp_path / "bloom.json"
    status = cli.main(["bench", "--structure", "bloom", "--keys", str(N), "--reps", "1",
                       "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert text.startswith("# bulkhash bench --structure bloom")
    assert "bits/key" in text and f"{N:,}" in text
    info = json.loads(out.read_text())
    assert {r["n"] for r in info["rows"]} == {N}
    assert {r["fpr_target"] for r in info["rows"]} == set(bench_bloom.FPRS)


@pytest.mark.parametrize("structure", ["multimap", "cuckoo"])
def test_cli_other_structures(structure, capsys):
    args = ["bench", "--structure", structure, "--keys", "4000", "--reps", "1"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# bulkhash bench --structure {structure}")
    assert "bits/key" in text or "bytes/key" in text


@pytest.mark.parametrize("structure", ["multimap", "bloom", "all"])
def test_cli_cuda_refused_where_there_is_none(structure, capsys):
    assert cli.main(["bench", "--structure", structure, "--device", "cuda"]) == 2
    assert "only hashmap and cuckoo" in capsys.readouterr().err


def test_cli_cuckoo_cuda_refused_under_the_simulator(monkeypatch, capsys):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert cli.main(["bench", "--structure", "cuckoo", "--device", "cuda"]) == 2
    assert "simulator" in capsys.readouterr().err


def test_cli_json_paths():
    assert cli.json_path_for("out.json", "bloom", suffix=True) == "out-bloom.json"
    assert cli.json_path_for("d/out.json", "hashmap", suffix=True) == "d/out-hashmap.json"
    assert cli.json_path_for("out.json", "bloom", suffix=False) == "out.json"
    assert cli.json_path_for(None, "bloom", suffix=True) is None


def test_cli_default_is_hashmap(monkeypatch):
    import bulkhash.bench

    seen = {}
    monkeypatch.setattr(bulkhash.bench, "run", lambda **kw: seen.update(kw) or 0)
    assert cli.main(["bench", "--quick", "--keys", "10"]) == 0
    assert seen == dict(quick=True, keys=10, reps=None, json_path=None, device="cpu")


@pytest.mark.parametrize("name", ["multimap", "bloom", "cuckoo"])
def test_scripts_are_the_command(name):
    namespace = runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="not_main")
    assert namespace["main"] is sys.modules[f"bulkhash.bench.{name}"].main
    assert f"bulkhash bench --structure {name}" in namespace["__doc__"]
