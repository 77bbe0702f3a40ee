"""Saving figures (``gradnap.figures.save``), the PNG checks the other figure tests
share, and what importing the figures costs."""

import struct
import subprocess
import sys

from matplotlib.figure import Figure
from PIL import Image

from gradnap.figures import figure_bytes, plot_naps, save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=200):
    """A PNG file of plausible size; returns its (width, height)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= min_side and height >= min_side
    assert len(data) > 5000
    return width, height


def test_save_figure_writes_title_and_caption_into_the_png(tmp_path):
    fig = plot_naps({"a": [[1.0, -2.0], [0.5, 0.0]]}, layer="l", caption="one group")
    path = save_figure(fig, tmp_path / "sub" / "naps.png")
    assert_png(path)
    info = Image.open(path).info
    assert info["Title"] == "NAPs of l" and info["Description"] == "one group"
    assert info["Software"].startswith("gradnap ")
    # an explicit caption wins; other formats from the suffix
    assert Image.open(save_figure(fig, tmp_path / "b.png", caption="mine")).info["Description"] == (
        "mine"
    )
    assert save_figure(fig, tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob("**/*.tmp*"))  # written atomically


def test_figure_bytes_renders_plain_figures_tightly():
    fig = Figure(figsize=(4, 3))
    fig.add_subplot().plot([0, 1], [1, 0])
    loose = figure_bytes(fig, dpi=50)
    tight = figure_bytes(fig, dpi=50, tight=True)
    assert loose[:8] == tight[:8] == PNG_SIGNATURE
    w_loose, _ = struct.unpack(">II", loose[16:24])
    w_tight, _ = struct.unpack(">II", tight[16:24])
    assert w_loose == 200 and w_tight < w_loose


def _imported(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_figures_import_matplotlib_without_pyplot_or_the_analyses():
    figures = _imported("import gradnap.figures")
    assert "matplotlib" in figures and "matplotlib.pyplot" not in figures
    assert "gradnap.analysis" not in figures and "torch" not in figures
    assert "matplotlib" not in _imported("import gradnap")
