"""``bulkhash bench --device cuda`` without a GPU: what can be checked here, and nothing more.

* Under Numba's CUDA simulator the command runs a smoke pass (a few hundred keys, every GPU case
  once after its warm-up, each result checked), labels its output as not a GPU measurement and
  prints no throughput; without the warp-intrinsic shim it refuses, saying why.
* With neither a GPU nor the simulator it fails with a message that names what is missing.
* The GPU-only kernels (the ceiling's and the CuPy peer's) compile to PTX for sm_80, offline.
* The GPU report renders, from synthetic timings (its numbers need a GPU to mean anything).

Each bench run is a subprocess: the simulator is chosen when numba is first imported, and the
shim and the offline-compile patch change numba-cuda classes that must stay unchanged here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")

from bulkhash import bench  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent

# A figure per second anywhere in the output: "12.5 M/s", "3 GB/s", "1.2 G accesses/s", a
# "M ops/s" column, or a percentage of the ceiling.
_THROUGHPUT = re.compile(r"\d\s*(?:[kMG]B?|[kMG]?\s*(?:ops|accesses|lookups|sectors))\s*/\s*s"
                         r"|M ops/s|% of ceiling|\d+(?:\.\d+)?%")


def _python(*code: str, simulator: bool, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the (each dedented) pieces of ``code`` in a fresh interpreter, with or without the
    CUDA simulator."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    script = "\n".join(textwrap.dedent(piece) for piece in code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)


_WITH_SHIM = f'''
    import sys
    sys.path.insert(0, {str(TESTS_DIR)!r})
    import cudasim_warp
    cudasim_warp.install()
    # The simulator's device has no ``id``, which bulkhash._cuda.convert asks of it for every
    # device input; give it the one GPU's id until convert.py stops asking under the simulator.
    from numba.cuda.simulator.cudadrv.devices import FakeCUDADevice
    if not hasattr(FakeCUDADevice, "id"):
        FakeCUDADevice.id = 0
'''


def test_simulator_smoke_pass_reports_no_timings(tmp_path):
    out_json = tmp_path / "bench.json"
    done = _python(_WITH_SHIM, f'''
        from bulkhash.cli import main
        sys.exit(main(["bench", "--device", "cuda", "--json", {str(out_json)!r}]))
    ''', simulator=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert bench.SIMULATOR_LABEL in done.stdout.splitlines()[0]
    for text in (done.stdout, done.stderr):
        assert not _THROUGHPUT.search(text), _THROUGHPUT.search(text)
    # every GPU case ran: the ceiling's primitives, HashMap insert and lookup at G=1 and the
    # default, and the peer was skipped with a reason
    for name in ("random gather", "random scatter-update", "sequential read",
                 "bulkhash HashMap (G=1)", "default)", "ran, result checked",
                 "CuPy peer: skipped"):
        assert name in done.stdout, name
    info = json.loads(out_json.read_text())
    assert info["label"] == bench.SIMULATOR_LABEL
    assert info["parameters"]["simulator"] is True
    assert info["parameters"]["keys"] == bench.SMOKE_KEYS
    assert {(r["op"], r["group_size"]) for r in info["results"]} >= {("insert", 1),
                                                                       ("lookup", 1)}
    flat = json.dumps(info)
    for timing_key in ("per_s", "median_s", "seconds", "wall_s", "first_call_s"):
        assert f'"{timing_key}"' not in flat, timing_key


def test_simulator_without_the_shim_refuses():
    done = _python('''
        import sys
        from bulkhash.cli import main
        sys.exit(main(["bench", "--device", "cuda"]))
    ''', simulator=True, timeout=120)
    assert done.returncode == 2
    assert "ballot_sync" in done.stderr and "cudasim_warp" in done.stderr
    assert not _THROUGHPUT.search(done.stdout + done.stderr)


def test_no_gpu_and_no_simulator_says_what_is_missing():
    # whether there is a GPU is asked in the child: this process may have the simulator on
    # (the suite's conftest.py), and where there is one the command would run the real bench
    done = _python('''
        import sys
        from numba import cuda
        if cuda.is_available():
            sys.exit(77)
        from bulkhash.cli import main
        sys.exit(main(["bench", "--device", "cuda"]))
    ''', simulator=False, timeout=120)
    if done.returncode == 77:
        pytest.skip("a GPU is present: the command would run the real benchmark")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "no usable CUDA GPU" in done.stderr and "NUMBA_ENABLE_CUDASIM" in done.stderr
    assert done.stdout == ""


def test_ceiling_kernels_compute_what_they_say_on_the_simulator():
    """The sums that keep the reads alive are the right sums (``arr`` holds 0, 1, 2, ...), the
    atomic scatter adds one per index, the peer's kernel finds present keys and only those, and
    the one-call rates run (their values mean nothing here: simulated events record no time)."""
    done = _python('''
        import numpy as np
        from numba import cuda
        from bulkhash._cuda import ceiling as GC

        rng = np.random.default_rng(7)
        arr = GC.footprint_array(8 * 600)
        idx = GC.random_positions(arr, 200, rng)
        lines = GC.random_positions(arr, 40, rng, GC.LINE_WORDS)
        sums, line_sums = GC.gather_out(200), GC.gather_out(40, GC.LINE_WORDS)
        GC.launch_gather(arr, idx, 1, sums)
        GC.launch_gather(arr, lines, GC.LINE_WORDS, line_sums)
        w, i, l = GC.LINE_WORDS, idx.copy_to_host(), lines.copy_to_host()
        assert int(sums.copy_to_host().sum()) == int(i.sum())
        assert int(line_sums.copy_to_host().sum()) == int((w * w * l + w * (w - 1) // 2).sum())
        seq = cuda.device_array(GC.sequential_grid(arr.size), np.uint64)
        GC.launch_sequential_sum(arr, seq)
        assert int(seq.copy_to_host().sum()) == 600 * 599 // 2
        GC.launch_scatter_add(arr, idx, True)
        assert int(arr.copy_to_host().sum()) == 600 * 599 // 2 + 200

        sorted_keys = cuda.to_device(np.array([2, 4, 6, 8], np.uint64))
        queries = np.array([1, 2, 6, 9, 8], np.uint64)
        pos = cuda.to_device(np.searchsorted(sorted_keys.copy_to_host(), queries))
        out = cuda.device_array(queries.size, np.uint64)
        GC.launch_sorted_lookup(sorted_keys, cuda.to_device(np.array([20, 40, 60, 80], np.uint64)),
                                cuda.to_device(queries), pos, np.uint64(0), out)
        assert out.copy_to_host().tolist() == [0, 20, 60, 0, 80]

        for rate in (GC.gather_rate(arr, idx, reps=1), GC.scatter_rate(arr, idx, reps=1),
                     GC.sequential_rate(arr, reps=1)):
            assert isinstance(rate, float)
        assert GC.datasheet_bandwidth() is None  # the simulator reports no memory clock
        print("ok")
    ''', simulator=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_ceiling_and_peer_kernels_compile_to_ptx():
    done = _python('''
        import types
        import numba.cuda.dispatcher as D
        from numba import cuda
        from numba import types as nt

        # no GPU here: tell the dispatcher (which asks the current device for its compute
        # capability when it compiles device functions) what to compile for
        D.get_current_device = lambda: types.SimpleNamespace(compute_capability=(8, 0))
        from bulkhash._cuda import ceiling as GC

        u64, i64 = nt.uint64[::1], nt.int64[::1]
        sigs = {
            "gather": (GC.gather, (u64, i64, nt.int64, u64)),
            "scatter_add": (GC.scatter_add, (u64, i64, nt.boolean)),
            "sequential_sum": (GC.sequential_sum, (u64, u64)),
            "sorted_lookup": (GC.sorted_lookup, (u64, u64, u64, i64, nt.uint64, u64)),
        }
        for name, (kernel, sig) in sigs.items():
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
            assert ".target sm_80" in ptx, name
            print(name, "atom.global.add.u64" in ptx, "bar.sync" in ptx, len(ptx))
    ''', simulator=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.split("\n") if line)
    assert set(lines) == {"gather", "scatter_add", "sequential_sum", "sorted_lookup"}
    assert lines["scatter_add"].startswith("True")  # the atomic variant is a hardware atomic
    assert lines["gather"].split()[1] == "True"  # the block's tree sum synchronizes
    assert lines["sequential_sum"].split()[1] == "True"


def test_gpu_report_renders_from_synthetic_timings():
    """The GPU report's layout, ratios and group-size recommendation, on made-up timings."""
    from bulkhash._cuda.backend import DEFAULT_GROUP_SIZE, GROUP_SIZES

    n, small = 1000, 100
    fast = 8 if DEFAULT_GROUP_SIZE != 8 else 16  # the G made fastest below

    def timing(op, impl, count, seconds, unit="ops"):
        return bench.Timing(op, impl, count, unit, seconds=[seconds] * 5, warmup_seconds=seconds)

    ceil_t = [timing("random gather", "8-byte word", n, 1e-6, "accesses"),
              timing("random scatter-update", "atomic add", n, 2e-6, "accesses"),
              timing("random scatter-update", "load + store", n, 3e-6, "accesses"),
              timing("sequential read", "sum", 8 * n, 1e-6, "bytes"),
              timing("random line gather", "64-byte line, 8 lanes", n, 2e-6, "accesses")]
    ceiling = dict(words=n, bytes=8 * n, accesses=n, line_words=8)
    bench.summarize_cuda_ceiling(ceiling, ceil_t)
    results, labels = [], {}
    for stage, count, ceil in (("large", n, ceiling), ("small", small, None)):
        timings = []
        for g in GROUP_SIZES:
            labels[bench.hashmap_label(g)] = g
            speedup = 2 if g == fast else 1
            timings += [timing("insert", bench.hashmap_label(g), count, 4e-6 / speedup),
                        timing("lookup", bench.hashmap_label(g), count, 2e-6 / speedup)]
        timings += [timing("insert", bench.PEER_CUPY, count, 4e-5),
                    timing("lookup", bench.PEER_CUPY, count, 1e-5)]
        rows = bench.build_results(timings, ceil, stage, peer=bench.PEER_CUPY, ratio_key="x_cupy")
        for r in rows:
            r["group_size"] = labels.get(r["impl"])
        results += rows
    tables = {g: dict(load=0.8, nbytes=16 * n) for g in GROUP_SIZES}
    info = dict(
        gpu=dict(gpu="Test GPU", simulator=False, compute_capability="9.0", multiprocessors=132,
                 memory_gib=80.0, l2_cache_mib=50.0, driver_version="13.0",
                 runtime_version="13.0", datasheet_bandwidth_GBps=3350.0,
                 datasheet_sectors_per_s=3350e9 / 32),
        machine=bench.machine_info(), software=dict(bench.software_info(), numba_cuda="x",
                                                    cupy="y"),
        parameters=dict(quick=True, keys=n, small_keys=small, reps=5, seed=bench.SEED,
                        max_load_factor=bench.LOAD_FACTOR, group_sizes=list(GROUP_SIZES),
                        default_group_size=DEFAULT_GROUP_SIZE),
        compile=[dict(path="HashMap insert", first_call_s=1.0, second_call_s=0.01,
                      compile_s=0.99, how="compiled")],
        tables=tables, ceiling=ceiling, results=results, peer_note=None,
        group_sweep=bench.group_sweep(results, tables), loadavg_end=0.0, wall_s=1.0)
    text = bench.report_cuda(info)
    sweep = info["group_sweep"]
    assert sweep["recommended_group_size"] == fast
    assert sweep["columns"] == [f"insert {n:,}", f"lookup {n:,}", f"insert {small:,}",
                                f"lookup {small:,}"]
    assert f"by the geometric mean: G={fast}" in text
    default_label = bench.hashmap_label(DEFAULT_GROUP_SIZE)
    row = next(line for line in text.splitlines()
               if line.startswith("| lookup") and default_label in line and f" {n:,} " in line)
    assert "5.00x" in row and "50.0%" in row  # CuPy 1e-5 s vs 2e-6 s; 500 vs 1000 M/s gather
    assert "Test GPU" in text and "3350 GB/s" in text and "104.7 G random 32-byte" in text
    assert "0.50 G random 64-byte lines/s" in text
