"""Downsampling at scale: time and peak memory on 1M and 10M synthetic rows, Spark local mode.

    python -m benchmarks.bench_downsample [--rows 1000000 10000000] [--cores 2] [--driver-memory 2g]
                                             [--workdir /tmp/bench_downsample] [--json FILE] [--write-docs]

Per size, in one Spark session (`local[--cores]`):

* generate: `synthetic.pool` writes a stage-2-shaped table (Zipf cluster tree 20x10x10, 3 sources,
  tags, tiers) with Spark itself; reported, not part of the ratios.
* baseline: read that table and write it back unchanged (the pool schema): the floor of any job that
  touches every row once, measured in the same run on the same data.
* downsample: `curation.jobs.downsample.run` to 10% of the rows, T = 0.5, quality order: the leaf
  counts, the rank-and-write, the manifest's counts and the distribution statistics (source/tag shares).

Memory is the peak, over the phase, of the summed resident set of this process and all its descendants
(driver JVM, Python daemon and workers), sampled from /proc every 0.2 s; CPU seconds are the tree's
utime+stime. The figure to watch is time per row from 1M to 10M (flat = ratio near 1) and the downsample
time against the baseline copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:downsample -->", "<!-- /bench:downsample -->"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> list[int]:
    """`root` and every descendant, from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                parent[int(d)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def _sample(pids: list[int]) -> tuple[int, dict[int, float]]:
    """(summed RSS bytes, CPU seconds per pid) of `pids`."""
    rss, cpu = 0, {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / TICK
            rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return rss, cpu


class Meter:
    """Wall clock, peak tree RSS and tree CPU seconds of a phase."""

    def __init__(self, name: str):
        self.name, self.peak, self.cpu0, self.cpu1 = name, 0, {}, {}

    def _loop(self):
        while not self._stop.is_set():
            rss, cpu = _sample(_tree(os.getpid()))
            self.peak = max(self.peak, rss)
            self.cpu1.update(cpu)
            self._stop.wait(0.2)

    def __enter__(self):
        _, self.cpu0 = _sample(_tree(os.getpid()))
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.perf_counter()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        _, cpu = _sample(_tree(os.getpid()))
        self.cpu1.update(cpu)
        self.cpu = sum(v - self.cpu0.get(p, 0.0) for p, v in self.cpu1.items())

    def row(self, n: int) -> dict:
        return {"phase": self.name, "rows": n, "wall_s": round(self.wall, 2), "ns_per_row": round(1e9 * self.wall / n),
                "cpu_s": round(self.cpu, 1), "peak_rss_gib": round(self.peak / 2**30, 2)}


def bench_size(spark, n: int, work: Path) -> list[dict]:
    from curation.config import CurateConfig, DownsampleConfig
    from curation.jobs import downsample
    from curation.spark import read_table, write_table
    from synthetic.pool import write_synthetic_pool

    src, copy, out = work / f"in_{n}", work / f"copy_{n}", work / f"pool_{n}"
    for p in (src, copy, out):
        shutil.rmtree(p, ignore_errors=True)
    rows = []
    with Meter("generate") as m:
        write_synthetic_pool(spark, str(src), n, branching=(20, 10, 10), alpha=1.1, seed=0,
                             partitions=max(2, n // 500_000))
    rows.append(m.row(n))
    with Meter("baseline: read + write") as m:
        write_table(read_table(spark, str(src), "pool"), str(copy), "pool")
    rows.append(m.row(n))
    cfg = CurateConfig(downsample=DownsampleConfig(size=n // 10, temperature=0.5))
    with Meter("downsample to 10%") as m:
        man = downsample.run(spark, src, out, cfg, force=True)
    rows.append(m.row(n) | {"leaves": man["downsample"]["leaves"], "timings_s": man["timings_s"]})
    assert man["output"]["kept"] == n // 10
    for p in (src, copy, out):
        shutil.rmtree(p, ignore_errors=True)
    return rows


def _table(results: list[dict]) -> str:
    lines = ["| rows | phase | wall s | ns/row | CPU s (tree) | peak RSS GiB (tree) |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['phase']} | {r['wall_s']} | {r['ns_per_row']} | {r['cpu_s']} | "
                     f"{r['peak_rss_gib']} |")
    return "\n".join(lines)


def _ratios(results: list[dict]) -> dict:
    ds = {r["rows"]: r for r in results if r["phase"].startswith("downsample")}
    base = {r["rows"]: r for r in results if r["phase"].startswith("baseline")}
    out = {}
    for n in ds:
        out[f"downsample/baseline at {n:,}, wall"] = round(ds[n]["wall_s"] / base[n]["wall_s"], 2)
        out[f"downsample/baseline at {n:,}, CPU"] = round(ds[n]["cpu_s"] / base[n]["cpu_s"], 2)
    sizes = sorted(ds)
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        out[f"time per row {hi:,} / {lo:,} (downsample)"] = round(ds[hi]["ns_per_row"] / ds[lo]["ns_per_row"], 2)
        out[f"time per row {hi:,} / {lo:,} (baseline)"] = round(base[hi]["ns_per_row"] / base[lo]["ns_per_row"], 2)
        # On a shared machine CPU seconds are the figure least disturbed by other load.
        out[f"CPU per row {hi:,} / {lo:,} (downsample)"] = round(ds[hi]["cpu_s"] * lo / (ds[lo]["cpu_s"] * hi), 2)
    return out


def write_docs(text: str) -> None:
    doc = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_downsample"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    from curation.spark import session

    args.workdir.mkdir(parents=True, exist_ok=True)
    spark = session(f"local[{args.cores}]", args.driver_memory,
                    {"spark.sql.shuffle.partitions": str(max(8, 4 * args.cores)),
                     "spark.local.dir": str(args.workdir / "spark-tmp")})
    results = []
    try:
        for n in args.rows:
            log(f"{n:,} rows ...")
            results.extend(bench_size(spark, n, args.workdir))
            log(_table(results[-3:]))
    finally:
        spark.stop()
    ratios = _ratios(results)
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs visible, local[{args.cores}], driver {args.driver_memory}, " \
              f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.1f}"
    cmd = "python -m benchmarks.bench_downsample " + " ".join(sys.argv[1:])
    text = (f"## Downsampling (issue 5)\n\n`{cmd}`\n\nMachine: {machine}.\n\n{_table(results)}\n\n"
            + "\n".join(f"- {k}: **{v}**" for k, v in ratios.items()) + "\n")
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": ratios, "machine": machine}, indent=1))
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
