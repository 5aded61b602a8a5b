"""``bulkhash bench --protocol`` at a tiny size: the files it leaves, resuming, and its checks.

A ``--quick`` sweep capped at ``N`` keys, one round after the warm-up, runs once for the module
(every case family, both key types); the full sweep's own peers (dict, typed.Dict) run in the
smaller tests through ``--only``. Speed is never asserted: on a shared two-core machine the
timings of a few hundred keys are noise.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import bulkhash
from bulkhash import bench, cli
from bulkhash.bench import peers, protocol

N = 512
RECORD_FIELDS = {"key", "family", "structure", "operation", "types", "size", "load", "workload",
                 "bulkhash", "peers", "best_peer", "x_best_peer", "ceiling",
                 "fraction_of_ceiling", "notes", "parameters", "machine", "software",
                 "measured_at"}
TIMING_FIELDS = {"impl", "n", "median_s", "min_s", "max_s", "per_s", "seconds", "warmup_s"}


def read_results(out) -> dict:
    return json.loads((out / protocol.RESULTS_FILE).read_text())


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("protocol")
    outcome = protocol.run_protocol(str(out), quick=True, max_keys=N, reps=1)
    return out, outcome


def test_results_json_schema(quick_run):
    out, outcome = quick_run
    results = read_results(out)
    assert results["format"] == protocol.FORMAT and results["quick"] is True
    records = results["records"]
    _, points = protocol.configure(quick=True, max_keys=N, reps=1)
    expected = {p.record_key(op) for family, p in points for op in family.ops}
    assert set(records) == expected and len(outcome.measured) == len(points)
    assert {r["family"] for r in records.values()} == {f.name for f in protocol.FAMILIES}
    assert {r["types"] for r in records.values()} >= {"uint32/uint32", "uint64/uint64",
                                                       "uint32", "uint64"}
    for key, r in records.items():
        assert RECORD_FIELDS <= set(r), key
        assert r["key"] == key and r["size"] == N
        assert TIMING_FIELDS <= set(r["bulkhash"]) and r["bulkhash"]["impl"].startswith("bulkhash")
        assert len(r["bulkhash"]["seconds"]) == 1
        assert r["bulkhash"]["min_s"] <= r["bulkhash"]["median_s"] <= r["bulkhash"]["max_s"]
        assert r["bulkhash"]["per_s"] > 0 and r["ceiling"]["per_s"] > 0
        assert r["fraction_of_ceiling"] == pytest.approx(r["bulkhash"]["per_s"]
                                                         / r["ceiling"]["per_s"])
        assert r["ceiling"]["kind"] == protocol.ceiling_of(r["operation"])
        assert r["ceiling"]["footprint_bytes"] > 0 and r["parameters"]["reps"] == 1
        for impl, t in r["peers"].items():
            assert TIMING_FIELDS <= set(t) and t["speedup"] > 0, impl
        if r["peers"]:  # the best peer is the fastest: bulkhash's smallest speedup
            assert r["x_best_peer"] == min(t["speedup"] for t in r["peers"].values())
            assert r["peers"][r["best_peer"]]["speedup"] == r["x_best_peer"]


def test_peers_where_they_belong(quick_run):
    records = read_results(quick_run[0])["records"].values()

    def peers_of(family, op):
        return {peers_name for r in records if r["family"] == family and r["operation"] == op
                and r["peer_point"] for peers_name in r["peers"]}

    assert {"pandas khash (1 thread)", "pyarrow index_in"} <= peers_of("hashmap", "lookup 50% hits")
    assert any(p.startswith("polars join") for p in peers_of("hashmap", "lookup 0% hits"))
    assert peers_of("hashmap", "insert") == {"pandas khash (1 thread)"}  # dict, typed.Dict: full
    assert {"NumPy unique (1 thread)", "pandas value_counts (1 thread)"} <= peers_of("counter",
                                                                                    "add")
    assert "NumPy sort + searchsorted" in peers_of("multimap", "get")
    # peers run at the reference load only; the other points say so
    elsewhere = [r for r in records if r["family"] == "hashmap" and r["load"] != protocol.PEER_LOAD]
    assert elsewhere and all(not r["peers"] and r["notes"] for r in elsewhere)


def test_the_full_run_measures_only_the_headline_points_out_of_cache():
    settings = protocol.Settings(quick=False, reps=protocol.REPS)
    points = [p for _, p in protocol.plan(settings)]
    small = {(p.family, p.key_dtype, p.load, p.workload) for p in points
             if p.size <= max(protocol.SIZES)}
    for n in protocol.LARGE_SIZES:
        large = {(p.family, p.workload, p.load) for p in points if p.size == n}
        assert large == {("hashmap", "uniform", 0.9), ("counter", "Zipf s=0.99", 0.8)}, n
        assert {p.key_dtype for p in points if p.size == n} == {"uint32", "uint64"}
    # every family, load and workload at every small size
    assert len(small) == len({(p.family, p.key_dtype, p.load, p.workload)
                              for p in points if p.size == min(protocol.SIZES)})
    assert {p.family for p in points} == {f.name for f in protocol.FAMILIES}
    assert {p.load for p in points if p.family == "hashset"} == set(protocol.LOADS)
    assert [p.size for p in points] == sorted(p.size for p in points)  # smallest first
    # a cap folds the large sizes into it, with every point there
    capped = protocol.plan(protocol.Settings(quick=False, reps=1, max_keys=2**20))
    assert {p.size for _, p in capped} == {2**16, 2**18, 2**20}
    assert sum(p.size == 2**20 for _, p in capped) == sum(p.size == 2**20 for p in points)


def test_filter_and_fill_facts(quick_run):
    records = read_results(quick_run[0])["records"].values()
    for r in records:
        facts = r["bulkhash"]["facts"]
        if r["family"] in ("bloom", "cuckoo"):
            assert 0 <= facts["measured_fpr"] < 0.05 and facts["bits_per_key"] > 8
            assert facts["fpr_absent_keys"] == protocol.FPR_KEYS_PER_MAX_KEY * N
        if r["family"] == "hashmap-max-load":
            assert facts["keys_held"] == N and facts["stopped_by"] == "capacity"
            assert 0.95 < facts["load_reached"] <= 0.99


def test_report_and_plots(quick_run):
    out, _ = quick_run
    text = (out / "results.md").read_text()
    for structure in ("HashMap", "HashSet", "Counter", "MultiMap", "BucketListMap",
                      "BloomFilter", "CuckooFilter"):
        assert f"## {structure}" in text
        for kind in ("size", "ceiling"):
            png = out / f"{kind}-{structure.lower()}.png"
            assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    for structure in ("hashmap", "hashset"):
        assert (out / f"load-{structure}.png").stat().st_size > 1000
    assert "x best peer" in text and "% of ceiling" in text


def test_rerun_skips_everything(quick_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(quick_run[0], out)
    (out / "results.md").unlink()
    before = read_results(out)["records"]
    outcome = protocol.run_protocol(str(out), quick=True, max_keys=N, reps=1)
    assert outcome.measured == [] and len(outcome.skipped) == len(quick_run[1].measured)
    assert read_results(out)["records"] == before
    assert (out / "results.md").stat().st_size > 0  # redrawn from results.json


def test_resume_measures_only_what_is_missing(quick_run, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(quick_run[0], out)
    results = read_results(out)
    dropped = next(k for k in results["records"] if k.startswith("bloom | add | uint32"))
    del results["records"][dropped]
    protocol.save_results(str(out), results)
    outcome = protocol.run_protocol(str(out), quick=True, max_keys=N, reps=1, only="bloom")
    assert len(outcome.measured) == 1 and outcome.measured[0].startswith("bloom | uint32")
    assert dropped in read_results(out)["records"]


def test_restart_measures_again(tmp_path):
    out = tmp_path / "full"
    first = protocol.run_protocol(str(out), max_keys=N, reps=1, only="hashmap-mixed")
    assert len(first.measured) == 2  # both key types, with the full run's dict and typed.Dict
    record = next(iter(read_results(out)["records"].values()))
    assert {"Python dict (1 thread)", "numba typed.Dict (1 thread)"} <= set(record["peers"])
    assert protocol.run_protocol(str(out), max_keys=N, reps=1, only="hashmap-mixed").measured == []
    again = protocol.run_protocol(str(out), max_keys=N, reps=1, only="hashmap-mixed",
                                  restart=True)
    assert again.measured == first.measured
    assert len(read_results(out)["runs"]) == 1  # a fresh results.json


def wrong_get(self, keys, default=0):
    return np.zeros(len(keys), np.uint64)


@pytest.mark.parametrize("owner, only", [(bulkhash.HashMap, "hashmap-max-load"),
                                         (peers.PythonDictMap, "hashmap-mixed")])
def test_a_wrong_answer_stops_the_run(owner, only, monkeypatch, tmp_path):
    monkeypatch.setattr(owner, "get", wrong_get)
    with pytest.raises(RuntimeError, match="benchmark result check failed"):
        protocol.run_protocol(str(tmp_path), max_keys=N, reps=1, only=only)


def test_quick_and_full_do_not_share_a_folder(quick_run, capsys):
    assert protocol.run(str(quick_run[0]), quick=False, max_keys=N, reps=1) == 2
    assert "holds a --quick run" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the command
def test_cli_protocol(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["bench", "--protocol", "--quick", "--max-keys", str(N), "--reps", "1", "--only",
            "bloom", "--out", str(out)]
    assert cli.main(args) == 0
    assert {r["family"] for r in read_results(out)["records"].values()} == {"bloom"}
    assert "skip (in" not in capsys.readouterr().err
    assert cli.main(args) == 0
    assert "skip (in results.json)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--protocol", "--only", "nosuch"], "matches no case family"),
    (["--protocol", "--max-keys", "3"], "at least 64"),
])
def test_cli_protocol_bad_values(args, message, tmp_path, capsys):
    assert cli.main(["bench", *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--out", "x"], "goes with --protocol"),
    (["--restart"], "goes with --protocol"),
    (["--protocol", "--structure", "bloom"], "leave out --structure"),
    (["--protocol", "--keys", "10"], "leave out --keys"),
    (["--protocol", "--device", "cuda"], "CPU only"),
])
def test_cli_protocol_bad_combinations(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["uint8", "uint32", "uint64"])
def test_distinct_of_sorted_is_numpys_unique(dtype):
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 5000):
        ordered = np.sort(rng.integers(0, 200, size=n).astype(dtype))
        distinct = bench.distinct_of_sorted(ordered)
        assert distinct.dtype == ordered.dtype
        np.testing.assert_array_equal(distinct, np.unique(ordered))


def test_unique_random_keys_redraws_collisions_until_all_are_distinct():
    # 250 distinct of 256 possible uint8 keys: the first draw collides many times over
    keys = bench.unique_random_keys(250, np.random.default_rng(3), np.uint8)
    assert keys.dtype == np.uint8 and len(set(keys.tolist())) == 250
    # random order, not sorted
    assert not np.all(keys[1:] >= keys[:-1])
