"""report.html of ``sbml-met run``: one self-contained page, checked in a real (headless) browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sbml_met.cli import main

CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "bd"
    assert main(["run", "birth_death", "--out", str(out), "--n", "200", "--n-reference", "200", "--seed", "4",
                 "--met", "off"]) == 0
    return out / "report.html"


def test_report_is_self_contained_with_tables_and_provenance(page):
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:)[^"#]', text)  # nothing fetched from elsewhere
    for needle in ("agrees with Tellurium", "Moments at the report times", "Timings", "birth", "k2 * X",
                   "sbml-met run birth_death", "--seed 4", "numpy", "libroadrunner", "Validation checks"):
        assert needle in text, needle


def _browser(args: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (installed by .ci/run where apt-get works)")
def test_report_renders_in_a_headless_browser(page, tmp_path):
    from PIL import Image

    # every image decoded: a copy of the page writes each image's natural width into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>document.body.dataset.widths = Array.from(document.images, "
                   "i => i.complete ? i.naturalWidth : -1).join(',');</script></body>"), encoding="utf-8")
    dom = _browser(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]).stdout
    widths = [int(w) for w in re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")]
    assert len(widths) == 4 and min(widths) > 300, widths
    # the page itself (no script) renders: the screenshot is not blank and shows the figures' colour
    shot = tmp_path / "shot.png"
    _browser([f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()])
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.std() > 20
    assert (pixels[..., :2].mean(axis=-1) < 230).mean() > 0.02  # dark or coloured: text and figures
    blue = (pixels[..., 2] > pixels[..., 0] + 40).mean()
    assert blue > 0.005  # the blue of the bars and density map, so the figures were drawn
