"""The HTML report as a browser shows it: headless Chromium renders the page from
disk (no server, no network) and must show the results tables, draw a
non-blank screenshot and log no console/JavaScript error.

Needs the Debian package ``chromium`` (``make test`` installs it); skipped
with the reason otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from jaxmusic.viz import report
from tests.test_viz import build_runs

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is missing: apt-get install -y chromium "
    "(`make test` installs it)")

WINDOW = (1280, 1600)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
# What Chromium writes to stderr for a page's console messages and uncaught errors.
PAGE_ERRORS = re.compile(r"CONSOLE|Uncaught|SyntaxError|ReferenceError|TypeError")


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=180)


def page_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if PAGE_ERRORS.search(line)]


class Tables(HTMLParser):
    """The rendered DOM's tables as lists of rows of cell texts, by class."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((dict(attrs).get("class", ""), []))
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1][1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_report_renders_in_headless_chromium(tmp_path):
    runs, bench, wds = build_runs(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(report.build_report(runs, bench), encoding="utf-8")

    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert page_errors(dom.stderr) == [], page_errors(dom.stderr)
    parser = Tables()
    parser.feed(dom.stdout)
    summary = [rows for cls, rows in parser.tables if cls == "summary"]
    assert len(summary) == 1
    header, *rows = summary[0]
    assert header[:3] == ["run", "task", "model"] and "headline metric" in header
    by_run = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_run) == {"cnn_mel", "transfer/lstm_beat", "lstm_multitask", "ast_unfinished"}
    m = json.loads((wds[0] / "metrics.json").read_text())
    own = m["test"]["fma_genre_spectrograms"]
    assert by_run["cnn_mel"]["value"] == f"{own['accuracy']:.3f}"
    assert by_run["cnn_mel"]["macro F1"] == f"{own['macro_f1']:.3f}"
    assert by_run["lstm_multitask"]["headline metric"] == "validation Spearman mean"
    # the per-split results table of a genre run, as rendered
    splits = [rows for _, rows in parser.tables if rows and rows[0][:2] == ["split", "clips"]]
    assert any(r[0] == "test: fma_genre_spectrograms" and r[2] == f"{own['accuracy']:.3f}"
               for rows in splits for r in rows)
    assert sum(1 for _, rows in parser.tables if rows and rows[0][0] == "class") == 6

    shot = tmp_path / "shot.png"
    res = chromium(page, tmp_path, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    assert page_errors(res.stderr) == [], page_errors(res.stderr)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (WINDOW[1], WINDOW[0])
    assert img.std() > 0.05                       # not one flat colour
    dark = (img.mean(axis=2) < 0.3).mean()         # text and table rules
    assert 0.001 < dark < 0.5
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_console_errors_are_caught(tmp_path):
    """The error check above is not vacuous: a page with a script error fails it."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body><p>x</p>"
                   "<script>console.error('boom'); notDefined();</script></body></html>")
    res = chromium(bad, tmp_path, "--dump-dom")
    errors = page_errors(res.stderr)
    assert any("boom" in e for e in errors) and any("notDefined" in e for e in errors), res.stderr
