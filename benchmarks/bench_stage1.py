"""Stage-1 benchmark: throughput per core against a decode-only baseline and CleanVision, and accuracy.

    python -m benchmarks.bench_stage1 [--workdir /tmp/bench_stage1] [--n-per-class 40] [--seed 1234]
        [--reps 3] [--n-full 48] [--skip-pipeline] [--json FILE] [--write-docs]

Images: the labelled benchmark of `benchmarks.stage1_benchmark` (1024x768 JPEGs from held-out photos; classes
clean, blurry, bad_exposure, low_information, border, watermark, text_overlay, scene text), built once in
`--workdir` and reused while its seed and size match.

Throughput, each measurement in its own fresh interpreter (`--child MODE`), one thread (OMP/MKL/OpenBLAS
/numexpr = 1 before numpy loads, `cv2.setNumThreads(1)`, onnxruntime 1 intra-op thread, as stage 1 asks)
and its CPU affinity set to one CPU. Every timed loop reads each file's bytes and processes them; a
warm-up on the first images (imports, model loads, first-call costs) is not counted.

* (a) decode-only: Pillow full decode, `Image.open(...).convert("RGB")`; and `decode_for_analysis`, stage
  1's own decode (DCT-scaled for large JPEGs; a 1024x768 one is already at the analysis size).
* (b) stage 1 without OCR and detector: `ImageSignals((QualitySignal(), LayoutSignal()))` on batches of
  bytes, as the Spark adapter calls it (`build_signals` of the default config with structure and OCR off).
* (c) full stage 1: the default config's signals (+ StructureSignal, OcrSignal), on `--n-full` images
  taken evenly over the classes (OCR costs ~100x the rest).
* (d) CleanVision: `Imagelab(data_path=images).find_issues({blurry, dark, light, low_information,
  odd_aspect_ratio}, n_jobs=1)` with its default thresholds; its flags are kept for accuracy.

Rates are images per second of wall clock, and images per CPU second of the process (all its threads):
on a shared machine the CPU figure is disturbed less by other load, so the ratios use it first; both are
shown. Reps are interleaved (a, a', b, c, d, then again), each round on one CPU, and a ratio is the
median over rounds of the ratio within the round. Goals: (b)/(a) >= 0.6, (b)/(d) >= 2.

Accuracy: `sluice curate run` (ingest + stage 1, Spark local[*], default config) on the benchmark folder,
then precision/recall of each rule against the labels (`curation.calibrate.calibrate`, plus the
first-reason view), the scene-text false-drop rate, CleanVision's precision/recall with its issues mapped to
our rules (blurry -> blurry, dark or light -> bad_exposure, low_information -> low_information), and for
rules below 0.9 the calibrate suggestions and a joint threshold search over the rule's terms. The Spark
run's stage-1 throughput (manifest timings) is shown for context.
"""

from __future__ import annotations

import os

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "ORT_NUM_THREADS")
for _v in _THREAD_VARS:  # before numpy, cv2 or onnxruntime load
    os.environ[_v] = "1"

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.benchlib import cpu_model, log

REPO = Path(__file__).resolve().parents[1]

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench_stage1:start -->", "<!-- bench_stage1:end -->"
MODES = ("decode_full", "decode_reduced", "signals_fast", "signals_full", "cleanvision")
MODE_LABEL = {
    "decode_full": "(a) decode only: Pillow full decode",
    "decode_reduced": "(a') decode only: `decode_for_analysis`",
    "signals_fast": "(b) stage 1, no OCR, no detector",
    "signals_full": "(c) stage 1, full (+ detector + OCR)",
    "cleanvision": "(d) CleanVision, 5 checks",
}
CV_ISSUES = ("blurry", "dark", "light", "low_information", "odd_aspect_ratio")
# CleanVision issue -> our rule; listed in our config's rule order, so the first flag is the "first reason".
CV_TO_RULE = (("odd_aspect_ratio", "bad_aspect"), ("low_information", "low_information"),
              ("dark", "bad_exposure"), ("light", "bad_exposure"), ("blurry", "blurry"))
CV_RULES = ("blurry", "bad_exposure", "low_information")
WARMUP = 6
ALLOC_ENV = ("PILLOW_BLOCKS_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
BATCH = 64
GOAL_DECODE, GOAL_CV, GOAL_PR = 0.6, 2.0, 0.9


# ---------------------------------------------------------------- machine


def machine() -> dict:
    model = cpu_model()
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for key, dist in (("PIL", "pillow"), ("numpy", "numpy"), ("cv2", "opencv-python-headless"),
                      ("onnxruntime", "onnxruntime"), ("rapidocr", "rapidocr"), ("cleanvision", "cleanvision"),
                      ("pyspark", "pyspark")):
        try:
            versions[key] = version(dist)
        except PackageNotFoundError:
            versions[key] = None
    return {"nproc": os.cpu_count(), "cpus_allowed": len(os.sched_getaffinity(0)), "cpu": model,
            "loadavg_start": list(os.getloadavg()), "python": platform.python_version(), **versions}


# ---------------------------------------------------------------- children: one measurement each


def _config(fast: bool):
    from curation.config import CurateConfig
    from plumbing.config import load

    overrides = ["stage1.signals.structure.enabled=false", "stage1.signals.ocr.enabled=false"] if fast else []
    return load(CurateConfig, default=REPO / "curation" / "configs" / "default.yaml", overrides=overrides)


def _worker(mode: str, images_dir: Path):
    """`run(paths)` for `mode`, loaded and ready (CleanVision's lists `images_dir` itself when paths is None)."""
    import io

    if mode == "decode_full":
        from PIL import Image

        def run(paths):
            for p in paths:
                Image.open(io.BytesIO(p.read_bytes())).convert("RGB")
        return run
    if mode == "decode_reduced":
        from curation.signals.analysis import decode_for_analysis

        def run(paths):
            for p in paths:
                decode_for_analysis(p.read_bytes())
        return run
    if mode in ("signals_fast", "signals_full"):
        import cv2
        import pandas as pd

        from curation.jobs.stage1 import build_signals
        from curation.signals.analysis import ImageSignals

        cv2.setNumThreads(1)
        scorer = ImageSignals(build_signals(_config(mode == "signals_fast").stage1))
        scorer.load()

        def run(paths):
            for i in range(0, len(paths), BATCH):
                batch = pd.DataFrame({"image": [p.read_bytes() for p in paths[i:i + BATCH]]})
                out = scorer(batch)
                if out["error"].notna().any():
                    raise RuntimeError(f"scorer failed: {out['error'].dropna().iloc[0]}")
        return run
    if mode == "cleanvision":
        from cleanvision import Imagelab

        issues = {name: {} for name in CV_ISSUES}

        def run(paths):
            lab = Imagelab(filepaths=[str(p) for p in paths], verbose=False) if paths is not None \
                else Imagelab(data_path=str(images_dir), verbose=False)
            lab.find_issues(issues, n_jobs=1, verbose=False)
            return lab
        return run
    raise ValueError(f"unknown mode {mode!r}")


def child(args) -> None:
    os.sched_setaffinity(0, {args.cpu})
    files = [Path(line) for line in Path(args.files).read_text().splitlines() if line]
    images_dir = Path(args.images)
    t0 = time.perf_counter()
    run = _worker(args.child, images_dir)
    run(files[:WARMUP])
    setup_s = time.perf_counter() - t0
    r0, w0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
    # CleanVision lists the folder itself, as a user calls it; the others get the same files in order.
    result = run(None if args.child == "cleanvision" and args.all_files else files)
    wall, cpu, r1 = time.perf_counter() - w0, time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF)
    out = {"mode": args.child, "n": len(files), "wall_s": wall, "cpu_s": cpu, "setup_s": setup_s, "cpu": args.cpu,
           "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
           "minor_faults": r1.ru_minflt - r0.ru_minflt, "env": {k: os.environ[k] for k in ALLOC_ENV if k in os.environ}}
    if args.child == "cleanvision":
        issues = result.issues
        out["n"] = len(issues)  # what it found in the folder
        if args.flags_out:
            cols = [c for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]
            flags = {str(Path(path).relative_to(images_dir)): [c[3:-6] for c in cols if bool(row[c])]
                     for path, row in issues.iterrows()}
            Path(args.flags_out).write_text(json.dumps(flags, sort_keys=True), encoding="utf-8")
    print(json.dumps(out))


def run_child(mode: str, files_path: Path, images: Path, cpu: int, all_files: bool, flags_out: Path | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_stage1", "--child", mode, "--files", str(files_path),
           "--images", str(images), "--cpu", str(cpu)]
    if all_files:
        cmd.append("--all-files")
    if flags_out:
        cmd += ["--flags-out", str(flags_out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- throughput


def throughput(bench: Path, reps: int, n_full: int, workdir: Path) -> dict:
    images = bench / "images"
    from benchmarks.stage1_benchmark import read_labels

    keys = [lb["key"] for lb in read_labels(bench / "labels.jsonl")]
    all_files = [str(images / k) for k in keys]
    step = max(1, len(all_files) // max(1, n_full))
    full_files = all_files[::step][:n_full]
    lists = {"all": workdir / "files_all.txt", "full": workdir / "files_full.txt"}
    lists["all"].write_text("\n".join(all_files) + "\n")
    lists["full"].write_text("\n".join(full_files) + "\n")
    cpus = sorted(os.sched_getaffinity(0))
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    flags_path = workdir / "cleanvision_flags.json"
    for rep in range(reps):
        cpu = cpus[rep % len(cpus)]
        for mode in MODES:
            which = "full" if mode == "signals_full" else "all"
            r = run_child(mode, lists[which], images, cpu, all_files=mode == "cleanvision",
                          flags_out=flags_path if mode == "cleanvision" and rep == 0 else None)
            r["rep"] = rep
            runs[mode].append(r)
            log(f"rep {rep} cpu {cpu} {mode:15s} n={r['n']:4d} {r['n'] / r['wall_s']:8.2f} img/s wall "
                f"{r['n'] / r['cpu_s']:8.2f} img/cpu-s")
    return {"runs": runs, "n_all": len(all_files), "n_full": len(full_files), "cleanvision_flags": str(flags_path)}


def summarize_throughput(tp: dict) -> dict:
    runs = tp["runs"]
    rates = {m: {"cpu": [r["n"] / r["cpu_s"] for r in rs], "user": [r["n"] / r["user_s"] for r in rs],
                 "wall": [r["n"] / r["wall_s"] for r in rs]} for m, rs in runs.items()}
    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in rates.items()}
    best = {m: {k: max(v) for k, v in d.items()} for m, d in rates.items()}
    per_image = {m: {"sys_share": statistics.median(r["sys_s"] / max(r["cpu_s"], 1e-9) for r in rs),
                     "minor_faults": statistics.median(r["minor_faults"] / r["n"] for r in rs)}
                 for m, rs in runs.items()}

    def ratio(a: str, b: str, how: str) -> dict:
        per_rep = [x / y for x, y in zip(rates[a][how], rates[b][how])]
        return {"median_of_rounds": statistics.median(per_rep), "of_medians": med[a][how] / med[b][how],
                "rounds": per_rep}

    ratios = {name: {how: ratio(a, b, how) for how in ("cpu", "user", "wall")}
              for name, (a, b) in {"fast_over_decode": ("signals_fast", "decode_full"),
                                   "fast_over_reduced_decode": ("signals_fast", "decode_reduced"),
                                   "fast_over_cleanvision": ("signals_fast", "cleanvision"),
                                   "full_over_decode": ("signals_full", "decode_full")}.items()}
    return {"rates": rates, "median": med, "best": best, "per_image": per_image, "ratios": ratios}


# ---------------------------------------------------------------- accuracy


def pipeline(bench: Path, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "sluice.cli", "curate", "run", "--input", str(bench / "images"),
           "--output", str(run_dir), "--force", "--no-report"]
    log("$ " + shlex.join(cmd))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"sluice curate run failed ({p.returncode}):\n{p.stderr[-4000:]}")
    wall = time.perf_counter() - t0
    from plumbing import runs

    m1 = runs.read_manifest(run_dir / "stage1")
    m0 = runs.read_manifest(run_dir / "raw")
    cores = os.cpu_count()
    conf_master = (m1.get("config", {}).get("spark", {}) or {}).get("master")
    score_s = m1["timings_s"]["score_decide_write"]
    rows = m1["output"]["rows"]
    return {"command": shlex.join(["python", *cmd[1:]]), "wall_s": wall, "rows": rows,
            "master": conf_master or "local[*]",
            "cores": cores, "stage1_timings_s": m1["timings_s"], "ingest_timings_s": m0["timings_s"],
            "stage1_rate": rows / score_s, "stage1_rate_per_core": rows / score_s / cores}


def cleanvision_rows(flags_path: Path, labels):
    import pandas as pd

    flags = json.loads(Path(flags_path).read_text(encoding="utf-8"))
    out = []
    for lb in labels:
        issues = set(flags.get(lb["key"], []))
        reasons = list(dict.fromkeys(rule for issue, rule in CV_TO_RULE if issue in issues))
        out.append({**lb, "error": None, "drop_reasons": reasons or None,
                    "drop_reason": reasons[0] if reasons else None})
    return pd.DataFrame(out)


def accuracy(bench: Path, run_dir: Path, flags_path: Path | None) -> dict:
    from curation.calibrate import calibrate
    from benchmarks import stage1_benchmark as sb

    labels_path = bench / "labels.jsonl"
    rows = sb.labelled_rows(run_dir / "stage1", labels_path)
    rules = _config(False).stage1.rules
    scores, suggestions = calibrate(run_dir / "stage1", labels_path, rules, GOAL_PR)
    ours = sb.rule_scores(rows)
    res = {"rules": ours, "calibrate": {s.rule: vars(s) for s in scores},
           "calibrate_suggestions": [vars(s) for s in suggestions], "scene_text": sb.scene_text_drops(rows),
           "outcomes": sb.outcomes(rows), "errors": int(rows["error"].notna().sum())}
    res["below_goal"] = [r for r, s in ours.items()
                         if not all((s[k] or 0) >= GOAL_PR for k in ("precision_first", "recall_first"))]
    res["search"] = {}
    for k, rule in enumerate(rules):
        if rule.name in res["below_goal"]:
            earlier = tuple(r.name for r in rules[:k])
            res["search"][rule.name] = sb.suggest_keep_if(rows, rule.name, rule.keep_if, GOAL_PR, earlier)
    if flags_path and Path(flags_path).is_file():
        cv = cleanvision_rows(flags_path, sb.read_labels(labels_path))
        res["cleanvision"] = sb.rule_scores(cv, CV_RULES)
        res["cleanvision_flags_on_clean"] = int(cv.loc[cv["class"] == "clean", "drop_reason"].notna().sum())
        res["cleanvision_outcomes"] = sb.outcomes(cv)
    return res


# ---------------------------------------------------------------- report


def _f(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(res: dict) -> str:
    m, t, a = res["machine"], res.get("throughput"), res.get("accuracy")
    lines = [f"Command: `{res['command']}`  ", f"Date: {res['date']}; code {res['code_version']}.  ",
             f"Machine: {m['cpu']}, nproc {m['nproc']} (shared with other jobs), load average at start "
             f"{' / '.join(f'{x:.2f}' for x in m['loadavg_start'])}; Python {m['python']}, Pillow {m['PIL']}, "
             f"OpenCV {m['cv2']}, onnxruntime {m['onnxruntime']}, rapidocr {m['rapidocr']}, "
             f"CleanVision {m['cleanvision']}.", "",
             f"Images: `python -m benchmarks.stage1_benchmark --out DIR --n-per-class {res['n_per_class']} --seed "
             f"{res['seed']}`: {res['n_images']} JPEGs of 1024x768 from the held-out photo subjects only "
             f"({', '.join(res['heldout_subjects'])}; the page photo `text`), 8 classes of "
             f"{res['n_per_class']}: clean, blurry (gaussian, motion), bad_exposure (dark, overexposed), "
             f"low_information, border, watermark, text_overlay, and scene text (signs, posters, documents, "
             f"painted words, a page: no defect, must be kept).", ""]
    if t:
        s = t["summary"]
        med = s["median"]
        lines += ["### Throughput per core", "",
                  f"One process per measurement, one thread, pinned to one CPU; {res['reps']} interleaved rounds "
                  f"(each round on one CPU); median (best) of the rounds. (c) runs on {t['n_full']} of the images, "
                  f"evenly over the classes; the others on all {t['n_all']}. *CPU*: images per CPU second of the "
                  "process (user + system), disturbed less than wall clock by other load on a shared machine; "
                  "the goals are checked on it. *user*: user time only. *sys*: the share of system time; with the "
                  "page faults per image beside it, mostly memory faulted in afresh for every image: Pillow "
                  "(`PILLOW_BLOCKS_MAX` unset) and glibc (default mmap threshold) give each decoded image's "
                  "memory back to the OS.", "",
                  "| measurement | images/CPU-s | images/user-s | images/s (wall) | ms/image (CPU) | sys | "
                  "page faults/image |", "|---|---|---|---|---|---|---|"]
        best, per = s.get("best", med), s.get("per_image", {})
        for mode in MODES:
            pi = per.get(mode, {})
            lines.append(f"| {MODE_LABEL[mode]} | {_f(med[mode]['cpu'], 1)} ({_f(best[mode]['cpu'], 1)}) | "
                         f"{_f(med[mode].get('user'), 1)} | {_f(med[mode]['wall'], 1)} ({_f(best[mode]['wall'], 1)}) | "
                         f"{_f(1000 / med[mode]['cpu'], 1)} | {_f(100 * pi['sys_share'], 0) + '%' if pi else '-'} | "
                         f"{_f(pi.get('minor_faults'), 0)} |")
        r = s["ratios"]

        def row(name, label, goal):
            c, u, w = r[name]["cpu"], r[name].get("user"), r[name]["wall"]
            ok = "" if goal is None else (" **met**" if c["median_of_rounds"] >= goal else " **not met**")
            goal_s = "-" if goal is None else f">= {goal}{ok}"
            return (f"| {label} | {_f(c['median_of_rounds'])} ({', '.join(_f(x) for x in c['rounds'])}) | "
                    f"{_f(u['median_of_rounds']) if u else '-'} | {_f(w['median_of_rounds'])} | {goal_s} |")
        lines += ["", "| ratio (median over rounds of the ratio within a round) | CPU (rounds) | user | wall | goal |",
                  "|---|---|---|---|---|",
                  row("fast_over_decode", "(b) / (a) stage 1 without OCR / full decode", GOAL_DECODE),
                  row("fast_over_reduced_decode", "(b) / (a') stage 1 without OCR / stage-1 decode", None),
                  row("fast_over_cleanvision", "(b) / (d) stage 1 without OCR / CleanVision", GOAL_CV),
                  row("full_over_decode", "(c) / (a) full stage 1 / full decode", None), ""]
    if a:
        lines += ["### Precision and recall per rule", "",
                  "From `sluice curate run` (default config) on the benchmark folder, scored against "
                  "`labels.jsonl`. *first*: the rule is the row's `drop_reason`, the one reason the pipeline "
                  "reports (config order decides between rules that all fail: a black frame is "
                  "low_information, not also blurry); the goal is checked on it. *any*: the rule is among the "
                  "row's `drop_reasons`, each rule on its own, as `sluice curate calibrate` counts; there a "
                  "dark or blank frame that the blurry rule also fails counts against blurry's precision. "
                  f"Goal: precision and recall >= {GOAL_PR}.", "",
                  "| rule | labelled | flagged (first) | precision (first) | recall (first) | goal | "
                  "flagged (any) | precision (any) | recall (any) |", "|---|---|---|---|---|---|---|---|---|"]
        for rule, sc in a["rules"].items():
            ok = "met" if rule not in a["below_goal"] else "**not met**"
            lines.append(f"| {rule} | {sc['labelled']} | {sc['flagged_first']} | {_f(sc['precision_first'])} | "
                         f"{_f(sc['recall_first'])} | {ok} | {sc['flagged_any']} | {_f(sc['precision_any'])} | "
                         f"{_f(sc['recall_any'])} |")
        st = a["scene_text"]
        kinds = ", ".join(f"{k} {v['as_text_overlay']}/{v['n']}" for k, v in st["by_kind"].items())
        lines += ["", f"Scene text kept: {st['n']} images of text that belongs to the scene; dropped as "
                  f"`text_overlay`: {st['dropped_as_text_overlay']} (false-drop rate "
                  f"**{_f(st['false_drop_rate_text_overlay'], 3)}**; {kinds}); dropped for any reason: "
                  f"{st['dropped_any']} ({_f(st['false_drop_rate_any'], 3)}).", ""]
        lines += ["Outcome per class (first reason):", "", "| class | outcomes |", "|---|---|"]
        for cls, c in a["outcomes"].items():
            lines.append(f"| {cls} | {', '.join(f'{k} {v}' for k, v in sorted(c.items(), key=lambda kv: -kv[1]))} |")
        lines.append("")
        if "cleanvision" in a:
            lines += ["### Against CleanVision (same images, its default thresholds)", "",
                      "CleanVision's issues mapped to our rules: blurry -> blurry, dark or light -> bad_exposure, "
                      "low_information -> low_information (first reason in our rule order: low_information, "
                      f"exposure, blurry). It flagged {a['cleanvision_flags_on_clean']} of the clean images.", "",
                      "| rule | Sluice P / R (first) | CleanVision P / R (first) | Sluice equal or better (first) | "
                      "Sluice P / R (any) | CleanVision P / R (any) | Sluice equal or better (any) |",
                      "|---|---|---|---|---|---|---|"]
            for rule in CV_RULES:
                o, c = a["rules"][rule], a["cleanvision"][rule]
                cells = []
                for how in ("first", "any"):
                    better = all((o[f"{k}_{how}"] or 0) >= (c[f"{k}_{how}"] or 0) for k in ("precision", "recall"))
                    cells.append(f"{_f(o[f'precision_{how}'])} / {_f(o[f'recall_{how}'])} | "
                                 f"{_f(c[f'precision_{how}'])} / {_f(c[f'recall_{how}'])} | "
                                 f"{'yes' if better else '**no**'}")
                lines.append(f"| {rule} | {' | '.join(cells)} |")
            lines.append("")
        if a["below_goal"]:
            lines += ["### Rules below the goal: suggested thresholds", "",
                      f"`sluice curate calibrate --output RUN --labels labels.jsonl` (target precision {GOAL_PR}) "
                      "sweeps each top-level term alone:", "",
                      "| rule | term | suggested | precision | recall |", "|---|---|---|---|---|"]
            for s in a["calibrate_suggestions"]:
                if s["rule"] in a["below_goal"]:
                    sug = "-" if s["suggested"] is None else f"`{s['signal']} {s['op']} {s['suggested']:.4g}`"
                    lines.append(f"| {s['rule']} | `{s['term']}` | {sug} | {_f(s['precision'])} | {_f(s['recall'])} |")
            lines += ["", "All terms of the rule tuned together, first-reason precision and recall (coordinate "
                      "search on this set; check on more data before adopting):", "",
                      "| rule | suggested keep_if | precision | recall | reaches goal |",
                      "|---|---|---|---|---|"]
            for rule, s in a["search"].items():
                if s:
                    g = s["suggested"]
                    lines.append(f"| {rule} | `{g['keep_if']}` | {_f(g['precision'])} | {_f(g['recall'])} | "
                                 f"{'yes' if g['recall'] >= GOAL_PR and g['meets_target'] else 'no'} |")
            lines.append("")
    p = res.get("pipeline")
    if p:
        lines += [f"Spark, for context: `{p['command']}` ({p['master']}, {p['cores']} cores): stage 1 scored, "
                  f"decided and wrote {p['rows']} rows in {p['stage1_timings_s']['score_decide_write']:.1f} s: "
                  f"{p['stage1_rate']:.2f} images/s, {p['stage1_rate_per_core']:.2f} images/s/core (full stage 1 "
                  f"with OCR, wall clock, Spark overhead included; the machine was shared).", ""]
    return "\n".join(lines) + "\n"


INTRO = """## Stage 1

What it measures: on one labelled set of 1024x768 JPEGs made from held-out photos
(`python -m benchmarks.stage1_benchmark`), (1) throughput per core of stage 1's pixel signals without OCR and
the structure detector, of the full stage 1, of a decode-only baseline and of CleanVision's comparable
checks, each in a fresh single-threaded process pinned to one CPU, reps interleaved; (2) precision and
recall of each stage-1 rule after a real `sluice curate run`, the share of scene text (signs, posters,
pages) dropped as `text_overlay`, and CleanVision's precision and recall with its issues mapped to our
rules. Goals: stage 1 without OCR >= **0.6x** the decode-only rate and >= **2x** CleanVision's, per core;
precision and recall >= **0.9** per rule. Details: `python -m benchmarks.bench_stage1 --help`.
"""


def write_docs(block: str) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{INTRO}\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(f"{head}{START}\n{block}{END}{tail}", encoding="utf-8")


# ---------------------------------------------------------------- main


def ensure_benchmark(workdir: Path, n_per_class: int, seed: int) -> Path:
    from benchmarks import stage1_benchmark as sb
    from detector_factory import structure_data as sd

    bench = workdir / "bench"
    digest = sd.generator_digest(sb)
    stamp = {"n_per_class": n_per_class, "seed": seed, "generator": digest}
    stamp_path = bench / "stamp.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        log(f"reusing the benchmark in {bench}")
        return bench
    log(f"writing the benchmark to {bench} ...")
    sb.write_benchmark(bench, n_per_class, seed)
    stamp_path.write_text(json.dumps(stamp))
    return bench


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_stage1"))
    p.add_argument("--n-per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--n-full", type=int, default=48, help="images for (c), the full stage 1 with OCR")
    p.add_argument("--skip-pipeline", action="store_true", help="no Spark run: throughput only")
    p.add_argument("--skip-throughput", action="store_true", help="no throughput: accuracy only")
    p.add_argument("--json", type=Path, help="write all figures here")
    p.add_argument("--from-json", type=Path, help="measure nothing: render (and --write-docs) a saved --json")
    p.add_argument("--write-docs", action="store_true",
                   help=f"replace the block between the bench_stage1 markers in {DOCS.relative_to(REPO)}")
    # a child measurement (internal)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--all-files", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--flags-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return

    if args.from_json:
        block = markdown(json.loads(args.from_json.read_text(encoding="utf-8")))
        print(block)
        if args.write_docs:
            write_docs(block)
            log(f"updated {DOCS}")
        return

    from plumbing import runs
    from detector_factory.structure_data import HELDOUT_SUBJECTS

    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"]
    res = {"command": shlex.join(["python", "benchmarks/bench_stage1.py", *shown]),
           "date": time.strftime("%Y-%m-%d"), "code_version": runs.code_version(), "machine": machine(),
           "n_per_class": args.n_per_class, "seed": args.seed, "reps": args.reps,
           "heldout_subjects": list(HELDOUT_SUBJECTS)}
    log(f"machine: {res['machine']}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    bench = ensure_benchmark(args.workdir, args.n_per_class, args.seed)
    res["n_images"] = sum(1 for _ in (bench / "images").rglob("*.jpg"))
    flags = None
    if not args.skip_throughput:
        tp = throughput(bench, args.reps, args.n_full, args.workdir)
        tp["summary"] = summarize_throughput(tp)
        res["throughput"] = tp
        flags = Path(tp["cleanvision_flags"])
    elif (args.workdir / "cleanvision_flags.json").is_file():
        flags = args.workdir / "cleanvision_flags.json"
    if not args.skip_pipeline:
        run_dir = args.workdir / "run"
        res["pipeline"] = pipeline(bench, run_dir)
        res["accuracy"] = accuracy(bench, run_dir, flags)
    block = markdown(res)
    print(block)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    if args.write_docs:
        write_docs(block)
        log(f"updated {DOCS}")


if __name__ == "__main__":
    main()
