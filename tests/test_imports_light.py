"""Importing any package, or `sluice --help`, must not import the heavy stacks (DESIGN rule 8)."""

import subprocess
import sys

HEAVY = ("torch", "pyspark", "transformers", "label_studio_sdk", "datasets", "diffusers", "open_clip")

PROBE = f"""
import sys
import schemas, schemas.spark, schemas.jsonschema, sluice, sluice.cli, plumbing, plumbing.config, plumbing.runs, plumbing.inspect
import curation, curation.cli, curation.spark, curation.pipeline, curation.signals, curation.io.readers
import curation.jobs.ingest, curation.report.funnel, annotation, training, synthetic, detector_factory
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(",".join(heavy))
"""


def test_importing_every_package_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at import time: {out.stdout}"


def test_help_imports_nothing_heavy():
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['sluice', '--help']\n"
        "try:\n    runpy.run_module('sluice.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "curate" in out.stdout
    assert "HEAVY=\n" in out.stdout or out.stdout.rstrip().endswith("HEAVY="), out.stdout
