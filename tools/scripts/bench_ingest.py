"""Ingest throughput: Sluice's Spark ingest against a plain Python loop doing the same per-record work.

    python tools/scripts/bench_ingest.py [--n 2000] [--reps 3] [--workdir /tmp/bench_ingest] [--cores 1 2]
                                         [--conf spark.key=value ...] [--write-docs]

One run measures, on the same JPEG folder (1024x768, q90, a zh or en `.txt` caption beside each):

* plain loop: one process, no Spark. Per file: read the bytes and the sidecar (`curation.io.files`),
  `AltText` on the caption, `ImageHeader().probe(bytes)`; both scorers `load()`ed first. Listing the
  folder is timed too, as ingest's plan does it.
* plain loop + pyarrow write: the same, then the rows written to Parquet (zstd, the raw schema) with
  pyarrow, so the cost of writing is visible on its own.
* Sluice ingest (`curation.jobs.ingest.run(..., force=True)`) under `local[N]` for each N of `--cores`,
  each in a fresh subprocess (one SparkContext per process, so a fresh JVM per master). The session is
  started and a warm-up ingest of a small folder runs first (JVM JIT, Python workers forked, imports and
  scorer loads done); only the timed runs count. Start-up is reported separately.

"Per core" is made honest by pinning: BLAS/OpenMP thread pools are set to 1 thread in every process
(OMP_NUM_THREADS etc., set before numpy loads), the plain loop runs with its CPU affinity set to one core,
and each Spark subprocess (JVM, Python daemon and workers inherit it) is confined to N cores with
`sched_setaffinity`, so `local[N]` cannot borrow an idle core for its pipelined Python workers or the
JVM's GC/JIT threads. CPU seconds of the whole process tree are recorded as well.

Rates are best-of-`--reps` (the machine is shared and noisy; the best run is the least disturbed one);
medians are shown beside them. The plain loop runs before and after the Spark runs, and its best over
both is the baseline, so drift in machine load during the run is visible and does not favour either side.
The overhead factor is plain-loop rate / (Spark rate / N); the goal is <= 1.5.
"""

from __future__ import annotations

import os

# Thread pools must be pinned before numpy/pyarrow load. Spark already sets OMP_NUM_THREADS=1 in its
# Python workers (spark.task.cpus); a plain process does not, and on a small machine OpenBLAS threads make
# langid (a numpy matrix product per caption) ~10x slower. Both sides get one thread per process.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "ARROW_NUM_THREADS")
for _v in _THREAD_VARS:
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_ingest:start -->", "<!-- bench_ingest:end -->"
SIZE = (1024, 768)
DATA_VERSION = 1  # bump when the corpus layout changes, so a cached one is rebuilt
WARMUP_N = 64
BATCH = 256  # records per batch in the plain loop, as the folder reader batches them
GOAL = 1.5


# ---------------------------------------------------------------- machine and process accounting


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        ram_gib = round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    versions = {}
    for mod in ("pyspark", "pyarrow", "PIL", "pandas", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a version is decoration
            versions[mod] = None
    java = None
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        java = (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": ram_gib, "loadavg_1m_at_start": load,
            "python": platform.python_version(), "java": java, **versions}


_CLK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds of the process and its reaped children)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        out[int(d)] = (ppid, (utime + stime + cutime + cstime) / _CLK)
    return out


def tree_cpu_s(root: int | None = None) -> float:
    """CPU seconds used so far by `root` (this process) and every live descendant (JVM, Python workers)."""
    root = root or os.getpid()
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def pin(cores: int) -> list[int]:
    """Confine this process (and what it starts later) to `cores` CPUs; the CPUs used."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise SystemExit(f"--cores {cores}: this machine lets the process use only {len(allowed)} CPUs")
    use = allowed[:cores]
    os.sched_setaffinity(0, use)
    return use


# ---------------------------------------------------------------- the corpus


def _caption(index: int) -> str:
    from tools.sample_corpus import CAPTIONS

    subjects = list(CAPTIONS)
    lang = "zh" if index % 2 else "en"
    options = CAPTIONS[subjects[index % len(subjects)]][lang]
    return options[(index // 2) % len(options)]


def _write_shard(args: tuple[str, int, int]) -> int:
    out, n, seed = args
    from tools.sample_corpus import write_bench_jpegs

    paths = write_bench_jpegs(Path(out), n, size=SIZE, seed=seed)
    for i, p in enumerate(paths):
        p.with_suffix(".txt").write_text(_caption(seed * 1_000_003 + i), encoding="utf-8")
    return len(paths)


def corpus(folder: Path, n: int, shards: int, seed: int) -> dict:
    """`n` JPEGs with captions under `folder/shardK/` (written in parallel), reused when already there."""
    stamp = folder / "_corpus.json"
    want = {"version": DATA_VERSION, "n": n, "shards": shards, "seed": seed, "size": list(SIZE)}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return {**want, "generated_s": 0.0, "reused": True}
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    t = time.perf_counter()
    per = [n // shards + (1 if k < n % shards else 0) for k in range(shards)]
    jobs = [(str(folder / f"shard{k}"), m, seed + k) for k, m in enumerate(per) if m]
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        written = sum(pool.map(_write_shard, jobs))
    assert written == n, (written, n)
    stamp.write_text(json.dumps(want))
    return {**want, "generated_s": round(time.perf_counter() - t, 1), "reused": False}


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.jpg"))


# ---------------------------------------------------------------- the plain loop


def plain_loop(folder: Path, write_to: Path | None = None) -> dict:
    """The per-record work of ingest in one process, no Spark; optionally the raw table by pyarrow."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.config import DEFAULT_MAX_PIXELS, IngestConfig
    from curation.io.files import list_files, read_bytes
    from curation.io.records import record
    from curation.signals import AltText, ImageHeader
    from schemas.raw import RAW

    icfg = IngestConfig()
    alt, header = AltText(), ImageHeader(max_pixels=DEFAULT_MAX_PIXELS, verify=icfg.verify)
    alt.load()
    header.load()
    cpu0, t0 = time.process_time(), time.perf_counter()
    root = str(folder)
    files = list_files(root)
    txt = {p[:-4] for p, _ in files if p.endswith(".txt")}
    images = [p for p, _ in files if p.lower().endswith((".jpg", ".jpeg"))]
    n, t_write = 0, 0.0
    writer = pq.ParquetWriter(str(write_to), RAW, compression="zstd") if write_to else None
    for start in range(0, len(images), BATCH):
        recs, heads = [], []
        for path in images[start:start + BATCH]:
            stem = path.rsplit(".", 1)[0]
            caption = read_bytes(stem + ".txt", max_bytes=1 << 20) if stem in txt else None
            image = read_bytes(path, max_bytes=icfg.max_bytes)
            recs.append(record("bench", os.path.relpath(path, root), path, image=image, caption=caption))
            heads.append(header.probe(image))
        # AltText through its own batch call (decode, clean, language per caption), as ingest calls it.
        texts = alt(pd.DataFrame({"caption_raw": [r["caption_raw"] for r in recs]}))
        n += len(recs)
        if writer is not None:
            tw = time.perf_counter()
            rows = [{**{k: v for k, v in r.items() if k != "caption_raw"}, **t, **{k: h.get(k) for k in header.columns}}
                    for r, t, h in zip(recs, texts.to_dict("records"), heads)]
            writer.write_table(pa.Table.from_pylist(rows, schema=RAW))
            t_write += time.perf_counter() - tw
    if writer is not None:
        tw = time.perf_counter()
        writer.close()
        t_write += time.perf_counter() - tw
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"records": n, "wall_s": wall, "cpu_s": cpu, "write_s": t_write}


def run_plain(folder: Path, reps: int, write_dir: Path | None, label: str) -> list[dict]:
    out = []
    for r in range(reps):
        target = None
        if write_dir is not None:
            write_dir.mkdir(parents=True, exist_ok=True)
            target = write_dir / "part-0.zstd.parquet"
        res = plain_loop(folder, target)
        if target is not None:
            res["out_bytes"] = target.stat().st_size
        print(f"  {label} rep {r + 1}: {res['records'] / res['wall_s']:.1f} rec/s "
              f"(wall {res['wall_s']:.2f}s, cpu {res['cpu_s']:.2f}s)", file=sys.stderr, flush=True)
        out.append(res)
    return out


# ---------------------------------------------------------------- Spark (in a subprocess per master)


def spark_child(args) -> dict:
    """Runs in its own process: start Spark on `local[N]`, warm up, then time ingest `reps` times."""
    cores = args.cores[0]
    cpus = pin(cores)
    from curation.config import CurateConfig
    from curation.io.plan import partitions_for
    from curation.jobs import ingest
    from curation.spark import session

    conf = dict(kv.split("=", 1) for kv in args.conf)
    master = f"local[{cores}]"
    t = time.perf_counter()
    spark = session(master, "2g", conf)
    startup = time.perf_counter() - t
    cfg = CurateConfig()
    work = Path(args.workdir)
    data, warm = work / "data", work / "warmup"
    out = work / f"out_local{cores}"
    t = time.perf_counter()
    ingest.run(spark, str(warm), out, cfg, force=True)
    ingest.run(spark, str(warm), out, cfg, force=True)  # twice: JIT and every worker's imports
    warmup = time.perf_counter() - t
    reps = []
    for r in range(args.reps):
        cpu0, t0 = tree_cpu_s(), time.perf_counter()
        manifest = ingest.run(spark, str(data), out, cfg, force=True)
        wall, cpu = time.perf_counter() - t0, tree_cpu_s() - cpu0
        rows = manifest["output"]["rows"]
        if rows != args.n or manifest["output"]["errors"]:
            raise SystemExit(f"ingest gave {rows} rows and errors {manifest['output']['errors']}; want {args.n}")
        reps.append({"records": rows, "wall_s": wall, "cpu_s": cpu, "timings_s": manifest["timings_s"]})
        print(f"  {master} rep {r + 1}: {rows / wall:.1f} rec/s (wall {wall:.2f}s, tree cpu {cpu:.2f}s, "
              f"{manifest['timings_s']})", file=sys.stderr, flush=True)
    out_bytes = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    sc = spark.sparkContext
    result = {
        "master": master, "cores": cores, "cpus": cpus, "startup_s": startup, "warmup_s": warmup,
        "partitions": partitions_for(spark, args.n, cfg.ingest.records_per_partition, cfg.ingest.partitions),
        "default_parallelism": sc.defaultParallelism, "conf": conf, "out_bytes": out_bytes, "reps": reps,
        "spark_conf": {k: sc.getConf().get(k) for k in (
            "spark.sql.execution.arrow.maxRecordsPerBatch", "spark.sql.parquet.compression.codec",
            "spark.python.worker.reuse") if sc.getConf().contains(k)},
    }
    spark.stop()
    return result


def run_spark(args, cores: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_spark-child", "--cores", str(cores),
           "--n", str(args.n), "--reps", str(args.reps), "--workdir", str(args.workdir)]
    for kv in args.conf:
        cmd += ["--conf", kv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    if proc.returncode:
        raise SystemExit(f"the local[{cores}] run failed (exit {proc.returncode}); its log is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def _best(reps: list[dict]) -> dict:
    rates = [r["records"] / r["wall_s"] for r in reps]
    i = max(range(len(reps)), key=lambda k: rates[k])
    return {"rate": rates[i], "median": statistics.median(rates), "best": reps[i],
            "cpu_ms_per_rec": 1e3 * reps[i]["cpu_s"] / reps[i]["records"]}


def summarize(res: dict) -> dict:
    plain_all = res["plain_before"] + res["plain_after"]
    base = _best(plain_all)
    write = _best(res["plain_write"])
    rows = [
        {"what": "plain loop, 1 process", "cores": 1, **base,
         "median_before": _best(res["plain_before"])["median"], "median_after": _best(res["plain_after"])["median"]},
        {"what": "plain loop + pyarrow Parquet write", "cores": 1, **write},
    ]
    for s in res["spark"]:
        b = _best(s["reps"])
        per_core = b["rate"] / s["cores"]
        rows.append({"what": f"Sluice ingest, Spark {s['master']}", "cores": s["cores"], **b,
                     "per_core": per_core, "overhead": base["rate"] / per_core,
                     "overhead_vs_write": write["rate"] / per_core, "spark": s})
    return {"baseline": base["rate"], "rows": rows}


def markdown(res: dict, summary: dict) -> str:
    m = res["machine"]
    c = res["corpus"]
    lines = [
        f"Command: `{res['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, load {m['loadavg_1m_at_start']:.2f} "
        f"at start; Python {m['python']}, {m['java']}, pyspark {m['pyspark']}, pyarrow {m['pyarrow']}, "
        f"Pillow {m['PIL']}. Run at {res['when']}.",
        "",
        f"Input: {c['n']} JPEGs {SIZE[0]}x{SIZE[1]} q90 ({res['corpus_mib']:.0f} MiB, "
        f"{res['corpus_mib'] * 1024 / c['n']:.0f} KiB each), a zh or en `.txt` caption beside each. "
        f"Best of {res['reps']} runs (median beside it). Thread pools pinned to 1 (OMP/OpenBLAS/MKL); the plain "
        f"loop pinned to 1 CPU, `local[N]` to N CPUs (whole process tree: JVM, Python daemon and workers).",
        "",
        "| what | cores | records/s (best) | median | records/s/core | CPU ms/record | plain / (Spark per core) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        per_core = r.get("per_core", r["rate"])
        over = f"**{r['overhead']:.2f}x**" if "overhead" in r else "1.00x (baseline)" if r["cores"] == 1 and \
            r["what"].startswith("plain loop,") else f"{summary['baseline'] / r['rate']:.2f}x"
        lines.append(f"| {r['what']} | {r['cores']} | {r['rate']:.1f} | {r['median']:.1f} | {per_core:.1f} | "
                     f"{r['cpu_ms_per_rec']:.2f} | {over} |")
    lines += ["", "CPU ms/record counts every process of the run (for Spark: JVM, Python daemon and workers).",
              "Spark: start-up and warm-up are not in the rates; the best run's `timings_s` split, from the manifest:",
              "", "| master | start-up s | warm-up s | partitions | plan s | read_decode_write s | count s | wall s |"
              " output MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        s = r.get("spark")
        if not s:
            continue
        t = r["best"]["timings_s"]
        lines.append(f"| {s['master']} | {s['startup_s']:.1f} | {s['warmup_s']:.1f} | {s['partitions']} | "
                     f"{t.get('plan', 0):.2f} | {t.get('read_decode_write', 0):.2f} | {t.get('count', 0):.2f} | "
                     f"{r['best']['wall_s']:.2f} | {s['out_bytes'] / 2**20:.0f} |")
    verdict = []
    for r in summary["rows"]:
        if "overhead" in r:
            ok = "meets" if r["overhead"] <= GOAL else "misses"
            verdict.append(f"{r['spark']['master']}: {r['overhead']:.2f}x ({ok} the {GOAL}x goal)")
    plain = summary["rows"][0]
    lines += ["", f"Overhead factor (plain-loop rate / Spark rate per core): {'; '.join(verdict)}. "
              f"Plain loop medians before / after the Spark runs: {plain['median_before']:.1f} / "
              f"{plain['median_after']:.1f} records/s."]
    if any(s["conf"] for s in res["spark"]):
        lines += ["", f"Spark settings added on the command line: {res['spark'][0]['conf']}"]
    return "\n".join(lines) + "\n"


def write_docs(block: str) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    if START not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {START} ... {END} markers; add them where the results belong")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{START}\n{block}{END}{tail}", encoding="utf-8")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="JPEGs in the corpus (default 2000)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each variant; the best counts (default 3)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_ingest"), help="corpus and outputs")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2], help="Spark local[N] settings (default 1 2)")
    p.add_argument("--conf", action="append", default=[], metavar="spark.KEY=VALUE",
                   help="extra Spark setting for the ingest runs (repeatable), e.g. to try a change")
    p.add_argument("--skip-plain-after", action="store_true", help="do not rerun the plain loop at the end")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--write-docs", action="store_true",
                   help=f"replace the block between the bench_ingest markers in {DOCS.relative_to(REPO)}")
    p.add_argument("--_spark-child", dest="spark_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bad = [kv for kv in args.conf if "=" not in kv or not kv.startswith("spark.")]
    if bad:
        p.error(f"--conf wants spark.KEY=VALUE, got {bad}")

    if args.spark_child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(spark_child(args)))
        return

    command = "python tools/scripts/bench_ingest.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    work = args.workdir.expanduser().absolute()
    args.workdir = work
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info}", file=sys.stderr, flush=True)
    shards = max(1, min(len(os.sched_getaffinity(0)), 8))
    c = corpus(work / "data", args.n, shards, seed=0)
    corpus(work / "warmup", WARMUP_N, 1, seed=1000)
    print(f"corpus: {c}", file=sys.stderr, flush=True)

    res = {"command": command.strip(), "machine": info, "corpus": c, "reps": args.reps,
           "corpus_mib": corpus_bytes(work / "data") / 2**20,
           "when": time.strftime("%Y-%m-%d %H:%M %Z")}
    allowed = sorted(os.sched_getaffinity(0))
    pin(1)  # the plain loop: one CPU; the Spark children set their own affinity
    plain_loop(work / "warmup")  # imports, langid model, page cache
    res["plain_before"] = run_plain(work / "data", args.reps, None, "plain")
    res["plain_write"] = run_plain(work / "data", args.reps, work / "out_plain", "plain+write")
    os.sched_setaffinity(0, allowed)
    res["spark"] = [run_spark(args, n) for n in args.cores]
    pin(1)
    res["plain_after"] = [] if args.skip_plain_after else run_plain(work / "data", args.reps, None, "plain (after)")
    os.sched_setaffinity(0, allowed)
    if not res["plain_after"]:
        res["plain_after"] = res["plain_before"]

    summary = summarize(res)
    block = markdown(res, summary)
    print(block)
    if args.json:
        args.json.write_text(json.dumps({**res, "summary": summary}, indent=2, default=str))
    if args.write_docs:
        write_docs(block)
        print(f"updated {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
