"""``results.md`` and the PNG plots of ``bulkhash bench --protocol``, from ``results.json`` alone.

``render(out_dir)`` reads ``out_dir/results.json`` (``bench.protocol``'s records) and writes:

* ``results.md``: the runs (machine, software, parameters), then one table per structure, a row
  per record (family, operation, types, keys, load, workload): bulkhash's M ops/s, each peer's,
  bulkhash's speedup over the fastest peer, % of ceiling, and the facts that matter for that
  structure (load reached, measured false-positive rate, bits per key, tombstones).
* ``size-<structure>.png``: M ops/s against keys (log-log), a panel per family, operation and
  workload at the family's reference load, a line per implementation and key type.
* ``load-<structure>.png`` (HashMap, HashSet): bulkhash's M ops/s against the load reached, a
  panel per operation, a line per size and key type.
* ``ceiling-<structure>.png``: bulkhash's % of ceiling against keys, a line per operation and key
  type, at the reference load.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict

from . import _table

STRUCTURE_ORDER = ("HashMap", "HashSet", "Counter", "MultiMap", "BucketListMap", "BloomFilter",
                   "CuckooFilter")
FACT_COLUMNS = (("load", "load {:.3f}"), ("load_reached", "load reached {:.4f}"),
                ("stopped_by", "stopped by {}"), ("measured_fpr", "fpr {:.2e}"),
                ("bits_per_key", "{:.1f} bits/key"), ("bytes_per_pair", "{:.1f} B/pair"),
                ("tombstones", "{:,} tombstones"), ("distinct_keys", "{:,} distinct"))


def render(out_dir: str) -> None:
    """Write ``results.md`` and the plots in ``out_dir`` from its ``results.json``."""
    from .protocol import results_path

    with open(results_path(out_dir)) as f:
        results = json.load(f)
    by_structure = group_by_structure(results["records"].values())
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(results, by_structure))
    plot_all(out_dir, by_structure)


def group_by_structure(records) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for r in records:
        grouped[r["structure"]].append(r)
    order = {name: i for i, name in enumerate(STRUCTURE_ORDER)}
    return {s: sorted(rs, key=row_order) for s, rs in
            sorted(grouped.items(), key=lambda kv: order.get(kv[0], len(order)))}


def row_order(r: dict):
    """Family, operation and workload in the sweep's own order, then types, size, load."""
    from .protocol import FAMILY

    family = FAMILY.get(r["family"])
    where = (list(FAMILY).index(r["family"]), family.ops.index(r["operation"]),
             family.workloads.index(r["workload"])) if family else (len(FAMILY), 0, 0)
    load = r["load"]
    return where + (r["key_dtype"], r["size"], load if isinstance(load, (int, float)) else 2.0)


def short(impl: str) -> str:
    """An implementation's name without its thread count, for column heads and legends."""
    return re.sub(r" \(\d+ threads?\)$", "", impl)


# ================================================================================================
# results.md
# ================================================================================================


def markdown(results: dict, by_structure: dict[str, list[dict]]) -> str:
    kind = "--quick" if results["quick"] else "full"
    out = [f"# bulkhash bench --protocol ({kind} run)", "",
           "What each figure means: the docstring of `bulkhash.bench.protocol`. M ops/s: "
           "million operations per second at the median of the interleaved rounds; x best "
           "peer: the fastest peer's median time over bulkhash's (above 1: bulkhash is "
           "faster); % of ceiling: bulkhash against the random gather (reads) or random "
           "scatter-update (writes) measured on the same footprint in the same rounds.", "",
           "## Runs", ""]
    for run in results["runs"]:
        m, s, p = run["machine"], run["software"], run["parameters"]
        out.append(f"- {run['started']}: {m['cpu']}, {m['usable_cores']} usable cores, "
                   f"{m['memory_gib']} GiB, load average {m['loadavg_start']:.2f}; Python "
                   f"{s['python']}, NumPy {s['numpy']}, Numba {s['numba']} "
                   f"({s['numba_threads']} threads), bulkhash {s['bulkhash']}, pandas "
                   f"{s['pandas']}, pyarrow {s['pyarrow']}, polars {s['polars']}; "
                   f"{p['reps']} rounds after a warm-up; max keys {p['max_keys']}, only "
                   f"{p['only']}")
    for structure, records in by_structure.items():
        out += ["", f"## {structure}", "", structure_table(records)]
        notes = sorted({n for r in records for n in r["notes"]})
        if notes:
            out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def facts_text(facts: dict | None) -> str:
    if not facts:
        return ""
    return ", ".join(fmt.format(facts[k]) for k, fmt in FACT_COLUMNS if facts.get(k) is not None)


def structure_table(records: list[dict]) -> str:
    peers = sorted({short(p) for r in records for p in r["peers"]})
    header = (["family", "operation", "types", "keys", "load", "workload", "bulkhash M ops/s"]
              + [f"{p} M ops/s" for p in peers] + ["x best peer", "% of ceiling", "facts"])
    rows = []
    for r in records:
        rates = {short(impl): t["per_s"] for impl, t in r["peers"].items()}
        rows.append([r["family"], r["operation"], r["types"], f"{r['size']:,}",
                     "-" if r["load"] is None else str(r["load"]), r["workload"],
                     f"{r['bulkhash']['per_s'] / 1e6:.2f}"]
                    + [f"{rates[p] / 1e6:.2f}" if p in rates else "-" for p in peers]
                    + [f"{r['x_best_peer']:.2f}x" if r["x_best_peer"] else "-",
                       f"{100 * r['fraction_of_ceiling']:.1f}%",
                       facts_text(r["bulkhash"]["facts"])])
    return _table(header, rows, set(range(6, len(header) - 1)) | {3})


# ================================================================================================
# plots
# ================================================================================================


def panel_grid(count: int, title: str):
    """A figure of ``count`` panels, three to a row, and its title. (Fixed margins, not
    ``tight_layout``, which spends seconds measuring tick labels.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.08, top=1 - 0.9 / (4.2 * rows),
                        hspace=0.55, wspace=0.3)
    fig.suptitle(title)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=80)
    plt.close(fig)


def size_axis(ax, sizes) -> None:
    """A log x axis of keys, ticked at the sizes measured (2^k as such, others in millions)."""
    from matplotlib.ticker import NullLocator

    ticks = sorted(set(sizes))
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else f"{n / 1e6:g}M"
                          for n in ticks])
    ax.set_xlabel("keys")


def log_rate_axis(ax, label: str = "M ops/s") -> None:
    """A log y axis ticked (and labelled) at 1, 2, 5 times powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel(label)


class Styles:
    """One colour per implementation (bulkhash black) and a line style per key type (uint32
    dashed), the same in every panel of a figure."""

    def __init__(self):
        self.colours: dict[str, str] = {}

    def __call__(self, impl: str, key_dtype: str) -> dict:
        if impl not in self.colours:
            self.colours[impl] = "black" if impl.startswith("bulkhash") else \
                f"C{len([c for c in self.colours.values() if c != 'black']) % 10}"
        return dict(color=self.colours[impl], linestyle="--" if key_dtype == "uint32" else "-")


def plot_all(out_dir: str, by_structure: dict[str, list[dict]]) -> None:
    for structure, records in by_structure.items():
        name = structure.lower()
        reference = [r for r in records if r["peer_point"]]
        plot_against_size(reference, os.path.join(out_dir, f"size-{name}.png"), structure)
        plot_ceiling(reference, os.path.join(out_dir, f"ceiling-{name}.png"), structure)
        swept = [r for r in records if r["family"] in ("hashmap", "hashset", "hashmap-max-load")]
        if swept:
            plot_against_load(swept, os.path.join(out_dir, f"load-{name}.png"), structure)


def panels(records: list[dict], keys) -> dict[tuple, list[dict]]:
    """The records by panel (``keys(record)``), in the order of the records."""
    grouped = defaultdict(list)
    for r in records:
        grouped[keys(r)].append(r)
    return dict(grouped)


def draw(ax, lines: dict[str, list[tuple[float, float]]], styles: dict[str, dict]) -> None:
    for label, xy in lines.items():
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", ms=3, label=label,
                **styles[label])
    ax.legend(fontsize=6)


def plot_against_size(records: list[dict], path: str, structure: str) -> None:
    """M ops/s against keys, a panel per (family, operation, workload), a line per
    implementation and key type."""
    grouped = panels(records, lambda r: (r["family"], r["operation"], r["workload"]))
    fig, axes = panel_grid(len(grouped), f"{structure}: throughput against size")
    style = Styles()
    for ax, ((family, op, workload), rs) in zip(axes, grouped.items()):
        lines, styles = defaultdict(list), {}
        for r in rs:
            for impl, t in [(r["bulkhash"]["impl"], r["bulkhash"])] + list(r["peers"].items()):
                label = f"{short(impl)} {r['key_dtype']}"
                lines[label].append((r["size"], t["per_s"] / 1e6))
                styles[label] = style(short(impl), r["key_dtype"])
        draw(ax, lines, styles)
        size_axis(ax, [r["size"] for r in rs])
        log_rate_axis(ax)
        ax.set_title(f"{family}: {op}\n{workload}, load {rs[0]['load']}", fontsize=9)
    save(fig, path)


def plot_ceiling(records: list[dict], path: str, structure: str) -> None:
    """bulkhash's % of ceiling against keys, a panel per family, a line per operation,
    workload and key type."""
    grouped = panels(records, lambda r: (r["family"],))
    fig, axes = panel_grid(len(grouped), f"{structure}: bulkhash as % of the memory ceiling "
                           "on its footprint")
    style = Styles()
    for ax, ((family,), rs) in zip(axes, grouped.items()):
        lines, styles = defaultdict(list), {}
        for r in rs:
            what = r["operation"] if len({x["workload"] for x in rs}) == 1 else \
                f"{r['operation']} ({r['workload']})"
            label = f"{what} {r['key_dtype']}"
            lines[label].append((r["size"], 100 * r["fraction_of_ceiling"]))
            styles[label] = style(what, r["key_dtype"])
        draw(ax, lines, styles)
        size_axis(ax, [r["size"] for r in rs])
        ax.set_ylabel("% of ceiling")
        ax.set_title(family, fontsize=9)
    save(fig, path)


def reached_load(r: dict) -> float:
    facts = r["bulkhash"]["facts"] or {}
    return facts.get("load", r["load"] if isinstance(r["load"], float) else float("nan"))


def plot_against_load(records: list[dict], path: str, structure: str) -> None:
    """bulkhash's M ops/s against the load reached, a panel per operation, a line per size and
    key type (the fill-until-full point at the load it reached)."""
    grouped = panels(records, lambda r: (r["operation"],))
    fig, axes = panel_grid(len(grouped), f"{structure} (bulkhash): throughput against load")
    style = Styles()
    for ax, ((op,), rs) in zip(axes, grouped.items()):
        lines, styles = defaultdict(list), {}
        for r in rs:
            label = f"{r['size']:,} {r['key_dtype']}"
            lines[label].append((reached_load(r), r["bulkhash"]["per_s"] / 1e6))
            styles[label] = style(f"{r['size']}", r["key_dtype"])
        draw(ax, lines, styles)
        log_rate_axis(ax)
        ax.set_xlabel("load reached")
        ax.set_title(op, fontsize=9)
    save(fig, path)
