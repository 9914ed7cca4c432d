"""Ingest throughput: Sluice's Spark ingest against a plain Python loop doing the same per-record work.

    python -m benchmarks.bench_ingest [--n 2000] [--reps 3] [--workdir /tmp/bench_ingest] [--cores 1 2]
                                         [--copies 1] [--conf spark.KEY=VALUE ...] [--json FILE] [--write-docs]

One run measures, on one folder of JPEGs (1024x768, q90, a zh or en `.txt` caption beside each):

* plain loop: one process, no Spark. Per file: read the bytes and the sidecar (`curation.io.files`), build
  the record (`curation.io.records.record`), `ImageHeader().probe(bytes)`, and `AltText` on the captions
  (its own batch call, per 256 records as the folder reader batches them); both scorers `load()`ed first.
  Listing the folder is timed too, as ingest's plan does it.
* plain loop + pyarrow write: the same, and the rows written to one Parquet file with pyarrow (zstd, the
  raw schema), so the cost of writing is visible on its own.
* Sluice ingest, `curation.jobs.ingest.run(..., force=True)` under Spark `local[N]` for each N of
  `--cores`, each in a fresh subprocess (one SparkContext per process: a fresh JVM per master). The session
  starts and two warm-up ingests of a small folder (hard links to the first <= 500 files) run first
  (Python workers forked, imports and scorer loads done, JIT warmed); those are reported, not counted.
  The timed wall clock is the whole `run`: plan, read/decode/write and the manifest's count. The second
  warm-up ingest is reported as a "small job": beside the full run it shows the fixed cost per job.

Fairness. Thread pools are pinned to one thread in every process (OMP/OpenBLAS/MKL..., set before numpy
loads): Spark already sets OMP_NUM_THREADS=1 in its Python workers, a plain process does not, and with
two OpenBLAS threads on a busy 2-CPU machine one langid call (a matrix product per caption) was measured
at 7-20 ms instead of 0.6 ms. The plain
loop runs with its CPU affinity set to one CPU; each Spark subprocess is confined to N CPUs by
`sched_setaffinity` before the JVM starts, so the JVM, the Python daemon and its workers (three pipelined
`mapInPandas` workers per task) share N CPUs and cannot borrow an idle one. "Per core" is rate / N.
Linux shares CPU time between sessions before processes (autogroup), so on a busy machine a run may keep
fewer CPUs busy than it is allowed; the "CPUs busy" column (CPU s / wall s) shows it.

Noise. The machine is shared, so every Spark run is paired with a plain-loop run just before it in the same
subprocess, and the overhead factor of `local[N]` is the median over those pairs of plain rate / (Spark
rate / N); best plain rate / best Spark rate is shown too. CPU seconds of the whole process tree (JVM and
Python, from /proc) are recorded beside wall clock: they are the least disturbed by other load, and their
ratio is reported as the CPU overhead. Goal: <= 1.5.
"""

from __future__ import annotations

import os

# Thread pools must be pinned before numpy/pyarrow load (see the docstring).
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")
for _v in _THREAD_VARS:
    os.environ[_v] = "1"

import argparse
import json
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.benchlib import cpu_model, log

REPO = Path(__file__).resolve().parents[1]

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_ingest:start -->", "<!-- bench_ingest:end -->"
SIZE = (1024, 768)
DATA_VERSION = 1  # bump when the corpus changes, so a cached one is rebuilt
WARMUP_N = 500  # records of the warm-up ingest (hard links to the first files of the corpus)
BATCH = 256  # records per batch in the plain loop, as the folder reader batches them
GOAL = 1.5


# ---------------------------------------------------------------- machine and process accounting


def machine() -> dict:
    model = cpu_model()
    ram_gib = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        ram_gib = round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        pass
    versions = {}
    for mod in ("pyspark", "pyarrow", "PIL", "pandas", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a version is decoration
            versions[mod] = None
    java = None
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        java = (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpus_allowed": len(os.sched_getaffinity(0)), "cpu": model,
            "ram_gib": ram_gib, "python": platform.python_version(), "java": java, **versions}


def _code_digest() -> str:
    """A hash of the library sources the run imports, to notice an edit in the middle of a run."""
    import hashlib

    h = hashlib.sha256()
    files = [*(REPO / "curation").rglob("*.py"), *(REPO / "schemas").rglob("*.py"), *(REPO / "plumbing").rglob("*.py")]
    for f in sorted(files):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by this process and every live descendant, split into JVM and Python.

    Counts each process's own time plus that of its children already reaped, so a Python worker that
    exited during the run is still counted (in its parent's total).
    """
    stats: dict[int, tuple[int, str, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        stats[int(d)] = (int(fields[1]), comm, (utime + stime + cutime + cstime) / _CLK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out = {"jvm": 0.0, "python": 0.0}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out["jvm" if stats[pid][1] == "java" else "python"] += stats[pid][2]
        todo.extend(children.get(pid, ()))
    return out


def cpus(n: int) -> list[int]:
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        raise SystemExit(f"--cores {n}: this process may use only {len(allowed)} CPUs")
    return allowed[:n]


# ---------------------------------------------------------------- the corpus


def _caption(index: int) -> str:
    from synthetic.sample_corpus import CAPTIONS

    subjects = list(CAPTIONS)
    lang = "zh" if index % 2 else "en"
    options = CAPTIONS[subjects[index % len(subjects)]][lang]
    return options[(index // 2) % len(options)]


def _write_shard(job: tuple[str, int, int]) -> int:
    out, n, seed = job
    from synthetic.sample_corpus import write_bench_jpegs

    paths = write_bench_jpegs(Path(out), n, size=SIZE, seed=seed)
    for i, p in enumerate(paths):  # shards start their captions at different places of the list
        p.with_suffix(".txt").write_text(_caption(seed * 1_000_003 + i), encoding="utf-8")
    return len(paths)


def corpus(folder: Path, n: int, shards: int, seed: int) -> dict:
    """`n` JPEGs with captions under `folder/shardK/` (shards written in parallel); reused when there."""
    stamp = folder / "_corpus.json"
    want = {"version": DATA_VERSION, "n": n, "shards": shards, "seed": seed, "size": list(SIZE)}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return {**want, "generated_s": 0.0, "reused": True}
    if folder.exists():
        shutil.rmtree(folder)
    t = time.perf_counter()
    per = [n // shards + (1 if k < n % shards else 0) for k in range(shards)]
    jobs = [(str(folder / f"shard{k}"), m, seed + k) for k, m in enumerate(per) if m]
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        written = sum(pool.map(_write_shard, jobs))
    if written != n:
        raise RuntimeError(f"wrote {written} JPEGs, wanted {n}")
    stamp.write_text(json.dumps(want))
    return {**want, "generated_s": round(time.perf_counter() - t, 1), "reused": False}


def warmup_folder(data: Path, folder: Path, n: int) -> Path:
    """A small folder of hard links to the first `n` images (and captions) of the corpus."""
    if folder.exists():
        shutil.rmtree(folder)
    images = sorted(data.rglob("*.jpg"))[:n]
    for img in images:
        for src in (img, img.with_suffix(".txt")):
            dst = folder / src.relative_to(data)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    return folder


def input_folder(work: Path, copies: int) -> Path:
    """The folder to ingest: the corpus, or `copies` hard-linked copies of it (distinct keys, same bytes)."""
    data = work / "data"
    if copies == 1:
        return data
    folder = work / f"data_x{copies}"
    want = copies * sum(1 for _ in data.rglob("*.jpg"))
    stamp = folder / "_copies.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"records": want, "source": (data / "_corpus.json").read_text()}:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    for j in range(copies):
        for src in sorted(data.rglob("*")):
            if src.is_file() and src.suffix in (".jpg", ".txt"):
                dst = folder / f"copy{j}" / src.relative_to(data)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
    stamp.write_text(json.dumps({"records": want, "source": (data / "_corpus.json").read_text()}))
    return folder


# ---------------------------------------------------------------- the plain loop


def plain_loop(folder: Path, write_to: Path | None = None) -> dict:
    """The per-record work of ingest in one process, no Spark; with `write_to`, the raw table by pyarrow."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.config import IngestConfig
    from curation.io.files import list_files, read_bytes
    from curation.io.records import record
    from curation.signals import AltText, ImageHeader
    from schemas.raw import RAW

    icfg = IngestConfig()
    alt, header = AltText(), ImageHeader(max_pixels=icfg.max_pixels, verify=icfg.verify)
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
        texts = alt(pd.DataFrame({"caption_raw": [r["caption_raw"] for r in recs]}))
        n += len(recs)
        if writer is not None:
            tw = time.perf_counter()
            rows = [{**{k: v for k, v in r.items() if k != "caption_raw"}, **t,
                     **{k: h.get(k) for k in header.columns}}
                    for r, t, h in zip(recs, texts.to_dict("records"), heads)]
            writer.write_table(pa.Table.from_pylist(rows, schema=RAW))
            t_write += time.perf_counter() - tw
    if writer is not None:
        tw = time.perf_counter()
        writer.close()
        t_write += time.perf_counter() - tw
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"records": n, "wall_s": wall, "cpu_s": cpu, "write_s": t_write, "load": loadavg()}


def plain_rep(folder: Path, on_cpu: int, write_to: Path | None = None, label: str = "plain") -> dict:
    """One plain-loop run with this thread confined to one CPU (restored afterwards)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {on_cpu})
    try:
        res = plain_loop(folder, write_to)
    finally:
        os.sched_setaffinity(0, before)
    if write_to is not None:
        res["out_bytes"] = write_to.stat().st_size
    log(f"  {label}: {res['records'] / res['wall_s']:.1f} rec/s (wall {res['wall_s']:.2f}s, "
        f"cpu {res['cpu_s']:.2f}s, load {res['load']:.1f})")
    return res


# ---------------------------------------------------------------- Spark (one subprocess per master)


def spark_child(args) -> dict:
    """In its own process: confine it to N CPUs, start Spark on local[N], warm up, then `reps` pairs of
    (plain loop on one of those CPUs, timed ingest)."""
    n_cores = args.cores[0]
    use = cpus(n_cores)
    os.sched_setaffinity(0, use)  # before the JVM starts: it and the Python workers inherit it

    from curation.config import CurateConfig
    from curation.io.plan import partitions_for
    from curation.jobs import ingest
    from curation.spark import session

    conf = dict(kv.split("=", 1) for kv in args.conf)
    master = f"local[{n_cores}]"
    work = Path(args.workdir)
    data, warm, out = input_folder(work, args.copies), work / "warmup", work / f"out_local{n_cores}"
    records = args.n * args.copies
    cfg = CurateConfig()
    t = time.perf_counter()
    spark = session(master, "2g", conf)
    startup = time.perf_counter() - t
    warmup = []  # twice: forks the Python workers, loads the scorers, warms the JIT; the 2nd is a small job
    for _ in range(2):
        t = time.perf_counter()
        small = ingest.run(spark, str(warm), out, cfg, force=True)
        warmup.append(time.perf_counter() - t)
    n_small = small["output"]["rows"]
    plain_loop(warm)  # imports and page cache for the plain side
    pairs = []
    for r in range(args.reps):
        plain = plain_rep(data, use[0], label=f"plain ({master} subprocess) {r + 1}")
        cpu0, t0 = tree_cpu_s(), time.perf_counter()
        manifest = ingest.run(spark, str(data), out, cfg, force=True)
        wall, cpu1 = time.perf_counter() - t0, tree_cpu_s()
        rows = manifest["output"]["rows"]
        if rows != records or manifest["output"]["errors"]:
            raise SystemExit(f"ingest gave {rows} rows and errors {manifest['output']['errors']}; want {records}")
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        spark_res = {"records": rows, "wall_s": wall, "cpu_s": sum(cpu.values()), "cpu_split_s": cpu,
                     "timings_s": manifest["timings_s"], "load": loadavg()}
        log(f"  {master} {r + 1}: {rows / wall:.1f} rec/s (wall {wall:.2f}s, cpu jvm {cpu['jvm']:.2f}s "
            f"+ python {cpu['python']:.2f}s, {manifest['timings_s']}, load {spark_res['load']:.1f})")
        pairs.append({"plain": plain, "spark": spark_res})
    sc = spark.sparkContext
    result = {
        "master": master, "cores": n_cores, "cpus": use, "startup_s": startup, "warmup_s": warmup,
        "small_job": {"records": n_small, "wall_s": warmup[-1]},
        "partitions": partitions_for(spark, records, cfg.ingest.records_per_partition, cfg.ingest.partitions),
        "conf": conf, "out_bytes": sum(p.stat().st_size for p in out.rglob("*.parquet")), "pairs": pairs,
        "spark_conf": {k: sc.getConf().get(k, None) for k in (
            "spark.sql.execution.arrow.maxRecordsPerBatch", "spark.sql.execution.arrow.maxBytesPerBatch",
            "spark.sql.parquet.compression.codec")},
    }
    spark.stop()
    return result


def run_spark(args, n_cores: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_ingest", "--_spark-child", "--cores", str(n_cores),
           "--n", str(args.n), "--copies", str(args.copies), "--reps", str(args.reps), "--workdir", str(args.workdir)]
    for kv in args.conf:
        cmd += ["--conf", kv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"the local[{n_cores}] run failed (exit {proc.returncode}); its log is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def _rate(r: dict) -> float:
    return r["records"] / r["wall_s"]


def _stats(reps: list[dict]) -> dict:
    rates = [_rate(r) for r in reps]
    best = reps[max(range(len(reps)), key=lambda k: rates[k])]
    frugal = min(reps, key=lambda r: r["cpu_s"] / r["records"])
    return {"rate": max(rates), "median": statistics.median(rates), "best": best, "frugal": frugal,
            "cpu_ms": 1e3 * frugal["cpu_s"] / frugal["records"]}


def summarize(res: dict) -> dict:
    main_plain = _stats([p["plain"] for p in res["main_pairs"]])
    write = _stats([p["write"] for p in res["main_pairs"]])
    all_plain = _stats([p["plain"] for p in res["main_pairs"]]
                       + [p["plain"] for s in res["spark"] for p in s["pairs"]])
    rows = [{"what": "plain loop, 1 process (all its runs)", "cores": 1, **all_plain, "overhead": None},
            {"what": "plain loop + pyarrow Parquet write", "cores": 1, **write,
             "overhead": main_plain["rate"] / write["rate"], "plain_here": main_plain["rate"],
             "cpu_overhead": write["cpu_ms"] / main_plain["cpu_ms"],
             "paired": statistics.median(_rate(p["plain"]) / _rate(p["write"]) for p in res["main_pairs"])}]
    for s in res["spark"]:
        plain = _stats([p["plain"] for p in s["pairs"]])
        spark = _stats([p["spark"] for p in s["pairs"]])
        n = s["cores"]
        frugal = spark["frugal"]
        rows.append({
            "what": f"Sluice ingest, Spark {s['master']}", "cores": n, **spark, "per_core": spark["rate"] / n,
            "overhead": plain["rate"] / (spark["rate"] / n),
            "paired": statistics.median(_rate(p["plain"]) / (_rate(p["spark"]) / n) for p in s["pairs"]),
            "cpu_overhead": spark["cpu_ms"] / plain["cpu_ms"],
            "cpu_split_ms": {k: 1e3 * v / frugal["records"] for k, v in frugal["cpu_split_s"].items()},
            "plain_here": plain["rate"], "plain_busy": _busy(plain["best"]), "spark": s,
        })
    return {"rows": rows}


def _busy(run: dict) -> float:
    """CPUs the run's process tree kept busy on average: CPU seconds / wall seconds."""
    return run["cpu_s"] / run["wall_s"]


def markdown(res: dict, summary: dict) -> str:
    m, c = res["machine"], res["corpus"]
    load = [x for x in [res["load_start"], res["load_end"]] if x is not None]
    lines = [
        f"Command: `{res['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM; 1-minute load average "
        f"{' -> '.join(f'{x:.1f}' for x in load)} (start -> end); Python {m['python']}, {m['java']}, "
        f"pyspark {m['pyspark']}, pyarrow {m['pyarrow']}, Pillow {m['PIL']}; {res['when']}; code "
        f"{res.get('code_version', '?')} (sources {res.get('code_digest', '?')}).",
        "",
        f"Input: {c['n']} JPEGs {SIZE[0]}x{SIZE[1]} q90 ({res['corpus_mib']:.0f} MiB, "
        f"{res['corpus_mib'] * 1024 / c['n']:.0f} KiB each), a zh or en `.txt` caption beside each"
        + (f"; ingested as {res['copies']} hard-linked copies, {res['copies'] * c['n']} records a run"
           if res.get("copies", 1) > 1 else "") + ". Rates are "
        f"the best of {res['reps']} runs (median beside). Thread pools pinned to 1; plain loop on 1 CPU, "
        f"`local[N]` confined to N CPUs (JVM and Python workers). CPU ms/record: whole process tree, least of "
        f"the runs.",
        "",
        "| what | cores | records/s | median | records/s/core | plain loop beside it, records/s | CPUs busy "
        "| CPU ms/record | overhead: paired median (best / best) | CPU overhead |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        per_core = r.get("per_core", r["rate"])
        if r["overhead"] is None:
            over = "1 (baseline)"
        elif "spark" in r:
            over = f"**{r['paired']:.2f}x** ({r['overhead']:.2f}x)"
        else:
            over = f"{r['paired']:.2f}x ({r['overhead']:.2f}x)"
        cpu = f"{r['cpu_ms']:.2f}"
        if "cpu_split_ms" in r:
            cpu += f" (JVM {r['cpu_split_ms']['jvm']:.2f} + Python {r['cpu_split_ms']['python']:.2f})"
        beside = f"{r['plain_here']:.1f}" if r.get("plain_here") else "-"
        cpu_over = f"{r['cpu_overhead']:.2f}x" if r.get("cpu_overhead") else "-"
        lines.append(f"| {r['what']} | {r['cores']} | {r['rate']:.1f} | {r['median']:.1f} | {per_core:.1f} | "
                     f"{beside} | {_busy(r['best']):.2f} | {cpu} | {over} | {cpu_over} |")
    lines += [
        "",
        "Overhead of `local[N]`: plain-loop rate / (Spark rate / N). Each Spark run is paired with the plain "
        "loop run just before it in the same subprocess; the figure is the median of the per-pair ratios, "
        "which follows drift in the machine's load; in brackets the best plain rate over the best Spark rate. "
        "For the pyarrow variant: plain / plain+write, alternating runs in the main process. CPU overhead: "
        "CPU ms/record of the Spark process tree over the plain loop's beside it (least of the runs each), "
        "the figure least moved by other load on a shared machine. CPUs busy: CPU seconds / wall seconds of "
        "the best run; below N (or 1 for the plain loop) the run did not get all its CPUs, e.g. because other "
        "sessions were busy (Linux shares CPU time between sessions first, then between their processes).",
        "",
        "Spark, the best run: start-up and warm-up (two ingests of a small folder; not in the rates) and the "
        "manifest's `timings_s`. \"Small job\": the second warm-up ingest, on a quarter of the records or "
        "fewer; next to the full run it shows how much of a run is a fixed cost per job.",
        "",
        "| master | start-up s | warm-up s | partitions | plan s | read_decode_write s | count s | wall s |"
        " output MiB | small job |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdict = []
    for r in summary["rows"]:
        s = r.get("spark")
        if not s:
            continue
        t = r["best"]["timings_s"]
        small = s["small_job"]
        lines.append(f"| {s['master']} | {s['startup_s']:.1f} | {sum(s['warmup_s']):.1f} | {s['partitions']} | "
                     f"{t.get('plan', 0):.2f} | {t.get('read_decode_write', 0):.2f} | {t.get('count', 0):.2f} | "
                     f"{r['best']['wall_s']:.2f} | {s['out_bytes'] / 2**20:.0f} | "
                     f"{small['records']} records in {small['wall_s']:.1f} s |")
        ok = "meets" if r["paired"] <= GOAL else "misses"
        short = _busy(r["best"]) / s["cores"] < 0.9 * r["plain_busy"]  # got less per CPU than the plain loop
        verdict.append(f"{s['master']} {r['paired']:.2f}x, {ok} the {GOAL}x goal (CPU per record "
                       f"{r['cpu_overhead']:.2f}x the plain loop's"
                       + (f"; it kept only {_busy(r['best']):.2f} of its {s['cores']} CPUs busy, against "
                          f"{r['plain_busy']:.2f} of 1 for the plain loop, so its wall-clock figure per core "
                          f"understates it and the CPU figure is the one to read" if short else "")
                       + ")")
    lines += ["", f"Result: {'; '.join(verdict)}."]
    if res.get("code_changed"):
        lines += ["", "**Warning: the library code changed while this ran; the figures mix two versions.**"]
    conf = res["spark"][0]["conf"] if res["spark"] else {}
    if conf:
        lines += ["", f"Spark settings added on the command line: `{conf}`"]
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--n", type=int, default=2000, help="JPEGs in the corpus (default 2000)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each variant (default 3)")
    p.add_argument("--copies", type=int, default=1,
                   help="ingest this many hard-linked copies of the corpus (n x copies records, distinct keys): "
                        "a longer job without generating more JPEGs, to see the fixed cost per job amortized")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_ingest"), help="corpus and outputs")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2], help="Spark local[N] settings (default 1 2)")
    p.add_argument("--conf", action="append", default=[], metavar="spark.KEY=VALUE",
                   help="extra Spark setting for the ingest runs (repeatable), to try a change")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    p.add_argument("--write-docs", action="store_true",
                   help=f"replace the block between the bench_ingest markers in {DOCS.relative_to(REPO)}")
    p.add_argument("--_spark-child", dest="spark_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or not Path("/proc/self/stat").is_file():
        p.error("this benchmark needs Linux: it pins CPUs with sched_setaffinity and reads CPU time from /proc")
    bad = [kv for kv in args.conf if "=" not in kv or not kv.startswith("spark.")]
    if bad:
        p.error(f"--conf wants spark.KEY=VALUE, got {bad}")
    if args.n < 1 or args.reps < 1 or args.copies < 1:
        p.error("--n, --copies and --reps must be at least 1")
    for n in args.cores:
        cpus(n)

    if args.spark_child:
        print(json.dumps(spark_child(args)))
        return

    command = "python -m benchmarks.bench_ingest " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.workdir = work = args.workdir.expanduser().absolute()
    work.mkdir(parents=True, exist_ok=True)
    from plumbing.runs import code_version

    res = {"command": command.strip(), "machine": machine(), "load_start": loadavg(), "reps": args.reps,
           "when": time.strftime("%Y-%m-%d %H:%M %Z"), "code_version": code_version(),
           "code_digest": _code_digest()}
    log(f"machine: {res['machine']}")
    shards = max(1, min(len(os.sched_getaffinity(0)), 8))
    res["corpus"] = corpus(work / "data", args.n, shards, seed=0)
    warmup_folder(work / "data", work / "warmup", min(WARMUP_N, max(1, args.n // 4)))
    res["corpus_mib"] = sum(f.stat().st_size for f in (work / "data").rglob("*.jpg")) / 2**20
    res["copies"] = args.copies
    data = input_folder(work, args.copies)
    log(f"corpus: {res['corpus']}")

    cpu0 = cpus(1)[0]
    plain_rep(work / "warmup", cpu0, label="plain warm-up")
    (work / "out_plain").mkdir(exist_ok=True)
    res["main_pairs"] = [
        {"plain": plain_rep(data, cpu0, label=f"plain {r + 1}"),
         "write": plain_rep(data, cpu0, work / "out_plain" / "raw.zstd.parquet",
                            label=f"plain + pyarrow write {r + 1}")}
        for r in range(args.reps)
    ]
    res["spark"] = [run_spark(args, n) for n in args.cores]
    res["load_end"] = loadavg()
    if _code_digest() != res["code_digest"]:
        res["code_changed"] = True
        log("warning: library code changed while the benchmark ran; its figures mix two versions")

    summary = summarize(res)
    block = markdown(res, summary)
    print(block)
    if args.json:
        args.json.write_text(json.dumps({**res, "summary": summary}, indent=2, default=str))
    if args.write_docs:
        write_docs(block)
        log(f"updated {DOCS}")


if __name__ == "__main__":
    main()
