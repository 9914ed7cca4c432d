"""Ingest on a real Spark standalone cluster gives the same table as in local mode, and loses nothing.

A master and a worker are started from pyspark's own `spark-class`, bound to 127.0.0.1 (the pyspark
wheel has no start-master.sh). The ingest job then runs through the command line, as a user runs it,
once with `--master spark://...` and once in local mode, over the hostile-input corpus (an image folder,
and a webdataset shard whose last member is cut short). Both tables must be identical row for row, hold
exactly one row per input record, and name the error of every bad record.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthetic.bad_inputs import TRUNCATED_TAR_KEY

pytestmark = [pytest.mark.cluster, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90
STOP_GRACE_S = 20
CLI_TIMEOUT_S = 300

# Short-lived JVMs spend most of their CPU in the JIT's optimising compiler; stopping at C1 makes a
# 13-record job markedly faster on a 2-core box and changes nothing the job computes.
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def _stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process, wait, then SIGKILL whatever is left of its process group (executors too)."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    try:  # the process leads its own group: this reaches children it left behind
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class _Daemon:
    """One `spark-class` JVM in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log: Path):
        self.name, self.log = name, log
        spark_class = Path(env["SPARK_HOME"]) / "bin" / "spark-class"
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(
            ["bash", str(spark_class), *args], env=env, cwd=log.parent, stdout=self._out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_for(self, needle: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"Spark {self.name} exited with {self.proc.returncode} before {needle!r}; "
                            f"log tail of {self.log}:\n{_tail(self.log)}")
            time.sleep(0.2)
        pytest.fail(f"Spark {self.name} did not log {needle!r} within {timeout:.0f} s; "
                    f"log tail of {self.log}:\n{_tail(self.log)}")

    def stop(self) -> None:
        _stop(self.proc)
        self._out.close()


@dataclass(frozen=True)
class Cluster:
    url: str  # spark://127.0.0.1:PORT
    work_dir: Path  # the worker's: one app-* folder per application, with each executor's stderr

    def apps(self) -> set[Path]:
        return set(self.work_dir.glob("app-*"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one worker (2 cores, 2g) on 127.0.0.1."""
    import pyspark

    base = tmp_path_factory.mktemp("spark_cluster")
    for d in ("logs", "work", "master", "worker"):
        (base / d).mkdir()
    port, master_ui, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SPARK_HOME": os.path.dirname(pyspark.__file__),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(base / "logs"),
        "SPARK_WORKER_DIR": str(base / "work"),
        # the REST submission server (port 6066 by default) is not needed and must not collide
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        # every JVM here: master, worker, and the executors the worker launches (they inherit its env)
        "JAVA_TOOL_OPTIONS": FAST_JVM,
    }
    with ExitStack() as stack:
        master = _Daemon("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                    "--port", str(port), "--webui-port", str(master_ui)],
                         env, base / "master" / "master.log")
        stack.callback(master.stop)  # callbacks run last-in first-out: the worker stops first
        master.wait_for("I have been elected leader")
        worker = _Daemon("worker", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                    "--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui),
                                    "--work-dir", str(base / "work"), url],
                         env, base / "worker" / "worker.log")
        stack.callback(worker.stop)
        worker.wait_for("Successfully registered with master")
        yield Cluster(url, base / "work")


class _Ingest:
    """`sluice curate ingest` in a fresh interpreter and its own process group, as a user runs it."""

    def __init__(self, input_dir: Path, run_dir: Path, *extra: str):
        self.run_dir = run_dir
        self.cmd = [sys.executable, "-m", "sluice.cli", "curate", "ingest", "--input", str(input_dir),
                    "--output", str(run_dir), *extra]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = run_dir.parent / f"{run_dir.name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env={**os.environ, "JAVA_TOOL_OPTIONS": FAST_JVM},
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def kill(self) -> None:
        _stop(self.proc, grace=5)

    def manifest(self, deadline: float) -> dict:
        """Wait for the run to end; its raw table's manifest."""
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{' '.join(self.cmd)} ran past {CLI_TIMEOUT_S} s; output tail:\n{_tail(self.log)}")
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # nothing of the run may outlive it
            except (ProcessLookupError, PermissionError):
                pass
        assert self.proc.returncode == 0, \
            f"{' '.join(self.cmd)} exited with {self.proc.returncode}; output tail:\n{_tail(self.log)}"
        return json.loads((self.run_dir / "raw" / "_manifest.json").read_text(encoding="utf-8"))


def _rows(run_dir: Path) -> tuple[object, list[dict]]:
    import pyarrow.dataset as ds

    table = ds.dataset(str(run_dir / "raw"), format="parquet").to_table()
    return table.schema, table.sort_by("id").to_pylist()


def _first_difference(a: list[dict], b: list[dict]) -> str:
    for ra, rb in zip(a, b):
        if ra != rb:
            cols = [c for c in ra if ra[c] != rb.get(c)]
            return f"row {ra.get('id')} ({ra.get('key')}) differs in {cols}: " + "; ".join(
                f"{c}: {str(ra[c])[:120]!r} vs {str(rb.get(c))[:120]!r}" for c in cols)
    return f"row counts {len(a)} vs {len(b)}"


@pytest.mark.parametrize("layout", ["folder", "webdataset"])
def test_cluster_ingest_equals_local_and_conserves_records(cluster, layout, bad_cases, bad_folder, bad_tar,
                                                            tmp_path):
    input_dir = bad_folder if layout == "folder" else bad_tar
    apps_before = cluster.apps()
    # Both runs at once: the cluster run spends much of its time waiting for its executor.
    with ExitStack() as stack:
        cluster_run = _Ingest(input_dir, tmp_path / "cluster" / "run", "--master", cluster.url,
                              "--spark-conf", "spark.executor.memory=1g", "--spark-conf", "spark.cores.max=2")
        stack.callback(cluster_run.kill)
        local_run = _Ingest(input_dir, tmp_path / "local" / "run")
        stack.callback(local_run.kill)
        deadline = time.monotonic() + CLI_TIMEOUT_S
        on_cluster, local = cluster_run.manifest(deadline), local_run.manifest(deadline)

    assert on_cluster["config"]["spark"]["master"] == cluster.url
    # The tasks really ran in an executor the worker launched, not in the driver.
    (app,) = cluster.apps() - apps_before
    executor_logs = "".join(p.read_text(errors="replace") for p in app.glob("*/stderr"))
    assert "Finished task" in executor_logs, f"no task finished in the executors of {app}"
    assert local["config"]["spark"]["master"] is None
    assert on_cluster["input"]["format"] == local["input"]["format"] == layout

    # The same table, row for row and byte for byte.
    schema_c, rows_c = _rows(cluster_run.run_dir)
    schema_l, rows_l = _rows(local_run.run_dir)
    assert schema_c.equals(schema_l, check_metadata=True)
    assert rows_c == rows_l, _first_difference(rows_c, rows_l)

    # Nothing lost: one row per input record, every bad one named.
    expected = len(bad_cases) + (1 if layout == "webdataset" else 0)
    assert len(rows_c) == expected == on_cluster["input"]["records"] == local["input"]["records"]
    assert len({r["id"] for r in rows_c}) == expected
    key = (lambda c: c.filename) if layout == "folder" else (lambda c: f"shard-00000/{c.name}")
    by_key = {r["key"]: r for r in rows_c}
    for case in bad_cases:
        row = by_key[key(case)]
        if case.expect_error:
            assert row["error_kind"] == case.expect_error, (case.name, row["error"])
            assert row["error"], case.name
        else:
            assert row["error"] is None and row["error_kind"] is None, (case.name, row["error"])
            assert row["image"] == case.data, case.name
    if layout == "webdataset":
        cut = by_key[f"shard-00000/{TRUNCATED_TAR_KEY}"]
        assert cut["error_kind"] == "broken_tar" and cut["error"], cut["error"]
    errors = sum(1 for r in rows_c if r["error_kind"] is not None)
    assert errors == sum(1 for c in bad_cases if c.expect_error) + (layout == "webdataset")

    # The manifests count the same table.
    strip = lambda out: {k: v for k, v in out.items() if k != "path"}  # noqa: E731
    assert strip(on_cluster["output"]) == strip(local["output"])
    assert on_cluster["output"]["rows"] == expected
    assert sum(on_cluster["output"]["errors"].values()) == errors
