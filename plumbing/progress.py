"""Progress of Spark jobs, shown while they run: a live bar on a terminal, a log line every few seconds elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("sluice.progress")


def _tasks(spark) -> tuple[int, int]:
    tracker = spark.sparkContext.statusTracker()
    done = total = 0
    for sid in tracker.getActiveStageIds():
        info = tracker.getStageInfo(sid)
        if info:
            total += info.numTasks
            done += info.numCompletedTasks
    return done, total


@contextmanager
def spark_progress(spark, description: str, interval: float = 0.5, log_every: float = 15.0):
    stop = threading.Event()

    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} tasks"), TimeElapsedColumn(),
                            transient=True)
        task = progress.add_task(description, total=None)

        def poll():
            while not stop.wait(interval):
                done, total = _tasks(spark)
                progress.update(task, completed=done, total=total or None)

        progress.start()
    else:
        progress = None
        t0 = time.monotonic()

        def poll():
            last = 0.0
            while not stop.wait(interval):
                if time.monotonic() - last >= log_every:
                    done, total = _tasks(spark)
                    last = time.monotonic()
                    log.info("%s: %d/%d tasks of the running stages (%.0f s)", description, done, total, last - t0)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        if progress is not None:
            progress.stop()
