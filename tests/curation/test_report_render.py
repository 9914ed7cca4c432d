"""The report renders in a real browser: headless Chromium loads it, and every chart and thumbnail shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.spark

# Injected into a copy of the page: records what the browser actually laid out and decoded.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);
  const svgs = [...document.querySelectorAll('svg')].map(s => { const b = s.getBBox(); return [b.width, b.height]; });
  const bars = document.querySelectorAll('svg rect.bar').length;
  document.body.setAttribute('data-probe', JSON.stringify({imgs, svgs, bars}));
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI; `make system-deps` installs it (Debian package chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return exe


def test_report_charts_and_thumbnails_render(demo_run, tmp_path):
    run, _ = demo_run
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    probe_page = run / "report" / "_probe.html"
    probe_page.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         probe_page.as_uri()],
        capture_output=True, text=True, timeout=120)
    m = re.search(r"data-probe=\"([^\"]*)\"", out.stdout)
    assert m, f"the page did not finish loading in Chromium: {out.stderr[-1500:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(probe["imgs"]) >= 10, "too few thumbnails in the report"
    broken = [src for src, complete, width in probe["imgs"] if not (complete and width > 0)]
    assert not broken, f"thumbnails that did not render: {broken}"
    assert len(probe["svgs"]) >= 8 and all(w > 0 and h > 0 for w, h in probe["svgs"]), probe["svgs"]
    assert probe["bars"] > 50  # funnel, reasons and the histograms all drew bars
    for heading in ("Funnel", "Dropped by rule", "Signals and thresholds", "Kept (sample)", "Dropped as "):
        assert heading in page
